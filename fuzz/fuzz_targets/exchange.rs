//! The protocol-neutral phases (route → guard → action, errors → responses) on arbitrary
//! requests, through the in-memory wire (`ringway::exchange::memory`): what an HTTP/2 stream
//! will feed them too. Config: local actions (echo, static, redirect) behind CORS, IP, rate
//! limit and transform policies, `[[defaults]]` and path options; no upstream (no sockets).
//! Invariants: no panic; a request that parses gets exactly one response, ended, with a status
//! in 100..=599; an error status comes with a problem+json body naming the same status.
#![no_main]

use std::cell::RefCell;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringway::config::compile;
use ringway::core::Core;
use ringway::exchange::memory;
use ringway::shared::Shared;

const CONFIG: &str = r#"
version = 1
[[listeners]]
name = "public"
address = "127.0.0.1:0"

[paths]
merge_slashes = true
escaped_slashes = "reject"

[policies.web]
cors = { origins = ["https://app.example.com", "https://*.example.com"], methods = ["GET", "PUT"],
         headers = ["content-type"], credentials = true, max_age = "10m" }
[policies.office]
ip = { allow = ["10.0.0.0/8", "192.0.2.0/24"], deny = ["192.0.2.9/32"] }
[policies.limit]
rate_limit = { key = "ip", max_keys = 1000, limits = [{ requests = 1000, per = "1s", burst = 1000 }] }
[policies.shape]
transform = { request_headers = { set = { "x-caller" = "${client_ip}" }, remove = ["cookie"] },
              query = { add = { "source" = "gw" }, remove = ["debug"] } }

[[defaults]]
prefix = "/api"
policies = ["limit"]

[[routes]]
name = "echo"
prefix = "/api/echo"
max_body_bytes = 64
policies = ["office", "shape"]
echo = {}

[[routes]]
name = "item"
path = "/api/items/{id}"
methods = ["GET", "PUT"]
policies = ["web"]
echo = {}

[[routes]]
name = "hello"
path = "/hello"
methods = ["GET", "HEAD"]
[routes.static]
status = 200
headers = { "content-type" = "text/plain" }
body = "hi\n"

[[routes]]
name = "empty"
path = "/empty"
static = { status = 204 }

[[routes]]
name = "moved"
prefix = "/old"
redirect = { status = 308, location = "https://new.example.com/", append_path = true }
"#;

struct World {
    core: Core,
    rt: monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new({
        let file = Path::new("fuzz.toml");
        let cfg = compile::parse(CONFIG, file)
            .and_then(|raw| compile::compile(raw, CONFIG, file, 1))
            .unwrap_or_else(|e| panic!("fuzz config: {}", e[0]));
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("a runtime");
        World { core: Core::new(0, Shared::new(cfg, 1, Default::default())), rt }
    });
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        let w = &mut *w.borrow_mut();
        let Some(ran) = w.rt.block_on(memory::run(&w.core, data)) else {
            return;
        };
        let m = &ran.wire;
        assert_eq!(m.starts, 1, "exactly one response per exchange");
        assert!(m.ended, "the response was ended");
        assert!((100..=599).contains(&m.status), "status {}", m.status);
        if m.status >= 400 && m.fields.contains("application/problem+json") {
            let body = String::from_utf8_lossy(&m.sent);
            if !body.is_empty() {
                let want = format!("\"status\":{}", m.status);
                assert!(
                    body.contains(&want),
                    "problem body for {}: {body}",
                    m.status
                );
            }
        }
    });
});
