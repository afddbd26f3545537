//! rustls driven over monoio's owned buffers: a `TlsStream` is a TCP stream plus a rustls
//! connection (server or client side) and two ciphertext buffers it owns.
//!
//! Reads take ciphertext from the socket into `rbuf`, hand it to rustls record by record and
//! copy decrypted bytes straight out of rustls's plaintext queue (no zero-filling, no extra
//! buffer). Writes encrypt into rustls's queue, drain it into `wbuf` and write that out fully
//! before returning, so a returned write is on the wire.
//!
//! Cancellation: dropping a read or write future mid-way loses the buffer it held and breaks the
//! TLS session, exactly as a dropped plain read loses its bytes. ringway's rule (see `io`) is
//! that every timed-out operation closes the connection, so nothing is ever resumed after a
//! cancelled record. The one operation that is cancelled on purpose, the idle keep-alive read,
//! goes through `idle_wait`, which uses io_uring's cancel and keeps any bytes that arrived.

use std::io::{self, BufRead};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::io::{IdleWake, IoFail};

/// Ciphertext read size: one full TLS record (16 KiB payload + header + AEAD overhead) fits.
const RECORD_READ: usize = 16 * 1024 + 512;

/// Why a handshake failed, for the handshake-error metric and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFail {
    /// The handshake did not finish within the listener's handshake timeout.
    Timeout,
    /// The peer closed before the handshake finished.
    Eof,
    /// A socket error.
    Io,
    /// No protocol version, cipher suite or ALPN protocol in common.
    Incompatible,
    /// The client asked for a server name we do not serve (and the listener rejects those).
    UnknownName,
    /// The client certificate was missing or did not verify.
    ClientCert,
    /// The peer sent a fatal alert (often: it did not trust our certificate).
    Alert,
    /// Anything else the peer got wrong: garbage, not TLS, a bad record.
    Protocol,
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp,
}

impl HandshakeFail {
    /// Label value for `ringway_tls_handshake_errors_total{reason=...}`.
    pub const fn label(self) -> &'static str {
        match self {
            HandshakeFail::Timeout => "timeout",
            HandshakeFail::Eof => "eof",
            HandshakeFail::Io => "io",
            HandshakeFail::Incompatible => "incompatible",
            HandshakeFail::UnknownName => "unknown_name",
            HandshakeFail::ClientCert => "client_cert",
            HandshakeFail::Alert => "alert",
            HandshakeFail::Protocol => "protocol",
            HandshakeFail::PlainHttp => "plain_http",
        }
    }

    pub const ALL: [HandshakeFail; 9] = [
        HandshakeFail::Timeout,
        HandshakeFail::Eof,
        HandshakeFail::Io,
        HandshakeFail::Incompatible,
        HandshakeFail::UnknownName,
        HandshakeFail::ClientCert,
        HandshakeFail::Alert,
        HandshakeFail::Protocol,
        HandshakeFail::PlainHttp,
    ];

    fn of(e: &rustls::Error) -> HandshakeFail {
        use rustls::Error as E;
        match e {
            E::NoCertificatesPresented
            | E::InvalidCertificate(_)
            | E::InvalidCertRevocationList(_) => HandshakeFail::ClientCert,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFail::Incompatible,
            E::AlertReceived(_) => HandshakeFail::Alert,
            // rustls's wording when the certificate resolver returned nothing.
            E::General(m) if m.contains("no server certificate") => HandshakeFail::UnknownName,
            _ => HandshakeFail::Protocol,
        }
    }
}

/// A TCP stream with TLS on top.
pub struct TlsStream {
    tcp: TcpStream,
    tls: rustls::Connection,
    /// Ciphertext from the socket not yet given to rustls: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Ciphertext rustls produced; emptied by every flush.
    wbuf: Vec<u8>,
    /// The socket reached EOF (rustls has been told).
    eof: bool,
    /// What rustls last refused (for logs: a handshake failure's reason).
    error: Option<rustls::Error>,
    /// close_notify has been queued.
    notified: bool,
}

/// What `absorb` found on a stream with no read in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absorbed {
    /// Decrypted bytes are ready to read.
    Plaintext,
    /// The socket is drained and nothing readable came: at most TLS records that carry no
    /// data (session tickets, key updates) or part of a record.
    Quiet,
    /// close_notify, EOF or an error: the stream is finished.
    Ended,
    /// Still more to take after a few rounds: look again when the socket is readable.
    Busy,
}

