//! Poll-style byte streams (tokio's `AsyncRead`/`AsyncWrite`) over monoio sockets, for protocol
//! libraries written against those traits: the h2 crate, for HTTP/2 in both directions.
//!
//! `PollStream::Plain` is monoio's readiness-based `TcpStreamPoll`; `PollStream::Tls` drives a
//! rustls session over it with non-blocking reads and writes, so the library can read and
//! write at the same time (a completion-based stream cannot lend itself to both at once). No
//! tokio runtime is involved: the traits are only an interface, and the monoio runtime
//! wakes the tasks.
//!
//! Invariants: reads and writes never block; rustls buffers at most its default 64 KiB of
//! plaintext before `poll_write` reports back-pressure; ciphertext read before the switch
//! (`TlsStream::into_parts`) is given to rustls before the socket is read again.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream::TlsStream;
use super::transport::Transport;

/// A plain or TLS connection in poll style.
pub enum PollStream {
    Plain(TcpStreamPoll),
    Tls(Box<PollTls>),
}

impl PollStream {
    /// Converts a completion-style transport (after its TLS handshake, if any).
    pub fn from_transport(t: Transport) -> io::Result<PollStream> {
        match t {
            Transport::Plain(tcp) => Ok(PollStream::Plain(poll_io(tcp)?)),
            Transport::Tls(tls) => Ok(PollStream::Tls(Box::new(PollTls::from_stream(*tls)?))),
        }
    }

    /// Plain TCP (h2c): nothing may have been read from it yet (callers only peek).
    pub fn plain(tcp: TcpStream) -> io::Result<PollStream> {
        Ok(PollStream::Plain(poll_io(tcp)?))
    }
}

impl std::os::fd::AsRawFd for PollStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PollStream::Plain(s) => s.as_raw_fd(),
            PollStream::Tls(t) => t.io.as_raw_fd(),
        }
    }
}

fn poll_io(tcp: TcpStream) -> io::Result<TcpStreamPoll> {
    tcp.try_into_poll_io().map_err(|(e, _)| e)
}

/// rustls over a readiness-based socket.
pub struct PollTls {
    io: TcpStreamPoll,
    tls: rustls::Connection,
    /// Ciphertext read before the switch: `early[early_pos..]` goes to rustls first.
    early: Vec<u8>,
    early_pos: usize,
    /// The socket reached EOF (rustls has been told).
    eof: bool,
    /// close_notify has been queued.
    notified: bool,
}

/// `io::Read` for rustls over a poll-style socket: a read that would wait registers the task
/// and reports `WouldBlock`.
struct SyncIo<'a, 'b> {
    io: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl PollTls {
    pub fn from_stream(s: TlsStream) -> io::Result<PollTls> {
        let (tcp, tls, early) = s.into_parts();
        Ok(PollTls {
            io: poll_io(tcp)?,
            tls,
            early,
            early_pos: 0,
            eof: false,
            notified: false,
        })
    }

    /// The rustls session (ALPN, peer certificates).
    pub fn conn(&self) -> &rustls::Connection {
        &self.tls
    }

    /// Writes queued ciphertext until rustls has none or the socket is full.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut w = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Gives rustls more ciphertext (early bytes first, then the socket) and processes it.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = if self.early_pos < self.early.len() {
            let mut rest = &self.early[self.early_pos..];
            let n = self.tls.read_tls(&mut rest);
            if let Ok(n) = n {
                self.early_pos += n;
                if self.early_pos == self.early.len() {
                    self.early = Vec::new();
                    self.early_pos = 0;
                }
            }
            n
        } else {
            let mut r = SyncIo {
                io: &mut self.io,
                cx,
            };
            self.tls.read_tls(&mut r)
        };
        match res {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.tls.process_new_packets() {
            // rustls queued an alert saying why; send it if the socket takes it now.
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(tls_err(e)));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for PollTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: the HTTP/2 framing notices truncation itself.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Answers rustls owes the peer (key updates, alerts) go out when they can.
            if this.tls.wants_write() {
                let _ = this.poll_flush_tls(cx);
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
    }
}

impl AsyncWrite for PollTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let empty = bufs.iter().all(|b| b.is_empty());
        loop {
            let n = this.tls.writer().write_vectored(bufs)?;
            // Push out what we can; what the socket refuses stays queued in rustls.
            let flushed = this.poll_flush_tls(cx);
            if n > 0 || empty {
                if let Poll::Ready(Err(e)) = flushed {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            // rustls's buffer was full: only a flush makes room.
            match flushed {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tls(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.notified {
            this.notified = true;
            this.tls.send_close_notify();
        }
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

impl AsyncRead for PollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PollStream::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PollStream::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PollStream::Tls(t) => Pin::new(&mut **t).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PollStream::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PollStream::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }
}
