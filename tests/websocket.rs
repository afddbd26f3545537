//! WebSocket through a proxy route: the upgrade is relayed, frames flow both ways (including
//! bytes that arrive in the same packet as the handshake), closes are clean, and plain HTTP on
//! the same route keeps working.
//!
//! The upstream does the server handshake by hand (so one connection can serve plain requests
//! first and an upgrade later, as a pooled connection may) and then hands the socket to
//! `tungstenite` for framing; the client side is `tungstenite::client`.
mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

struct WsUpstream {
    addr: SocketAddr,
    /// WebSocket sessions that ended with the peer's close (or EOF), not a timeout.
    sessions_ended: Arc<AtomicUsize>,
    plain_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request head byte by byte (never past the blank line: frames may follow).
fn read_head_exact(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An echo server: upgrades requests carrying `Upgrade: websocket` (greeting the client with a
/// text frame sent in the same write as the 101), refuses upgrades under `/ws/refuse` with 403,
/// and answers other requests with 200 `plain`.
fn ws_upstream() -> WsUpstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicUsize::new(0));
    let plain = Arc::new(AtomicUsize::new(0));
    let (st, en, pl) = (stop.clone(), ended.clone(), plain.clone());
    thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = l.accept() else {
                thread::sleep(Duration::from_millis(2));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let (en, pl) = (en.clone(), pl.clone());
            thread::spawn(move || loop {
                let Some(head) = read_head_exact(&mut s) else {
                    return;
                };
                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                let upgrade = header_value(&head, "upgrade")
                    .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
                if upgrade && target.starts_with("/ws/refuse") {
                    let _ =
                        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nrefused");
                    continue;
                }
                if !upgrade {
                    pl.fetch_add(1, Ordering::SeqCst);
                    let body = format!("plain {target}");
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                let key = header_value(&head, "sec-websocket-key").unwrap_or("");
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                let greeting = b"welcome";
                let mut out = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: {accept}\r\nX-Secret: s3cr3t\r\nX-Request-Id: forged\r\n\r\n"
                )
                .into_bytes();
                // Unmasked server text frame, in the same write as the 101.
                out.push(0x81);
                out.push(greeting.len() as u8);
                out.extend_from_slice(greeting);
                if s.write_all(&out).is_err() {
                    return;
                }
                let mut ws = WebSocket::from_raw_socket(s, Role::Server, None);
                loop {
                    match ws.read() {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                            if ws.send(m).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::ConnectionClosed)
                        | Err(tungstenite::Error::AlreadyClosed) => {
                            en.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Err(tungstenite::Error::Io(e))
                            if e.kind() == std::io::ErrorKind::UnexpectedEof
                                || e.kind() == std::io::ErrorKind::ConnectionReset =>
                        {
                            en.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Err(tungstenite::Error::Protocol(_)) => {
                            // Closed without a close frame (EOF mid-protocol).
                            en.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    WsUpstream {
        addr,
        sessions_ended: ended,
        plain_requests: plain,
        stop,
    }
}

fn gateway(up: SocketAddr) -> Gateway {
    Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"ws\"\nprefix = \"/ws\"\nproxy = {{ upstream = \"ws\" }}\n",
        upstream_toml("ws", &[up])
    ))
}

fn connect_ws(gw: &Gateway, path: &str) -> WebSocket<TcpStream> {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{}{}", gw.addr, path);
    let (ws, resp) = tungstenite::client(url.as_str(), s).expect("websocket handshake via gateway");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(
        resp.headers()
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_string())
    );
    ws
}

fn expect_greeting(ws: &mut WebSocket<TcpStream>) {
    match ws.read().expect("greeting") {
        Message::Text(t) => assert_eq!(t.as_str(), "welcome"),
        m => panic!("expected greeting, got {m:?}"),
    }
}

/// Closes from the client side and waits for the close handshake to complete.
fn close_cleanly(mut ws: WebSocket<TcpStream>) {
    ws.close(None).expect("send close");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "close handshake did not finish");
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("unclean close: {e:?}"),
        }
    }
}

fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn text_and_binary_echo_through_the_gateway() {
    let up = ws_upstream();
    let gw = gateway(up.addr);
    let mut ws = connect_ws(&gw, "/ws/chat");
    expect_greeting(&mut ws);

    ws.send(Message::text("hello through ringway")).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "hello through ringway"),
        m => panic!("{m:?}"),
    }

