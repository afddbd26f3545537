//! Large bodies stream through the gateway in both directions, intact and without the gateway
//! buffering them (its RSS stays flat while hundreds of MiB pass through).
//!
//! The upstreams here are raw `TcpListener`s that parse framing themselves and verify bytes as
//! they arrive (the harness `Upstream` buffers whole bodies). Body content is a deterministic
//! byte stream: byte `p` is `BLOCK[p % BLOCK.len()]` with a prime-ish block length, so every
//! received byte is checked against its expected value at its position (stronger than a hash,
//! and cheap because slice comparison is a memcmp even in debug builds).
mod common;
use common::*;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Not a power of two, so chunk and buffer boundaries never line up with block repeats.
const BLOCK_LEN: usize = 1_048_573;

fn block() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        (0..BLOCK_LEN).map(|_| (rng.next() >> 24) as u8).collect()
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// Checks a byte stream against the deterministic pattern, position by position.
#[derive(Default, Debug, Clone, Copy)]
struct Verifier {
    pos: u64,
    first_bad: Option<u64>,
}

impl Verifier {
    fn update(&mut self, mut data: &[u8]) {
        let b = block();
        while !data.is_empty() {
            let off = (self.pos % BLOCK_LEN as u64) as usize;
            let n = data.len().min(BLOCK_LEN - off);
            if self.first_bad.is_none() && data[..n] != b[off..off + n] {
                let i = data[..n]
                    .iter()
                    .zip(&b[off..off + n])
                    .position(|(x, y)| x != y)
                    .unwrap_or(0);
                self.first_bad = Some(self.pos + i as u64);
            }
            self.pos += n as u64;
            data = &data[n..];
        }
    }
}

/// Writes `len` pattern bytes starting at stream position 0, in pieces of `piece` bytes.
fn write_pattern<W: Write>(w: &mut W, start: u64, len: usize) -> std::io::Result<()> {
    let b = block();
    let mut pos = start;
    let mut left = len;
    while left > 0 {
        let off = (pos % BLOCK_LEN as u64) as usize;
        let n = left.min(BLOCK_LEN - off);
        w.write_all(&b[off..off + n])?;
        pos += n as u64;
        left -= n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A raw upstream server

struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn raw_server<F>(handler: F) -> RawServer
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
                    let h = handler.clone();
                    thread::spawn(move || h(s));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    RawServer { addr, stop }
}

fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<String> {
    let mut s = String::new();
    if r.read_line(&mut s)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a head (request or response); returns the first line and the headers.
fn read_head<R: BufRead>(r: &mut R) -> std::io::Result<(String, Vec<(String, String)>)> {
    let first = read_line(r)?;
    let mut headers = Vec::new();
    loop {
        let l = read_line(r)?;
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or(std::io::ErrorKind::InvalidData)?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((first, headers))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Streams a body with the framing the headers declare into `v`; returns the framing used.
/// `close_ok`: no length and no chunking means read to EOF (responses only).
fn stream_body<R: BufRead>(
    r: &mut R,
    h: &[(String, String)],
    close_ok: bool,
    v: &mut Verifier,
) -> std::io::Result<&'static str> {
    let mut buf = vec![0u8; 64 * 1024];
    if header(h, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let line = read_line(r)?;
            let size = u64::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                return Ok("chunked");
            }
            let mut left = size;
            while left > 0 {
                let n = (left as usize).min(buf.len());
                r.read_exact(&mut buf[..n])?;
                v.update(&buf[..n]);
                left -= n as u64;
            }
            if !read_line(r)?.is_empty() {
                return Err(std::io::Error::other("missing CRLF after chunk"));
            }
        }
    } else if let Some(cl) = header(h, "content-length") {
        let mut left: u64 = cl.parse().map_err(|_| std::io::Error::other("bad CL"))?;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            let got = r.read(&mut buf[..n])?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            v.update(&buf[..got]);
            left -= got as u64;
        }
        Ok("length")
    } else if close_ok {
        loop {
            let got = r.read(&mut buf)?;
            if got == 0 {
                return Ok("close");
            }
            v.update(&buf[..got]);
        }
    } else {
        Ok("none")
    }
}

