//! The whole in-memory request path, without sockets, and its heap allocations per request.
//!
//! Follows `conn::http1::handle_request` → `exchange::pipeline` → `exchange::forward`: parse the
//! request head, pick the request id, normalize the path, lowercase the routing host, look the
//! route up in a `Compiled` built from a ~20-route TOML config, then serialize the fresh
//! upstream head into a reused buffer with the gateway's own
//! `exchange::upstream_head::write_upstream_head` (with a W3C trace context, as propagation is
//! on by default), and record the request in core-local metrics. The `round_trip` cases go on:
//! parse a canned upstream response head and build the client response head with the same
//! functions the gateway calls (`exchange::forward::filter_response_fields`,
//! `conn::client::response_head`, i.e. `http1::write_response_head`).
//!
//! A counting `#[global_allocator]` (wrapping `System`, so timings here use the system
//! allocator, not the binary's mimalloc) reports allocations per request in steady state
//! (per-connection buffers already grown) before criterion runs, with a per-step breakdown.
//! That number is what the small-GET path drives to zero.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::config::Compiled;

// The request path, inputs and counting allocator live in a module shared with the
// `alloc_free` test, which asserts the zero this bench prints.
#[path = "request_path_shared.rs"]
mod shared;
use shared::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------
// Allocation report and benches
// ---------------------------------------------------------------------------------------

fn report_allocations(cfg: &Compiled) {
    let (total, ..) = count_one(cfg, CURL_GET, false);
    println!("allocations per request: {total}");
    println!("  (curl_get, parse -> route -> upstream head, steady state; breakdown below)");
    for (name, input) in CASES {
        for round_trip in [false, true] {
            let (total, reallocs, bytes, per_step) = count_one(cfg, input, round_trip);
            let what = if round_trip {
                "round_trip"
            } else {
                "to_upstream"
            };
            println!("  {name}/{what}: {total} allocations ({reallocs} reallocs), {bytes} bytes");
            for ((_, label), n) in STEPS.iter().zip(&per_step) {
                if *n > 0 {
                    println!("    {label}: {n}");
                }
            }
        }
    }
}

fn request_path_benches(c: &mut Criterion) {
    let cfg = build_config();
    report_allocations(&cfg);
    let mut conn = Conn::new();
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    for (name, input) in CASES {
        for round_trip in [false, true] {
            let what = if round_trip {
                "round_trip"
            } else {
                "to_upstream"
            };
            group.bench_function(format!("{name}/{what}"), |b| {
                b.iter(|| request_path(&cfg, &mut conn, black_box(input), round_trip, &mut |_| {}))
            });
        }
    }
    group.finish();

    // What went upstream for the small GET, so a reader can see what was measured.
    let mut conn = Conn::new();
    request_path(&cfg, &mut conn, CURL_GET, false, &mut |_| {});
    let sent = String::from_utf8_lossy(&conn.wire);
    assert!(
        sent.starts_with("GET /users/42?fields=name HTTP/1.1\r\n"),
        "{sent}"
    );
}

criterion_group!(benches, request_path_benches);
criterion_main!(benches);
