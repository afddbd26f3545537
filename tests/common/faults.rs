//! Fault-injecting upstreams: one loopback HTTP/1.1 server whose behaviour a test switches at
//! run time (answer, 5xx, reset mid-response, reset before the head, hang, slow first byte,
//! refuse connections, flap between healthy and failing).
//!
//! Every request that reaches the server is recorded with its path, so a test can count what
//! the gateway sent (health probes included) and tell which target served what.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{read_request, Received};

/// What the server does with the next request (or connection, for `Refuse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 200 with the server's name as body and in `X-Upstream`.
    Ok,
    /// This status (a 5xx burst, say) with a short body.
    Status(u16),
    /// Head and half the announced body, then a TCP reset.
    ResetMidResponse,
    /// A TCP reset as soon as the request is read: no byte of a response.
    ResetBeforeHead,
    /// Reads the request and never answers (the connection stays open until the test ends).
    Hang,
    /// Waits this long before the response head, then answers 200.
    SlowFirstByte(Duration),
    /// Connections are refused: the listening socket is closed until the fault changes.
    Refuse,
    /// Alternates: `Ok` for the first period, `Status(500)` for the next, and so on.
    Flap(Duration),
}

struct State {
    fault: Mutex<Fault>,
    since: Mutex<Instant>,
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// A loopback upstream whose behaviour the test switches with `set`.
pub struct FaultyUpstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    state: Arc<State>,
}

impl FaultyUpstream {
    /// Starts answering `Fault::Ok` on an ephemeral loopback port.
    pub fn start(name: &'static str) -> FaultyUpstream {
        FaultyUpstream::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts answering `Fault::Ok` on `addr` (e.g. another loopback address with the port of
    /// a first server, so one `HOST:PORT` can resolve to either).
    pub fn start_on(name: &'static str, addr: SocketAddr) -> FaultyUpstream {
        let listener = TcpListener::bind(addr).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            fault: Mutex::new(Fault::Ok),
            since: Mutex::new(Instant::now()),
            received: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        thread::spawn(move || accept_loop(listener, addr, name, st));
        FaultyUpstream { addr, name, state }
    }

    /// Switches the behaviour for requests (and connections) from now on.
    pub fn set(&self, f: Fault) {
        *self.state.since.lock().unwrap() = Instant::now();
        *self.state.fault.lock().unwrap() = f;
    }

    pub fn fault(&self) -> Fault {
        *self.state.fault.lock().unwrap()
    }

    /// Every request received so far (health probes included).
    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Requests received so far whose target is exactly `path`.
    pub fn count_path(&self, path: &str) -> usize {
        let r = self.state.received.lock().unwrap();
        r.iter().filter(|q| q.target == path).count()
    }

    /// Requests received so far whose target is not `path` (traffic other than probes).
    pub fn count_except(&self, path: &str) -> usize {
        let r = self.state.received.lock().unwrap();
        r.iter().filter(|q| q.target != path).count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: TcpListener, addr: SocketAddr, name: &'static str, st: Arc<State>) {
    let mut listener = Some(listener);
    while !st.stop.load(Ordering::Relaxed) {
        let refusing = *st.fault.lock().unwrap() == Fault::Refuse;
        if refusing {
            // Closing the listening socket makes the kernel answer SYNs with RST.
            listener = None;
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr) {
                Ok(l) => listener.insert(l),
                Err(_) => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        l.set_nonblocking(true).ok();
        match l.accept() {
            Ok((s, _)) => {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                thread::spawn(move || serve(s, name, st));
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn serve(s: TcpStream, name: &'static str, st: Arc<State>) {
    s.set_nodelay(true).ok();
    s.set_nonblocking(false).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let Ok(Some(req)) = read_request(&mut r) else {
            return;
        };
        st.received.lock().unwrap().push(req.clone());
        let fault = current(&st);
        let head_only = req.method == "HEAD";
        match fault {
            Fault::Ok | Fault::Refuse => answer(&mut w, 200, name, head_only),
            Fault::Status(code) => answer(&mut w, code, name, head_only),
            Fault::SlowFirstByte(d) => {
                thread::sleep(d);
                answer(&mut w, 200, name, head_only);
            }
            Fault::ResetMidResponse => {
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Upstream: {name}\r\n\r\nhalf"
                );
                let _ = w.flush();
                thread::sleep(Duration::from_millis(20));
                reset(&w);
                return;
            }
            Fault::ResetBeforeHead => {
                reset(&w);
                return;
            }
            Fault::Hang => {
                while !st.stop.load(Ordering::Relaxed) && current(&st) == Fault::Hang {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Fault::Flap(_) => unreachable!("current() resolves Flap"),
        }
    }
}

/// The fault in force now, with `Flap` resolved to `Ok` or `Status(500)`.
fn current(st: &State) -> Fault {
    let f = *st.fault.lock().unwrap();
    if let Fault::Flap(period) = f {
        let elapsed = st.since.lock().unwrap().elapsed();
        let phase = elapsed.as_millis() / period.as_millis().max(1);
        return if phase.is_multiple_of(2) {
            Fault::Ok
        } else {
            Fault::Status(500)
        };
    }
    f
}

fn answer(w: &mut TcpStream, status: u16, name: &str, head_only: bool) {
    let body = if status == 200 {
        name.to_string()
    } else {
        format!("{name} failed with {status}")
    };
    let _ = write!(
        w,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n",
        body.len()
    );
    if !head_only {
        let _ = w.write_all(body.as_bytes());
    }
    let _ = w.flush();
}

/// Upstream `name` as the admin API's `GET /upstreams` shows it (targets with their health).
pub fn upstream_state(gw: &super::Gateway, name: &str) -> serde_json::Value {
    let r = super::request(
        gw.admin,
        "GET",
        "/upstreams",
        &[("Connection", "close")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["upstreams"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == name).cloned())
        .unwrap_or_else(|| panic!("upstream {name} not listed: {v}"))
}

/// The `GET /upstreams` entry of the target at `addr` of upstream `name`.
pub fn target_state(gw: &super::Gateway, name: &str, addr: SocketAddr) -> serde_json::Value {
    let want = addr.to_string();
    upstream_state(gw, name)["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["address"] == want.as_str()).cloned())
        .unwrap_or_else(|| panic!("target {addr} of {name} not listed"))
}

/// Closes the connection with an RST instead of a FIN (SO_LINGER on, zero timeout): the
/// caller then drops the stream.
pub fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own with a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The reset goes out when the caller drops the stream's last descriptor.
}
