//! HTTP/2 end to end: h2c (prior knowledge) and h2 over TLS (ALPN) through the same routes,
//! policies and upstreams as HTTP/1.1.
mod common;
use common::h2::*;
use common::*;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The harness's own HTTP/2 clients, checked against the h2 crate's server (no gateway).

/// A local h2 server: answers `/status/<n>` with status n, anything else 200; the body says
/// how many request body bytes arrived and which request trailers; it sends a trailer back.
fn local_h2_server() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = ::h2::server::handshake(s).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(local_answer(req, respond));
                    }
                });
            }
        });
    });
    addr
}

async fn local_answer(
    req: http::Request<::h2::RecvStream>,
    mut respond: ::h2::server::SendResponse<bytes::Bytes>,
) {
    let status: u16 = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut body = req.into_body();
    let mut n = 0;
    while let Some(Ok(c)) = body.data().await {
        let _ = body.flow_control().release_capacity(c.len());
        n += c.len();
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let text = format!("{n} {:?}", trailers.get("x-t"));
    let resp = http::Response::builder().status(status).body(()).unwrap();
    let Ok(mut tx) = respond.send_response(resp, false) else {
        return;
    };
    let _ = tx.send_data(text.into(), false);
    let mut t = http::HeaderMap::new();
    t.insert("x-done", "yes".parse().unwrap());
    let _ = tx.send_trailers(t);
}

#[test]
fn harness_hpack_integers_and_huffman_digits_match_rfc7541() {
    // RFC 7541 C.1.1 and C.1.2: 10 and 1337 with a 5-bit prefix.
    assert_eq!(hpack::int(5, 0, 10), vec![0x0a]);
    assert_eq!(hpack::int(5, 0, 1337), vec![0x1f, 0x9a, 0x0a]);
    assert_eq!(read_int(&[0x1f, 0x9a, 0x0a], 5), Some((1337, 3)));
    // C.6.1 ":status: 302" and C.6.2 "307", Huffman coded.
    assert_eq!(huffman_digits(&[0x64, 0x02]), Some(b"302".to_vec()));
    assert_eq!(huffman_digits(&[0x64, 0x0e, 0xff]), Some(b"307".to_vec()));
}

#[test]
fn harness_clients_work_against_the_h2_crate_server() {
    let addr = local_h2_server();
    let mut c = H2Client::h2c(addr).unwrap();
    let r = c
        .send(H2Req::new("POST", "/x").body(&b"hello"[..]).trailer("x-t", "v1"))
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "5 Some(\"v1\")".to_string()));
    assert_eq!(r.trailer("x-done"), Some("yes"));
    let rs = c.concurrent((0..20).map(|i| H2Req::get(&format!("/status/{}", 200 + i))).collect());
    for (i, r) in rs.into_iter().enumerate() {
        assert_eq!(r.unwrap().status, 200 + i as u16);
    }
    let r = c.upload_pattern("POST", "/up", 3 << 20).unwrap();
    assert_eq!(r.text(), format!("{} None", 3 << 20));

    // The raw client reads statuses: static (200), literal Huffman (431), then the same
    // status again from the dynamic table.
    let mut raw = RawH2::connect(addr, &[]);
    for (i, path) in ["/", "/status/431", "/status/431", "/status/404"].iter().enumerate() {
        let id = 1 + 2 * i as u32;
        assert!(raw.request(id, "GET", path, true));
        let (s, ok) = raw.wait_stream_end(id, Duration::from_secs(5));
        assert!(ok, "{s:?}");
    }
    let s = raw.seen();
    let got: Vec<_> = [1, 3, 5, 7].iter().map(|id| s.status_of(*id)).collect();
    assert_eq!(got, vec![Some(200), Some(431), Some(431), Some(404)], "{s:?}");
    // A protocol error (DATA on stream 0) gets a GOAWAY PROTOCOL_ERROR and a close.
    raw.send_frame(kind::DATA, 0, 0, b"x");
    let g = raw.wait_goaway(Duration::from_secs(5)).expect("GOAWAY");
    assert_eq!(g.code, code::PROTOCOL_ERROR);
    assert!(raw.wait_closed(Duration::from_secs(5)));
}
