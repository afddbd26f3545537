//! HTTP/2 for the test harness, two independent clients:
//!
//! - `H2Client`: a well-behaved client (the `h2` crate) over h2c (prior knowledge) or TLS with
//!   ALPN `h2`, driven by its own current-thread tokio runtime so tests read synchronously.
//!   Every call has a deadline. It can multiplex, send trailers, stream large bodies both ways
//!   without holding them, and hold a download without releasing flow-control capacity.
//! - `RawH2`: a hostile client written from scratch over a std `TcpStream`: it writes the
//!   preface and hand-built frames (HPACK encoded by hand), and a reader thread records what
//!   came back (GOAWAY, RST_STREAM, response HEADERS and their status, DATA counts, close).
//!   It shares no code with the gateway's HTTP/2 stack, which is the point of it.
//!
//! Plus config helpers: `start_h2c` (a plain listener with `h2c = true`) and `h2c_config`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::{bin, free_port, with_listener, Gateway};

/// Deadline for one H2Client call unless the client was given another.
pub const H2_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------

/// A config body for the harness listener with `h2c = true` and the admin API on
/// `admin_port`. Pass it to `Gateway::reload` as well, so a reload keeps h2c on.
pub fn h2c_config(admin_port: u16, body: &str) -> String {
    format!("h2c = true\n\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n\n{body}")
}

/// Starts a gateway (2 workers) whose plain listener speaks HTTP/2 with prior knowledge.
pub fn start_h2c(body: &str) -> Gateway {
    start_h2c_workers(body, 2)
}

pub fn start_h2c_workers(body: &str, workers: usize) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(bin());
    cmd.arg("--workers").arg(workers.to_string());
    Gateway::start_full(
        &with_listener(port, admin, &h2c_config(admin, body)),
        port,
        admin,
        cmd,
    )
}

/// Reloads a gateway started by `start_h2c` with a new body (h2c kept on).
pub fn reload_h2c(gw: &Gateway, body: &str) -> bool {
    gw.reload(&h2c_config(gw.admin.port(), body))
}

// ---------------------------------------------------------------------------------------
// Deterministic body content
// ---------------------------------------------------------------------------------------

/// Byte `pos` of the deterministic test body (no short period, so shifted or dropped bytes
/// are caught).
pub fn pattern_byte(pos: u64) -> u8 {
    let x = (pos / 7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ pos as u8
}

/// Fills `buf` with the pattern starting at stream position `start`.
pub fn fill_pattern(start: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(start + i as u64);
    }
}

/// Checks a byte stream against the pattern as it arrives.
#[derive(Debug, Default, Clone, Copy)]
pub struct PatternCheck {
    pub pos: u64,
    pub first_bad: Option<u64>,
}

impl PatternCheck {
    pub fn update(&mut self, data: &[u8]) {
        if self.first_bad.is_none() {
            if let Some(i) = data
                .iter()
                .enumerate()
                .position(|(i, b)| *b != pattern_byte(self.pos + i as u64))
            {
                self.first_bad = Some(self.pos + i as u64);
            }
        }
        self.pos += data.len() as u64;
    }
}

// ---------------------------------------------------------------------------------------
// H2Client
// ---------------------------------------------------------------------------------------

/// Why an HTTP/2 call failed.
#[derive(Debug)]
pub enum H2Error {
    /// The h2 crate's error: a stream reset (`reason()`), a GOAWAY, a protocol or I/O error.
    H2(h2::Error),
    /// The call's deadline passed.
    Timeout(Duration),
    Io(std::io::Error),
}

impl H2Error {
    /// The HTTP/2 error code, for resets and GOAWAYs.
    pub fn reason(&self) -> Option<h2::Reason> {
        match self {
            H2Error::H2(e) => e.reason(),
            _ => None,
        }
    }
    pub fn is_go_away(&self) -> bool {
        matches!(self, H2Error::H2(e) if e.is_go_away())
    }
    pub fn is_timeout(&self) -> bool {
        matches!(self, H2Error::Timeout(_))
    }
}

impl From<h2::Error> for H2Error {
    fn from(e: h2::Error) -> Self {
        H2Error::H2(e)
    }
}

impl From<std::io::Error> for H2Error {
    fn from(e: std::io::Error) -> Self {
        H2Error::Io(e)
    }
}

/// One request for `H2Client`.
#[derive(Debug, Clone, Default)]
pub struct H2Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Request trailers (sent after the body in a HEADERS frame with END_STREAM).
    pub trailers: Vec<(String, String)>,
}

