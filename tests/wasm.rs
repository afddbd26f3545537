//! `wasm` policies (proxy-wasm filters) against the running gateway and a real echo upstream.
//! The filters are written here in WAT and compiled at test time with the `wat` crate (one is
//! handed to the gateway as `.wat` text): a filter that adds a request header, one that denies
//! by a header with its own 403, one that rewrites the path, one that reads its configuration,
//! one that edits response headers, one that reads the body; and abuse: a filter that spins
//! forever (stopped by fuel, the worker keeps serving), one that hands the host out-of-bounds
//! pointers, one whose allocator lies, one that grows memory past `max_memory`, modules that
//! are not valid, too big, or refuse their configuration (config errors naming the file).
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A proxy-wasm module: imports, a memory, a bump allocator reset per context (above a floor
/// that `proxy_on_configure` may raise), a count of open request contexts (`$live`), the ABI
/// marker, then `body`'s exports.
fn filter(body: &str) -> String {
    filter_with_memory(body, 1)
}

fn filter_with_memory(body: &str, pages: u32) -> String {
    let configure = if body.contains("proxy_on_configure") {
        ""
    } else {
        "(func (export \"proxy_on_configure\") (param i32 i32) (result i32) (i32.const 1))"
    };
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
  (global $floor (mut i32) (i32.const 8192))
  (global $heap (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (global $live (mut i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (global.get $floor))
    (if (local.get 1) (then (global.set $live (i32.add (global.get $live) (i32.const 1))))))
  (func (export "proxy_on_delete") (param i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  {configure}
  {body}
)"#
    )
}

/// Compiles `wat` and writes it as `dir/name.wasm`.
fn wasm_file(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let bytes = wat::parse_str(wat).expect("test filter compiles");
    let p = dir.join(format!("{name}.wasm"));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Config for an echo upstream and one route per `(route prefix, policy name, policy table)`.
fn config(up: std::net::SocketAddr, routes: &[(&str, &str, String)]) -> String {
    let mut s = upstream_toml("app", &[up]);
    for (prefix, name, table) in routes {
        s.push_str(&format!(
            "\n[policies.{name}.wasm]\n{table}\n\n[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\n\
             policies = [\"{name}\"]\nproxy = {{ upstream = \"app\" }}\n"
        ));
    }
    s
}

fn module_line(p: &Path) -> String {
    format!("module = \"{}\"", p.display())
}

const ADD_HEADER: &str = r#"
  (data (i32.const 100) "x-wasm")
  (data (i32.const 110) "hello")
  (data (i32.const 120) "adding a header")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; An import the host does not provide is a stub answering Unimplemented (12).
    (if (i32.ne (call $http_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
        (i32.const 12))
      (then unreachable))
    (drop (call $log (i32.const 2) (i32.const 120) (i32.const 15)))
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 5)))
    (i32.const 0))
"#;

const DENY: &str = r#"
  (data (i32.const 100) "x-deny")
  (data (i32.const 110) "denied by filter")
  (data (i32.const 140) "\01\00\00\00\0b\00\00\00\04\00\00\00x-denied-by\00wasm\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then
        (if (i32.eq (i32.load8_u (i32.load (i32.const 1024))) (i32.const 121))
          (then
            (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0)
              (i32.const 110) (i32.const 16) (i32.const 140) (i32.const 29) (i32.const -1)))
            (return (i32.const 1))))))
    (i32.const 0))
"#;

const REWRITE_PATH: &str = r#"
  (data (i32.const 100) ":path")
  (data (i32.const 110) "/rewritten?by=wasm")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 110) (i32.const 18)))
    (i32.const 0))
"#;

/// Spins forever when the request has `x-spin`.
const SPIN: &str = r#"
  (data (i32.const 100) "x-spin")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then (loop $forever (br $forever))))
    (i32.const 0))
"#;

#[test]
fn a_filter_adds_a_request_header_the_upstream_sees() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "add", &filter(ADD_HEADER));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/", "add", module_line(&m))]));
    for i in 0..4 {
        let r = request(
            gw.addr,
            "GET",
            &format!("/a/{i}"),
            &[("X-Wasm", "from-client")],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = up.last();
        assert_eq!(seen.target, format!("/a/{i}"));
        // Added next to the client's own field, as proxy_add_header_map_value does.
        assert_eq!(seen.header_all("x-wasm"), vec!["from-client", "hello"]);
    }
    gw.wait_log("wasm policy add: adding a header", Duration::from_secs(3));
}

