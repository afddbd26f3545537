//! The bundled `config/ringway.toml` serves what README.md says without any other server:
//! `GET /` (welcome JSON), `GET /health`, `/echo/...` and `GET /hello` (a redirect).
//!
//! It listens on fixed ports (8080, admin 9901), unsafe for parallel tests, so the test runs a
//! copy with only those two addresses rewritten to free ports.
mod common;
use common::*;

use std::process::Command;

#[test]
fn bundled_config_serves_welcome_health_echo_and_hello() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringway.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for fixed in ["\"127.0.0.1:8080\"", "\"127.0.0.1:9901\""] {
        assert_eq!(
            text.matches(fixed).count(),
            1,
            "the bundled config no longer has exactly one {fixed}; update this test and README.md"
        );
    }
    let (port, admin) = (free_port(), free_port());
    let text = text
        .replace("\"127.0.0.1:8080\"", &format!("\"127.0.0.1:{port}\""))
        .replace("\"127.0.0.1:9901\"", &format!("\"127.0.0.1:{admin}\""));
    let mut cmd = Command::new(bin());
    cmd.args(["--workers", "1"]);
    let gw = Gateway::start_full(&text, port, admin, cmd);

    let r = get(gw.addr, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["service"], "ringway", "{v}");
    assert!(v["try"].as_array().is_some_and(|a| a.len() == 3), "{v}");

    let r = get(gw.addr, "/health");
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()));

    let r = get(gw.addr, "/hello");
    assert!(
        (300..400).contains(&r.status),
        "/hello is a redirect: {} {}",
        r.status,
        r.text()
    );
    let location = r.header("location").expect("Location").to_string();
    assert_eq!(location, "/echo/hello");
    // Following it lands on the echo route.
    let r = get(gw.addr, &location);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("/echo/hello"), "{}", r.text());

    // README: `curl -s localhost:8080/echo/hi?x=1 -d 'some body'`.
    let r = request(gw.addr, "POST", "/echo/hi?x=1", &[], b"some body");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "some body", "{}", r.text());

    // The admin API is on the rewritten address.
    let r = get(gw.admin, "/health");
    assert_eq!(r.status, 200, "{}", r.text());
}