impl H2Req {
    pub fn new(method: &str, path: &str) -> H2Req {
        H2Req {
            method: method.to_string(),
            path: path.to_string(),
            ..H2Req::default()
        }
    }
    pub fn get(path: &str) -> H2Req {
        H2Req::new("GET", path)
    }
    pub fn header(mut self, name: &str, value: &str) -> H2Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Bytes>) -> H2Req {
        self.body = body.into();
        self
    }
    pub fn trailer(mut self, name: &str, value: &str) -> H2Req {
        self.trailers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct H2Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl H2Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A response whose body the client is holding without releasing flow-control capacity.
pub struct Stalled {
    pub status: u16,
    body: h2::RecvStream,
    /// Body bytes received so far (never released to the flow-control window).
    pub received: u64,
    pub check: PatternCheck,
}

/// Settings the client advertises.
#[derive(Debug, Clone, Copy)]
pub struct H2Opts {
    pub stream_window: u32,
    pub connection_window: u32,
    pub timeout: Duration,
    /// Accept any certificate for any name (an attacker's client).
    pub verify_nothing: bool,
}

impl Default for H2Opts {
    fn default() -> Self {
        H2Opts {
            stream_window: 65_535,
            connection_window: 16 << 20,
            timeout: H2_TIMEOUT,
            verify_nothing: false,
        }
    }
}

/// An HTTP/2 client connection (one TCP connection) on its own runtime.
pub struct H2Client {
    rt: tokio::runtime::Runtime,
    send: SendRequest<Bytes>,
    /// The connection task; None once it was seen to end.
    conn: Option<tokio::task::JoinHandle<Result<(), h2::Error>>>,
    scheme: &'static str,
    pub authority: String,
    /// The ALPN protocol negotiated (TLS only).
    pub alpn: Option<Vec<u8>>,
    pub timeout: Duration,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn builder(o: &H2Opts) -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(o.stream_window)
        .initial_connection_window_size(o.connection_window)
        .max_concurrent_reset_streams(1000);
    b
}

impl H2Client {
    /// HTTP/2 with prior knowledge over plain TCP.
    pub fn h2c(addr: SocketAddr) -> Result<H2Client, H2Error> {
        H2Client::h2c_with(addr, H2Opts::default())
    }

    pub fn h2c_with(addr: SocketAddr, o: H2Opts) -> Result<H2Client, H2Error> {
        let rt = runtime();
        let (send, conn) = rt.block_on(async {
            tokio::time::timeout(o.timeout, async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let (send, conn) = builder(&o).handshake::<_, Bytes>(tcp).await?;
                Ok::<_, H2Error>((send, tokio::spawn(conn)))
            })
            .await
            .map_err(|_| H2Error::Timeout(o.timeout))?
        })?;
        Ok(H2Client {
            rt,
            send,
            conn: Some(conn),
            scheme: "http",
            authority: "test".to_string(),
            alpn: None,
            timeout: o.timeout,
        })
    }

    /// HTTP/2 over TLS: trusts `ca_pem`, sends SNI `server_name`, offers only ALPN `h2` and
    /// panics unless the server picked it.
    pub fn tls(addr: SocketAddr, ca_pem: &str, server_name: &str) -> Result<H2Client, H2Error> {
        H2Client::tls_with(addr, ca_pem, server_name, H2Opts::default())
    }

    pub fn tls_with(
        addr: SocketAddr,
        ca_pem: &str,
        server_name: &str,
        o: H2Opts,
    ) -> Result<H2Client, H2Error> {
        let cfg = super::tls::client_config(&super::tls::ClientOpts {
            ca_pem,
            alpn: &[b"h2"],
            verify_nothing: o.verify_nothing,
            ..Default::default()
        });
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(std::io::Error::other)?;
        let rt = runtime();
        let (send, conn, alpn) = rt.block_on(async {
            tokio::time::timeout(o.timeout, async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await?;
                let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
                let (send, conn) = builder(&o).handshake::<_, Bytes>(tls).await?;
                Ok::<_, H2Error>((send, tokio::spawn(conn), alpn))
            })
            .await
            .map_err(|_| H2Error::Timeout(o.timeout))?
        })?;
        assert_eq!(
            alpn.as_deref(),
            Some(&b"h2"[..]),
            "the server did not negotiate ALPN h2"
        );
        Ok(H2Client {
            rt,
            send,
            conn: Some(conn),
            scheme: "https",
            authority: server_name.to_string(),
            alpn,
            timeout: o.timeout,
        })
    }

    /// Runs `fut` on this client's runtime with the client's deadline.
    fn run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, H2Error>>,
    ) -> Result<T, H2Error> {
        let t = self.timeout;
        self.rt.block_on(async move {
            tokio::time::timeout(t, fut)
                .await
                .map_err(|_| H2Error::Timeout(t))?
        })
    }

    fn http_request(&self, r: &H2Req) -> Result<http::Request<()>, H2Error> {
        let mut b = http::Request::builder()
            .method(r.method.as_str())
            .uri(format!("{}://{}{}", self.scheme, self.authority, r.path));
        for (n, v) in &r.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(())
            .map_err(|e| H2Error::Io(std::io::Error::other(e)))
    }

    /// One request; the whole body is returned.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<H2Response, H2Error> {
        let mut r = H2Req::new(method, path).body(body.to_vec());
        for (n, v) in headers {
            r = r.header(n, v);
        }
        self.send(r)
    }

    pub fn get(&mut self, path: &str) -> Result<H2Response, H2Error> {
        self.send(H2Req::get(path))
    }

    /// Sends a prepared request (body and trailers included) and reads the whole response.
    pub fn send(&mut self, r: H2Req) -> Result<H2Response, H2Error> {
        let req = self.http_request(&r)?;
        let send = self.send.clone();
        self.run(exchange(send, req, r.body, r.trailers))
    }

    /// Sends all `reqs` at once as concurrent streams on this one connection; results come
    /// back in the order of `reqs`.
    pub fn concurrent(&mut self, reqs: Vec<H2Req>) -> Vec<Result<H2Response, H2Error>> {
        let mut built = Vec::new();
        for r in reqs {
            match self.http_request(&r) {
                Ok(h) => built.push(Ok((h, r.body, r.trailers))),
                Err(e) => built.push(Err(e)),
            }
        }
        let n = built.len();
        let send = self.send.clone();
        let t = self.timeout;
        self.rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            let mut out: Vec<Option<Result<H2Response, H2Error>>> = (0..n).map(|_| None).collect();
            for (i, b) in built.into_iter().enumerate() {
                match b {
                    Ok((h, body, trailers)) => {
                        let send = send.clone();
                        set.spawn(async move {
                            let r = tokio::time::timeout(t, exchange(send, h, body, trailers))
                                .await
                                .unwrap_or(Err(H2Error::Timeout(t)));
                            (i, r)
                        });
                    }
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
            while let Some(j) = set.join_next().await {
                if let Ok((i, r)) = j {
                    out[i] = Some(r);
                }
            }
            out.into_iter()
                .map(|r| r.unwrap_or(Err(H2Error::Timeout(t))))
                .collect()
        })
    }

    /// Uploads `len` pattern bytes as the body of `method path`, generated as flow control
    /// allows (the client never holds the body); returns the response.
    pub fn upload_pattern(
        &mut self,
        method: &str,
        path: &str,
        len: u64,
    ) -> Result<H2Response, H2Error> {
        let req = self.http_request(&H2Req::new(method, path))?;
        let send = self.send.clone();
        self.run(async move {
            let mut send = send.ready().await?;
            let (resp, mut tx) = send.send_request(req, len == 0)?;
            let upload = async {
                let mut pos = 0u64;
                while pos < len {
                    let want = (len - pos).min(256 << 10) as usize;
                    let cap = capacity(&mut tx, want).await?;
                    let mut chunk = vec![0u8; cap];
                    fill_pattern(pos, &mut chunk);
                    pos += cap as u64;
                    tx.send_data(chunk.into(), pos == len)?;
                }
                Ok::<_, H2Error>(())
            };
            let (sent, resp) = tokio::join!(upload, read_response(resp));
            let resp = resp?;
            // A response that ended the exchange early (e.g. 413) explains a failed upload.
            if resp.status < 300 {
                sent?;
            }
            Ok(resp)
        })
    }

    /// Downloads `path`, handing each DATA chunk to `on_data` (the body is not kept); returns
    /// the response with an empty body, and the byte count.
    pub fn download(
        &mut self,
        path: &str,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(H2Response, u64), H2Error> {
        let req = self.http_request(&H2Req::get(path))?;
        let send = self.send.clone();
        self.run(async move {
            let mut send = send.ready().await?;
            let (resp, _) = send.send_request(req, true)?;
            let resp = resp.await?;
            let (parts, mut body) = resp.into_parts();
            let mut n = 0u64;
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                body.flow_control().release_capacity(chunk.len())?;
                n += chunk.len() as u64;
                on_data(&chunk);
            }
            let trailers = header_list(&body.trailers().await?.unwrap_or_default());
            Ok((
                H2Response {
                    status: parts.status.as_u16(),
                    headers: header_list(&parts.headers),
                    body: Vec::new(),
                    trailers,
                },
                n,
            ))
        })
    }

    /// Starts a GET of `path` and waits for the response head, then keeps the body without
    /// releasing any flow-control capacity: the gateway can send at most one stream window.
    pub fn open_stalled(&mut self, path: &str) -> Result<Stalled, H2Error> {
        let req = self.http_request(&H2Req::get(path))?;
        let send = self.send.clone();
        self.run(async move {
            let mut send = send.ready().await?;
            let (resp, _) = send.send_request(req, true)?;
            let resp = resp.await?;
            let status = resp.status().as_u16();
            Ok(Stalled {
                status,
                body: resp.into_body(),
                received: 0,
                check: PatternCheck::default(),
            })
        })
    }

    /// Drives the connection for `dur`, taking in what the gateway sends on the stalled
    /// stream without releasing capacity. Returns the bytes held so far.
    pub fn pump_stalled(&mut self, s: &mut Stalled, dur: Duration) -> Result<u64, H2Error> {
        self.rt.block_on(async {
            let until = tokio::time::sleep(dur);
            tokio::pin!(until);
            loop {
                tokio::select! {
                    _ = &mut until => return Ok(s.received),
                    d = s.body.data() => match d {
                        Some(Ok(chunk)) => {
                            s.received += chunk.len() as u64;
                            s.check.update(&chunk);
                        }
                        Some(Err(e)) => return Err(H2Error::H2(e)),
                        None => return Ok(s.received),
                    },
                }
            }
        })
    }

    /// Releases what the stalled stream holds and reads the rest of its body; returns the
    /// total byte count and the pattern check over all of it.
    pub fn resume(&mut self, mut s: Stalled) -> Result<(u64, PatternCheck), H2Error> {
        let held = s.received as usize;
        self.run(async move {
            s.body.flow_control().release_capacity(held)?;
            while let Some(chunk) = s.body.data().await {
                let chunk = chunk?;
                s.body.flow_control().release_capacity(chunk.len())?;
                s.received += chunk.len() as u64;
                s.check.update(&chunk);
            }
            Ok((s.received, s.check))
        })
    }

    /// Sends the request head (no END_STREAM) and part of a body, then nothing more; waits up
    /// to `wait` for the gateway's answer. Ok(response) or the reset/GOAWAY error.
    pub fn send_partial_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        first: &[u8],
        wait: Duration,
    ) -> Result<H2Response, H2Error> {
        let mut r = H2Req::new(method, path);
        for (n, v) in headers {
            r = r.header(n, v);
        }
        let req = self.http_request(&r)?;
        let send = self.send.clone();
        let first = Bytes::copy_from_slice(first);
        self.rt.block_on(async move {
            let mut send = send.ready().await?;
            let (resp, mut tx) = send.send_request(req, false)?;
            if !first.is_empty() {
                tx.send_data(first, false)?;
            }
            let r = tokio::time::timeout(wait, read_response(resp))
                .await
                .map_err(|_| H2Error::Timeout(wait))?;
            drop(tx);
            r
        })
    }

    /// Whether the connection task has ended (GOAWAY handled, closed by the peer, or error),
    /// after driving the connection for up to `wait`.
    pub fn connection_ended(&mut self, wait: Duration) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        let ended = self.rt.block_on(async {
            tokio::time::timeout(wait, async {
                let _ = conn.await;
            })
            .await
            .is_ok()
        });
        if ended {
            self.conn = None;
        }
        ended
    }
}

