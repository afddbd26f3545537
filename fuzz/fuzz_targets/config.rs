//! Config loader on arbitrary text: TOML parse, then compile. Invariants: no panic, and a
//! failure always carries at least one error positioned inside the source.
//!
//! compile() may touch the outside world (upstream host names are resolved, key and JWKS
//! files are read, a `jwks_url` starts a fetcher thread, an `[api_keys]` table reads its keys
//! file), so a parsed config that would do any of that is not compiled: only the parse is
//! fuzzed for it. Upstream targets must be IP:port literals.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringway::config::compile::{compile, parse};
use ringway::config::raw::RawConfig;

fn reaches_outside(raw: &RawConfig) -> bool {
    if raw.api_keys.is_some() {
        return true;
    }
    let jwt_io = raw
        .policies
        .values()
        .filter_map(|p| p.jwt.as_ref())
        .any(|j| {
            let j = j.get_ref();
            j.public_key_file.is_some() || j.jwks_file.is_some() || j.jwks_url.is_some()
        });
    let dns = raw.upstreams.values().any(|u| {
        u.targets
            .get_ref()
            .iter()
            .any(|t| t.address.get_ref().parse::<SocketAddr>().is_err())
    });
    jwt_io || dns
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/ringway-fuzz/config.toml");
    let raw = match parse(src, file) {
        Ok(raw) => raw,
        Err(errs) => {
            assert!(!errs.is_empty());
            for e in &errs {
                let _ = e.to_string();
            }
            return;
        }
    };
    if reaches_outside(&raw) {
        return;
    }
    let lines = src.lines().count() + 1;
    if let Err(errs) = compile(raw, src, file, 1) {
        assert!(!errs.is_empty());
        for e in &errs {
            assert!(e.line <= lines, "error line {} past the end: {e}", e.line);
            let _ = e.to_string();
        }
    }
});