#[test]
fn a_filter_denies_by_header_with_its_own_403() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "deny", &filter(DENY));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/", "deny", module_line(&m))]));
    let r = request(gw.addr, "GET", "/x", &[("X-Deny", "yes")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "denied by filter");
    assert_eq!(r.header("x-denied-by"), Some("wasm"));
    assert_eq!(up.count(), 0, "a denied request never reaches the upstream");
    let r = request(gw.addr, "GET", "/x", &[("X-Deny", "no")], b"");
    assert_eq!(r.status, 200);
    let r = request(gw.addr, "GET", "/x", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 2);
}

#[test]
fn a_filter_rewrites_the_path_the_upstream_gets() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "path", &filter(REWRITE_PATH));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/old", "path", module_line(&m))]));
    let r = request(gw.addr, "GET", "/old/thing?q=1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/rewritten?by=wasm");
}

#[test]
fn a_filter_that_spins_is_stopped_by_fuel_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "spin", &filter(SPIN));
    let up = Upstream::echo();
    // One worker: the requests after the runaway one run on the same worker (and module).
    let gw = Gateway::start_workers(&config(up.addr, &[("/", "spin", module_line(&m))]), 1);
    let r = request(gw.addr, "GET", "/ok", &[], b"");
    assert_eq!(r.status, 200);
    for round in 1..=2 {
        let t = Instant::now();
        let r = request(gw.addr, "GET", "/loop", &[("X-Spin", "1")], b"");
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "fuel stops the loop promptly"
        );
        // The instance that trapped is replaced: the next request runs normally.
        let r = request(gw.addr, "GET", "/after", &[], b"");
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(up.last().target, "/after");
        let labels = [("policy", "spin"), ("reason", "fuel")];
        let name = "ringway_wasm_failures_total";
        let s = scrape_until(gw.admin, name, &labels, round as f64);
        assert_eq!(metric(&s, name, &labels), Some(round as f64));
    }
    assert_eq!(up.count(), 3, "the runaway requests never went upstream");
    assert!(gw.logs().contains("wasm policy spin: the filter failed"));
}

#[test]
fn a_filter_reads_its_configuration_and_a_refusing_one_is_a_config_error() {
    let body = r#"
  (data (i32.const 100) "x-config")
  (global $cfg_ptr (mut i32) (i32.const 0))
  (global $cfg_len (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (if (i32.eqz (local.get 1)) (then (return (i32.const 0))))
    (drop (call $buf (i32.const 7) (i32.const 0) (local.get 1) (i32.const 1024) (i32.const 1028)))
    (global.set $cfg_ptr (i32.load (i32.const 1024)))
    (global.set $cfg_len (i32.load (i32.const 1028)))
    (global.set $floor (global.get $heap))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const 8) (global.get $cfg_ptr) (global.get $cfg_len)))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    // Handed over as WAT text: the gateway compiles `.wat` itself.
    let m = dir.path().join("config.wat");
    std::fs::write(&m, filter(body)).unwrap();
    let up = Upstream::echo();
    let table = format!("{}\nconfiguration = \"tenant=blue\"", module_line(&m));
    let gw = Gateway::start(&config(up.addr, &[("/", "cfg", table)]));
    for _ in 0..3 {
        let r = request(gw.addr, "GET", "/c", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(up.last().header("x-config"), Some("tenant=blue"));
    }
    // A reload compiles the module again: every worker's next instance has the new one.
    let green = format!("{}\nconfiguration = \"tenant=green\"", module_line(&m));
    assert!(gw.reload(&config(up.addr, &[("/", "cfg", green)])));
    for _ in 0..4 {
        let r = request(gw.addr, "GET", "/c", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(up.last().header("x-config"), Some("tenant=green"));
    }
    // Without a configuration the filter refuses to configure: `ringway check` says so.
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n{}",
        config(up.addr, &[("/", "cfg", module_line(&m))])
    );
    let (code, _, err) = check_config(&text);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("policies.cfg.wasm.module"), "{err}");
    assert!(
        err.contains("config.wat") && err.contains("refused the configuration"),
        "{err}"
    );
}