/// Waits until `tx` may send at least one byte; returns how many (at most `want`).
async fn capacity(tx: &mut h2::SendStream<Bytes>, want: usize) -> Result<usize, H2Error> {
    tx.reserve_capacity(want);
    loop {
        if tx.capacity() > 0 {
            return Ok(tx.capacity().min(want));
        }
        match std::future::poll_fn(|cx| tx.poll_capacity(cx)).await {
            Some(Ok(n)) if n > 0 => return Ok(n.min(want)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(H2Error::Io(std::io::Error::other(
                    "stream closed while sending the body",
                )))
            }
        }
    }
}

fn header_list(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Sends one request (body in capacity-sized pieces, then trailers) while reading the response.
async fn exchange(
    send: SendRequest<Bytes>,
    req: http::Request<()>,
    body: Bytes,
    trailers: Vec<(String, String)>,
) -> Result<H2Response, H2Error> {
    let mut send = send.ready().await?;
    let no_body = body.is_empty() && trailers.is_empty();
    let (resp, mut tx) = send.send_request(req, no_body)?;
    let upload = async {
        if no_body {
            return Ok::<_, H2Error>(());
        }
        let mut rest = body;
        while !rest.is_empty() {
            let cap = capacity(&mut tx, rest.len().min(1 << 20)).await?;
            let chunk = rest.split_to(cap);
            tx.send_data(chunk, rest.is_empty() && trailers.is_empty())?;
        }
        if !trailers.is_empty() {
            let mut map = http::HeaderMap::new();
            for (n, v) in &trailers {
                let name = http::HeaderName::from_bytes(n.as_bytes())
                    .map_err(|e| H2Error::Io(std::io::Error::other(e)))?;
                let value = http::HeaderValue::from_str(v)
                    .map_err(|e| H2Error::Io(std::io::Error::other(e)))?;
                map.append(name, value);
            }
            tx.send_trailers(map)?;
        }
        Ok(())
    };
    let (sent, resp) = tokio::join!(upload, read_response(resp));
    let resp = resp?;
    if resp.status < 300 {
        sent?;
    }
    Ok(resp)
}

async fn read_response(resp: h2::client::ResponseFuture) -> Result<H2Response, H2Error> {
    let resp = resp.await?;
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
        out.extend_from_slice(&chunk);
    }
    let trailers = header_list(&body.trailers().await?.unwrap_or_default());
    Ok(H2Response {
        status: parts.status.as_u16(),
        headers: header_list(&parts.headers),
        body: out,
        trailers,
    })
}

