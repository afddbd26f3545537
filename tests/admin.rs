//! The admin API on its own listener: health, readiness (503 while draining), config and route
//! introspection, POST /reload (errors returned, old routes kept), bearer token.
mod common;
use common::*;

use std::net::SocketAddr;
use std::time::Duration;

fn admin_get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[("Connection", "close")], b"")
}

fn admin_post(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Connection", "close")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(addr, "POST", path, &headers, b"")
}

const V1: &str = "[[routes]]\nname = \"v\"\npath = \"/v\"\nstatic = { body = \"v1\" }\n";
const V2: &str = "[[routes]]\nname = \"v\"\npath = \"/v\"\nstatic = { body = \"v2\" }\n\n\
                  [[routes]]\nname = \"extra\"\nprefix = \"/extra\"\necho = {}\n";

#[test]
fn health_ready_config_and_routes() {
    let gw = Gateway::start(V1);
    let r = admin_get(gw.admin, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "alive");
    // Readiness follows once both workers accept.
    let mut ready = admin_get(gw.admin, "/ready");
    for _ in 0..50 {
        if ready.status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        ready = admin_get(gw.admin, "/ready");
    }
    assert_eq!(ready.status, 200, "{}", ready.text());

    let c = admin_get(gw.admin, "/config").json();
    assert_eq!(c["generation"], 1);
    assert_eq!(c["source"], gw.config_path.display().to_string());
    assert_eq!(c["content_hash"].as_str().map(str::len), Some(16));
    assert!(c["last_reload_error"].is_null());
    assert!(c["loaded_at"].as_u64().unwrap() > 1_700_000_000);

    let routes = admin_get(gw.admin, "/routes").json();
    assert_eq!(routes["routes"][0]["name"], "v");
    assert_eq!(routes["routes"][0]["path"], "= /v");
    assert_eq!(routes["routes"][0]["action"], "static 200");

    // The admin API is not reachable through the public listener.
    assert_eq!(get(gw.addr, "/health").status, 404);
    assert_eq!(admin_get(gw.admin, "/nope").status, 404);
}

#[test]
fn post_reload_applies_or_reports_and_keeps_old_routes() {
    let gw = Gateway::start(V1);
    assert_eq!(get(gw.addr, "/v").text(), "v1");

    gw.write_config(V2);
    let r = admin_post(gw.admin, "/reload", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    assert_eq!(get(gw.addr, "/v").text(), "v2");
    let names: Vec<String> = admin_get(gw.admin, "/routes").json()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["v", "extra"]);

    // A broken file: the error text comes back, the old generation keeps serving.
    gw.write_config("[[routes]]\nname = \"v\"\npath = \"/v\"\nstatic = { bodyy = \"x\" }\n");
    let r = admin_post(gw.admin, "/reload", None);
    assert_eq!(r.status, 400);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("ringway.toml:") && err.contains("bodyy"),
        "{err}"
    );
    assert_eq!(get(gw.addr, "/v").text(), "v2");
    let c = admin_get(gw.admin, "/config").json();
    assert_eq!(c["generation"], 2);
    assert!(c["last_reload_error"].as_str().unwrap().contains("bodyy"));
    // GET is not a reload.
    assert_eq!(admin_get(gw.admin, "/reload").status, 405);
}

#[test]
fn token_protects_mutating_endpoints() {
    let port = free_port();
    let token = "s3cret-admin-token-0123";
    let body = format!("[admin]\naddress = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n\n{V1}");
    let gw = Gateway::start(&body);
    let admin: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(admin_get(admin, "/health").status, 200, "reads stay open");
    assert_eq!(admin_post(admin, "/reload", None).status, 401);
    assert_eq!(
        admin_post(admin, "/reload", Some("wrong-token-wrong-token")).status,
        401
    );
    let r = admin_post(admin, "/reload", Some(token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    drop(gw);
}

#[test]
fn ready_turns_503_while_draining() {
    let up = Upstream::start(std::sync::Arc::new(|_req, s| {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(1200));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        Reply::KeepAlive
    }));
    let mut gw = Gateway::start(&format!(
        "{}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n",
        upstream_toml("be", &[up.addr])
    ));
    let addr = gw.addr;
    let slow = std::thread::spawn(move || get(addr, "/p"));
    std::thread::sleep(Duration::from_millis(300));
    gw.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let r = admin_get(gw.admin, "/ready");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    assert_eq!(slow.join().unwrap().text(), "slow");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn check_rejects_bad_admin_settings() {
    let (code, _, err) = check_config(
        "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[admin]\naddress = \"127.0.0.1:8080\"\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(":4:") && err.contains("admin.address"),
        "{err}"
    );
    let (code, _, err) =
        check_config("[[listeners]]\naddress = \"127.0.0.1:8080\"\n[admin]\ntoken = \"short\"\n");
    assert_eq!(code, 1);
    assert!(err.contains("admin.token"), "{err}");
}