    let bin: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    ws.send(Message::binary(bin.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == bin[..], "binary echo differs"),
        m => panic!("{m:?}"),
    }

    // Many small messages in flight at once keep their order.
    for i in 0..100 {
        ws.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..100 {
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), format!("m{i}")),
            m => panic!("{m:?}"),
        }
    }

    // Ping is answered by the upstream's tungstenite (pong relayed back).
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        m => panic!("{m:?}"),
    }

    close_cleanly(ws);
    wait_for(
        || up.sessions_ended.load(Ordering::SeqCst) == 1,
        "upstream session end",
    );
}

#[test]
fn plain_get_on_the_websocket_route_still_works() {
    let up = ws_upstream();
    let gw = gateway(up.addr);
    let r = get(gw.addr, "/ws/info");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "plain /ws/info");
    // And after a WebSocket session on the same route (pooled upstream connections).
    let mut ws = connect_ws(&gw, "/ws/x");
    expect_greeting(&mut ws);
    close_cleanly(ws);
    let mut c = Conn::open(gw.addr);
    for i in 0..3 {
        let r = c.request("GET", &format!("/ws/again{i}"), &[], b"");
        assert_eq!(r.text(), format!("plain /ws/again{i}"));
    }
    assert_eq!(up.plain_requests.load(Ordering::SeqCst), 4);
}

#[test]
fn upstream_refusing_the_upgrade_is_an_ordinary_response() {
    let up = ws_upstream();
    let gw = gateway(up.addr);
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{}/ws/refuse", gw.addr);
    match tungstenite::client(url.as_str(), s) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status().as_u16(), 403);
        }
        Err(e) => panic!("unexpected handshake error: {e:?}"),
        Ok(_) => panic!("upgrade succeeded although the upstream refused it"),
    }
}

#[test]
fn the_101_gets_the_routes_response_edits() {
    // The upstream's 101 carries X-Secret and a forged X-Request-Id. The route removes the
    // one and sets X-Frame-Options; the gateway writes its own request id. A 101 is a response
    // like any other: nothing the route removed may leave through it.
    let up = ws_upstream();
    let gw = Gateway::start(&format!(
        "[policies.t]\ntransform = {{ response_headers = {{ remove = [\"x-secret\"], \
         set = {{ \"x-frame-options\" = \"DENY\" }} }} }}\n\n{}\n\
         [[routes]]\nname = \"ws\"\nprefix = \"/ws\"\npolicies = [\"t\"]\nproxy = {{ upstream = \"ws\" }}\n",
        upstream_toml("ws", &[up.addr])
    ));
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("ws://{}/ws/edited", gw.addr);
    let (mut ws, resp) = tungstenite::client(url.as_str(), s).expect("handshake via gateway");
    assert_eq!(resp.status().as_u16(), 101);
    let h = resp.headers();
    assert!(h.get("x-secret").is_none(), "{h:?}");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{h:?}");
    let ids: Vec<_> = h.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{h:?}");
    assert_ne!(ids[0], "forged", "{h:?}");
    expect_greeting(&mut ws);
    close_cleanly(ws);
}

#[test]
fn frame_sent_with_the_upgrade_request_is_not_lost() {
    // A client that pipelines its first frame right behind the handshake request.
    let up = ws_upstream();
    let gw = gateway(up.addr);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!(
        "GET /ws/early HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr
    )
    .into_bytes();
    // Masked client text frame "early".
    let mask = [1u8, 2, 3, 4];
    req.extend_from_slice(&[0x81, 0x80 | 5]);
    req.extend_from_slice(&mask);
    req.extend(b"early".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&req).unwrap();

    // Read the 101 head, then frames.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF during 101 head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut ws = WebSocket::from_raw_socket(s, Role::Client, None);
    expect_greeting(&mut ws);
    match ws.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "early"),
        m => panic!("{m:?}"),
    }
}