#[test]
fn a_filter_edits_response_headers() {
    let body = r#"
  (data (i32.const 100) "x-wasm-response")
  (data (i32.const 120) "seen")
  (data (i32.const 130) "x-upstream")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 100) (i32.const 15) (i32.const 120) (i32.const 4)))
    (drop (call $remove (i32.const 2) (i32.const 130) (i32.const 10)))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "resp", &filter(body));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(
        up.addr,
        &[
            ("/r", "resp", module_line(&m)),
            ("/plain", "add", {
                let p = wasm_file(dir.path(), "add", &filter(ADD_HEADER));
                module_line(&p)
            }),
        ],
    ));
    let mut c = Conn::open(gw.addr);
    for _ in 0..3 {
        let r = c.request("GET", "/r/x", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-wasm-response"), Some("seen"));
        assert_eq!(r.header("x-upstream"), None, "the filter removed it");
        assert!(
            r.text().contains("\"target\":\"/r/x\""),
            "the body is untouched: {}",
            r.text()
        );
    }
    // A route whose filter has no response hook: the upstream's fields as they were.
    let r = request(gw.addr, "GET", "/plain", &[], b"");
    assert_eq!(r.header("x-upstream"), Some("echo"));
    assert_eq!(r.header("x-wasm-response"), None);
}

#[test]
fn a_filter_reads_the_request_body() {
    let body = r#"
  (data (i32.const 100) "x-body-head")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (drop (call $buf (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 1024) (i32.const 1028)))
    ;; A body starting with "e" (evil) is refused with the filter's own 422.
    (if (i32.eq (i32.load8_u (i32.load (i32.const 1024))) (i32.const 101))
      (then
        (drop (call $local (i32.const 422) (i32.const 0) (i32.const 0)
          (i32.const 120) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const 11)
      (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))
    (i32.const 0))
  (data (i32.const 120) "bad body")
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "body", &filter(body));
    let up = Upstream::echo();
    let table = format!("{}\nbody_bytes = 64", module_line(&m));
    let gw = Gateway::start(&config(up.addr, &[("/", "body", table)]));
    let r = request(gw.addr, "POST", "/b", &[], b"hello world");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-body-head"), Some("hello"));
    assert_eq!(
        seen.body, b"hello world",
        "the body still goes upstream whole"
    );
    let r = request(gw.addr, "POST", "/b", &[], b"evil payload");
    assert_eq!(r.status, 422);
    assert_eq!(r.text(), "bad body");
    assert_eq!(up.count(), 1, "the refused body never went upstream");
    // A request without a body gets no body callback.
    let r = request(gw.addr, "GET", "/b", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-body-head"), None);
}

#[test]
fn abuse_out_of_bounds_pointers_and_lying_allocators_get_500_not_a_crash() {
    let bad_len = r#"
  (data (i32.const 100) "x-a")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 100) (i32.const -1) (i32.const 100) (i32.const 3)))
    (i32.const 0))
"#;
    let bad_ptr = r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const -16) (i32.const 64)))
    (i32.const 0))
"#;
    // An allocator answering an address past the end of memory.
    let lying = filter(
        r#"
  (data (i32.const 100) ":path")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 1024) (i32.const 1028)))
    (i32.const 0))
