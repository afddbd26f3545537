//! One active health probe, blocking, on the checker's probe thread: a TCP connect, the TLS
//! handshake for a TLS upstream (the upstream's own compiled client config, so the target's
//! certificate is verified as for traffic), and for an HTTP check one `GET` whose status line
//! decides.
//!
//! Bounded whatever the target does: every step shares one deadline (`timeout`), each socket
//! operation gets only what is left of it, and at most `MAX_STATUS_LINE` bytes are read (the
//! status line; the body is never read). A target that answers garbage, an endless line or
//! nothing at all fails the probe; it never holds the thread past the timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;

use super::active::{ActiveCheck, CheckKind, ProbeResult};

/// Most bytes read while looking for the status line.
pub const MAX_STATUS_LINE: usize = 4096;

/// What a probe of a TLS upstream needs.
pub struct ProbeTls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// Probes `addr` once. `host` is the Host header of an HTTP check.
pub fn probe(c: &ActiveCheck, addr: SocketAddr, host: &str, tls: Option<&ProbeTls>) -> ProbeResult {
    let deadline = Instant::now() + c.timeout;
    let mut tcp = match TcpStream::connect_timeout(&addr, c.timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return ProbeResult::Timeout,
        Err(_) => return ProbeResult::ConnectFailed,
    };
    let _ = tcp.set_nodelay(true);
    match (tls, &c.kind) {
        (None, CheckKind::Tcp) => ProbeResult::Pass,
        (None, CheckKind::Http { path, expect, .. }) => {
            let mut io = Deadlined {
                s: &mut tcp,
                deadline,
            };
            http_check(&mut io, path, host, *expect)
        }
        (Some(t), kind) => {
            let conn = match rustls::ClientConnection::new(t.config.clone(), t.name.clone()) {
                Ok(c) => c,
                Err(_) => return ProbeResult::TlsFailed,
            };
            let mut io = TlsIo {
                conn,
                io: Deadlined {
                    s: &mut tcp,
                    deadline,
                },
            };
            if let Err(r) = io.handshake() {
                return r;
            }
            match kind {
                CheckKind::Tcp => ProbeResult::Pass,
                CheckKind::Http { path, expect, .. } => http_check(&mut io, path, host, *expect),
            }
        }
    }
}

/// The request, then the status line.
fn http_check(io: &mut impl Io, path: &str, host: &str, expect: (u16, u16)) -> ProbeResult {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringway-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    if let Err(r) = io.send(req.as_bytes()) {
        return r;
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return match status_of(&buf[..end]) {
                Some(s) if (expect.0..=expect.1).contains(&s) => ProbeResult::Pass,
                Some(s) => ProbeResult::Status(s),
                None => ProbeResult::BadResponse,
            };
        }
        if buf.len() >= MAX_STATUS_LINE {
            return ProbeResult::BadResponse;
        }
        let room = (MAX_STATUS_LINE - buf.len()).min(chunk.len());
        match io.recv(&mut chunk[..room]) {
            Ok(0) => return ProbeResult::BadResponse,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(r) => return r,
        }
    }
}

/// The status code of `HTTP/1.x NNN ...`, or `None` for anything else.
pub fn status_of(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let s = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&s).then_some(s)
}

/// Bytes in and out within the probe's deadline.
trait Io {
    fn send(&mut self, b: &[u8]) -> Result<(), ProbeResult>;
    fn recv(&mut self, b: &mut [u8]) -> Result<usize, ProbeResult>;
}

/// A socket whose every operation gets what is left of one deadline.
struct Deadlined<'a> {
    s: &'a mut TcpStream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn arm(&self, read: bool) -> Result<(), ProbeResult> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeResult::Timeout);
        }
        let set = if read {
            self.s.set_read_timeout(Some(left))
        } else {
            self.s.set_write_timeout(Some(left))
        };
        set.map_err(|_| ProbeResult::ConnectFailed)
    }
}

fn io_fail(e: &std::io::Error) -> ProbeResult {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ProbeResult::Timeout,
        _ => ProbeResult::BadResponse,
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.arm(true).map_err(|_| std::io::ErrorKind::TimedOut)?;
        self.s.read(b)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.arm(false).map_err(|_| std::io::ErrorKind::TimedOut)?;
        self.s.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Io for Deadlined<'_> {
    fn send(&mut self, b: &[u8]) -> Result<(), ProbeResult> {
        self.write_all(b).map_err(|e| io_fail(&e))
    }
    fn recv(&mut self, b: &mut [u8]) -> Result<usize, ProbeResult> {
        self.read(b).map_err(|e| io_fail(&e))
    }
}

/// rustls driven by hand over a deadlined socket.
struct TlsIo<'a> {
    conn: rustls::ClientConnection,
    io: Deadlined<'a>,
}

impl TlsIo<'_> {
    fn handshake(&mut self) -> Result<(), ProbeResult> {
        while self.conn.is_handshaking() {
            self.pump().map_err(|r| match r {
                ProbeResult::BadResponse => ProbeResult::TlsFailed,
                other => other,
            })?;
        }
        self.flush_tls()
    }

    fn flush_tls(&mut self) -> Result<(), ProbeResult> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.io).map_err(|e| io_fail(&e))?;
        }
        Ok(())
    }

    /// Writes what rustls has, then reads and processes one batch of records.
    fn pump(&mut self) -> Result<(), ProbeResult> {
        self.flush_tls()?;
        if self.conn.wants_read() {
            match self.conn.read_tls(&mut self.io) {
                Ok(0) => return Err(ProbeResult::BadResponse),
                Ok(_) => {}
                Err(e) => return Err(io_fail(&e)),
            }
            if self.conn.process_new_packets().is_err() {
                let _ = self.flush_tls();
                return Err(ProbeResult::TlsFailed);
            }
        }
        Ok(())
    }
}

impl Io for TlsIo<'_> {
    fn send(&mut self, b: &[u8]) -> Result<(), ProbeResult> {
        self.conn
            .writer()
            .write_all(b)
            .map_err(|_| ProbeResult::TlsFailed)?;
        self.flush_tls()
    }

    fn recv(&mut self, b: &mut [u8]) -> Result<usize, ProbeResult> {
        loop {
            match self.conn.reader().read(b) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.pump()?,
                Err(_) => return Err(ProbeResult::BadResponse),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 204 "), Some(204));
        assert_eq!(status_of(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_of(b"HTTP/1.1 99 OK"), None);
        assert_eq!(status_of(b"HTTP/1.1 099 OK"), None);
        assert_eq!(status_of(b"HTTP/2 200"), None);
        assert_eq!(status_of(b"garbage"), None);
        assert_eq!(status_of(b"HTTP/1.1 +20 OK"), None);
        assert_eq!(status_of(b""), None);
    }
}