// ---------------------------------------------------------------------------------------
// RawH2: frames by hand
// ---------------------------------------------------------------------------------------

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 section 6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 section 7).
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const INTERNAL_ERROR: u32 = 0x2;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;
    pub const COMPRESSION_ERROR: u32 = 0x9;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// SETTINGS identifiers.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// One frame: the 9-byte header (24-bit length, type, flags, 31-bit stream id) + payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = Vec::with_capacity(9 + payload.len());
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn settings_frame(values: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in values {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &p)
}

pub fn rst_frame(stream: u32, error: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &error.to_be_bytes())
}

pub fn ping_frame(data: u64) -> Vec<u8> {
    frame(kind::PING, 0, 0, &data.to_be_bytes())
}

pub fn window_update_frame(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// HPACK by hand (RFC 7541), encoder side only: what an attacker needs.
pub mod hpack {
    /// An integer with an `n`-bit prefix; `first` holds the representation's high bits.
    pub fn int(n: u8, first: u8, mut value: usize) -> Vec<u8> {
        let max = (1usize << n) - 1;
        if value < max {
            return vec![first | value as u8];
        }
        let mut v = vec![first | max as u8];
        value -= max;
        while value >= 128 {
            v.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        v.push(value as u8);
        v
    }

    /// A string literal without Huffman coding.
    pub fn string(s: &[u8]) -> Vec<u8> {
        let mut v = int(7, 0x00, s.len());
        v.extend_from_slice(s);
        v
    }

    /// Indexed header field (static 1..=61, dynamic from 62).
    pub fn indexed(index: usize) -> Vec<u8> {
        int(7, 0x80, index)
    }

    /// Literal without indexing, new name (0x00, name, value).
    pub fn literal(name: &str, value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend(string(name.as_bytes()));
        v.extend(string(value));
        v
    }

    /// Literal without indexing, name from the table at `index`.
    pub fn literal_indexed_name(index: usize, value: &[u8]) -> Vec<u8> {
        let mut v = int(4, 0x00, index);
        v.extend(string(value));
        v
    }

    /// Literal with incremental indexing, new name: enters the decoder's dynamic table.
    pub fn literal_indexing(name: &str, value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x40];
        v.extend(string(name.as_bytes()));
        v.extend(string(value));
        v
    }

    /// Dynamic table size update.
    pub fn table_size_update(size: usize) -> Vec<u8> {
        int(5, 0x20, size)
    }

    /// A request's pseudo-headers plus `extra` literal fields. `:method` GET and POST and
    /// `:scheme` http/https use static indexes (0x82, 0x83, 0x86, 0x87); `:path` and
    /// `:authority` are literals with indexed names (4 and 1).
    pub fn request(method: &str, path: &str, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut v = match method {
            "GET" => vec![0x82],
            "POST" => vec![0x83],
            m => literal_indexed_name(2, m.as_bytes()),
        };
        v.push(0x86);
        if path == "/" {
            v.push(0x84);
        } else {
            v.extend(literal_indexed_name(4, path.as_bytes()));
        }
        v.extend(literal_indexed_name(1, authority.as_bytes()));
        for (n, val) in extra {
            v.extend(literal(n, val.as_bytes()));
        }
        v
    }
}

/// A GOAWAY the client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream: u32,
    pub code: u32,
    pub debug: String,
}

