//! How ringway reaches Redis, measured against the alternative the issue offered: each worker
//! owning its own pipelined client on its own runtime (what ringway does), versus one client
//! thread serving every worker through channels (a request goes over a cross-thread queue, the
//! reply comes back through a cross-thread oneshot that wakes the worker).
//!
//! Both run the same load against a private redis-server on loopback: `WORKERS` threads, each
//! with `IN_FLIGHT` concurrent callers doing `INCR` for `SECONDS`. Prints throughput and
//! latency percentiles side by side; asserts nothing. Run: `cargo bench --bench redis_client`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringway::redis::{block_on, Client, RedisSettings, RedisShared, Script};

const WORKERS: usize = 2;
const IN_FLIGHT: usize = 64;
const SECONDS: u64 = 3;

type Job = (Vec<u8>, futures_channel::oneshot::Sender<()>);

/// The global limit's script, as `exact` mode calls it once per request.
static GCRA: Script = Script::new(include_str!("../src/ratelimit/gcra.lua"));

fn main() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some(mut server) = start_redis(port) else {
        println!("redis_client: redis-server not installed; skipped");
        return;
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let shared = Arc::new(RedisShared::new(RedisSettings::for_nodes(
        vec![addr],
        false,
        "bench",
    )));
    println!(
        "{WORKERS} workers x {IN_FLIGHT} callers, INCR, {SECONDS}s each, redis-server on loopback"
    );
    println!(
        "{:<34} {:>12} {:>9} {:>9} {:>9}",
        "design", "ops/s", "p50 µs", "p99 µs", "max µs"
    );
    report("per-worker client (ringway)", per_worker(&shared));
    report("one client thread + channels", client_thread(&shared));
    // What one `exact` request waits for at a modest rate: one round trip of a paced caller
    // (2,000 calls/s, so both processes wake from idle as they do for a gateway at that rate).
    report(
        "paced: gcra.lua, 1 caller at 2,000/s",
        paced(&shared, 2_000),
    );
    let _ = server.kill();
    let _ = server.wait();
}

fn start_redis(port: u16) -> Option<Child> {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(child)
}

fn report(name: &str, (ops, h): (u64, Histogram<u64>)) {
    println!(
        "{name:<34} {:>12} {:>9} {:>9} {:>9}",
        ops / SECONDS,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// Each worker thread: its own runtime and client, `IN_FLIGHT` tasks calling it.
fn per_worker(shared: &Arc<RedisShared>) -> (u64, Histogram<u64>) {
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                block_on(async move {
                    let c = Client::new(shared);
                    let key = format!("bench:w{w}");
                    callers(move || {
                        let c = c.clone();
                        let key = key.clone();
                        async move {
                            let _ = c
                                .cmd(Some(key.as_bytes()), &[b"INCR", key.as_bytes()])
                                .await;
                        }
                    })
                    .await
                })
            })
        })
        .collect();
    merge(threads)
}

/// One client thread; workers send each command through a cross-thread queue and wait on a
/// cross-thread oneshot.
fn client_thread(shared: &Arc<RedisShared>) -> (u64, Histogram<u64>) {
    let (tx, mut rx) = futures_channel::mpsc::unbounded::<Job>();
    let shared2 = shared.clone();
    let server = std::thread::spawn(move || {
        block_on(async move {
            use futures_core::Stream;
            use std::pin::Pin;
            let c = Client::new(shared2);
            while let Some((key, done)) =
                std::future::poll_fn(|cx| Stream::poll_next(Pin::new(&mut rx), cx)).await
            {
                let c = c.clone();
                monoio::spawn(async move {
                    let _ = c.cmd(Some(&key), &[b"INCR", &key]).await;
                    let _ = done.send(());
                });
            }
        })
    });
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                block_on(async move {
                    let key = format!("bench:t{w}").into_bytes();
                    callers(move || {
                        let tx = tx.clone();
                        let key = key.clone();
                        async move {
                            let (done, wait) = futures_channel::oneshot::channel();
                            if tx.unbounded_send((key, done)).is_ok() {
                                let _ = wait.await;
                            }
                        }
                    })
                    .await
                })
            })
        })
        .collect();
    drop(tx);
    let out = merge(threads);
    let _ = server.join();
    out
}

/// One caller on one thread, a call every `1/rate` s, for `SECONDS`.
fn paced(shared: &Arc<RedisShared>, rate: u64) -> (u64, Histogram<u64>) {
    let shared = shared.clone();
    let t = std::thread::spawn(move || {
        block_on(async move {
            let c = Client::new(shared);
            let mut h = new_hist();
            let mut n = 0u64;
            let gap = Duration::from_nanos(1_000_000_000 / rate);
            let start = Instant::now();
            let end = start + Duration::from_secs(SECONDS);
            let mut next = start;
            while next < end {
                let now = Instant::now();
                if next > now {
                    monoio::time::sleep(next - now).await;
                }
                let t = Instant::now();
                // What `exact` mode sends: take 1 token of a 1,000,000/s limit.
                let _ = c
                    .eval(&GCRA, &[b"bench:{p}:gcra"], &[b"1", b"1", b"1000000"])
                    .await;
                let _ = h.record(t.elapsed().as_micros() as u64);
                n += 1;
                next += gap;
            }
            (n, h)
        })
    });
    merge(vec![t])
}

/// Runs `IN_FLIGHT` callers of `call` for `SECONDS`; returns ops and latencies (µs).
async fn callers<F, Fut>(call: F) -> (u64, Histogram<u64>)
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let end = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let call = call.clone();
        tasks.push(monoio::spawn(async move {
            let mut h = new_hist();
            let mut n = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                call().await;
                let _ = h.record(t.elapsed().as_micros() as u64);
                n += 1;
            }
            (n, h)
        }));
    }
    let mut total = (0, new_hist());
    for t in tasks {
        let (n, h) = t.await;
        total.0 += n;
        let _ = total.1.add(h);
    }
    total
}

fn merge(threads: Vec<std::thread::JoinHandle<(u64, Histogram<u64>)>>) -> (u64, Histogram<u64>) {
    let mut total = (0, new_hist());
    for t in threads {
        if let Ok((n, h)) = t.join() {
            total.0 += n;
            let _ = total.1.add(h);
        }
    }
    total
}
