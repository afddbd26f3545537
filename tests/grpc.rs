//! gRPC through the gateway: an HTTP/2 (h2c) client, ringway, and a tonic echo service as an
//! HTTP/2 upstream (`protocol = "http2"`). Calls of every shape, the upstream's own statuses
//! in trailers, gateway errors as gRPC statuses, and the client's deadline.

mod common;
use common::grpc::{self, req, GrpcUpstream};
use common::*;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tonic::Code;

/// Starts ringway with a plain listener that also takes h2c, and `body`.
fn start_h2c(body: &str, env: &[(&str, &str)]) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "[[listeners]]\nname = \"test\"\naddress = \"127.0.0.1:{port}\"\nh2c = true\n\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\n\n{body}\n"
    );
    let mut cmd = Command::new(bin());
    cmd.arg("--workers").arg("2").envs(env.iter().copied());
    Gateway::start_full(&text, port, admin, cmd)
}

fn h2_upstream(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\ntargets = [{{ address = \"{addr}\" }}]\nprotocol = \"http2\"\n{extra}\n"
    )
}

fn route(policies: &str) -> String {
    format!(
        "[[routes]]\nname = \"echo\"\nprefix = \"/echo.Echo/\"\npolicies = [{policies}]\n\
         proxy = {{ upstream = \"echo\" }}\n"
    )
}

#[test]
fn calls_of_every_shape_pass_through_with_their_trailers() {
    let rt = grpc::runtime();
    let up = GrpcUpstream::start(&rt);
    let gw = start_h2c(
        &format!("{}\n{}", h2_upstream("echo", up.addr, ""), route("")),
        &[],
    );
    rt.block_on(async {
        let r = grpc::unary(gw.addr, req("hello"), &[], None).await.unwrap();
        let reply = r.into_inner();
        assert_eq!(reply.message, "hello");
        assert_eq!(
            reply.forwarded_for, "127.0.0.1",
            "the gateway adds X-Forwarded-For"
        );
        assert_eq!(reply.te, "trailers", "gRPC upstreams need te: trailers");

        // The upstream's own status and message travel in its trailers.
        let e = grpc::unary(gw.addr, req("notfound"), &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(e.message(), "no such echo: caf\u{e9}");

        let mut m = req("part");
        m.count = 5;
        let parts = grpc::server_stream(gw.addr, m).await.unwrap();
        assert_eq!(parts, ["part-0", "part-1", "part-2", "part-3", "part-4"]);

        let joined = grpc::client_stream(gw.addr, &["a", "b", "c"])
            .await
            .unwrap();
        assert_eq!(joined, "a,b,c");

        // Each message is sent only after the previous echo came back: this completes only if
        // the request and the response stream at the same time.
        let bidi = grpc::bidi_lockstep(gw.addr, &["x", "y", "z"]);
        let echoes = tokio::time::timeout(Duration::from_secs(5), bidi)
            .await
            .expect("bidirectional stream stalled")
            .unwrap();
        assert_eq!(echoes, ["echo:x", "echo:y", "echo:z"]);
    });
    assert!(
        up.connections() <= 2,
        "{} upstream connections",
        up.connections()
    );
}

#[test]
fn gateway_errors_reach_grpc_clients_as_grpc_statuses() {
    let rt = grpc::runtime();
    let up = GrpcUpstream::start(&rt);
    let dead: SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "").unwrap();
    let body = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n\
         [policies.key]\napi_key = {{ headers = [\"x-api-key\"] }}\n\n\
         [policies.limit]\nrate_limit = {{ key = \"ip\", limits = [{{ requests = 1, per = \"1h\" }}] }}\n\n\
         {}\n{}\n\
         [[routes]]\nname = \"keyed\"\nprefix = \"/keyed.Echo/\"\npolicies = [\"key\"]\n\
         proxy = {{ upstream = \"echo\" }}\n\n\
         [[routes]]\nname = \"limited\"\nprefix = \"/echo.Echo/\"\npolicies = [\"limit\"]\n\
         proxy = {{ upstream = \"echo\" }}\n\n\
         [[routes]]\nname = \"down\"\nprefix = \"/down.Echo/\"\nproxy = {{ upstream = \"down\" }}\n",
        keys.display(),
        h2_upstream("echo", up.addr, ""),
        h2_upstream("down", dead, "backoff = \"30s\""),
    );
    let key = create_key(dir.path(), &keys);
    let gw = start_h2c(&body, &[("RINGWAY_KEY_SECRET", SECRET)]);
    let call = |path: &'static str, meta: &'static [(&'static str, &'static str)]| {
        rt.block_on(grpc_call(gw.addr, path, meta))
    };
    // No live target: 502 then (backed off) 503, both UNAVAILABLE.
    for _ in 0..2 {
        let e = call("/down.Echo/Unary", &[]).unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    let e = call("/keyed.Echo/Unary", &[]).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(!e.message().is_empty(), "a grpc-message says why");
    let e = call(
        "/keyed.Echo/Unary",
        &[("x-api-key", "rwk_wrong_wrong_wrong")],
    )
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let key: &'static str = Box::leak(key.into_boxed_str());
    let ok = rt.block_on(grpc_call(
        gw.addr,
        "/keyed.Echo/Unary",
        &[("x-api-key", key)],
    ));
    assert_eq!(
        ok.unwrap().message,
        "hi",
        "a valid key in the metadata passes"
    );
    let e = call("/nowhere.Echo/Unary", &[]).unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    // The first call passes the limit, the second is refused.
    call("/echo.Echo/Unary", &[]).unwrap();
    let e = call("/echo.Echo/Unary", &[]).unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // gRPC-Web over HTTP/1.1 gets its own content type back (its clients check it), with the
    // status in the head.
    for (sent, answered) in [
        ("application/grpc-web+proto", "application/grpc-web"),
        ("application/grpc-web-text", "application/grpc-web-text"),
        ("application/grpc", "application/grpc"),
    ] {
        let req = format!(
            "POST /down.Echo/Unary HTTP/1.1\r\nHost: x\r\nContent-Type: {sent}\r\n\
             X-Grpc-Web: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"
        );
        let text = String::from_utf8_lossy(&raw(gw.addr, req.as_bytes())).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{sent}: {text}");
        assert!(
            text.contains(&format!("content-type: {answered}\r\n")),
            "{sent}: {text}"
        );
        assert!(text.contains("grpc-status: 14\r\n"), "{sent}: {text}");
    }
}

const SECRET: &str = "an-hmac-secret-of-32-bytes-or-so";

/// Creates an API key with the `ringway keys` CLI into the keys file `keys`.
fn create_key(dir: &std::path::Path, keys: &std::path::Path) -> String {
    let cli = dir.join("cli.toml");
    std::fs::write(
        &cli,
        format!(
            "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n",
            keys.display()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["keys", "create", "--consumer", "grpc-client", "--config"])
        .arg(&cli)
        .env("RINGWAY_KEY_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A unary echo call to any path (routes other than the echo service's own).
async fn grpc_call(
    addr: SocketAddr,
    path: &'static str,
    meta: &[(&'static str, &str)],
) -> Result<grpc::EchoReply, tonic::Status> {
    let mut c = grpc::client(addr).await;
    c.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut r = tonic::Request::new(req("hi"));
    for (k, v) in meta {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<grpc::EchoRequest, grpc::EchoReply>::default();
    let p = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    c.unary(r, p, codec).await.map(|r| r.into_inner())
}

#[test]
fn the_client_deadline_caps_the_upstream_wait() {
    let rt = grpc::runtime();
    // An upstream that takes 2 s whatever the deadline says (tonic's server would give up at
    // the deadline itself and race the gateway).
    let sleepy = grpc::start_sleepy(&rt, Duration::from_secs(2));
    let up = GrpcUpstream::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let body = format!(
        "[access_log]\nenabled = true\npath = \"{}\"\n\n{}\n{}\n{}\n\
         [[routes]]\nname = \"sleepy\"\nprefix = \"/sleepy.Echo/\"\nproxy = {{ upstream = \"sleepy\" }}\n",
        log.display(),
        h2_upstream("echo", up.addr, "response_timeout = \"10s\""),
        h2_upstream("sleepy", sleepy, "response_timeout = \"10s\""),
        route("")
    );
    let gw = start_h2c(&body, &[]);
    let slow = req("slow");
    // A raw HTTP/2 call: tonic's client would also enforce `grpc-timeout` itself and race
    // the gateway.
    let started = Instant::now();
    let fields = [("grpc-timeout", "200m")];
    let r = rt
        .block_on(grpc::raw_call(
            gw.addr,
            "/sleepy.Echo/Unary",
            &fields,
            &slow,
        ))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 200, "gRPC errors ride on HTTP 200");
    assert_eq!(r.grpc_status().as_deref(), Some("4"), "DEADLINE_EXCEEDED");
    assert!(r.trailers.is_empty() && r.body.is_empty(), "Trailers-Only");
    assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
    assert!(r.headers.contains_key("grpc-message"));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("504") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("504"), "the gateway logs its own 504: {text}");

    // Abuse: a malformed deadline is ignored (the upstream's timeout applies).
    let r = rt.block_on(async {
        let mut c = grpc::client(gw.addr).await;
        c.ready().await.unwrap();
        let mut r = tonic::Request::new(req("fine"));
        r.metadata_mut()
            .insert("grpc-timeout", "123456789S".parse().unwrap());
        let codec = tonic_prost::ProstCodec::<grpc::EchoRequest, grpc::EchoReply>::default();
        let p = tonic::codegen::http::uri::PathAndQuery::from_static("/echo.Echo/Unary");
        c.unary(r, p, codec).await
    });
    assert_eq!(r.unwrap().into_inner().message, "fine");
}

#[test]
fn grpc_over_a_tls_listener_with_alpn_h2() {
    use common::tls::{client_config, Ca, ClientOpts, Key};
    let rt = grpc::runtime();
    let up = GrpcUpstream::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("grpc test ca");
    let leaf = ca.server(dir.path(), "gw", &["localhost"], Key::EcdsaP256);
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        leaf.cert_path.display(),
        leaf.key_path.display()
    );
    let gw = Gateway::start(&format!(
        "{tls}\n{}\n{}",
        h2_upstream("echo", up.addr, ""),
        route("")
    ));
    let cfg = client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"h2"],
        ..Default::default()
    });
    let call = |m: &'static str| {
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            grpc::raw_call_on(tls, "localhost", "/echo.Echo/Unary", &[], &req(m))
                .await
                .unwrap()
        })
    };
    let ok = call("over tls");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.reply().unwrap().message, "over tls");
    assert_eq!(ok.trailers.get("grpc-status").unwrap(), "0");
    let nf = call("notfound");
    assert_eq!(
        nf.grpc_status().as_deref(),
        Some("5"),
        "NOT_FOUND from the upstream"
    );
    assert_eq!(
        nf.status_field("grpc-message").as_deref(),
        Some("no%20such%20echo:%20caf%C3%A9"),
        "the upstream's percent-encoded message arrives as sent"
    );
}

/// An HS256 JWT for `claims`, signed with `secret`.
fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    use base64::Engine;
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let head = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{head}.{}", enc(claims.to_string().as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", enc(sig.as_ref()))
}

