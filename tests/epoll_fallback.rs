//! The legacy epoll driver (`RINGWAY_FORCE_EPOLL=1`, the fallback when io_uring is
//! unavailable) passes the same smoke, pipelining, streaming and HTTP/2 tests as io_uring.
//!
//! Those test files are compiled into this binary unchanged (`#[path]` modules), so every test
//! in them runs here a second time; the harness (`common::forced_epoll`) starts every gateway of
//! this binary with `RINGWAY_FORCE_EPOLL=1`. The test below checks that the switch really took
//! effect, so the re-runs cannot pass on io_uring by accident.
// Each included file declares its own `mod common;` (the harness): the copies are identical
// and independent, which is what lets the files compile unchanged here.
#![allow(clippy::duplicate_mod)]
mod common;
use common::*;

#[path = "smoke.rs"]
mod smoke;

#[path = "pipelining.rs"]
mod pipelining;

#[path = "streaming.rs"]
mod streaming;

#[path = "http2.rs"]
mod http2;

#[test]
fn every_gateway_here_runs_the_legacy_driver() {
    assert!(forced_epoll(), "this binary must force the epoll driver");
    let gw =
        Gateway::start("[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"ok\" }\n");
    assert_eq!(get(gw.addr, "/s").text(), "ok");
    let s = scrape(gw.admin);
    let info = s
        .iter()
        .find(|s| s.name == "ringway_build_info")
        .expect("ringway_build_info exported");
    assert_eq!(
        info.labels.get("driver").map(String::as_str),
        Some("legacy"),
        "{info:?}"
    );
    // Each worker says which driver it runs, and warns about the fallback.
    gw.wait_log(
        "FALLING BACK to the legacy epoll driver",
        std::time::Duration::from_secs(10),
    );
    assert!(!gw.logs().contains("io_uring driver ("), "{}", gw.logs());
}