/// Upstream that verifies request bodies as they stream in and answers
/// `200` with `"<bytes> <first_bad or ok> <framing>"`. Keeps the connection alive.
fn sink_upstream() -> RawServer {
    raw_server(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::with_capacity(64 * 1024, s);
        loop {
            let Ok((_line, h)) = read_head(&mut r) else {
                return;
            };
            let mut v = Verifier::default();
            let framing = match stream_body(&mut r, &h, false, &mut v) {
                Ok(f) => f,
                Err(_) => return,
            };
            let verdict = match v.first_bad {
                None => "ok".to_string(),
                Some(p) => format!("bad@{p}"),
            };
            let body = format!("{} {} {}", v.pos, verdict, framing);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Upstream that answers `GET /<mode>/<bytes>` with that many pattern bytes, framed as
/// `length`, `chunked` (random chunk sizes) or `close` (no length; close at the end).
fn source_upstream() -> RawServer {
    raw_server(|s| {
        let mut w = BufWriter::with_capacity(64 * 1024, s.try_clone().unwrap());
        let mut r = BufReader::new(s);
        loop {
            let Ok((line, _h)) = read_head(&mut r) else {
                return;
            };
            let target = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut parts = target.trim_start_matches('/').split('/');
            let mode = parts.next().unwrap_or("").to_string();
            let len: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let res = (|| -> std::io::Result<bool> {
                match mode.as_str() {
                    "length" => {
                        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
                        write_pattern(&mut w, 0, len)?;
                        Ok(true)
                    }
                    "chunked" => {
                        write!(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                        let mut rng = Rng(len as u64 | 1);
                        let mut pos = 0usize;
                        while pos < len {
                            let n = rng.range(1, 200 * 1024).min(len - pos);
                            write!(w, "{n:x}\r\n")?;
                            write_pattern(&mut w, pos as u64, n)?;
                            w.write_all(b"\r\n")?;
                            pos += n;
                        }
                        w.write_all(b"0\r\n\r\n")?;
                        Ok(true)
                    }
                    _ => {
                        write!(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
                        write_pattern(&mut w, 0, len)?;
                        Ok(false)
                    }
                }
            })();
            let _ = w.flush();
            match res {
                Ok(true) => continue,
                _ => {
                    let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    })
}

fn gateway_for(up: SocketAddr) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"big\"\nprefix = \"/\"\nmax_body_bytes = \"1GiB\"\nproxy = {{ upstream = \"big\" }}\n",
        upstream_toml("big", &[up])
    ))
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Uploads `len` pattern bytes chunked (random chunk sizes) or with Content-Length; returns the
/// upstream's verdict body.
fn upload(addr: SocketAddr, len: usize, chunked: bool, progress: Option<&AtomicU64>) -> String {
    let s = client(addr);
    let mut w = BufWriter::with_capacity(64 * 1024, s.try_clone().unwrap());
    if chunked {
        write!(
            w,
            "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        let mut rng = Rng(0x1234_5678 ^ len as u64);
        let mut pos = 0usize;
        while pos < len {
            let n = rng.range(1, 256 * 1024).min(len - pos);
            write!(w, "{n:x}\r\n").unwrap();
            write_pattern(&mut w, pos as u64, n).unwrap();
            w.write_all(b"\r\n").unwrap();
            pos += n;
            if let Some(p) = progress {
                p.store(pos as u64, Ordering::Relaxed);
            }
        }
        w.write_all(b"0\r\n\r\n").unwrap();
    } else {
        write!(
            w,
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n"
        )
        .unwrap();
        let step = 1 << 20;
        let mut pos = 0;
        while pos < len {
            let n = step.min(len - pos);
            write_pattern(&mut w, pos as u64, n).unwrap();
            pos += n;
            if let Some(p) = progress {
                p.store(pos as u64, Ordering::Relaxed);
            }
        }
    }
    w.flush().unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("upload response");
    assert_eq!(resp.status, 200, "upload: {}", resp.text());
    resp.text()
}

/// Downloads `/<mode>/<len>` and verifies it; returns (framing the gateway used, verifier).
fn download(addr: SocketAddr, mode: &str, len: usize, http10: bool) -> (&'static str, Verifier) {
    let mut s = client(addr);
    let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    write!(s, "GET /{mode}/{len} {version}\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let (line, h) = read_head(&mut r).expect("response head");
    assert!(line.contains(" 200 "), "download {mode}: {line}");
    let mut v = Verifier::default();
    let framing = stream_body(&mut r, &h, true, &mut v).expect("download body");
    (framing, v)
}

#[test]
fn large_chunked_upload_arrives_intact() {
    let up = sink_upstream();
    let gw = gateway_for(up.addr);
    let len = 64 * MIB as usize + 12345;
    let t = Instant::now();
    let verdict = upload(gw.addr, len, true, None);
    eprintln!("64 MiB chunked upload: {:?}", t.elapsed());
    assert_eq!(verdict, format!("{len} ok chunked"));
}

#[test]
fn large_content_length_upload_arrives_intact() {
    let up = sink_upstream();
    let gw = gateway_for(up.addr);
    let len = 64 * MIB as usize + 7;
    let t = Instant::now();
    let verdict = upload(gw.addr, len, false, None);
    eprintln!("64 MiB CL upload: {:?}", t.elapsed());
    assert_eq!(verdict, format!("{len} ok length"));
}

#[test]
fn large_responses_stream_back_intact_in_every_framing() {
    let up = source_upstream();
    let gw = gateway_for(up.addr);
    let len = 64 * MIB as usize + 999;
    for (mode, expect_framing) in [
        ("length", "length"),
        ("chunked", "chunked"),
        // No length from upstream: an HTTP/1.1 client gets it re-framed as chunked.
        ("close", "chunked"),
    ] {
        let t = Instant::now();
        let (framing, v) = download(gw.addr, mode, len, false);
        eprintln!("64 MiB {mode} download: {:?}", t.elapsed());
        assert_eq!(framing, expect_framing, "{mode}");
        assert_eq!(
            v.first_bad, None,
            "{mode}: corrupted at byte {:?}",
            v.first_bad
        );
        assert_eq!(v.pos, len as u64, "{mode}: byte count");
    }
}

#[test]
fn close_delimited_response_to_http10_client() {
    let up = source_upstream();
    let gw = gateway_for(up.addr);
    let len = 8 * MIB as usize + 3;
    for mode in ["close", "chunked"] {
        let (framing, v) = download(gw.addr, mode, len, true);
        // HTTP/1.0 has no chunked encoding: the gateway must fall back to close-delimited.
        assert_eq!(framing, "close", "{mode}");
        assert_eq!(v.first_bad, None, "{mode}");
        assert_eq!(v.pos, len as u64, "{mode}");
    }
}

#[test]
fn keepalive_connection_carries_several_large_bodies() {
    // Two uploads then a download on the same client connection: framing stays in sync.
    let sink = sink_upstream();
    let gw = gateway_for(sink.addr);
    let s = client(gw.addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for len in [3 * MIB as usize + 1, 5 * MIB as usize - 1] {
        write!(
            w,
            "POST /u HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n"
        )
        .unwrap();
        write_pattern(&mut w, 0, len).unwrap();
        w.write_all(b"\r\n0\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("{len} ok chunked"));
    }
}

#[test]
fn memory_stays_flat_while_large_bodies_stream() {
    let sink = sink_upstream();
    let source = source_upstream();
    let gw = Gateway::start(&format!(
        "{}{}\n[[routes]]\nname = \"up\"\nprefix = \"/upload\"\nmax_body_bytes = \"1GiB\"\nproxy = {{ upstream = \"sink\" }}\n\
         [[routes]]\nname = \"down\"\nprefix = \"/\"\nmax_body_bytes = \"1GiB\"\nproxy = {{ upstream = \"source\" }}\n",
        upstream_toml("sink", &[sink.addr]),
        upstream_toml("source", &[source.addr]),
    ));
    let pid = gw.pid();
    // Warm up both paths so buffers and pools exist before the baseline.
    assert_eq!(
        upload(gw.addr, 2 * MIB as usize, true, None),
        format!("{} ok chunked", 2 * MIB)
    );
    let (_, v) = download(gw.addr, "chunked", 2 * MIB as usize, false);
    assert_eq!((v.pos, v.first_bad), (2 * MIB, None));
    thread::sleep(Duration::from_millis(100));
    let baseline = rss_kib(pid);
    assert!(baseline > 0, "cannot read gateway RSS");

    let size = 256 * MIB as usize;
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (peak, done, samples) = (peak.clone(), done.clone(), samples.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = rss_kib(pid);
                peak.fetch_max(r, Ordering::Relaxed);
                samples.lock().unwrap().push(r);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let progress = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let addr = gw.addr;
    let up_thread = {
        let progress = progress.clone();
        thread::spawn(move || upload(addr, size, true, Some(&progress)))
    };
    let (framing, v) = download(addr, "length", size, false);
    let verdict = up_thread.join().expect("upload thread");
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let elapsed = t.elapsed();
    let peak = peak.load(Ordering::Relaxed);
    let nsamples = samples.lock().unwrap().len();
    eprintln!(
        "256 MiB up + 256 MiB down in {elapsed:?}; RSS baseline {baseline} KiB, peak {peak} KiB ({nsamples} samples)"
    );

    assert_eq!(verdict, format!("{size} ok chunked"));
    assert_eq!(framing, "length");
    assert_eq!((v.pos, v.first_bad), (size as u64, None));
    assert!(
        nsamples >= 5,
        "too few RSS samples ({nsamples}) to mean anything"
    );
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    assert!(
        growth_mib < 64,
        "gateway RSS grew by {growth_mib} MiB (baseline {baseline} KiB, peak {peak} KiB) while streaming 512 MiB"
    );
}
