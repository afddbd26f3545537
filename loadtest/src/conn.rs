//! One client connection as the request loop sees it: plain TCP or TLS over TCP, with the
//! same three operations (write a request, read more response bytes, close). Opening a
//! connection includes the TLS handshake, bounded by the request timeout.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::recvbuf::RecvBuf;
use crate::tls::{Negotiated, TlsClient, TlsStream};

/// A connected socket, with or without TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// TCP connect failed or timed out.
    Connect,
    /// The TLS handshake failed, timed out or the server closed during it.
    Tls,
}

impl Conn {
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Conn::Plain(s) => s.as_raw_fd(),
            Conn::Tls(s) => s.raw_fd(),
        }
    }

    /// Writes all of `buf` (encrypted first over TLS).
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Conn::Plain(s) => s.write_all(buf).await,
            Conn::Tls(s) => s.write_all(buf).await,
        }
    }

    /// Reads at least one byte of response into `rbuf`; 0 at a clean end of stream.
    pub async fn fill(&mut self, rbuf: &mut RecvBuf) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => rbuf.fill(s).await,
            Conn::Tls(s) => s.fill(rbuf).await,
        }
    }

    /// Ends the connection: close_notify first over TLS, then the socket closes on drop.
    pub async fn close(self) {
        if let Conn::Tls(s) = self {
            s.close().await;
        }
    }

    /// The TLS parameters, for TLS connections.
    pub fn negotiated(&self) -> Option<Negotiated> {
        match self {
            Conn::Plain(_) => None,
            Conn::Tls(s) => Some(s.negotiated()),
        }
    }
}

/// Connects to `addr` and, with `tls`, completes the handshake; each step bounded by
/// `timeout`.
pub async fn open(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TlsClient>,
) -> Result<Conn, OpenError> {
    let tcp = match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => s,
        _ => return Err(OpenError::Connect),
    };
    // Requests are written in one piece; don't let Nagle hold back the next one.
    let _ = tcp.set_nodelay(true);
    let Some(client) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let mut s = TlsStream::new(tcp, client).map_err(|e| tls_failed(&e.to_string()))?;
    // A timed-out handshake drops the whole connection, so cancelling it mid-record is safe.
    match monoio::time::timeout(timeout, s.handshake()).await {
        Ok(Ok(())) => Ok(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => Err(tls_failed(&e.to_string())),
        Err(_) => Err(tls_failed("handshake timed out")),
    }
}

thread_local! {
    static TLS_WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The first failed handshake of a thread is explained on stderr (a wrong --cacert or
/// server name would otherwise only show up as a count).
fn tls_failed(why: &str) -> OpenError {
    if !TLS_WARNED.with(|w| w.replace(true)) {
        eprintln!("rwload: TLS handshake failed: {why}");
    }
    OpenError::Tls
}
