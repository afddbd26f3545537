//! "0 allocations per request": README.md's promise for the in-memory request path (parse →
//! normalize → trace context → route → upstream head → response head → metrics) in steady
//! state. The `request_path` bench prints the number; this test asserts it, running the very
//! same code (bench/request_path_shared.rs) under a counting global allocator.

#[path = "../bench/request_path_shared.rs"]
mod request_path;
use request_path::*;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_request_path_allocates_nothing() {
    let cfg = build_config();
    // The counter must see allocations at all, or a zero below would prove nothing.
    let before = counters().0;
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
    assert!(
        counters().0 > before,
        "the counting allocator is not installed"
    );
    drop(v);

    for (name, input) in CASES {
        for round_trip in [false, true] {
            let (total, reallocs, bytes, per_step) = count_one(&cfg, input, round_trip);
            let steps: Vec<String> = STEPS
                .iter()
                .zip(&per_step)
                .filter(|(_, n)| **n > 0)
                .map(|((_, label), n)| format!("{label}: {n}"))
                .collect();
            assert_eq!(
                total, 0,
                "{name} (round_trip = {round_trip}): {total} allocations ({reallocs} reallocs, \
                 {bytes} bytes) per request in steady state: {steps:?}"
            );
        }
    }
}

#[test]
fn the_measured_path_really_reaches_the_upstream_head() {
    // Guards against measuring a path that stopped short: the small GET is proxied with its
    // prefix stripped, exactly as in the bench.
    let cfg = build_config();
    let mut conn = Conn::new();
    request_path(&cfg, &mut conn, CURL_GET, false, &mut |_| {});
    let sent = String::from_utf8_lossy(&conn.wire);
    assert!(
        sent.starts_with("GET /users/42?fields=name HTTP/1.1\r\n"),
        "{sent}"
    );
    assert!(sent.contains("traceparent: "), "{sent}");
}
