//! What one HTTP/2 stream costs inside the h2 crate (0.4), measured without sockets: an h2
//! server and an h2 client on two threads, each with its own current-thread tokio runtime,
//! joined by an in-memory `tokio::io::duplex` pipe. A counting `#[global_allocator]` keeps
//! per-thread counters, so the server thread's numbers are the h2 server's own (plus the
//! minimal handler: accept, `200` with a 5-byte body, END_STREAM).
//!
//! Printed (no criterion: these are counts, not timings):
//! - allocations and bytes allocated per request on the server thread in steady state
//!   (after a warm-up that grows the connection's buffers and stream slab), with 10 streams in
//!   flight and the header fields `h2load -m 10` sends;
//! - server heap held per open stream: the client opens N streams with END_STREAM unset and
//!   the server accepts them without answering; the server thread's live bytes grow by this
//!   much per stream (the `Stream` slot in the slab, the decoded request, the id map entry);
//! - an uncontended `std::sync::Mutex` lock + unlock, the price h2 pays for its internal
//!   per-connection mutex on every stream operation (monoio-http's fork swapped it for
//!   `Rc<UnsafeCell<..>>`).
//!
//! `cargo bench --bench h2_stream`. The numbers are quoted in README.md ("HTTP/2 library
//! choice").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`; the thread-local counters are const-initialised `Cell`s, so
// touching them never allocates (no recursion into the allocator).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + l.size() as u64));
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as i64));
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as i64));
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        let _ = BYTES.try_with(|c| c.set(c.get() + new as u64));
        let _ = LIVE.try_with(|c| c.set(c.get() + new as i64 - l.size() as i64));
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot() -> (u64, u64, i64) {
    (ALLOCS.get(), BYTES.get(), LIVE.get())
}

/// Requests before and during the measurement (`--test`, as `cargo test --benches` passes:
/// a quick run that only checks the bench works).
#[derive(Clone, Copy)]
struct Counts {
    warmup: usize,
    measured: usize,
}
const IN_FLIGHT: usize = 10;
const HELD: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Server thread: answers the first `WARMUP + MEASURED` requests, snapshotting its counters
/// at the start and end of the measured ones, then accepts `HELD` streams without answering.
fn server(io: tokio::io::DuplexStream, tx: mpsc::Sender<String>, n: Counts) {
    runtime().block_on(async move {
        let mut conn = h2::server::Builder::new()
            .max_concurrent_streams(256)
            .handshake::<_, Bytes>(io)
            .await
            .expect("server handshake");
        let mut start = snapshot();
        let t0 = Instant::now();
        let mut t1 = t0;
        for i in 0..n.warmup + n.measured {
            if i == n.warmup {
                start = snapshot();
                t1 = Instant::now();
            }
            let (req, mut respond) = conn.accept().await.expect("a stream").expect("ok");
            black_box(req);
            let mut body = respond
                .send_response(http::Response::new(()), false)
                .expect("send_response");
            body.send_data(Bytes::from_static(b"hello"), true)
                .expect("send_data");
        }
        let end = snapshot();
        let secs = t1.elapsed().as_secs_f64();
        let m = n.measured as f64;
        let _ = tx.send(format!(
            "server, steady state, {IN_FLIGHT} streams in flight: {:.2} allocations and {:.0} bytes allocated per request; {:.0} requests/s (client and server on their own threads)",
            (end.0 - start.0) as f64 / m,
            (end.1 - start.1) as f64 / m,
            m / secs
        ));
        let mut held = Vec::with_capacity(HELD);
        let reserved = snapshot();
        for _ in 0..HELD {
            let (req, respond) = conn.accept().await.expect("a stream").expect("ok");
            held.push((req, respond));
        }
        let after = snapshot();
        let _ = tx.send(format!(
            "server heap held per open stream (request accepted, not answered): {:.0} bytes ({} streams; {} allocations each)",
            (after.2 - reserved.2) as f64 / HELD as f64,
            HELD,
            (after.0 - reserved.0) as f64 / HELD as f64,
        ));
        // Keep the streams open until the client is done looking.
        let _ = conn.accept().await;
        drop(held);
    });
}

/// Client thread: `IN_FLIGHT` requests at a time until the server has answered all of them,
/// then `HELD` requests that never end.
fn client(io: tokio::io::DuplexStream, n: Counts) {
    runtime().block_on(async move {
        let (send, conn) = h2::client::handshake(io).await.expect("client handshake");
        let driver = tokio::task::spawn(async move {
            let _ = conn.await;
        });
        let mut send = send.ready().await.expect("ready");
        let total = n.warmup + n.measured;
        let mut pending = std::collections::VecDeque::new();
        let req = || {
            // What h2load sends: the four pseudo-headers and two regular fields.
            http::Request::builder()
                .uri("https://localhost/item")
                .header("user-agent", "h2load nghttp2/1.52.0")
                .header("accept", "*/*")
                .body(())
                .expect("request")
        };
        for _ in 0..total {
            if pending.len() == IN_FLIGHT {
                let f: h2::client::ResponseFuture = pending.pop_front().expect("one");
                let resp = f.await.expect("response");
                let mut body = resp.into_body();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("data");
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
            }
            send = send.ready().await.expect("ready");
            let (f, _) = send.send_request(req(), true).expect("send_request");
            pending.push_back(f);
        }
        for f in pending {
            let _ = f.await;
        }
        let mut open = Vec::with_capacity(HELD);
        for _ in 0..HELD {
            send = send.ready().await.expect("ready");
            open.push(send.send_request(req(), false).expect("send_request"));
        }
        // Let the connection task flush them and the server read them, then close.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        drop(open);
        drop(send);
        driver.abort();
    });
}

fn mutex_cost() -> String {
    let m = std::sync::Mutex::new(0u64);
    let n = 20_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        *g = black_box(*g + i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    format!("uncontended std::sync::Mutex lock + add + unlock: {ns:.1} ns")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = if std::env::args().any(|a| a == "--test") {
        Counts {
            warmup: 100,
            measured: 1_000,
        }
    } else {
        Counts {
            warmup: 20_000,
            measured: 100_000,
        }
    };
    let (a, b) = tokio::io::duplex(1 << 20);
    let (tx, rx) = mpsc::channel();
    let s = std::thread::spawn(move || server(a, tx, n));
    let c = std::thread::spawn(move || client(b, n));
    for line in rx.iter().take(2) {
        println!("{line}");
    }
    let _ = c.join();
    let _ = s.join();
    println!("{}", mutex_cost());
}