"#,
    )
    .replace(
        "(local.set $p (global.get $heap))",
        "(local.set $p (i32.const 0x7ffffff0))",
    );
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::echo();
    let routes = [
        (
            "/len",
            "len",
            module_line(&wasm_file(dir.path(), "len", &filter(bad_len))),
        ),
        (
            "/ptr",
            "ptr",
            module_line(&wasm_file(dir.path(), "ptr", &filter(bad_ptr))),
        ),
        (
            "/alloc",
            "alloc",
            module_line(&wasm_file(dir.path(), "alloc", &lying)),
        ),
    ];
    let gw = Gateway::start_workers(&config(up.addr, &routes), 1);
    for _ in 0..2 {
        for path in ["/len", "/ptr", "/alloc"] {
            let r = request(gw.addr, "GET", path, &[], b"");
            assert_eq!(r.status, 500, "{path}: {}", r.text());
        }
    }
    assert_eq!(up.count(), 0);
    let samples = scrape(gw.admin);
    assert_eq!(
        metric(
            &samples,
            "ringway_wasm_failures_total",
            &[("policy", "len"), ("reason", "too_large")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &samples,
            "ringway_wasm_failures_total",
            &[("policy", "ptr"), ("reason", "out_of_bounds")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &samples,
            "ringway_wasm_failures_total",
            &[("policy", "alloc"), ("reason", "out_of_bounds")]
        ),
        Some(2.0)
    );
    // The process is still whole.
    let r = request(gw.addr, "GET", "/len", &[], b"");
    assert_eq!(r.status, 500);
}

#[test]
fn abuse_memory_growth_past_max_memory_is_refused() {
    // Asks for 1000 more pages (64 MiB); traps if refused.
    let grow = r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.lt_s (memory.grow (i32.const 1000)) (i32.const 0)) (then unreachable))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "grow", &filter(grow));
    let up = Upstream::echo();
    // (Growing memory costs fuel by the byte in wasmi: the roomy policy gets more.)
    let roomy = format!(
        "{}\nmax_memory = \"128MiB\"\nfuel = 1000000000",
        module_line(&m)
    );
    let gw = Gateway::start_workers(
        &config(
            up.addr,
            &[
                ("/capped", "capped", module_line(&m)),
                ("/roomy", "roomy", roomy),
            ],
        ),
        1,
    );
    let r = request(gw.addr, "GET", "/capped", &[], b"");
    assert_eq!(r.status, 500, "the default 16MiB cap refuses the growth");
    let r = request(gw.addr, "GET", "/roomy", &[], b"");
    assert_eq!(r.status, 200, "the same module under a larger cap grows");
    assert_eq!(up.count(), 1);

    // A module whose memory starts above the cap is refused at check.
    let big = wasm_file(dir.path(), "big", &filter_with_memory(ADD_HEADER, 300));
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n{}",
        config(up.addr, &[("/", "big", module_line(&big))])
    );
    let (code, _, err) = check_config(&text);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("big.wasm") && err.contains("more than max_memory"),
        "{err}"
    );
}

#[test]
fn abuse_invalid_module_files_are_config_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::echo();
    let garbage = dir.path().join("broken.wasm");
    std::fs::write(&garbage, b"\0asm this is not a module").unwrap();
    let not_proxy_wasm = wasm_file(
        dir.path(),
        "plain",
        "(module (memory (export \"memory\") 1) (func (export \"f\")))",
    );
    let cases = [
        (garbage.clone(), "not a valid module"),
        (dir.path().join("missing.wasm"), "cannot read the module"),
        (not_proxy_wasm, "not a proxy-wasm module"),
    ];
    for (path, want) in cases {
        let text = format!(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n{}",
            config(up.addr, &[("/", "f", module_line(&path))])
        );
        let (code, _, err) = check_config(&text);
        assert_eq!(code, 1, "{err}");
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(file) && err.contains(want), "{want}: {err}");
        assert!(err.contains("policies.f.wasm.module"), "{err}");
    }
    // A reload to a broken module is refused; the running filter keeps working.
    let good = wasm_file(dir.path(), "good", &filter(ADD_HEADER));
    let gw = Gateway::start(&config(up.addr, &[("/", "f", module_line(&good))]));
    assert!(!gw.reload(&config(up.addr, &[("/", "f", module_line(&garbage))])));
    let r = request(gw.addr, "GET", "/still", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-wasm"), Some("hello"));
}

#[test]
fn request_contexts_are_closed_even_when_the_request_ends_early() {
    // Reports how many request contexts are open (this one included) in `x-live`.
    let body = r#"
  (data (i32.const 100) "x-live")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (global.get $live)))
    (drop (call $add (i32.const 2) (i32.const 100) (i32.const 6) (i32.const 200) (i32.const 1)))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "live", &filter(body));
    let up = Upstream::echo();
    let dead_addr: std::net::SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let text = format!(
        "{}{}\n[policies.live.wasm]\n{}\n\n\
         [[routes]]\nname = \"ok\"\nprefix = \"/ok\"\npolicies = [\"live\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"dead\"\nprefix = \"/dead\"\npolicies = [\"live\"]\nproxy = {{ upstream = \"dead\" }}\n",
        upstream_toml("app", &[up.addr]),
        upstream_toml("dead", &[dead_addr]),
        module_line(&m)
    );
    let gw = Gateway::start_workers(&text, 1);
    let r = request(gw.addr, "GET", "/ok", &[], b"");
    assert_eq!(r.header("x-live"), Some("1"));
    for _ in 0..3 {
        let r = request(gw.addr, "GET", "/dead", &[], b"");
        assert!(r.status >= 500, "{}", r.status);
    }
    // The three requests that never got a response head closed their contexts too.
    let r = request(gw.addr, "GET", "/ok", &[], b"");
    assert_eq!(r.header("x-live"), Some("1"));
}