/// Whether the first bytes on a TLS port are a plain HTTP request line (`GET /...`): an
/// uppercase method token and a space. A TLS record starts with 0x16, never a letter.
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method_len) && first.get(method_len) == Some(&b' ')
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    pub fn new(tcp: TcpStream, tls: impl Into<rustls::Connection>) -> TlsStream {
        TlsStream {
            tcp,
            tls: tls.into(),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            eof: false,
            notified: false,
            error: None,
        }
    }

    /// The TCP stream, for a plain answer after a failed handshake.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// Takes the stream apart after a completed handshake, for a poll-style driver
    /// (`tls::poll`): the socket, the session, and ciphertext already read but not yet given
    /// to rustls (a client's first request often arrives with its Finished message).
    pub fn into_parts(mut self) -> (TcpStream, rustls::Connection, Vec<u8>) {
        let rest = self.rbuf.split_off(self.rpos);
        (self.tcp, self.tls, rest)
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// The rustls connection (negotiated version, ALPN, SNI, peer certificates).
    pub fn conn(&self) -> &rustls::Connection {
        &self.tls
    }

    /// Runs the handshake to completion (and writes what rustls has to say after it, such as
    /// TLS 1.3 session tickets). The caller bounds it with the handshake timeout and closes
    /// the connection if that fires.
    pub async fn handshake(&mut self) -> Result<(), HandshakeFail> {
        loop {
            if self.tls.wants_write() {
                self.flush_tls().await.map_err(|_| HandshakeFail::Io)?;
            }
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            if self.rpos < self.rbuf.len() {
                if self.rpos == 0 && looks_like_http(&self.rbuf) {
                    return Err(HandshakeFail::PlainHttp);
                }
                if let Err(e) = self.feed() {
                    // Tell the peer why (rustls queued an alert), best effort.
                    let _ = self.flush_tls().await;
                    return Err(match e.get_ref().and_then(|e| e.downcast_ref()) {
                        Some(tls) => HandshakeFail::of(tls),
                        None => HandshakeFail::Protocol,
                    });
                }
                continue;
            }
            match self.read_tcp().await {
                Ok(0) => return Err(HandshakeFail::Eof),
                Ok(_) => {}
                Err(_) => return Err(HandshakeFail::Io),
            }
        }
    }

    /// Whether decrypted or undecrypted bytes are waiting (a read would not touch the socket).
    pub fn has_buffered(&mut self) -> bool {
        self.rpos < self.rbuf.len()
            || matches!(self.tls.reader().fill_buf(), Ok(b) if !b.is_empty())
    }

    /// Gives rustls the next piece of buffered ciphertext and processes it.
    fn feed(&mut self) -> io::Result<()> {
        let mut rest = &self.rbuf[self.rpos..];
        let n = self.tls.read_tls(&mut rest)?;
        self.rpos += n;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
        if let Err(e) = self.tls.process_new_packets() {
            self.error = Some(e.clone());
            return Err(tls_err(e));
        }
        Ok(())
    }

    /// Gives back buffer space beyond one record (a large write grows `wbuf` to 64 KiB), for a
    /// connection about to sit idle in a pool.
    pub fn trim(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > RECORD_READ {
            self.rbuf = Vec::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > RECORD_READ {
            self.wbuf = Vec::new();
        }
    }

    /// What rustls last refused (after a failed handshake: why, e.g. an untrusted
    /// certificate), taken once.
    pub fn take_error(&mut self) -> Option<rustls::Error> {
        self.error.take()
    }

    /// For a stream with no read in flight (an idle pooled connection, a tunnel whose socket
    /// became readable): takes what the socket holds right now through rustls with
    /// non-blocking receives, never waiting. TLS 1.3 servers send session tickets and key
    /// updates at any time; those are processed here and are not data.
    pub fn absorb(&mut self) -> Absorbed {
        for _ in 0..8 {
            // Feed records one at a time and stop at the first plaintext: rustls refuses more
            // ciphertext once 16 KiB of plaintext wait unread, and that refusal must not be
            // taken for an end (the rest stays in `rbuf` for the next call).
            loop {
                match self.tls.reader().fill_buf() {
                    Ok(b) if !b.is_empty() => return Absorbed::Plaintext,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => return Absorbed::Ended,
                }
                if self.rpos >= self.rbuf.len() {
                    break;
                }
                if self.feed().is_err() {
                    return Absorbed::Ended;
                }
            }
            if self.eof {
                return Absorbed::Ended;
            }
            self.rbuf.clear();
            self.rpos = 0;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.tcp);
            match crate::io::recv_now(fd, &mut self.rbuf, RECORD_READ) {
                Ok(0) => {
                    self.eof = true;
                    let _ = self.tls.read_tls(&mut &[][..]);
                    return Absorbed::Ended;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Absorbed::Quiet,
                Err(_) => return Absorbed::Ended,
            }
        }
        Absorbed::Busy
    }

    /// Reads ciphertext from the socket into `rbuf` (which is empty when this is called).
    async fn read_tcp(&mut self) -> io::Result<usize> {
        self.rbuf.clear();
        self.rpos = 0;
        if self.rbuf.capacity() < RECORD_READ {
            self.rbuf.reserve(RECORD_READ);
        }
        let owned = std::mem::take(&mut self.rbuf);
        let (res, owned) = self.tcp.read(owned).await;
        self.rbuf = owned;
        if let Ok(0) = res {
            self.eof = true;
            // An empty read tells rustls the transport ended.
            let _ = self.tls.read_tls(&mut &[][..]);
        }
        res
    }

    /// Writes everything rustls has queued to the socket.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.wbuf.clear();
            while self.tls.wants_write() && self.wbuf.len() < 64 * 1024 {
                self.tls.write_tls(&mut self.wbuf)?;
            }
            let owned = std::mem::take(&mut self.wbuf);
            let (res, owned) = self.tcp.write_all(owned).await;
            self.wbuf = owned;
            res?;
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Copies decrypted bytes into `dst` (up to `cap` bytes), reading and decrypting as needed.
    /// `Ok(0)` is the end of the stream (close_notify, or a TCP EOF).
    async fn read_plain(&mut self, dst: *mut u8, cap: usize) -> io::Result<usize> {
        loop {
            match self.tls.reader().fill_buf() {
                Ok(chunk) => {
                    let n = chunk.len().min(cap);
                    // SAFETY: `dst` points to at least `cap` writable bytes of the caller's
                    // buffer, which is not aliased by rustls's internal queue.
                    unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, n) };
                    self.tls.reader().consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: HTTP framing catches truncation, so it is an EOF.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.rpos < self.rbuf.len() {
                self.feed()?;
                continue;
            }
            if self.eof {
                return Ok(0);
            }
            if self.tls.wants_write() {
                self.flush_tls().await?;
            }
            self.read_tcp().await?;
        }
    }

    /// Encrypts `src` and writes it out; returns how much of `src` was taken (rustls's queue is
    /// bounded, so a large write is taken in pieces).
    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = io::Write::write(&mut self.tls.writer(), src)?;
        self.flush_tls().await?;
        Ok(n)
    }

    /// Non-blocking read for relays: appends at most `max` decrypted bytes to `dst`, taking
    /// what the socket holds without waiting. `Some(n > 0)`: data; `Some(0)`: the stream
    /// ended (close_notify or EOF); `None`: nothing yet (wait until readable); `Err`: a TLS
    /// or socket error (the relay aborts rather than pass on a clean end).
    pub fn try_read_plain(&mut self, dst: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        // `Busy`: records without data filled the rounds; what was read is still to be fed.
        let mut seen = self.absorb();
        for _ in 0..16 {
            if seen != Absorbed::Busy {
                break;
            }
            seen = self.absorb();
        }
        match seen {
            Absorbed::Plaintext => {
                let mut reader = self.tls.reader();
                let chunk = reader.fill_buf()?;
                let n = chunk.len().min(max);
                dst.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                Ok(Some(n))
            }
            // close_notify, or a TCP end without one (as HTTP reads it), is an end; a TLS
            // error is an error, so a relay does not pass a broken stream on as a clean close.
            Absorbed::Ended => match self.tls.reader().fill_buf() {
                _ if self.error.is_some() => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS error on a relayed stream",
                )),
                Ok(_) => Ok(Some(0)),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
                Err(e) => Err(e),
            },
            Absorbed::Quiet | Absorbed::Busy => Ok(None),
        }
    }

    /// Non-blocking write for relays: encrypts as much of `src` as rustls's bounded send
    /// queue takes (possibly nothing) and writes queued ciphertext without waiting (see
    /// `try_flush`). Returns how much of `src` was taken.
    pub fn try_write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = io::Write::write(&mut self.tls.writer(), src)?;
        self.try_flush()?;
        Ok(n)
    }

    /// Writes queued ciphertext without waiting: `true` once all of it is on the wire,
    /// `false` when the socket is full (wait until writable). Only for a stream with no
    /// write in flight (the relays, which never await a write on it).
    pub fn try_flush(&mut self) -> io::Result<bool> {
        /// rustls's ciphertext goes out through `io::send_now`: never waits.
        struct NoWait(std::os::fd::RawFd);
        impl io::Write for NoWait {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                crate::io::send_now(self.0, b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = NoWait(std::os::fd::AsRawFd::as_raw_fd(&self.tcp));
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether ciphertext waits to be written.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Non-blocking close for relays: queues close_notify (once) and writes what it can;
    /// `true` once it is on the wire.
    pub fn try_close_notify(&mut self) -> io::Result<bool> {
        if !self.notified {
            self.tls.send_close_notify();
            self.notified = true;
        }
        self.try_flush()
    }

    /// Queues close_notify (once) and writes it out.
    pub async fn send_close_notify(&mut self) -> io::Result<()> {
        if !self.notified {
            self.notified = true;
            self.tls.send_close_notify();
        }
        self.flush_tls().await
    }

    /// Sends close_notify and shuts the socket's write side.
    pub async fn close(&mut self) -> io::Result<()> {
        self.send_close_notify().await?;
        self.tcp.shutdown().await
    }

    /// Waits for the next request on an idle keep-alive connection, like `io::idle_wait`:
    /// a read with a buffer posted for `grace`, then cancelled (keeping anything that arrived)
    /// and the buffers released, so a quiet TLS connection holds no read or write buffer.
    pub async fn idle_wait(
        &mut self,
        buf: &mut Vec<u8>,
        canceller: &mut monoio::io::Canceller,
        grace: Duration,
        deadline: Instant,
    ) -> Result<IdleWake, IoFail> {
        if Instant::now() >= deadline {
            return Err(IoFail::Timeout);
        }
        if !self.has_buffered() {
            self.rbuf.clear();
            self.rpos = 0;
            if self.rbuf.capacity() < RECORD_READ {
                self.rbuf.reserve(RECORD_READ);
            }
            let owned = std::mem::take(&mut self.rbuf);
            let grace_end = (Instant::now() + grace).min(deadline);
            let (res, owned) =
                crate::io::read_until_cancelled(&mut self.tcp, owned, canceller, grace_end).await;
            self.rbuf = owned;
            match res {
                Ok(0) => return Err(IoFail::Closed),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                    if Instant::now() >= deadline {
                        return Err(IoFail::Timeout);
                    }
                    self.rbuf = Vec::new();
                    self.wbuf = Vec::new();
                    *buf = Vec::new();
                    return Ok(IdleWake::Quiet);
                }
                Err(e) => return Err(IoFail::Error(e)),
            }
        }
        // Something arrived: decrypt it into `buf` (a partial record waits for the rest).
        crate::io::read_more(self, buf, deadline, 64 * 1024).await?;
        Ok(IdleWake::Data)
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // monoio's contract, as for a socket read: fill from `write_ptr`, at most
        // `bytes_total` bytes, then `set_init(n)`.
        let cap = buf.bytes_total();
        let dst = buf.write_ptr();
        match self.read_plain(dst, cap).await {
            Ok(n) => {
                // SAFETY: `n` bytes were just written at `write_ptr`.
                unsafe { buf.set_init(n) };
                (Ok(n), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: RawBuf borrows the first iovec of `buf`, which outlives this call.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => match self.read(raw).await {
                (Ok(n), _) => n,
                (Err(e), _) => return (Err(e), buf),
            },
            None => 0,
        };
        // SAFETY: `n` bytes were written into the first iovec.
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: read_ptr..+bytes_init is the buffer's initialized content.
        let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let res = self.write_plain(src).await;
        (res, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: RawBuf borrows the first iovec of `buf`, which outlives this call.
        match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => {
                let (res, _) = self.write(raw).await;
                (res, buf)
            }
            None => (Ok(0), buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.close().await
    }
}
