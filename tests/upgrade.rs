//! Zero-downtime binary upgrade (SIGUSR2): under steady keep-alive load through a proxied
//! route, three upgrades in a row refuse, reset or fail no request; the old process exits
//! after its drain, the new one serves and upgrades again. A successor that cannot start (the
//! config became invalid) is abandoned and the old process keeps serving.
mod common;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn body(up: SocketAddr) -> String {
    format!(
        "[server]\ndrain_timeout = \"10s\"\n{}\n[[routes]]\nname = \"p\"\nprefix = \"/p\"\nproxy = {{ upstream = \"be\" }}\n\n\
         [[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"static-ok\" }}\n",
        upstream_toml("be", &[up])
    )
}

/// An upstream that takes a little while, so requests are in flight at every handover.
fn slowish_upstream() -> Upstream {
    Upstream::start(Arc::new(|_req, s| {
        thread::sleep(Duration::from_millis(2));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::KeepAlive
    }))
}

/// Keep-alive clients: each reuses its connection until the gateway says `Connection: close`
/// (then reconnects). Every connect error, I/O error and non-200 is counted and described.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
                thread::spawn(move || client(addr, &stop, &ok, &errors))
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            threads,
        }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let errs = self.errors.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), errs)
    }
}

fn client(addr: SocketAddr, stop: &AtomicBool, ok: &AtomicU64, errors: &Mutex<Vec<String>>) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    drop(s);
                    conn.insert(Conn::open(addr))
                }
                Err(e) => {
                    errors.lock().unwrap().push(format!("connect: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        if let Err(e) = c.stream.write_all(&build_request("GET", "/p", &[], b"")) {
            errors.lock().unwrap().push(format!("write: {e}"));
            conn = None;
            continue;
        }
        match c.read_response(false) {
            Ok(r) if r.status == 200 => {
                ok.fetch_add(1, Ordering::SeqCst);
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Ok(r) => {
                errors.lock().unwrap().push(format!("status {}", r.status));
                conn = None;
            }
            Err(e) => {
                errors.lock().unwrap().push(format!("read: {e}"));
                conn = None;
            }
        }
    }
}

/// Whether `pid` still runs (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

const READY: &str = "upgrade: new process ";

/// Sends SIGUSR2 to `pid` and returns the successor's pid once it reports ready.
fn upgrade(gw: &Gateway, pid: i32) -> i32 {
    let before = gw.log_count("is ready; this process stops accepting");
    let failed_before = gw.log_count("upgrade failed");
    // SAFETY: kill(2) on a gateway process this test started (directly or by upgrade).
    unsafe {
        libc::kill(pid, libc::SIGUSR2);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.log_count("is ready; this process stops accepting") == before {
        assert!(
            Instant::now() < deadline,
            "upgrade did not complete; logs:\n{}",
            gw.logs()
        );
        assert_eq!(
            gw.log_count("upgrade failed"),
            failed_before,
            "logs:\n{}",
            gw.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let logs = gw.logs();
    let line = logs
        .lines()
        .filter(|l| l.contains("is ready; this process stops accepting"))
        .nth(before)
        .unwrap();
    let rest = &line[line.find(READY).unwrap() + READY.len()..];
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// Kills a process started by an upgrade (not the harness's child) when the test ends.
struct Reaper(Arc<Mutex<i32>>);

impl Drop for Reaper {
    fn drop(&mut self) {
        let pid = *self.0.lock().unwrap();
        if pid > 0 {
            // SAFETY: kill(2) on the gateway this test upgraded to.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn three_upgrades_under_keepalive_load_fail_no_request() {
    let up = slowish_upstream();
    let mut gw = Gateway::start(&body(up.addr));
    let first = gw.pid();
    let current = Arc::new(Mutex::new(0));
    let _reaper = Reaper(current.clone());
    let load = Load::start(gw.addr, 6);
    thread::sleep(Duration::from_millis(500));

    let mut pid = first;
    let mut seen = vec![first];
    for round in 0..3 {
        let next = upgrade(&gw, pid);
        *current.lock().unwrap() = next;
        assert!(!seen.contains(&next), "round {round}: pid {next} reused");
        // The old process drains and exits on its own; the harness reaps the first one.
        if pid == first {
            let st = gw.wait_exit(Duration::from_secs(15));
            assert_eq!(st.and_then(|s| s.code()), Some(0), "logs:\n{}", gw.logs());
        } else {
            assert!(
                wait_gone(pid, Duration::from_secs(15)),
                "old pid {pid} still runs"
            );
        }
        assert!(alive(next));
        seen.push(next);
        pid = next;
        thread::sleep(Duration::from_millis(700));
    }
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(ok > 200, "only {ok} responses under load");
    // The last successor is the one serving: plain and admin listeners both answer.
    assert_eq!(get(gw.addr, "/s").text(), "static-ok");
    assert_eq!(get(gw.admin, "/ready").status, 200);
    assert_eq!(
        gw.log_count("all workers stopped; bye"),
        3,
        "logs:\n{}",
        gw.logs()
    );
    // SAFETY: the last successor, which this test started through the upgrades.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert!(wait_gone(pid, Duration::from_secs(15)));
}

#[test]
fn a_successor_that_cannot_start_leaves_the_old_process_serving() {
    let up = slowish_upstream();
    let gw = Gateway::start(&body(up.addr));
    let pid = gw.pid();
    let current = Arc::new(Mutex::new(0));
    let _reaper = Reaper(current.clone());
    let load = Load::start(gw.addr, 2);
    // The successor reads the same file, which is now broken.
    gw.write_config(
        "[[routes]]\nname = \"x\"\npath = \"/x\"\nproxy = { upstream = \"missing\" }\n",
    );
    gw.signal(libc::SIGUSR2);
    gw.wait_log("upgrade failed: the new process", Duration::from_secs(20));
    thread::sleep(Duration::from_millis(300));
    assert!(alive(pid));
    assert_eq!(get(gw.addr, "/s").text(), "static-ok");
    assert_eq!(get(gw.admin, "/ready").status, 200);
    let logs = gw.logs();
    assert!(logs.contains("keeps serving"), "{logs}");
    // The successor's own reason is in the log too (config error with its line).
    assert!(logs.contains("missing"), "{logs}");

    // Fixed config: the next upgrade goes through.
    gw.write_config(&body(up.addr));
    let next = upgrade(&gw, pid);
    *current.lock().unwrap() = next;
    let (ok, errors) = load.finish();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(ok > 10);
    assert_eq!(get(gw.addr, "/s").text(), "static-ok");
}

#[test]
fn garbage_handover_variables_are_refused_at_startup() {
    // A process started with a handover variable naming no socket refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!("[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[[routes]]\nname = \"s\"\npath = \"/s\"\nstatic = {{ body = \"x\" }}\n"),
    )
    .unwrap();
    for bad in [
        format!("127.0.0.1:{port}=0"),
        format!("127.0.0.1:{port}=999"),
        "nonsense".into(),
    ] {
        let out = std::process::Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .env("RINGWAY_LISTEN_FDS", &bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("upgrade handover"), "{err}");
    }
}