#[test]
fn jwt_bearer_tokens_in_grpc_metadata() {
    let rt = grpc::runtime();
    let up = GrpcUpstream::start(&rt);
    let secret = "a-jwt-secret-of-at-least-32-bytes-long";
    let body = format!(
        "[policies.jwt]\njwt = {{ secret = \"{secret}\", algorithms = [\"HS256\"] }}\n\n{}\n{}",
        h2_upstream("echo", up.addr, ""),
        route("\"jwt\"")
    );
    let gw = start_h2c(&body, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = format!(
        "Bearer {}",
        hs256(secret, &serde_json::json!({"sub": "g", "exp": now + 300}))
    );
    let expired = format!(
        "Bearer {}",
        hs256(secret, &serde_json::json!({"sub": "g", "exp": now - 300}))
    );
    let forged = format!(
        "Bearer {}",
        hs256(
            "another-secret-of-at-least-32-bytes-long",
            &serde_json::json!({"sub": "g", "exp": now + 300})
        )
    );
    rt.block_on(async {
        let r = grpc::unary(
            gw.addr,
            req("with token"),
            &[("authorization", &good)],
            None,
        )
        .await;
        assert_eq!(r.unwrap().into_inner().message, "with token");
        for bad in [None, Some(&expired), Some(&forged)] {
            let meta: Vec<(&'static str, &str)> = bad
                .map(|b| ("authorization", b.as_str()))
                .into_iter()
                .collect();
            let e = grpc::unary(gw.addr, req("x"), &meta, None)
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}: {e:?}");
        }
    });
}

#[test]
fn large_server_streams_flow_through_without_buffering_whole() {
    let rt = grpc::runtime();
    let up = GrpcUpstream::start(&rt);
    let gw = start_h2c(
        &format!("{}\n{}", h2_upstream("echo", up.addr, ""), route("")),
        &[],
    );
    let pid = gw.pid();
    let before = rss_kib(pid);
    // 4000 replies of ~16 KiB: about 64 MiB through windows of 256 KiB.
    let mut m = req(&"z".repeat(16 * 1024));
    m.count = 4000;
    let got = rt.block_on(grpc::server_stream(gw.addr, m)).unwrap();
    assert_eq!(got.len(), 4000);
    assert!(got.iter().all(|s| s.len() > 16 * 1024));
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 32 * 1024, "the gateway grew by {grown} KiB");
}