/// A response HEADERS frame the client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersSeen {
    pub stream: u32,
    /// `:status` when the block starts with one this decoder can read (static index, a literal
    /// with plain or Huffman-coded digits, or a dynamic entry such a literal inserted earlier
    /// on this connection; evictions are not tracked, so this is best effort).
    pub status: Option<u16>,
    pub end_stream: bool,
}

/// What the gateway sent back, as recorded by the reader thread.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub frames: usize,
    pub goaways: Vec<GoAway>,
    pub resets: Vec<(u32, u32)>,
    pub headers: Vec<HeadersSeen>,
    /// DATA payload bytes per stream.
    pub data: HashMap<u32, u64>,
    /// Streams whose last frame carried END_STREAM.
    pub ended: Vec<u32>,
    pub settings: Vec<Vec<(u16, u32)>>,
    pub settings_acks: usize,
    pub ping_acks: usize,
    pub window_updates: usize,
    /// The socket reached EOF or a reset (or an unparsable frame header).
    pub closed: bool,
    pub closed_how: String,
    /// When `closed` became true.
    pub closed_at: Option<Instant>,
    /// Server dynamic-table statuses (front = newest), see `HeadersSeen::status`.
    dyn_status: Vec<Option<u16>>,
}

impl Seen {
    pub fn goaway(&self) -> Option<&GoAway> {
        self.goaways.last()
    }
    pub fn reset_of(&self, stream: u32) -> Option<u32> {
        self.resets
            .iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, c)| *c)
    }
    pub fn status_of(&self, stream: u32) -> Option<u16> {
        self.headers
            .iter()
            .find(|h| h.stream == stream)
            .and_then(|h| h.status)
    }
    pub fn answered(&self, stream: u32) -> bool {
        self.headers.iter().any(|h| h.stream == stream)
    }
}

