//! The in-memory request path shared by the `request_path` bench and the `alloc_free`
//! integration test (tests/alloc_free.rs): a counting allocator type (each user installs it
//! as its own `#[global_allocator]`), the ~20-route config, canned requests, one request through
//! parse → route → upstream head (→ response head) → metrics, and the steady-state allocation
//! count. Follows src/conn/http1.rs and src/exchange/; see bench/request_path.rs.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;

use ringway::config::{compile, Action, Compiled};
use ringway::conn::client::{response_head, ExchangeLines};
use ringway::exchange::forward::filter_response_fields;
use ringway::exchange::route::HeadHeaders;
use ringway::exchange::upstream_head::{write_upstream_head, UpstreamHead};
use ringway::exchange::wire::{BodyLen, Response};
use ringway::http1::{self, BodyFraming, RequestHead, ResponseHead};
use ringway::metrics::{CoreMetrics, RouteSlot};
use ringway::request_id::{IdGen, RequestId};
use ringway::route::{Lookup, RouteRequest};
use ringway::trace::{IdRng, TraceContext};

// ---------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------

/// `System` plus per-thread counters of allocation calls (reallocs counted apart) and bytes
/// requested. Per-thread so that nothing criterion or the runtime does on another thread
/// leaks into the count.
pub struct Counting;