#[test]
fn concurrent_sessions_stay_separate() {
    let up = ws_upstream();
    let gw = gateway(up.addr);
    let handles: Vec<_> = (0..6)
        .map(|id| {
            let mut ws = connect_ws(&gw, &format!("/ws/s{id}"));
            thread::spawn(move || {
                expect_greeting(&mut ws);
                for i in 0..50 {
                    let msg = format!("session {id} message {i}");
                    ws.send(Message::text(msg.clone())).unwrap();
                    match ws.read().unwrap() {
                        Message::Text(t) => assert_eq!(t.as_str(), msg),
                        m => panic!("{m:?}"),
                    }
                }
                close_cleanly(ws);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("session thread");
    }
    wait_for(
        || up.sessions_ended.load(Ordering::SeqCst) == 6,
        "all upstream sessions to end",
    );
}

#[test]
fn upstream_closing_the_session_closes_the_client() {
    // The upstream goes away abruptly: the client must see the connection end, not hang.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        if let Ok((mut s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let Some(head) = read_head_exact(&mut s) else {
                return;
            };
            let key = header_value(&head, "sec-websocket-key")
                .unwrap_or("")
                .to_string();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let _ = write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            thread::sleep(Duration::from_millis(200));
            drop(s);
        }
    });
    let gw = gateway(addr);
    let mut ws = connect_ws(&gw, "/ws/bye");
    let t = Instant::now();
    let res = ws.read();
    assert!(res.is_err(), "expected the session to end, got {res:?}");
    if let Err(tungstenite::Error::Io(e)) = &res {
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "client hung until its read timeout: {e}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// The client asked for WebSocket; an upstream switching to another protocol (h2c here) must
/// not get a tunnel, or the client's next bytes (an HTTP/2 preface) would reach it raw,
/// past routing and policies. The client gets a 502 and the upstream nothing more. A POST
/// "handshake" (RFC 6455 requires GET) is forwarded as a plain request, not an upgrade.
#[test]
fn only_a_get_switching_to_websocket_is_tunnelled() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sn = seen.clone();
    thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { return };
            let sn = sn.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let Some(head) = read_head_exact(&mut s) else {
                    return;
                };
                sn.lock().unwrap().push(head.clone());
                if header_value(&head, "upgrade").is_some() {
                    let _ = s.write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
                    );
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest);
                    sn.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&rest).into_owned());
                } else {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain");
                }
            });
        }
    });
    let gw = gateway(addr);
    let handshake = |method: &str| {
        let mut c = TcpStream::connect(gw.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "{method} /ws/x HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let head = read_head_exact(&mut c).unwrap_or_default();
        // What a client would send next on a switched connection.
        let _ = c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        thread::sleep(Duration::from_millis(200));
        head
    };
    let head = handshake("GET");
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let head = handshake("POST");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    thread::sleep(Duration::from_millis(300));
    let seen = seen.lock().unwrap().join("\n");
    assert!(
        !seen.contains("PRI * HTTP/2.0"),
        "client bytes reached the upstream:\n{seen}"
    );
    let post = seen
        .lines()
        .position(|l| l.starts_with("POST"))
        .expect("the POST");
    let post_head: Vec<&str> = seen
        .lines()
        .skip(post)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        !post_head
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("upgrade:")),
        "a POST went upstream as an upgrade: {post_head:?}"
    );
}

