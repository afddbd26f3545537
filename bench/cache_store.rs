//! One shared cache store versus one store per worker thread: what the shared store's locks
//! cost on a hit, and what it buys in hit ratio.
//!
//! 1. `get` throughput: 2 threads looking up Zipf(1.0)-drawn keys over 100k stored keys, either
//!    in one shared `cache::Store` (the shipped design) or each in its own store (per-core).
//! 2. Hit ratio: requests for Zipf(1.0)-drawn keys over 100k keys spread randomly over 2 workers,
//!    a miss stores the answer: one shared store of `M` bytes, versus a store per worker of
//!    `M / 2` (the same memory) and of `M` (twice the memory).
//!
//! Run: `cargo bench --bench cache_store` (`-- --quick` for a short run). Plain main, no
//! criterion: the numbers are throughput over a fixed time and a ratio, printed as a table.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway::cache::key::{hash, PrimaryKey};
use ringway::cache::{Object, Store};

const KEYS: usize = 100_000;
const BODY: usize = 1024;

/// xorshift64*: fast, deterministic, good enough to draw keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over `n` ranks by inverse CDF (binary search in the cumulative weights).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf(cdf)
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

fn keys() -> Vec<PrimaryKey> {
    (0..KEYS)
        .map(|i| {
            let resource = format!("bench.test/items/{i}");
            let mut text = resource.clone().into_bytes();
            text.extend_from_slice(b"\0GET");
            PrimaryKey {
                hash: hash(&text),
                text: text.into(),
                resource_len: resource.len(),
            }
        })
        .collect()
}

fn object(k: &PrimaryKey, body: &bytes::Bytes) -> Arc<Object> {
    Arc::new(Object {
        status: 200,
        fields: b"content-type: application/json\r\ncache-control: max-age=60\r\n"[..].into(),
        body: body.clone(),
        stored_at: Instant::now(),
        initial_age: Duration::ZERO,
        fresh_for: Duration::from_secs(60),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        must_revalidate: false,
        no_cache: false,
        etag: None,
        last_modified: None,
        tags: Box::default(),
        resource: k.resource().into(),
    })
}

fn put(store: &Store, k: &PrimaryKey, body: &bytes::Bytes) {
    store.put(k, Box::default(), Box::default(), object(k, body));
}

/// Lookups per second over `threads` threads for `dur`; `stores[t]` is thread t's store.
fn get_rate(
    stores: &[Arc<Store>],
    keys: &Arc<Vec<PrimaryKey>>,
    zipf: &Arc<Zipf>,
    dur: Duration,
) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(t, store)| {
            let (store, keys, zipf) = (store.clone(), keys.clone(), zipf.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                // Draws are precomputed so the timed loop is the lookup only.
                let draws: Vec<usize> = (0..1 << 16).map(|_| zipf.draw(&mut rng)).collect();
                let mut n = 0u64;
                let mut found = 0u64;
                let until = Instant::now() + dur;
                while Instant::now() < until {
                    for &i in &draws[..4096] {
                        found += u64::from(store.get(&keys[i]).is_some());
                    }
                    n += 4096;
                    let _ = black_box(&draws);
                }
                black_box(found);
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// Hit ratio of `requests` Zipf draws spread randomly over the stores in `workers` (indexes
/// into `stores`; a shared store appears twice).
fn hit_ratio(stores: &[Arc<Store>], keys: &[PrimaryKey], zipf: &Zipf, requests: usize) -> f64 {
    let body = bytes::Bytes::from(vec![b'x'; BODY]);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut hits = 0usize;
    for _ in 0..requests {
        let store = &stores[(rng.next() % stores.len() as u64) as usize];
        let k = &keys[zipf.draw(&mut rng)];
        if store.get(k).is_some() {
            hits += 1;
        } else {
            put(store, k, &body);
        }
    }
    hits as f64 / requests as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dur = Duration::from_millis(if quick { 500 } else { 3000 });
    let requests = if quick { 1_000_000 } else { 5_000_000 };
    let keys = Arc::new(keys());
    let zipf = Arc::new(Zipf::new(KEYS, 1.0));
    let body = bytes::Bytes::from(vec![b'x'; BODY]);

    // 1. Lookups: every key stored (a bound large enough for all of them).
    let big = 1u64 << 30;
    let shared = Arc::new(Store::new(big));
    let own: Vec<Arc<Store>> = (0..2).map(|_| Arc::new(Store::new(big))).collect();
    for k in keys.iter() {
        put(&shared, k, &body);
        for s in &own {
            put(s, k, &body);
        }
    }
    let shared_rate = get_rate(&[shared.clone(), shared.clone()], &keys, &zipf, dur);
    let own_rate = get_rate(&own, &keys, &zipf, dur);
    let one_rate = get_rate(std::slice::from_ref(&shared), &keys, &zipf, dur);
    println!(
        "get, Zipf(1.0) over {KEYS} stored keys ({} s per row):",
        dur.as_secs_f64()
    );
    println!(
        "  shared store, 2 threads      {:>7.2} Mops/s",
        shared_rate / 1e6
    );
    println!(
        "  store per thread, 2 threads  {:>7.2} Mops/s",
        own_rate / 1e6
    );
    println!(
        "  shared store, 1 thread       {:>7.2} Mops/s",
        one_rate / 1e6
    );
    println!(
        "  shared / per-thread          {:>7.3}",
        shared_rate / own_rate
    );
    drop((shared, own));

    // 2. Hit ratio with a bound that holds about 10% of the keys' bytes.
    let per_object = 1400u64; // ~ weight of one stored 1 KiB answer with its key and head
    let m = KEYS as u64 / 10 * per_object;
    let shared = Arc::new(Store::new(m));
    let shared_hits = hit_ratio(&[shared.clone(), shared], &keys, &zipf, requests);
    let half: Vec<Arc<Store>> = (0..2).map(|_| Arc::new(Store::new(m / 2))).collect();
    let half_hits = hit_ratio(&half, &keys, &zipf, requests);
    let full: Vec<Arc<Store>> = (0..2).map(|_| Arc::new(Store::new(m))).collect();
    let full_hits = hit_ratio(&full, &keys, &zipf, requests);
    println!(
        "hit ratio, {requests} requests, Zipf(1.0) over {KEYS} keys, random over 2 workers, M = {} KiB:",
        m >> 10
    );
    println!("  one shared store of M              {:.3}", shared_hits);
    println!("  a store per worker of M/2 (same)   {:.3}", half_hits);
    println!("  a store per worker of M (2x mem)   {:.3}", full_hits);
}