#[derive(Clone, Copy, Default)]
pub struct Counts {
    /// `alloc` and `alloc_zeroed` calls.
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

thread_local! {
    // Const-initialized and without a destructor: safe to touch from inside the allocator
    // (no lazy initialization that could allocate, no use-after-destroy state).
    static COUNTS: Cell<Counts> = const {
        Cell::new(Counts {
            allocs: 0,
            reallocs: 0,
            bytes: 0,
        })
    };
}

pub fn record(realloc: bool, bytes: usize) {
    let _ = COUNTS.try_with(|c| {
        let mut n = c.get();
        if realloc {
            n.reallocs += 1;
        } else {
            n.allocs += 1;
        }
        n.bytes += bytes as u64;
        c.set(n);
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(false, layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(false, layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (every allocation above goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(true, new_size);
        // SAFETY: `ptr` came from `System`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// (allocations incl. reallocs, reallocs, bytes) so far on this thread.
pub fn counters() -> (u64, u64, u64) {
    let n = COUNTS.with(Cell::get);
    (n.allocs + n.reallocs, n.reallocs, n.bytes)
}

// ---------------------------------------------------------------------------------------
// Config and inputs
// ---------------------------------------------------------------------------------------

/// 20 routes: statics, echo, redirects, templates, host-scoped and conditional proxies.
pub const CONFIG: &str = r#"
version = 1

[[listeners]]
address = "127.0.0.1:8080"

[upstreams.api]
targets = [{ address = "127.0.0.1:9000" }]

[upstreams.users]
targets = [{ address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]

[upstreams.assets]
targets = [{ address = "127.0.0.1:9003" }]

[[routes]]
name = "welcome"
path = "/"
methods = ["GET", "HEAD"]
static = { status = 200, headers = { "content-type" = "application/json" }, body = "{}" }

[[routes]]
name = "health"
path = "/health"
methods = ["GET", "HEAD"]
static = { status = 200, body = "ok\n" }

[[routes]]
name = "ready"
path = "/ready"
static = { status = 204 }

[[routes]]
name = "echo"
prefix = "/echo"
max_body_bytes = "1MiB"
echo = {}

[[routes]]
name = "moved"
path = "/hello"
redirect = { location = "/echo/hello", status = 308 }

[[routes]]
name = "old-docs"
prefix = "/docs/v1"
redirect = { location = "https://docs.example.com/v1", append_path = true }

[[routes]]
name = "api"
hosts = ["api.example.com"]
prefix = "/api"
methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
proxy = { upstream = "api", strip_prefix = true }

[[routes]]
name = "api-v2"
hosts = ["api.example.com"]
prefix = "/v2"
proxy = { upstream = "api", replace_prefix = "/internal/v2" }

[[routes]]
name = "admin"
hosts = ["admin.example.com"]
prefix = "/"
proxy = { upstream = "api", preserve_host = false }

[[routes]]
name = "user"
path = "/users/{id}"
methods = ["GET"]
proxy = { upstream = "users" }

[[routes]]
name = "user-orders"
path = "/users/{id}/orders"
proxy = { upstream = "users" }

[[routes]]
name = "canary"
prefix = "/beta"
headers = { "x-canary" = "1" }
proxy = { upstream = "users" }

[[routes]]
name = "search"
path = "/search"
query = { q = true }
proxy = { upstream = "api" }

[[routes]]
name = "assets"
prefix = "/static"
methods = ["GET", "HEAD"]
proxy = { upstream = "assets" }

[[routes]]
name = "catalog"
hosts = ["*.example.com"]
prefix = "/products"
proxy = { upstream = "api" }

[[routes]]
name = "svc1"
path = "/svc1/health"
static = { status = 200, body = "ok\n" }

[[routes]]
name = "svc2"
path = "/svc2/health"
static = { status = 200, body = "ok\n" }

[[routes]]
name = "svc3"
path = "/svc3/health"
static = { status = 200, body = "ok\n" }

[[routes]]
name = "svc4"
path = "/svc4/health"
static = { status = 200, body = "ok\n" }

[[routes]]
name = "fallback"
hosts = ["*.example.com"]
prefix = "/"
static = { status = 404, body = "not here\n" }
"#;

/// What `curl http://api.example.com/api/users/42?fields=name` sends: the small-GET path.
pub const CURL_GET: &[u8] = b"GET /api/users/42?fields=name HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

/// A browser navigation with 13 headers to a wildcard-host proxy route.
pub const BROWSER_GET: &[u8] = b"GET /products/12345/reviews?page=2&sort=recent HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/12345\r\n\
Cookie: session=3f2a9c1e7b5d4a60b8e1c2d3f4a5b6c7; _ga=GA1.2.1234567890.1700000000; theme=dark; consent=yes\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Cache-Control: max-age=0\r\n\
\r\n";

/// A small upstream reply (head only; ~20 byte body follows on the wire).
pub const UPSTREAM_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 20\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Server: backend/1.0\r\n\
Connection: keep-alive\r\n\
\r\n";

pub fn build_config() -> Compiled {
    let file = Path::new("bench/request_path.toml");
    let compiled =
        compile::parse(CONFIG, file).and_then(|raw| compile::compile(raw, CONFIG, file, 1));
    match compiled {
        Ok(c) => c,
        Err(errs) => {
            let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            panic!("bench config does not compile:\n{}", msgs.join("\n"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The request path (follows src/conn/http1.rs and src/exchange/)
// ---------------------------------------------------------------------------------------

/// Per-connection state the gateway keeps across requests (`conn::client::Client`) plus the worker's
/// id generator.
pub struct Conn {
    ids: IdGen,
    peer_ip: String,
    forwarded_for: String,
    /// Reused buffer for serialized heads (upstream request, then client response).
    pub wire: Vec<u8>,
    /// Reused buffer for the client response's field lines.
    fields: Vec<u8>,
    /// Reused buffer for the routing host.
    host: String,
    /// The worker's trace-id generator and core-local metrics (`telemetry::CoreTelemetry`).
    rng: IdRng,
    metrics: CoreMetrics,
    route_slots: Vec<RouteSlot>,
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            ids: IdGen::new(),
            peer_ip: "127.0.0.1".to_string(),
            forwarded_for: "for=127.0.0.1".to_string(),
            wire: Vec::new(),
            fields: Vec::new(),
            host: String::new(),
            rng: IdRng::new(),
            metrics: CoreMetrics::new(),
            route_slots: Vec::new(),
        }
    }
}

/// Steps of the path, for the allocation breakdown.
#[derive(Clone, Copy)]
pub enum Step {
    Parse,
    RequestId,
    Trace,
    Normalize,
    Host,
    Lookup,
    UpstreamHead,
    ParseResponse,
    ClientHead,
    Metrics,
}

pub const STEPS: [(Step, &str); 10] = [
    (Step::Parse, "parse_request_head"),
    (Step::RequestId, "request id"),
    (Step::Trace, "trace context"),
    (Step::Normalize, "normalize_path"),
    (Step::Host, "host_for_routing"),
    (Step::Lookup, "route lookup"),
    (Step::UpstreamHead, "upstream head serialize"),
    (Step::ParseResponse, "parse_response_head"),
    (Step::ClientHead, "client response head serialize"),
    (Step::Metrics, "record metrics"),
];

/// Runs one request through the path. `after` is called at the end of each step (a no-op
/// when timing). Returns the bytes serialized last, so nothing is optimized away.
pub fn request_path(
    cfg: &Compiled,
    conn: &mut Conn,
    input: &[u8],
    round_trip: bool,
    after: &mut impl FnMut(Step),
) -> usize {
    let (head, _consumed) = match http1::parse_request_head(input, &cfg.limits) {
        Ok(Some(h)) => h,
        other => panic!("bench request does not parse: {other:?}"),
    };
    after(Step::Parse);

    let rid = head
        .header("x-request-id")
        .and_then(RequestId::from_client)
        .unwrap_or_else(|| conn.ids.next_id());
    after(Step::RequestId);
    let start = std::time::Instant::now();

    let trace = TraceContext::from_request(head.header("traceparent"), &mut conn.rng, 1.0);
    after(Step::Trace);

    let path = match http1::normalize_path(head.path()) {
        Some(p) if p.is_empty() => Cow::Borrowed(&b"/"[..]),
        Some(p) => p,
        None => panic!("bench path rejected"),
    };
    after(Step::Normalize);

    let mut host = std::mem::take(&mut conn.host);
    head.host_for_routing(&mut host);
    after(Step::Host);

    let lookup = cfg.table.lookup(
        &RouteRequest {
            host: &host,
            method: head.method,
            path: &path,
            query: head.query(),
        },
        &HeadHeaders(&head),
    );
    conn.host = host;
    let route = match lookup {
        Lookup::Found { route, .. } => cfg.route(route),
        other => panic!("bench request is not routed: {other:?}"),
    };
    if let BodyFraming::Length(n) = head.body {
        assert!(n <= route.max_body);
    }
    let Action::Proxy(p) = &route.action else {
        panic!("bench request must hit a proxy route, got {}", route.name);
    };
    after(Step::Lookup);

    let upstream = cfg.upstream(p.upstream);
    let label = upstream.targets.first().map_or("", |t| t.label.as_str());
    let mut wire = std::mem::take(&mut conn.wire);
    write_upstream_head(
        &mut wire,
        &UpstreamHead {
            target: None,
            head: &head,
            path: &path,
            request_id: rid.as_str(),
            peer_ip: &conn.peer_ip,
            forwarded_for: &conn.forwarded_for,
            trusted_peer: false,
            scheme: ringway::exchange::origin::Scheme::Http,
            target_label: label,
            tunnel: false,
            trace: Some(&trace),
            captures: &[],
            edits: None,
            query: None,
            client_cert: None,
            attempts: 1,
        },
        p,
    );
    let mut written = black_box(&wire).len();
    after(Step::UpstreamHead);

    if round_trip {
        let resp = match http1::parse_response_head(
            UPSTREAM_RESPONSE,
            cfg.limits.max_header_bytes.max(64 * 1024),
            ringway::exchange::send::RESPONSE_MAX_HEADERS,
            head.method,
        ) {
            Ok(Some((r, _))) => r,
            other => panic!("bench response does not parse: {other:?}"),
        };
        after(Step::ParseResponse);
        client_head(&mut wire, &mut conn.fields, &head, &resp, &rid);
        written = black_box(&wire).len();
        after(Step::ClientHead);
    }
    conn.wire = wire;
    if conn.route_slots.len() != cfg.routes.len() {
        conn.route_slots = cfg
            .routes
            .iter()
            .map(|r| conn.metrics.route_slot(&r.name))
            .collect();
    }
    let slot = conn.route_slots[route.id.0 as usize];
    conn.metrics.record_request(
        Some(slot),
        0,
        200,
        start.elapsed(),
        input.len() as u64,
        written as u64,
    );
    after(Step::Metrics);
    written
}

/// The client response head the gateway writes for a keep-alive client: the same two
/// functions the forward phase and the HTTP/1.1 wire call (`out` is cleared first).
/// `fields` is the reused field-line buffer (the exchange's scratch buffer in the gateway).
pub fn client_head(
    out: &mut Vec<u8>,
    fields: &mut Vec<u8>,
    h: &RequestHead,
    resp: &ResponseHead,
    rid: &RequestId,
) {
    fields.clear();
    filter_response_fields(
        resp,
        None,
        &ringway::exchange::forward::Owned::default(),
        fields,
    );
    let body = match resp.body {
        BodyFraming::None => BodyLen::Bare,
        BodyFraming::Length(n) => BodyLen::Length(n),
        _ => BodyLen::Unknown,
    };
    let r = Response {
        status: resp.status,
        fields,
        body,
        keep: !h.close,
    };
    let lines = ExchangeLines {
        request_id: rid.as_bytes(),
        trace: None,
        lines: b"",
    };
    out.clear();
    response_head(out, &r, h.version, &lines);
}

// ---------------------------------------------------------------------------------------
// Steady-state allocation count
// ---------------------------------------------------------------------------------------

pub const CASES: [(&str, &[u8]); 2] = [("curl_get", CURL_GET), ("browser_get", BROWSER_GET)];

/// Steady-state allocations of one request: (total, reallocs, bytes, per-step allocations).
pub fn count_one(cfg: &Compiled, input: &[u8], round_trip: bool) -> (u64, u64, u64, Vec<u64>) {
    let mut conn = Conn::new();
    // Warm the per-connection buffers, as on a keep-alive connection after its first request.
    for _ in 0..3 {
        request_path(cfg, &mut conn, input, round_trip, &mut |_| {});
    }
    let mut per_step = vec![0u64; STEPS.len()];
    let start = counters();
    let mut last = start.0;
    // `per_step` is allocated before counting starts, so recording is allocation-free.
    request_path(cfg, &mut conn, input, round_trip, &mut |step| {
        let now = counters().0;
        per_step[step as usize] += now - last;
        last = now;
    });
    let end = counters();
    (end.0 - start.0, end.1 - start.1, end.2 - start.2, per_step)
}
