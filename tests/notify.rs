//! sd_notify: with `NOTIFY_SOCKET` set, the gateway says `READY=1` once every worker accepts,
//! `RELOADING=1` then `READY=1` around a reload (also a failed one), `MAINPID=` of the
//! successor after a binary upgrade, and `STOPPING=1` when it drains. The test plays systemd:
//! it binds the datagram socket itself. A socket nobody listens on changes nothing.
mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const ROUTES: &str = "[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = { body = \"ok\" }\n";

fn next(rx: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = rx
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_reloading_mainpid_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let gw = Gateway::start_env(ROUTES, 2, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let ready = next(&rx);
    assert!(ready.starts_with("READY=1"), "{ready}");
    // READY only once every worker accepts: the admin API agrees.
    assert_eq!(get(gw.admin, "/ready").status, 200);

    assert!(gw.reload(ROUTES));
    let r = next(&rx);
    assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
    let r = next(&rx);
    assert!(
        r.starts_with("READY=1") && r.contains("generation 2"),
        "{r}"
    );
    assert!(!gw.reload("nonsense = "));
    assert!(next(&rx).starts_with("RELOADING=1"));
    let r = next(&rx);
    assert!(
        r.starts_with("READY=1") && r.contains("reload failed"),
        "{r}"
    );

    gw.write_config(ROUTES);
    gw.signal(libc::SIGUSR2);
    let r = next(&rx);
    let pid: i32 = r
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .unwrap_or_else(|| panic!("{r}"))
        .parse()
        .unwrap();
    assert_ne!(pid, gw.pid());
    assert!(r.contains("READY=1"), "{r}");
    // The successor reported to its predecessor, not to the service manager.
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(rx.recv(&mut buf).is_err(), "unexpected notification");
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // SAFETY: kill(2) on the successor this test caused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert_eq!(next(&rx), "STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}/status")).exists() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unreachable_notify_socket_is_only_a_warning() {
    let gw = Gateway::start_env(ROUTES, 1, &[("NOTIFY_SOCKET", "/nonexistent/notify.sock")]);
    gw.wait_log("sd_notify", Duration::from_secs(5));
    assert_eq!(get(gw.addr, "/s").text(), "ok");
}