#[test]
fn abuse_a_filter_cannot_flood_the_log_or_the_upstream_head() {
    // 1000 log lines and 1000 added headers in one call.
    let body = r#"
  (data (i32.const 100) "flooding the log")
  (data (i32.const 120) "x-flood")
  (data (i32.const 130) "v")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $again
      (drop (call $log (i32.const 3) (i32.const 100) (i32.const 16)))
      (drop (call $add (i32.const 0) (i32.const 120) (i32.const 7) (i32.const 130) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "flood", &filter(body));
    let up = Upstream::echo();
    let table = format!("{}\nfuel = 10000000", module_line(&m));
    let gw = Gateway::start_workers(&config(up.addr, &[("/", "flood", table)]), 1);
    let r = request(gw.addr, "GET", "/f", &[], b"");
    assert_eq!(r.status, 200);
    let n = up.last().header_all("x-flood").len();
    assert!((200..=256).contains(&n), "header map capped: {n}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gw.log_count("wasm policy flood: flooding the log"), 32);
}

#[test]
fn a_filter_reads_and_replaces_the_whole_header_map() {
    // Traps unless the serialized map holds as many fields as the callback was told, then
    // replaces the map with `:method: GET` and `x-only: 1`.
    let body = r#"
  (data (i32.const 300) "\02\00\00\00\07\00\00\00\03\00\00\00\06\00\00\00\01\00\00\00:method\00GET\00x-only\001\00")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $pairs (i32.const 0) (i32.const 1024) (i32.const 1028)) (then unreachable))
    (if (i32.ne (i32.load (i32.load (i32.const 1024))) (local.get 1)) (then unreachable))
    (if (call $set_pairs (i32.const 0) (i32.const 300) (i32.const 41)) (then unreachable))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "pairs", &filter(body));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/", "pairs", module_line(&m))]));
    let r = request(
        gw.addr,
        "GET",
        "/p",
        &[("X-Other", "a"), ("X-More", "b")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.header("x-only"), Some("1"));
    assert_eq!(seen.header("x-other"), None);
    assert_eq!(seen.header("x-more"), None);
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.target, "/p");
}

#[test]
fn filters_run_for_http2_clients_too() {
    let resp = r#"
  (data (i32.const 100) "x-wasm-response")
  (data (i32.const 120) "seen")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 100) (i32.const 15) (i32.const 120) (i32.const 4)))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::echo();
    let routes = [
        (
            "/deny",
            "deny",
            module_line(&wasm_file(dir.path(), "deny", &filter(DENY))),
        ),
        (
            "/add",
            "add",
            module_line(&wasm_file(dir.path(), "add", &filter(ADD_HEADER))),
        ),
        (
            "/resp",
            "resp",
            module_line(&wasm_file(dir.path(), "resp", &filter(resp))),
        ),
    ];
    let gw = common::h2::start_h2c(&config(up.addr, &routes));
    let mut c = common::h2::H2Client::h2c(gw.addr).expect("h2c connection");
    let r = c
        .request("GET", "/deny", &[("x-deny", "yes")], b"")
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"denied by filter");
    assert_eq!(r.header("x-denied-by"), Some("wasm"));
    let r = c.request("GET", "/add", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.last().header("x-wasm"), Some("hello"));
    let r = c.request("GET", "/resp", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-wasm-response"), Some("seen"));
    assert_eq!(up.count(), 2);
}

#[test]
fn a_response_hook_that_spins_answers_500_and_the_connection_recovers() {
    let body = r#"
  (data (i32.const 100) "x-spin")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then (loop $forever (br $forever))))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "rspin", &filter(body));
    let up = Upstream::echo();
    let gw = Gateway::start_workers(&config(up.addr, &[("/", "rspin", module_line(&m))]), 1);
    let r = request(gw.addr, "GET", "/a", &[("X-Spin", "1")], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        !r.text().contains("\"target\""),
        "none of the upstream's answer leaks"
    );
    let r = request(gw.addr, "GET", "/b", &[], b"");
    assert_eq!(r.status, 200);
    let labels = [("policy", "rspin"), ("reason", "fuel")];
    let s = scrape_until(gw.admin, "ringway_wasm_failures_total", &labels, 1.0);
    assert_eq!(
        metric(&s, "ringway_wasm_failures_total", &labels),
        Some(1.0)
    );
}

