//! Pipelined requests: responses in request order, slow upstreams do not reorder, and a
//! rejected request ends the connection with nothing after it processed.
mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(up: &Upstream) -> String {
    format!(
        r#"{}
[[routes]]
name = "p"
prefix = "/p"
proxy = {{ upstream = "be" }}

[[routes]]
name = "s"
path = "/s"
static = {{ status = 200, body = "static-body" }}

[[routes]]
name = "e"
prefix = "/e"
echo = {{}}

[[routes]]
name = "small"
prefix = "/small"
max_body_bytes = 10
proxy = {{ upstream = "be" }}
"#,
        upstream_toml("be", &[up.addr])
    )
}

/// An upstream that echoes and sleeps 300 ms first when the target contains "slow".
fn slowish_upstream() -> Upstream {
    Upstream::start(Arc::new(|req, s| {
        use std::io::Write;
        if req.target.contains("slow") {
            std::thread::sleep(Duration::from_millis(300));
        }
        let body = echo_body(req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body);
        Reply::KeepAlive
    }))
}

#[test]
fn mixed_pipeline_in_one_write_is_answered_in_order() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("GET", "/p/first?n=1", &[], b""));
    batch.extend(build_request("GET", "/s", &[], b""));
    batch.extend(build_request("POST", "/e/third", &[], b"third-body"));
    batch.extend(build_request("POST", "/p/fourth", &[], b"fourth-body"));
    batch.extend(build_request("HEAD", "/p/fifth", &[], b""));
    batch.extend(build_request(
        "PUT",
        "/p/sixth",
        &[("Transfer-Encoding", "chunked")],
        b"3\r\nsix\r\n0\r\n\r\n",
    ));
    batch.extend(build_request("GET", "/nope", &[], b""));
    batch.extend(build_request("GET", "/s", &[], b""));
    c.send(&batch);

    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["target"], "/p/first?n=1");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "static-body");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["path"], "/e/third");
    assert_eq!(r.json()["body"], "third-body");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/fourth");
    assert_eq!(r.json()["body"], "fourth-body");
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 200, "HEAD");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/sixth");
    assert_eq!(r.json()["body"], "six");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 404, "a 404 does not end the pipeline");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "static-body");

    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        ["/p/first?n=1", "/p/fourth", "/p/fifth", "/p/sixth"]
    );
    // Still usable afterwards.
    let r = c.request("GET", "/s", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn slow_first_request_is_still_answered_first() {
    let up = slowish_upstream();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("GET", "/p/slow", &[], b""));
    batch.extend(build_request("GET", "/s", &[], b""));
    batch.extend(build_request("GET", "/p/fast", &[], b""));
    batch.extend(build_request("POST", "/e", &[], b"x"));
    let start = Instant::now();
    c.send(&batch);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/slow");
    assert!(start.elapsed() >= Duration::from_millis(250));
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "static-body");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/fast");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["body"], "x");
}

#[test]
fn pipeline_split_across_writes_mid_request() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = build_request("POST", "/p/a", &[], b"0123456789");
    let first_len = batch.len();
    batch.extend(build_request("GET", "/p/b", &[], b""));
    // Cut inside the first body and inside the second head.
    c.send(&batch[..first_len - 5]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&batch[first_len - 5..first_len + 10]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&batch[first_len + 10..]);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["body"], "0123456789");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/b");
}

/// Sends `batch` and returns the statuses of all responses until the gateway closes.
fn statuses_until_close(c: &mut Conn) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..10 {
        match c.read_response(false) {
            Ok(r) => out.push(r.status),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn bad_request_mid_pipeline_ends_the_connection() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("GET", "/p/1", &[], b""));
    batch.extend_from_slice(b"GET /p/2 HTTP/1.1\r\nHost : x\r\n\r\n");
    batch.extend(build_request("GET", "/p/3", &[], b""));
    batch.extend(build_request("GET", "/s", &[], b""));
    c.send(&batch);
    let st = statuses_until_close(&mut c);
    assert_eq!(st, [200, 400]);
    assert!(conn_ended(&mut c, Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(100));
    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        ["/p/1"],
        "nothing after the bad request reaches the upstream"
    );
}