type Shared = Arc<(Mutex<Seen>, Condvar)>;

/// The writing half of a raw connection: plain TCP, or TLS (rustls driven by hand; the
/// reader thread shares the session).
enum Tx {
    Tcp(TcpStream),
    Tls {
        conn: Arc<Mutex<rustls::ClientConnection>>,
        sock: TcpStream,
    },
}

impl Tx {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Tx::Tcp(s) => s.write_all(bytes),
            Tx::Tls { conn, sock } => {
                let mut c = conn.lock().unwrap();
                c.writer().write_all(bytes)?;
                while c.wants_write() {
                    c.write_tls(sock)?;
                }
                Ok(())
            }
        }
    }

    fn shutdown(&self) {
        let s = match self {
            Tx::Tcp(s) => s,
            Tx::Tls { sock, .. } => sock,
        };
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// The reading half over TLS: ciphertext from the socket (read without holding the session
/// lock), plaintext out of the shared session.
struct TlsRead {
    conn: Arc<Mutex<rustls::ClientConnection>>,
    sock: TcpStream,
}

impl Read for TlsRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut tmp = vec![0u8; 32 << 10];
        loop {
            {
                let mut c = self.conn.lock().unwrap();
                match c.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let n = self.sock.read(&mut tmp)?;
            if n == 0 {
                return Ok(0);
            }
            let mut c = self.conn.lock().unwrap();
            let mut rd = &tmp[..n];
            while !rd.is_empty() {
                c.read_tls(&mut rd)?;
                c.process_new_packets().map_err(std::io::Error::other)?;
            }
        }
    }
}

/// A hand-driven HTTP/2 client connection: plain TCP with prior knowledge, or TLS with ALPN h2.
pub struct RawH2 {
    writer: Arc<Mutex<Tx>>,
    seen: Shared,
    reader: Option<thread::JoinHandle<()>>,
    pub bytes_sent: usize,
}

/// How the reader thread behaves.
#[derive(Debug, Clone, Copy)]
pub struct RawOpts {
    /// Answer the server's SETTINGS with an ACK.
    pub ack_settings: bool,
    /// Answer the server's PINGs (a graceful GOAWAY waits for one).
    pub answer_pings: bool,
    /// Give back every DATA byte as WINDOW_UPDATEs (stream and connection).
    pub auto_window: bool,
}

impl Default for RawOpts {
    fn default() -> Self {
        RawOpts {
            ack_settings: true,
            answer_pings: true,
            auto_window: false,
        }
    }
}

impl RawH2 {
    /// Connects and sends the preface and a SETTINGS frame with `settings` (the server's
    /// SETTINGS are acknowledged by the reader thread).
    pub fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> RawH2 {
        RawH2::connect_with(addr, settings, RawOpts::default())
    }

    pub fn connect_with(addr: SocketAddr, settings: &[(u16, u32)], o: RawOpts) -> RawH2 {
        let tcp = raw_tcp(addr);
        let rd = tcp.try_clone().unwrap();
        RawH2::start(Tx::Tcp(tcp), Box::new(rd), settings, o)
    }

