//! The cache's and compression's header readers on arbitrary bytes: `Cache-Control` as stored
//! field lines and as a request header, freshness from them, `Vary` names and the secondary key
//! they make, and `Accept-Encoding` negotiation. Invariants: no panic on any input, and the
//! negotiated coding is one the policy offers (or identity).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::cache::{control, vary};
use ringway::compress::{negotiate, Coding, CompressPolicy};

fuzz_target!(|data: &[u8]| {
    // As a stored response's field lines.
    let _ = control::response_directives(data);
    let Some(policy) = ringway::cache::policy::compile(
        &ringway::cache::RawCache::default(),
        &mut |_: std::ops::Range<usize>, _: &str, _: String| {},
    ) else {
        panic!("the default cache policy compiles");
    };
    let _ = control::freshness(
        &policy,
        data,
        Some(data),
        std::time::Duration::from_millis(1_700_000_000_250),
        std::time::Duration::from_millis(1_700_000_001_100),
    );
    let names = vary::names(data);

    // As the value of request headers (only bytes a header value may hold, bounded).
    let value: Vec<u8> = data
        .iter()
        .copied()
        .filter(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
        .take(4096)
        .collect();
    let mut raw = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
    for name in [
        "cache-control",
        "pragma",
        "accept-encoding",
        "if-none-match",
    ] {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(&value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    let Ok(Some((head, _))) = ringway::http1::parse_request_head(&raw, &Default::default()) else {
        return;
    };
    let _ = control::request(&head);
    let cp = CompressPolicy::default();
    let c = negotiate(&cp, &head);
    assert!(c == Coding::Identity || cp.codings.contains(&c), "{c:?}");
    if let Some(names) = names {
        let _ = vary::secondary(&names, &head, Some(c.token()));
    }
});