#[test]
fn bad_chunked_body_mid_pipeline_ends_the_connection() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("GET", "/s", &[], b""));
    // A bad chunk size on an echo route (fully read by the gateway).
    batch.extend(build_request(
        "POST",
        "/e",
        &[("Transfer-Encoding", "chunked")],
        b"zz\r\nhello\r\n0\r\n\r\n",
    ));
    batch.extend(build_request("GET", "/p/after", &[], b""));
    c.send(&batch);
    let st = statuses_until_close(&mut c);
    assert_eq!(st, [200, 400]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.count(), 0);
}

#[test]
fn too_large_body_mid_pipeline_ends_the_connection() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("POST", "/small", &[], b"fits"));
    batch.extend(build_request(
        "POST",
        "/small",
        &[],
        b"far too long for ten",
    ));
    batch.extend(build_request("GET", "/p/after", &[], b""));
    c.send(&batch);
    let st = statuses_until_close(&mut c);
    assert_eq!(st, [200, 413]);
    std::thread::sleep(Duration::from_millis(100));
    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/small"]);
}

#[test]
fn connection_close_mid_pipeline_stops_processing() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    batch.extend(build_request("GET", "/p/1", &[], b""));
    batch.extend(build_request(
        "GET",
        "/p/2",
        &[("Connection", "close")],
        b"",
    ));
    batch.extend(build_request("GET", "/p/3", &[], b""));
    c.send(&batch);
    let r1 = c.read_response(false).unwrap();
    assert_eq!(r1.status, 200);
    let r2 = c.read_response(false).unwrap();
    assert_eq!(r2.status, 200);
    assert_eq!(r2.header("connection"), Some("close"));
    assert!(conn_ended(&mut c, Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(100));
    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/p/1", "/p/2"]);
}

#[test]
fn error_responses_skip_a_buffered_body_and_keep_the_pipeline() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"ro\"\npath = \"/ro\"\nmethods = [\"GET\"]\nstatic = {{ body = \"ro\" }}\n\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"static-body\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    // The bodies look like requests: if they were not skipped they would be answered too.
    let fake = build_request("GET", "/s", &[], b"");
    batch.extend(build_request("POST", "/ro", &[], &fake));
    batch.extend(build_request("POST", "/missing", &[], &fake));
    batch.extend(build_request("GET", "/ro", &[], b""));
    c.send(&batch);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 405);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 404);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ro");
    // Nothing else follows.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.read_response(false).is_err(),
        "an extra response was sent"
    );
}

#[test]
fn large_bodies_followed_by_pipelined_requests() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut chunked = Vec::new();
    for piece in big.chunks(70_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut batch = Vec::new();
    batch.extend(build_request("POST", "/p/big", &[], &big));
    batch.extend(build_request("GET", "/p/after-big", &[], b""));
    batch.extend(build_request(
        "POST",
        "/p/big-chunked",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    ));
    batch.extend(build_request("GET", "/s", &[], b""));
    // Write from a thread: the batch is larger than the socket buffers, and responses come back
    // while we are still writing.
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        w.write_all(&batch).unwrap();
    });
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/big");
    assert_eq!(r.json()["body_len"], 200_000);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/after-big");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.json()["target"], "/p/big-chunked");
    assert_eq!(r.json()["body_len"], 200_000);
    let r = c.read_response(false).unwrap();
    assert_eq!(r.text(), "static-body");
    writer.join().unwrap();
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body, big);
    assert_eq!(reqs[2].body, big);
}

/// Like `Upstream::echo`, but writes head and body in one write: with two small writes,
/// Nagle on the upstream socket plus delayed ACKs cost ~40 ms per response.
fn echo_one_write() -> Upstream {
    Upstream::start(Arc::new(|req, s| {
        use std::io::Write;
        let body = echo_body(req);
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        let _ = s.write_all(&out);
        Reply::KeepAlive
    }))
}

#[test]
fn hundreds_of_pipelined_requests_in_one_write() {
    let up = echo_one_write();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    let mut batch = Vec::new();
    for i in 0..600 {
        if i % 3 == 0 {
            batch.extend(build_request("GET", &format!("/p/{i}"), &[], b""));
        } else {
            batch.extend(build_request("GET", "/s", &[("X-N", &i.to_string())], b""));
        }
    }
    assert!(batch.len() > 16 * 1024, "more than one head buffer's worth");
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        w.write_all(&batch).unwrap();
    });
    for i in 0..600 {
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(r.status, 200, "response {i}");
        if i % 3 == 0 {
            assert_eq!(r.json()["target"], format!("/p/{i}"));
        } else {
            assert_eq!(r.text(), "static-body", "response {i}");
        }
    }
    writer.join().unwrap();
    assert_eq!(up.count(), 200);
}