    /// Over TLS: trusts `ca_pem`, SNI `server_name`, offers only ALPN `h2` (and panics unless
    /// the server picked it).
    pub fn tls(
        addr: SocketAddr,
        ca_pem: &str,
        server_name: &str,
        settings: &[(u16, u32)],
    ) -> RawH2 {
        let cfg = super::tls::client_config(&super::tls::ClientOpts {
            ca_pem,
            alpn: &[b"h2"],
            ..Default::default()
        });
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let mut tcp = raw_tcp(addr);
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).expect("TLS handshake");
        }
        assert_eq!(
            conn.alpn_protocol(),
            Some(&b"h2"[..]),
            "ALPN h2 not negotiated"
        );
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let conn = Arc::new(Mutex::new(conn));
        let rd = TlsRead {
            conn: conn.clone(),
            sock: tcp.try_clone().unwrap(),
        };
        RawH2::start(
            Tx::Tls { conn, sock: tcp },
            Box::new(rd),
            settings,
            RawOpts::default(),
        )
    }

    fn start(mut tx: Tx, rd: Box<dyn Read + Send>, settings: &[(u16, u32)], o: RawOpts) -> RawH2 {
        // The preface goes out before the reader thread exists: otherwise its ACK of the
        // gateway's SETTINGS could overtake the preface on the wire.
        let mut hello = PREFACE.to_vec();
        hello.extend(settings_frame(settings));
        tx.write_all(&hello).expect("send preface");
        let writer = Arc::new(Mutex::new(tx));
        let seen: Shared = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let reader = {
            let (w, s) = (writer.clone(), seen.clone());
            thread::spawn(move || read_loop(rd, w, s, o))
        };
        RawH2 {
            writer,
            seen,
            reader: Some(reader),
            bytes_sent: hello.len(),
        }
    }

    /// Writes bytes; an error means the gateway closed or reset the connection.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap();
        w.write_all(bytes)?;
        self.bytes_sent += bytes.len();
        Ok(())
    }

    pub fn send_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
        self.send(&frame(kind, flags, stream, payload)).is_ok()
    }

    /// A HEADERS frame with a request for `path` (END_HEADERS; END_STREAM when `end`).
    pub fn request(&mut self, stream: u32, method: &str, path: &str, end: bool) -> bool {
        self.request_with(stream, method, path, &[], end)
    }

    pub fn request_with(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        end: bool,
    ) -> bool {
        let block = hpack::request(method, path, "test", extra);
        let flags = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        self.send_frame(kind::HEADERS, flags, stream, &block)
    }

    /// A snapshot of what came back so far.
    pub fn seen(&self) -> Seen {
        self.seen.0.lock().unwrap().clone()
    }

    /// Waits until `cond` holds for what came back, or `timeout`; returns the last snapshot
    /// and whether `cond` held.
    pub fn wait(&self, timeout: Duration, cond: impl Fn(&Seen) -> bool) -> (Seen, bool) {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.seen;
        let mut g = m.lock().unwrap();
        loop {
            if cond(&g) {
                return (g.clone(), true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (g.clone(), false);
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Waits for a GOAWAY (or `timeout`).
    pub fn wait_goaway(&self, timeout: Duration) -> Option<GoAway> {
        self.wait(timeout, |s| !s.goaways.is_empty())
            .0
            .goaway()
            .cloned()
    }

    /// Waits until the gateway closed the connection; true if it did within `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.closed).1
    }

    /// Waits until `stream` got an answer: response HEADERS or RST_STREAM (or the connection
    /// ended). Returns the snapshot and whether it was answered.
    pub fn wait_stream(&self, stream: u32, timeout: Duration) -> (Seen, bool) {
        self.wait(timeout, |s| {
            s.answered(stream) || s.reset_of(stream).is_some() || s.closed
        })
    }

    /// Waits until `stream` ended (END_STREAM or RST_STREAM) or the connection closed.
    pub fn wait_stream_end(&self, stream: u32, timeout: Duration) -> (Seen, bool) {
        self.wait(timeout, |s| {
            s.ended.contains(&stream) || s.reset_of(stream).is_some() || s.closed
        })
    }

    /// Closes our side (both directions).
    pub fn shutdown(&self) {
        self.writer.lock().unwrap().shutdown();
    }
}

impl Drop for RawH2 {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn raw_tcp(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect to gateway");
    tcp.set_nodelay(true).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // Long enough for any test; the socket is shut down when the RawH2 is dropped.
    tcp.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    tcp
}

fn read_loop(mut rd: Box<dyn Read + Send>, w: Arc<Mutex<Tx>>, seen: Shared, o: RawOpts) {
    let how = loop {
        let mut head = [0u8; 9];
        if let Err(e) = rd.read_exact(&mut head) {
            break format!("{:?}", e.kind());
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        if len > (16 << 20) {
            break format!("frame of {len} bytes");
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = rd.read_exact(&mut payload) {
            break format!("{:?} in a frame", e.kind());
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let reply = record(&seen, head[3], head[4], stream, &payload, o);
        if !reply.is_empty() {
            let _ = w.lock().unwrap().write_all(&reply);
        }
    };
    let (m, cv) = &*seen;
    let mut s = m.lock().unwrap();
    s.closed = true;
    s.closed_how = how;
    s.closed_at = Some(Instant::now());
    cv.notify_all();
}

/// Records one frame; returns the bytes to answer with (ACKs, window updates).
fn record(seen: &Shared, kind: u8, flags: u8, stream: u32, p: &[u8], o: RawOpts) -> Vec<u8> {
    let (m, cv) = &**seen;
    let mut s = m.lock().unwrap();
    s.frames += 1;
    let mut reply = Vec::new();
    match kind {
        kind::DATA => {
            *s.data.entry(stream).or_default() += p.len() as u64;
            if flags & flag::END_STREAM != 0 {
                s.ended.push(stream);
            }
            if o.auto_window && !p.is_empty() {
                reply.extend(window_update_frame(0, p.len() as u32));
                reply.extend(window_update_frame(stream, p.len() as u32));
            }
        }
        kind::HEADERS => {
            let status = decode_status(&mut s.dyn_status, flags, p);
            let end_stream = flags & flag::END_STREAM != 0;
            if end_stream {
                s.ended.push(stream);
            }
            s.headers.push(HeadersSeen {
                stream,
                status,
                end_stream,
            });
        }
        kind::RST_STREAM if p.len() == 4 => {
            s.resets
                .push((stream, u32::from_be_bytes([p[0], p[1], p[2], p[3]])));
        }
        kind::SETTINGS if flags & flag::ACK != 0 => s.settings_acks += 1,
        kind::SETTINGS => {
            let v = p
                .chunks_exact(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
            s.settings.push(v);
            if o.ack_settings {
                reply.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
            }
        }
        kind::PING if flags & flag::ACK != 0 => s.ping_acks += 1,
        kind::PING if o.answer_pings => reply.extend(frame(kind::PING, flag::ACK, 0, p)),
        kind::GOAWAY if p.len() >= 8 => {
            s.goaways.push(GoAway {
                last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                code: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                debug: String::from_utf8_lossy(&p[8..]).into_owned(),
            });
        }
        kind::WINDOW_UPDATE => s.window_updates += 1,
        _ => {}
    }
    cv.notify_all();
    reply
}

/// The `:status` of a response header block, when it is the first field (it always is) and
/// this small decoder can read it; keeps `dyn_status` in step with literals that index.
fn decode_status(dyn_status: &mut Vec<Option<u16>>, flags: u8, p: &[u8]) -> Option<u16> {
    let mut b = p;
    if flags & flag::PADDED != 0 {
        let pad = *b.first()? as usize;
        b = b.get(1..b.len().checked_sub(pad)?)?;
    }
    if flags & flag::PRIORITY != 0 {
        b = b.get(5..)?;
    }
    let mut first = None;
    let mut at = 0;
    while at < b.len() {
        let (status, used) = field(dyn_status, &b[at..])?;
        if at == 0 {
            first = status;
        }
        at += used;
    }
    first
}

/// One header field representation: its status (if it is `:status`) and its length.
fn field(dyn_status: &mut Vec<Option<u16>>, b: &[u8]) -> Option<(Option<u16>, usize)> {
    let c = *b.first()?;
    if c & 0x80 != 0 {
        let (idx, n) = read_int(b, 7)?;
        let status = match idx {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            i if i >= 62 => dyn_status.get(i - 62).copied().flatten(),
            _ => None,
        };
        return Some((status, n));
    }
    if c & 0xe0 == 0x20 {
        let (_, n) = read_int(b, 5)?;
        return Some((None, n));
    }
    let indexing = c & 0xc0 == 0x40;
    let (name_idx, mut at) = read_int(b, if indexing { 6 } else { 4 })?;
    if name_idx == 0 {
        let (_, n) = read_string(&b[at..])?;
        at += n;
    }
    let (value, n) = read_string(&b[at..])?;
    at += n;
    let status = if name_idx == 8 {
        std::str::from_utf8(&value).ok()?.parse().ok()
    } else {
        None
    };
    if indexing {
        dyn_status.insert(0, status);
    }
    Some((status, at))
}

pub fn read_int(b: &[u8], n: u8) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let v = (*b.first()? as usize) & max;
    if v < max {
        return Some((v, 1));
    }
    let (mut v, mut shift, mut i) = (max, 0u32, 1);
    loop {
        let c = *b.get(i)? as usize;
        v = v.checked_add((c & 0x7f).checked_shl(shift)?)?;
        i += 1;
        if c & 0x80 == 0 {
            return Some((v, i));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal; Huffman-coded strings are decoded only when they are all digits
/// (enough for `:status`); other Huffman strings come back empty.
fn read_string(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let huffman = *b.first()? & 0x80 != 0;
    let (len, n) = read_int(b, 7)?;
    let raw = b.get(n..n + len)?;
    let s = if huffman {
        huffman_digits(raw).unwrap_or_default()
    } else {
        raw.to_vec()
    };
    Some((s, n + len))
}

/// Decodes a Huffman string made only of the digits 0-9 (RFC 7541 Appendix B: '0'-'2' are
/// the 5-bit codes 0-2, '3'-'9' the 6-bit codes 0x19-0x1f); padding is up to 7 one-bits.
pub fn huffman_digits(raw: &[u8]) -> Option<Vec<u8>> {
    let total = raw.len() * 8;
    let bit = |i: usize| (raw[i / 8] >> (7 - i % 8)) & 1;
    let bits = |from: usize, n: usize| (from..from + n).fold(0u32, |a, i| a << 1 | bit(i) as u32);
    let mut out = Vec::new();
    let mut i = 0;
    while i < total {
        let left = total - i;
        if left < 8 && bits(i, left) == (1 << left) - 1 {
            break;
        }
        if left < 5 {
            return None;
        }
        let five = bits(i, 5);
        if five <= 2 {
            out.push(b'0' + five as u8);
            i += 5;
        } else if (0b01100..=0b01111).contains(&five) && left >= 6 {
            let six = bits(i, 6);
            if !(0x19..=0x1f).contains(&six) {
                return None;
            }
            out.push(b'3' + (six - 0x19) as u8);
            i += 6;
        } else {
            return None;
        }
    }
    Some(out)
}
