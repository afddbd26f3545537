//! Test harness: starts the real `ringway` binary on an ephemeral loopback port with a config
//! written to a temp dir, real upstream servers on std threads, and raw HTTP/1.1 clients.
//!
//! Everything is bounded: every socket has read/write timeouts, every wait has a deadline, and
//! processes are killed on drop.
#![allow(dead_code)]

pub mod faults;
pub mod grpc;
pub mod h2;
pub mod portal;
pub mod redis;
pub mod tls;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port where every connect is refused at once, for a dead upstream target: port 1
/// (nothing listens there here). Unlike a port bound and released, it cannot be taken by
/// another test's listener meanwhile, and being outside the ephemeral range it can never be
/// the source port the kernel picks for the connect itself (a TCP self-connect would hang).
pub fn refused_port() -> u16 {
    1
}

/// A free loopback port for a listener the test starts later. It is taken from below the
/// kernel's ephemeral range (`ip_local_port_range`), so between this check and the later
/// bind no `bind(:0)` and no outgoing connection's source port can take it. Ports are never
/// given twice in one test process: with SO_REUSEPORT two gateways could otherwise bind the
/// same port and silently split connections. A port any socket still holds (a connection in
/// TIME_WAIT, a listener another process shut down but has not closed) is not free either:
/// the check binds without SO_REUSEADDR, which such sockets make fail, where the listeners the
/// tests start (SO_REUSEADDR, and SO_REUSEPORT for gateways) would bind beside them.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 {
        (10_000, low)
    } else {
        (61_000, 65_535)
    };
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    loop {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = from + (seed % u64::from(to - from)) as u16;
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&port) || !nothing_holds(port) {
            continue;
        }
        given.push(port);
        return port;
    }
}

/// True if no socket is bound to loopback `port`: a bind without SO_REUSEADDR succeeds.
fn nothing_holds(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    let Ok(s) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
        return false;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    s.bind(&addr.into()).is_ok()
}