/// A plain echo upstream that reads a chunk and writes it all back before reading again (so
/// it stops reading while its own writes wait): after a 101 it echoes until EOF.
fn blocking_echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            thread::spawn(move || {
                if read_head_exact(&mut s).is_none() {
                    return;
                }
                let _ = s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Bulk traffic both ways at once through a tunnel on a TLS listener: the client keeps
/// sending while the upstream echoes, so both directions are full at the same time. The
/// relay must keep both moving (a relay that waits on one write while the other side
/// waits on it deadlocks until the idle timeout and loses the data).
#[test]
fn tls_tunnel_relays_bulk_traffic_both_ways_at_once() {
    let (_gw, _dir, mut conn, mut tcp) = upgraded_tls_tunnel();
    // Then send 24 MiB while reading the echo, never blocking on either.
    tcp.set_nonblocking(true).unwrap();
    const TOTAL: usize = 24 << 20;
    let chunk: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, 0usize);
    let mut last_move = Instant::now();
    let mut plain = vec![0u8; 64 * 1024];
    while got < TOTAL {
        let mut moved = false;
        if sent < TOTAL && !conn.wants_write() {
            let n = conn
                .writer()
                .write(&chunk[..chunk.len().min(TOTAL - sent)])
                .unwrap();
            sent += n;
        }
        while conn.wants_write() {
            match conn.write_tls(&mut tcp) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match conn.read_tls(&mut tcp) {
            Ok(0) => panic!("the gateway closed the tunnel after {got} of {TOTAL} bytes"),
            Ok(_) => {
                conn.process_new_packets().unwrap();
                loop {
                    match conn.reader().read(&mut plain) {
                        Ok(0) => break,
                        Ok(n) => {
                            assert!(
                                plain[..n]
                                    .iter()
                                    .enumerate()
                                    .all(|(i, b)| *b == ((got + i) % (16 * 1024) % 251) as u8),
                                "echo out of order at {got}"
                            );
                            got += n;
                            moved = true;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        if moved {
            last_move = Instant::now();
        } else {
            assert!(
                last_move.elapsed() < Duration::from_secs(5),
                "the tunnel stalled: {sent} sent, {got} echoed"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(got, TOTAL);
}

/// A full 16 KiB TLS record split across two reads, followed by many small records in the
/// same read: the relay must take the plaintext out before feeding rustls more (it refuses
/// ciphertext once 16 KiB of plaintext wait), not end the direction with a clean close and
/// drop what it had decrypted.
#[test]
fn tls_tunnel_keeps_every_byte_of_mixed_record_sizes() {
    let (_gw, _dir, mut conn, mut tcp) = upgraded_tls_tunnel();
    // One 16 KiB record, then 100 records of 100 bytes, as ciphertext.
    let mut want = Vec::new();
    let mut wire = Vec::new();
    let big: Vec<u8> = (0..16 * 1024).map(|i| (i % 253) as u8).collect();
    conn.writer().write_all(&big).unwrap();
    want.extend_from_slice(&big);
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    let big_len = wire.len();
    for i in 0..100u8 {
        let small = vec![i; 100];
        conn.writer().write_all(&small).unwrap();
        want.extend_from_slice(&small);
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
    }
    // All but the big record's last 3 000 bytes, a pause, then the rest with every small one.
    tcp.write_all(&wire[..big_len - 3000]).unwrap();
    thread::sleep(Duration::from_millis(200));
    tcp.write_all(&wire[big_len - 3000..]).unwrap();
    // The echo of every byte comes back.
    let mut got = Vec::new();
    let mut plain = vec![0u8; 64 * 1024];
    while got.len() < want.len() {
        match conn.read_tls(&mut tcp) {
            Ok(0) => panic!(
                "the tunnel closed after {} of {} bytes",
                got.len(),
                want.len()
            ),
            Ok(_) => {
                conn.process_new_packets().unwrap();
                while let Ok(n) = conn.reader().read(&mut plain) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&plain[..n]);
                }
            }
            Err(e) => panic!("read after {} of {} bytes: {e}", got.len(), want.len()),
        }
    }
    assert!(got == want, "the echo differs from what was sent");
}

/// A gateway with a TLS listener whose `/ws` route goes to a `blocking_echo_upstream`, and a
/// TLS client connection already upgraded through it (the 101 read). Returns what must live
/// as long as the tunnel.
fn upgraded_tls_tunnel() -> (
    Gateway,
    tempfile::TempDir,
    rustls::ClientConnection,
    TcpStream,
) {
    use common::tls::{client_config, Ca, ClientOpts, Key};
    let ca = Ca::new("tunnel test CA");
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server(dir.path(), "front", &["localhost"], Key::EcdsaP256);
    let up = blocking_echo_upstream();
    let gw = Gateway::start(&format!(
        "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\n\
         [timeouts]\ntunnel_idle = \"20s\"\n\n{}\n\
         [[routes]]\nname = \"ws\"\nprefix = \"/ws\"\nproxy = {{ upstream = \"app\" }}\n",
        cert.cert_path.display(),
        cert.key_path.display(),
        upstream_toml("app", &[up])
    ));
    let cfg = client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        ..ClientOpts::default()
    });
    let mut tcp = TcpStream::connect(gw.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    {
        let mut s = rustls::Stream::new(&mut conn, &mut tcp);
        s.write_all(
            b"GET /ws/x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "eof in the 101 head");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    (gw, dir, conn, tcp)
}
