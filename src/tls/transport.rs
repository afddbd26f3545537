//! The byte stream under a wire: plain TCP or TLS. One enum (static dispatch, one branch per
//! operation) so the HTTP/1.1 wire, the lingering close and the upstream pool are written
//! once for both.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::io::{IdleWake, IoFail};

use super::stream::TlsStream;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => t.tcp(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Waits until the socket is readable (no buffer held). For TLS, bytes rustls already
    /// holds count as readable only through `has_buffered`, which callers check first.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp().readable(false).await
    }

    /// Whether a read would be answered without touching the socket.
    pub fn has_buffered(&mut self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.has_buffered(),
        }
    }

    /// Ends a TLS session properly before the connection closes: sends close_notify (bounded by
    /// `deadline`; a peer that does not read gets nothing more). Clients such as OpenSSL's only
    /// keep a session for resumption when the server closed it this way. Nothing for plain TCP.
    pub async fn close_notify(&mut self, deadline: Instant) {
        if let Transport::Tls(t) = self {
            let _ = monoio::time::timeout_at(deadline.into(), t.send_close_notify()).await;
        }
    }

    /// See `io::idle_wait` and `TlsStream::idle_wait`.
    pub async fn idle_wait(
        &mut self,
        buf: &mut Vec<u8>,
        canceller: &mut monoio::io::Canceller,
        grace: Duration,
        deadline: Instant,
    ) -> Result<IdleWake, IoFail> {
        match self {
            Transport::Plain(s) => crate::io::idle_wait(s, buf, canceller, grace, deadline).await,
            Transport::Tls(t) => t.idle_wait(buf, canceller, grace, deadline).await,
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncReadRent for Transport {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(t) => t.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.readv(buf).await,
            Transport::Tls(t) => t.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Transport {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.write(buf).await,
            Transport::Tls(t) => t.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Transport::Plain(s) => s.writev(buf).await,
            Transport::Tls(t) => t.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush().await,
            Transport::Tls(t) => t.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(t) => t.shutdown().await,
        }
    }
}