/// True if something listens on `addr`. A connect to a port nobody has bound yet can succeed
/// all the same when the kernel picks that very port as the connection's source port (a TCP
/// self-connect); such a connection is not a listener and does not count.
pub fn listening(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr) {
        Ok(s) => s.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The admin API address (unless the test's config set its own `[admin]`).
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
    logs: Arc<Mutex<String>>,
}

/// The listener section the harness prepends; `body` supplies everything else. Unless the body
/// has its own `[admin]` table, the admin API goes on `admin_port` (never the shared default).
fn with_listener(port: u16, admin_port: u16, body: &str) -> String {
    let admin = if body.contains("[admin]") {
        String::new()
    } else {
        format!("[admin]\naddress = \"127.0.0.1:{admin_port}\"\n\n")
    };
    format!("[[listeners]]\nname = \"test\"\naddress = \"127.0.0.1:{port}\"\n\n{admin}{body}\n")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

impl Gateway {
    /// Starts ringway with `body` (config without listeners) and 2 workers.
    pub fn start(body: &str) -> Gateway {
        Gateway::start_workers(body, 2)
    }

    pub fn start_workers(body: &str, workers: usize) -> Gateway {
        Gateway::start_env(body, workers, &[])
    }

    /// Starts ringway with extra environment variables (e.g. an API-key HMAC secret).
    pub fn start_env(body: &str, workers: usize, env: &[(&str, &str)]) -> Gateway {
        with_fresh_ports(|port, admin_port| {
            let dir = tempfile::tempdir().unwrap();
            let config_path = dir.path().join("ringway.toml");
            std::fs::write(&config_path, with_listener(port, admin_port, body)).unwrap();
            let mut program = Command::new(bin());
            program
                .arg("--config")
                .arg(&config_path)
                .arg("--workers")
                .arg(workers.to_string())
                .envs(env.iter().copied());
            Gateway::spawn(program, dir, config_path, port, admin_port)
        })
    }

    /// Spawns `program` (its `--config` already set to `config_path` in `dir`), collects its
    /// log and waits until it listens on `port`.
    fn spawn(
        mut program: Command,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        port: u16,
        admin_port: u16,
    ) -> Result<Gateway, String> {
        program
            .envs(forced_epoll().then_some(("RINGWAY_FORCE_EPOLL", "1")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = program.spawn().expect("spawn ringway");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut gw = Gateway {
            child: Some(child),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            config_path,
            _dir: dir,
            logs,
        };
        match gw.wait_ready() {
            Ok(()) => Ok(gw),
            Err(status) => {
                if gw.logs().contains("Address already in use") {
                    return Err(gw.logs());
                }
                panic!(
                    "gateway exited ({status}) before listening; logs:\n{}",
                    gw.logs()
                );
            }
        }
    }

    /// Waits until the gateway listens; its exit status if it exited first.
    fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if listening(self.addr) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway did not start listening; logs:\n{}", self.logs());
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle` (or panics after `timeout`).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("log line {needle:?} not seen; logs:\n{}", self.logs());
    }

    /// Counts occurrences of `needle` in the logs.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs().matches(needle).count()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Rewrites the config (listener kept) and sends SIGHUP.
    pub fn write_config(&self, body: &str) {
        std::fs::write(
            &self.config_path,
            with_listener(self.addr.port(), self.admin.port(), body),
        )
        .unwrap();
    }

    /// Writes `body` as the config, sends SIGHUP and waits for the outcome in the logs.
    /// Returns true when the new generation was accepted.
    pub fn reload(&self, body: &str) -> bool {
        // The success line names the generation it published. Counting "config reloaded" lines
        // alone is not enough: the line of a reload made just before (through the admin API)
        // may still be on its way through the log pipe, and would be taken for this one.
        let next = self
            .served_generation()
            .map(|g| format!(": generation {},", g + 1));
        let ok_before = self.log_count("config reloaded");
        let bad_before = self.log_count("reload failed");
        self.write_config(body);
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let done = match &next {
                Some(line) => self.logs().contains(line.as_str()),
                None => self.log_count("config reloaded") > ok_before,
            };
            if done {
                return true;
            }
            if self.log_count("reload failed") > bad_before {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("no reload outcome logged; logs:\n{}", self.logs());
    }

    /// The generation the gateway serves, from the admin API's `/config`; `None` when that does
    /// not answer (an admin token, a config without the admin API).
    fn served_generation(&self) -> Option<u64> {
        let mut s = TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /config HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["generation"].as_u64()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A failed test shows what the gateway said (and whether it was still running),
            // so a failure seen once in CI can be diagnosed from its output alone.
            if thread::panicking() {
                let state = match c.try_wait() {
                    Ok(Some(status)) => format!("exited: {status}"),
                    Ok(None) => "still running".to_string(),
                    Err(e) => format!("state unknown: {e}"),
                };
                eprintln!(
                    "--- gateway on {} ({state}); its log:\n{}--- end of gateway log",
                    self.addr,
                    self.logs()
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `ringway check --config <file with text>`; returns (exit code, stdout, stderr).
pub fn check_config(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("check.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// Values of header `name` (case-insensitive), in order.
fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Body framing the gateway used: "length", "chunked", "close" or "none".
    pub framing: &'static str,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_all(&self.headers, name).into_iter().next()
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A client connection with its own read buffer (keep-alive, pipelining).
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::wrap(TcpStream::connect(addr).expect("connect to gateway"))
    }

    /// A connection from another loopback address (`127.0.0.2`: all of 127/8 is loopback on
    /// Linux), so the gateway sees another client.
    pub fn open_from(addr: SocketAddr, local: &str) -> Conn {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local: SocketAddr = format!("{local}:0").parse().expect("a local address");
        sock.bind(&local.into()).expect("bind the local address");
        sock.connect(&addr.into()).expect("connect to gateway");
        Conn::wrap(sock.into())
    }

    fn wrap(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to gateway");
    }

    /// Sends a simple request with Host: test and optional extra header lines.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(&build_request(method, path, extra, body));
        self.read_response(method == "HEAD").expect("response")
    }

    /// Reads one response. `head_request` = the request was HEAD (no body follows).
    pub fn read_response(&mut self, head_request: bool) -> std::io::Result<Response> {
        read_response(&mut self.reader, head_request)
    }

    /// True if the server closed the connection (EOF) within `timeout` with no more bytes.
    /// A reset counts as closed (the gateway resets when it closes with unread request bytes).
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        conn_ended(self, timeout)
    }

    /// Reads everything until EOF (bounded by IO_TIMEOUT).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.reader.read_to_end(&mut v);
        v
    }
}

pub fn build_request(method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    if !extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        r.push_str("Host: test\r\n");
    }
    for (n, v) in extra {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    let chunked = extra
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if !body.is_empty()
        && !chunked
        && !extra
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

/// One-shot request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Response {
    Conn::open(addr).request(method, path, extra, body)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Sends raw bytes on a fresh connection and returns everything received until EOF/timeout.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = Conn::open(addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.send(bytes);
    c.read_to_end()
}

/// Status code of the first response in `raw` bytes (0 if none).
pub fn first_status(raw: &[u8]) -> u16 {
    let s = String::from_utf8_lossy(raw);
    s.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "eof",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a chunked body (CRLF required after each chunk), dropping trailers.
fn read_chunked<R: BufRead>(r: &mut R, body: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let size_line = read_line(r)?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            while !read_line(r)?.is_empty() {}
            return Ok(());
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_line(r)?.is_empty() {
            return Err(std::io::Error::other("missing CRLF after chunk"));
        }
    }
}

/// Minimal strict-enough HTTP/1.1 response reader (skips 1xx other than 101).
pub fn read_response<R: BufRead>(r: &mut R, head_request: bool) -> std::io::Result<Response> {
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| std::io::Error::other(format!("bad header {line:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        let framing;
        if head_request || status == 204 || status == 304 || status == 101 {
            framing = "none";
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            framing = "chunked";
            read_chunked(r, &mut body)?;
        } else if let Some(cl) = find("content-length") {
            framing = "length";
            let n: usize = cl
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else {
            framing = "close";
            r.read_to_end(&mut body)?;
        }
        return Ok(Response {
            status,
            version,
            headers,
            body,
            framing,
        });
    }
}

// ---------------------------------------------------------------------------------------
// Upstream servers
// ---------------------------------------------------------------------------------------

/// A request as an upstream test server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Raw head bytes exactly as they arrived (to check fresh serialization).
    pub raw_head: String,
    /// How the body was framed on the wire: "length", "chunked" or "none".
    pub framing: &'static str,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_all(&self.headers, name).into_iter().next()
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
}

/// What the upstream answers. The handler sees the parsed request and the raw stream.
pub type Handler = Arc<dyn Fn(&Received, &mut TcpStream) -> Reply + Send + Sync>;

/// What happens to the connection after the handler ran.
pub enum Reply {
    /// Handler wrote a complete response; keep the connection for the next request.
    KeepAlive,
    /// Close the connection after the handler's writes.
    Close,
}

/// A threaded HTTP/1.1 upstream on an ephemeral loopback port.
pub struct Upstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Every byte read from any accepted connection, parsed or not (see `raw_bytes`).
    raw: Arc<RawLog>,
}

impl Upstream {
    /// Starts a server running `handler` for each request.
    pub fn start(handler: Handler) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, conns, st) = (received.clone(), connections.clone(), stop.clone());
        let raw = Arc::new(RawLog::default());
        let raw_log = raw.clone();
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let (h, rec, raw) = (handler.clone(), rec.clone(), raw_log.clone());
                        thread::spawn(move || serve_upstream_conn(s, h, rec, raw));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Upstream {
            addr,
            received,
            connections,
            stop,
            raw,
        }
    }

    /// Echo server: answers 200 with a JSON description of the request.
    pub fn echo() -> Upstream {
        Upstream::start(Arc::new(|req, s| {
            let body = echo_body(req);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Upstream: echo\r\n\r\n",
                body.len()
            );
            if req.method != "HEAD" {
                let _ = s.write_all(&body);
            }
            Reply::KeepAlive
        }))
    }

    /// Answers every request with `status` and `body`, labelled with `name` in X-Upstream.
    pub fn fixed(status: u16, body: &'static str, name: &'static str) -> Upstream {
        Upstream::start(Arc::new(move |_req, s| {
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{body}",
                body.len()
            );
            Reply::KeepAlive
        }))
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// JSON the echo upstream returns.
pub fn echo_body(req: &Received) -> Vec<u8> {
    let headers: Vec<serde_json::Value> = req
        .headers
        .iter()
        .map(|(n, v)| serde_json::json!([n, v]))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "method": req.method,
        "target": req.target,
        "headers": headers,
        "body": String::from_utf8_lossy(&req.body),
        "body_len": req.body.len(),
        "framing": req.framing,
    }))
    .unwrap()
}

fn serve_upstream_conn(
    s: TcpStream,
    handler: Handler,
    rec: Arc<Mutex<Vec<Received>>>,
    raw: Arc<RawLog>,
) {
    // Handlers write head and body separately; without NODELAY each response can wait ~40 ms
    // for a delayed ACK.
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.set_write_timeout(Some(Duration::from_secs(30))).ok();
    let mut writer = s.try_clone().unwrap();
    let mut reader = BufReader::new(CountingRead { inner: s, log: raw });
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            _ => return,
        };
        rec.lock().unwrap().push(req.clone());
        match handler(&req, &mut writer) {
            Reply::KeepAlive => {
                let _ = writer.flush();
            }
            Reply::Close => {
                let _ = writer.flush();
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Reads one request (head + body) as a server. Ok(None) on clean EOF before a request.
pub fn read_request<R: BufRead>(r: &mut R) -> std::io::Result<Option<Received>> {
    let mut raw_head = String::new();
    let first = match read_line(r) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    raw_head.push_str(&first);
    raw_head.push_str("\r\n");
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in head",
            ));
        }
        raw_head.push_str(&line);
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let framing;
    if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        framing = "chunked";
        read_chunked(r, &mut body)?;
    } else if let Some(cl) = find("content-length") {
        framing = "length";
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("bad cl"))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        framing = "none";
    }
    Ok(Some(Received {
        method,
        target,
        version,
        headers,
        body,
        raw_head,
        framing,
    }))
}

/// Config for one upstream named `name` with the given target addresses (weight 1).
pub fn upstream_toml(name: &str, addrs: &[SocketAddr]) -> String {
    let targets: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!("[upstreams.{name}]\ntargets = [{}]\n", targets.join(", "))
}

/// Current resident set size of a process in KiB (from /proc).
pub fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// True if the gateway ended the connection (EOF or reset) within `timeout` without sending
/// more bytes. Unlike `Conn::is_closed`, a reset seen by the first read counts as closed (the
/// gateway resets when it closes with unread request bytes, e.g. after a 431 or 413).
pub fn conn_ended(c: &mut Conn, timeout: Duration) -> bool {
    c.stream.set_read_timeout(Some(timeout)).unwrap();
    let mut b = [0u8; 1];
    let ended = match c.reader.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ended
}

/// One sample of a Prometheus text exposition: metric name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus text format (0.0.4) samples; comments are skipped.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Default::default()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = std::collections::BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "label value quoted in {line:?}");
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(o) => val.push(o),
                                None => {}
                            },
                            '"' => break,
                            o => val.push(o),
                        }
                    }
                    labels.insert(key.trim_start_matches(',').to_string(), val);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (n.to_string(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of the sample `name` whose labels include all of `labels` (summed if several).
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!hits.is_empty()).then(|| hits.iter().sum())
}

/// Scrapes the admin `/metrics` endpoint.
pub fn scrape(admin: SocketAddr) -> Vec<Sample> {
    let r = request(admin, "GET", "/metrics", &[("Connection", "close")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    parse_prometheus(&r.text())
}

/// Scrapes until `name{labels}` reaches `want` (metrics are recorded just after the response
/// is written), or returns the last value seen after 3 s.
pub fn scrape_until(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(admin);
        if metric(&s, name, labels) == Some(want) || Instant::now() > deadline {
            return s;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Raw upstream traffic, conditions instead of sleeps, skips
// ---------------------------------------------------------------------------------------

/// Most raw upstream bytes kept for inspection (the count goes on past it).
const RAW_KEEP: usize = 1 << 20;

/// Raw bytes an `Upstream` read, across all its connections in arrival order.
#[derive(Default)]
struct RawLog {
    total: AtomicUsize,
    kept: Mutex<Vec<u8>>,
}

/// A reader that records every byte it returns into a `RawLog` before any parsing.
struct CountingRead {
    inner: TcpStream,
    log: Arc<RawLog>,
}

impl Read for CountingRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut kept = self.log.kept.lock().unwrap();
            let room = RAW_KEEP.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
            self.log.total.fetch_add(n, Ordering::SeqCst);
        }
        Ok(n)
    }
}

/// What an upstream had seen at one moment (see `Upstream::snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamSeen {
    pub connections: usize,
    pub raw_bytes: usize,
    pub requests: usize,
}

impl Upstream {
    /// Connections accepted so far (whether or not a request was ever parsed on them).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Bytes received so far on all connections, including partial or unparsable requests.
    pub fn raw_bytes(&self) -> usize {
        self.raw.total.load(Ordering::SeqCst)
    }

    /// The raw bytes received from offset `from` on (the first MiB overall is kept).
    pub fn raw_since(&self, from: usize) -> Vec<u8> {
        let kept = self.raw.kept.lock().unwrap();
        kept.get(from..).unwrap_or_default().to_vec()
    }

    /// The raw bytes received so far, lossily as text.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw_since(0)).into_owned()
    }

    pub fn snapshot(&self) -> UpstreamSeen {
        UpstreamSeen {
            connections: self.connections(),
            raw_bytes: self.raw_bytes(),
            requests: self.count(),
        }
    }

    /// Waits until the upstream has parsed at least `n` requests (panics after `timeout`).
    pub fn wait_for_count(&self, n: usize, timeout: Duration) {
        wait_for(timeout, || self.count() >= n).unwrap_or_else(|| {
            panic!(
                "upstream saw {} requests, wanted {n}; raw: {:?}",
                self.count(),
                self.raw_text()
            )
        })
    }

    /// Waits until the raw bytes received contain `needle` (panics after `timeout`).
    pub fn wait_for_raw(&self, needle: &str, timeout: Duration) {
        wait_for(timeout, || self.raw_text().contains(needle)).unwrap_or_else(|| {
            panic!(
                "upstream never received {needle:?}; raw: {:?}",
                self.raw_text()
            )
        })
    }
}

/// Polls `cond` every 10 ms until it holds (Some) or `timeout` passes (None).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Path of the marker request `assert_nothing_reached` sends; route it to the upstream.
pub const MARKER_PATH: &str = "/__ringway_test_marker";

/// Asserts that nothing (no connection, no byte) reached `up` since `before`, and then proves
/// the check was not merely early: a marker request sent through `gw` afterwards must be the
/// only thing the upstream received since `before`. `gw` must route `MARKER_PATH` to `up`; use
/// one worker so the marker follows the rejected connection on the same event loop.
/// Only the first MiB of raw bytes is kept, so `before` must lie within it.
pub fn assert_nothing_reached(gw: &Gateway, up: &Upstream, before: UpstreamSeen, label: &str) {
    assert!(
        before.raw_bytes < RAW_KEEP,
        "{label}: the upstream already received over {RAW_KEEP} bytes; use a fresh one"
    );
    let now = up.snapshot();
    assert_eq!(
        now,
        before,
        "{label}: the upstream was contacted: {:?}",
        String::from_utf8_lossy(&up.raw_since(before.raw_bytes))
    );
    let r = get(gw.addr, MARKER_PATH);
    assert_eq!(
        r.status,
        200,
        "{label}: marker request failed: {}",
        r.text()
    );
    up.wait_for_count(before.requests + 1, Duration::from_secs(10));
    let got = up.raw_since(before.raw_bytes);
    let mut rd = std::io::Cursor::new(&got[..]);
    let first = read_request(&mut rd)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{label}: unparsable upstream bytes: {got:?}"));
    assert_eq!(
        (first.target.as_str(), rd.position() as usize),
        (MARKER_PATH, got.len()),
        "{label}: the upstream got more than the marker: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        up.connections() <= before.connections + 1,
        "{label}: extra upstream connections"
    );
}

/// True when running in CI (env `CI` set and not "0"/"false"), where every test prerequisite
/// must be present: a skip there is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports a missing prerequisite: prints why the test is skipped, and panics in CI.
pub fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("prerequisite missing in CI: {why}");
    }
    eprintln!("SKIPPED: {why} (this is a failure when CI is set)");
}

/// A latch an upstream handler can wait on, so a test decides when a response is released
/// instead of racing a sleep.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    /// Blocks until `open` was called or `timeout` passed; returns whether it was opened.
    pub fn wait(&self, timeout: Duration) -> bool {
        let g = self.0 .0.lock().unwrap();
        let (g, _) = self.0 .1.wait_timeout_while(g, timeout, |o| !*o).unwrap();
        *g
    }
}

/// True in the test binary of tests/epoll_fallback.rs, which re-runs other test files: every
/// gateway it starts runs on the legacy epoll driver (`RINGWAY_FORCE_EPOLL=1`).
pub fn forced_epoll() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("epoll_fallback"))
}