#[test]
fn a_filter_reads_request_properties_in_both_directions() {
    let body = r#"
  (data (i32.const 300) "request\00path\00")
  (data (i32.const 320) "source\00address\00")
  (data (i32.const 340) "route_name")
  (data (i32.const 360) "request\00id")
  (data (i32.const 380) "response\00code")
  (data (i32.const 460) "request\00scheme")
  (data (i32.const 480) "x-p-scheme")
  (data (i32.const 400) "x-p-path")
  (data (i32.const 410) "x-p-source")
  (data (i32.const 421) "x-p-route")
  (data (i32.const 431) "x-p-id")
  (data (i32.const 440) "x-r-id")
  (data (i32.const 450) "x-r-code")
  (func $copy (param $map i32) (param $pp i32) (param $pl i32) (param $np i32) (param $nl i32)
    (if (i32.eqz (call $prop (local.get $pp) (local.get $pl) (i32.const 1024) (i32.const 1028)))
      (then (drop (call $add (local.get $map) (local.get $np) (local.get $nl)
        (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $copy (i32.const 0) (i32.const 300) (i32.const 13) (i32.const 400) (i32.const 8))
    (call $copy (i32.const 0) (i32.const 320) (i32.const 15) (i32.const 410) (i32.const 10))
    (call $copy (i32.const 0) (i32.const 340) (i32.const 10) (i32.const 421) (i32.const 9))
    (call $copy (i32.const 0) (i32.const 360) (i32.const 10) (i32.const 431) (i32.const 6))
    (call $copy (i32.const 0) (i32.const 460) (i32.const 14) (i32.const 480) (i32.const 10))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $copy (i32.const 2) (i32.const 360) (i32.const 10) (i32.const 440) (i32.const 6))
    (call $copy (i32.const 2) (i32.const 380) (i32.const 13) (i32.const 450) (i32.const 8))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "props", &filter(body));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/props", "props", module_line(&m))]));
    let r = request(gw.addr, "GET", "/props/x?q=1", &[], b"");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-p-path"), Some("/props/x?q=1"));
    assert_eq!(seen.header("x-p-source"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-p-route"), Some("props"));
    assert_eq!(seen.header("x-p-scheme"), Some("http"));
    let id = seen
        .header("x-request-id")
        .expect("the gateway's request id");
    assert_eq!(seen.header("x-p-id"), Some(id));
    assert_eq!(
        r.header("x-r-id"),
        Some(id),
        "the response callback sees the same request"
    );
    assert_eq!(r.header("x-r-code"), Some("200"));
}

/// Denies with 403 any request whose `:path` starts with `/w/admin`.
const PATH_GUARD: &str = r#"
  (data (i32.const 100) ":path")
  (data (i32.const 110) "/w/admin")
  (data (i32.const 130) "guarded")
  (func $guarded (param $p i32) (param $l i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $l) (i32.const 8)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.eq (local.get $i) (i32.const 8)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                    (i32.load8_u (i32.add (i32.const 110) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 1024) (i32.const 1028)))
      (then
        (if (call $guarded (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))
          (then
            (drop (call $local (i32.const 403) (i32.const 0) (i32.const 0)
              (i32.const 130) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const -1)))
            (return (i32.const 1))))))
    (i32.const 0))
"#;

/// A filter that guards a path by `:path` sees the path the router matched and the upstream
/// gets, not the client's spelling of it: dot segments, doubled slashes and encoded letters
/// cannot walk past it.
#[test]
fn abuse_a_path_guard_in_a_filter_cannot_be_walked_past_by_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "guard", &filter(PATH_GUARD));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/w", "guard", module_line(&m))]));
    for target in [
        "/w/admin",
        "/w/x/../admin",
        "/w//admin",
        "/w/./admin",
        "/w/%61dmin",
        "/w/admin?x=1",
    ] {
        let r = request(gw.addr, "GET", target, &[], b"");
        assert_eq!(r.status, 403, "{target}: {}", r.text());
        assert_eq!(r.text(), "guarded");
    }
    assert_eq!(up.count(), 0, "no spelling reached the upstream");
    let r = request(gw.addr, "GET", "/w/public", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(up.last().target, "/w/public");
}

/// One worker's instance is discarded when any request's filter fails. Requests that were
/// upstream at that moment lose their contexts with it: their response hook cannot run, and
/// the upstream's head must not reach the client unfiltered (here: a header the hook removes).
#[test]
fn abuse_another_requests_filter_failure_never_lets_a_response_pass_unfiltered() {
    let body = r#"
  (data (i32.const 100) "x-trap")
  (data (i32.const 110) "x-internal")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then unreachable))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $remove (i32.const 2) (i32.const 110) (i32.const 10)))
    (i32.const 0))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "strip", &filter(body));
    let gate = Gate::new();
    let g = gate.clone();
    let up = Upstream::start(std::sync::Arc::new(move |req, s| {
        if req.target == "/slow" {
            g.wait(Duration::from_secs(10));
        }
        let _ = std::io::Write::write_all(
            s,
            b"HTTP/1.1 200 OK\r\nX-Internal: db-password=hunter2\r\nContent-Length: 2\r\n\r\nok",
        );
        Reply::KeepAlive
    }));
    let gw = Gateway::start_workers(&config(up.addr, &[("/", "strip", module_line(&m))]), 1);
    // Alone, the hook strips the header.
    let r = request(gw.addr, "GET", "/fast", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal"), None);

    let addr = gw.addr;
    let slow = std::thread::spawn(move || request(addr, "GET", "/slow", &[], b""));
    up.wait_for_count(2, Duration::from_secs(5));
    let r = request(gw.addr, "GET", "/fast", &[("X-Trap", "1")], b"");
    assert_eq!(r.status, 500, "the trapping request fails");
    gate.open();
    let r = slow.join().unwrap();
    assert_eq!(
        r.header("x-internal"),
        None,
        "an unfiltered head reached the client"
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let labels = [("policy", "strip"), ("reason", "lost")];
    let s = scrape_until(gw.admin, "ringway_wasm_failures_total", &labels, 1.0);
    assert_eq!(
        metric(&s, "ringway_wasm_failures_total", &labels),
        Some(1.0)
    );
    // The worker made a new instance: the next request is filtered again.
    let r = request(gw.addr, "GET", "/fast", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-internal"), None);
}

/// A local response with 205 (Reset Content) carries no body, whatever the filter passed.
#[test]
fn a_local_205_carries_no_body() {
    let body = r#"
  (data (i32.const 130) "this body must not be sent")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $local (i32.const 205) (i32.const 0) (i32.const 0)
      (i32.const 130) (i32.const 26) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "reset", &filter(body));
    let up = Upstream::echo();
    let gw = Gateway::start(&config(up.addr, &[("/", "reset", module_line(&m))]));
    let mut c = Conn::open(gw.addr);
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let raw = String::from_utf8_lossy(&c.read_to_end()).to_string();
    assert_eq!(raw.matches("HTTP/1.1 205").count(), 2, "{raw}");
    assert!(!raw.contains("must not be sent"), "{raw}");
}

/// A forward-auth check after a filter that rewrote `:path` is asked about the path the
/// upstream will get, not the one the client sent.
#[test]
fn forward_auth_after_a_rewriting_filter_judges_the_rewritten_path() {
    let dir = tempfile::tempdir().unwrap();
    let m = wasm_file(dir.path(), "path", &filter(REWRITE_PATH));
    let (auth, app) = (Upstream::echo(), Upstream::echo());
    let body = format!(
        "{}{}\n[policies.rw.wasm]\n{}\n\n\
         [policies.fa.forward_auth]\nupstream = \"auth\"\npath = \"/check\"\n\n\
         [[routes]]\nname = \"r\"\nprefix = \"/old\"\npolicies = [\"rw\", \"fa\"]\n\
         proxy = {{ upstream = \"app\" }}\n",
        upstream_toml("auth", &[auth.addr]),
        upstream_toml("app", &[app.addr]),
        module_line(&m),
    );
    let gw = Gateway::start(&body);
    let r = request(gw.addr, "GET", "/old/alice?q=1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.last().target, "/rewritten?by=wasm");
    assert_eq!(
        auth.last().header("x-forwarded-uri"),
        Some("/rewritten?by=wasm")
    );
}
