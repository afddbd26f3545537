//! Retries to an HTTP/2 upstream (`protocol = "http2"`): the route's policy applies as over
//! HTTP/1.1 when the whole request went out with its head: a 503 or a reset stream is
//! retried (the retried response's stream is reset, its body never forwarded), the attempts
//! cap holds, and the upstream sees `x-ringway-attempts`.

mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// (path, x-ringway-attempts) of every request the upstream got.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An h2c upstream: `/flaky` answers 503 to its first two requests then 200, `/reset` resets
/// every stream, anything else answers 503. It records each request's path and attempt.
fn h2_upstream(rt: &tokio::runtime::Runtime) -> (SocketAddr, Seen) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = ::h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let path = req.uri().path().to_string();
                    let n = req
                        .headers()
                        .get("x-ringway-attempts")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    let earlier = {
                        let mut seen = s.lock().unwrap();
                        seen.push((path.clone(), n));
                        seen.iter().filter(|(p, _)| *p == path).count() - 1
                    };
                    if path == "/reset" {
                        respond.send_reset(::h2::Reason::INTERNAL_ERROR);
                        continue;
                    }
                    let status = if path == "/flaky" && earlier >= 2 {
                        200
                    } else {
                        503
                    };
                    let resp = http::Response::builder().status(status).body(()).unwrap();
                    if let Ok(mut send) = respond.send_response(resp, false) {
                        let _ = send.send_data(Bytes::from(format!("{status} from h2")), true);
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn config(addr: SocketAddr) -> String {
    format!(
        "[upstreams.app]\ntargets = [{{ address = \"{addr}\" }}]\nprotocol = \"http2\"\n\n\
         [[routes]]\nname = \"app\"\nprefix = \"/\"\n[routes.proxy]\nupstream = \"app\"\n\
         [routes.proxy.retry]\nattempts = 3\non = [\"reset\", \"503\"]\nbackoff_base = \"1ms\"\n"
    )
}

#[test]
fn an_http2_upstream_is_retried_by_the_routes_policy() {
    let rt = common::grpc::runtime();
    let (addr, seen) = h2_upstream(&rt);
    let gw = Gateway::start_workers(&config(addr), 1);
    let r = get(gw.addr, "/flaky");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "200 from h2");
    let attempts = |p: &str| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, n)| n.clone())
            .collect()
    };
    assert_eq!(attempts("/flaky"), ["1", "2", "3"]);
    // Every attempt fails: the cap holds and the last response goes out as it is.
    let r = get(gw.addr, "/always");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "503 from h2");
    assert_eq!(attempts("/always"), ["1", "2", "3"]);
    // A reset stream is retried, then the gateway's own 502.
    let r = get(gw.addr, "/reset");
    assert_eq!(r.status, 502);
    assert_eq!(attempts("/reset").len(), 3);
    // POST is not retried on this route (idempotent methods only).
    let r = request(gw.addr, "POST", "/post", &[], b"x=1");
    assert_eq!(r.status, 503);
    assert_eq!(attempts("/post"), ["1"]);
    // And the connection is still good for more.
    assert_eq!(get(gw.addr, "/flaky").status, 200);
}