impl Gateway {
    /// Starts `program` (the ringway binary, or a wrapper such as `taskset -c 0 <bin>` with its
    /// leading arguments already set) with `--config` pointing at `body` plus the harness's
    /// listener and admin sections. Unlike `start_env` it passes no `--workers`, so the config's
    /// and the default worker count apply.
    pub fn start_with(body: &str, program: Command) -> Gateway {
        // Rebuilt for every try (a `Command` spawns once per `--config`): program, arguments
        // and environment carry over.
        let prog = program.get_program().to_owned();
        let args: Vec<_> = program.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = program
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        with_fresh_ports(|port, admin_port| {
            let mut program = Command::new(&prog);
            program.args(&args);
            for (k, v) in &envs {
                match v {
                    Some(v) => program.env(k, v),
                    None => program.env_remove(k),
                };
            }
            Gateway::start_text(
                &with_listener(port, admin_port, body),
                port,
                admin_port,
                program,
            )
        })
    }

    /// Like `start_with` for a complete config `text` that itself listens on 127.0.0.1:`port`
    /// with the admin API on 127.0.0.1:`admin_port`.
    pub fn start_full(text: &str, port: u16, admin_port: u16, program: Command) -> Gateway {
        match Gateway::start_text(text, port, admin_port, program) {
            Ok(gw) => gw,
            Err(logs) => panic!("gateway could not bind its ports; logs:\n{logs}"),
        }
    }