/// A keep-alive connection that sat idle long enough to give up its read buffer (the idle
/// wait switches to a buffer-less readiness poll after a short grace) still serves requests,
/// including one whose head arrives in pieces after the wake-up.
#[test]
fn idle_keep_alive_connection_serves_after_buffer_release() {
    let gw = Gateway::start(
        "[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"still here\" }\n",
    );
    let mut c = Conn::open(gw.addr);
    for _ in 0..2 {
        let r = c.request("GET", "/s", &[], b"");
        assert_eq!(r.text(), "still here");
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    c.send(b"GET /s HTTP/1.1\r\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.send(b"Host: t\r\n\r\n");
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "still here");
}

/// A parked connection (quiet past the grace, so it holds only its socket and a readiness
/// poll) loses none of the bytes that wake it: two proxied requests and a static one sent in
/// one write are all answered, in order, and the connection stays usable.
#[test]
fn requests_pipelined_into_a_parked_connection_are_all_answered_in_order() {
    let up = Upstream::echo();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
    // Well past the 200 ms grace: the request path has ended and the connection is parked.
    std::thread::sleep(Duration::from_millis(600));
    let mut burst = build_request("GET", "/p/one", &[], b"");
    burst.extend(build_request("POST", "/p/two", &[], b"body-two"));
    burst.extend(build_request("GET", "/s", &[], b""));
    c.send(&burst);
    let r = c.read_response(false).unwrap();
    assert_eq!(
        (r.status, r.json()["target"].clone()),
        (200, "/p/one".into())
    );
    let r = c.read_response(false).unwrap();
    assert_eq!(
        (r.status, r.json()["target"].clone()),
        (200, "/p/two".into())
    );
    assert_eq!(r.json()["body"], "body-two");
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.text()), (200, "static-body".to_string()));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        c.request("GET", "/s", &[], b"").status,
        200,
        "parked again, still serves"
    );
}

/// A client that half-closes (sends FIN) while its connection is parked is seen at once: the
/// gateway closes its side and forgets the connection (the open-connections gauge drops back),
/// long before the keep-alive timeout.
#[test]
fn a_client_half_closing_while_parked_is_closed_and_forgotten() {
    let gw = Gateway::start_workers(
        "[timeouts]\nkeepalive = \"60s\"\n\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"ok\" }\n",
        1,
    );
    let open = |gw: &Gateway| {
        metric(
            &scrape(gw.admin),
            "ringway_downstream_connections_open",
            &[],
        )
        .unwrap_or(-1.0)
    };
    let wait_open = |gw: &Gateway, want: f64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = open(gw);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut c = Conn::open(gw.addr);
    assert_eq!(c.request("GET", "/s", &[], b"").status, 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(wait_open(&gw, 1.0), 1.0, "the parked connection is open");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    // The keep-alive timeout is 60 s, so only noticing the FIN closes it within this bound.
    assert!(
        c.is_closed(Duration::from_secs(10)),
        "the gateway kept it open"
    );
    assert_eq!(wait_open(&gw, 0.0), 0.0, "the connection was not forgotten");
}

/// While the upstream works, the gateway watches the client so a departed one is counted 499.
/// The next pipelined request arriving during that wait is not a departure: both are answered,
/// in order, on the same connection.
#[test]
fn a_request_pipelined_while_the_upstream_works_is_not_taken_for_a_departure() {
    let up = slowish_upstream();
    let gw = Gateway::start(&cfg(&up));
    let mut c = Conn::open(gw.addr);
    c.send(&build_request("GET", "/p/slow", &[], b""));
    // Past the 50 ms after which the client is watched, well before the 300 ms answer.
    std::thread::sleep(Duration::from_millis(150));
    c.send(&build_request("GET", "/p/fast", &[], b""));
    let r = c.read_response(false).unwrap();
    assert_eq!(
        (r.status, r.json()["target"].clone()),
        (200, "/p/slow".into())
    );
    let r = c.read_response(false).unwrap();
    assert_eq!(
        (r.status, r.json()["target"].clone()),
        (200, "/p/fast".into())
    );
    assert_eq!(up.count(), 2);
}