    fn start_text(
        text: &str,
        port: u16,
        admin_port: u16,
        mut program: Command,
    ) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("ringway.toml");
        std::fs::write(&config_path, text).unwrap();
        program.arg("--config").arg(&config_path);
        Gateway::spawn(program, dir, config_path, port, admin_port)
    }
}

/// Runs `start` with two fresh ports (listener, admin), again with new ones when the gateway
/// could not bind them: `free_port` checks a port, and another process may take it before the
/// gateway binds it.
fn with_fresh_ports(mut start: impl FnMut(u16, u16) -> Result<Gateway, String>) -> Gateway {
    let mut last = None;
    for _ in 0..3 {
        match start(free_port(), free_port()) {
            Ok(gw) => return gw,
            Err(logs) => last = Some(logs),
        }
    }
    panic!(
        "gateway could not bind fresh ports three times; last logs:\n{}",
        last.unwrap_or_default()
    );
}

/// Runs the ringway binary with `args` to completion (bounded: killed after `timeout`);
/// returns (exit code, stderr). -1 when killed by a signal.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (i32, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringway {args:?} did not exit within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}
// Raw upstream (byte-level witness)
// ---------------------------------------------------------------------------------------

/// A bare TCP upstream that counts accepted connections and every byte received, keeping the
/// bytes. It answers `200 ok` (and closes) once it has seen the end of a head, so a positive
/// control works; it never parses anything, so smuggled bytes are counted even when they do
/// not form a request.
pub struct RawUpstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub bytes: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    pub fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (conns, seen, st) = (connections.clone(), bytes.clone(), stop.clone());
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        conns.fetch_add(1, Ordering::SeqCst);
                        let seen = seen.clone();
                        thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                            let mut mine = Vec::new();
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                mine.extend_from_slice(&buf[..n]);
                                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                                if mine.windows(4).any(|w| w == b"\r\n\r\n") {
                                    let _ = s.write_all(
                                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                                    );
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        RawUpstream {
            addr,
            connections,
            bytes,
            stop,
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn byte_count(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A raw client socket with the harness's I/O timeouts and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until EOF, reset or `limit`; returns (bytes, ended, elapsed). A reset counts as the
/// end (the peer closed); a timeout does not.
pub fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t.elapsed());
        if left.is_zero() {
            return (out, false, t.elapsed());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (out, true, t.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (out, true, t.elapsed())
            }
            Err(_) => return (out, false, t.elapsed()),
        }
    }
}

/// Creates an API key for `consumer` in the keys file `keys` with the real `ringway keys
/// create` CLI (a throwaway CLI config in `dir`); returns the key. With `secret` the store
/// hashes with HMAC-SHA-256 under it (`RINGWAY_KEY_SECRET`), without one with plain SHA-256.
pub fn create_key(dir: &Path, keys: &Path, consumer: &str, secret: Option<&str>) -> String {
    let cli = dir.join("cli.toml");
    let hash = if secret.is_some() {
        "hmac-sha256"
    } else {
        "sha256"
    };
    let text = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"{hash}\"\n",
        keys.display()
    );
    std::fs::write(&cli, text).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["keys", "create", "--consumer", consumer, "--config"])
        .arg(&cli);
    if let Some(s) = secret {
        cmd.env("RINGWAY_KEY_SECRET", s);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
