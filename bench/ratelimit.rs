//! Rate limiter cost per `check`: one hot key, random keys over a full 1 M-key limiter, and two
//! threads charging one key (contended CAS) or two keys (no contention) at the same time.
//!
//! The spec admits everything (T = 1 ns, huge burst) so every call takes the charging path
//! (lookup + CAS), not the cheaper read-only denial. Prints numbers, asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::ratelimit::{now_ns, LimitSpec, Limiter};

const ADMIT_ALL: LimitSpec = LimitSpec {
    requests: 1_000_000_000,
    period: Duration::from_secs(1),
    burst: 1_000_000_000,
};

fn keys(n: u64) -> Vec<[u8; 16]> {
    (0..n)
        .map(|i| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            k[8..].copy_from_slice(b"consumer");
            k
        })
        .collect()
}

/// `iters` checks on `key` from each of two threads at once; returns the wall time.
fn two_threads(lim: &Limiter, a: &[u8], b: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for key in [a, b] {
            s.spawn(move || {
                for now in 0..iters {
                    black_box(lim.check(key, now));
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit");

    g.bench_function("now_ns", |b| b.iter(|| black_box(now_ns())));

    let hot = Limiter::new(ADMIT_ALL, 1_000_000);
    let mut now = 0u64;
    g.bench_function("check/hot_key", |b| {
        b.iter(|| {
            now += 1;
            black_box(hot.check(b"consumer-42", now))
        })
    });

    let pool = keys(1_000_000);
    let random = Limiter::new(ADMIT_ALL, 1_000_000);
    let (mut now, mut rng) = (0u64, 0x2545_f491_4f6c_dd1du64);
    g.bench_function("check/random_of_1M_keys", |b| {
        b.iter(|| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            now += 1;
            let key = &pool[(rng % pool.len() as u64) as usize];
            black_box(random.check(key, now))
        })
    });

    let shared = Limiter::new(ADMIT_ALL, 1_000);
    g.bench_function("check/2_threads_same_key", |b| {
        b.iter_custom(|iters| two_threads(&shared, b"hot", b"hot", iters))
    });
    g.bench_function("check/2_threads_own_keys", |b| {
        b.iter_custom(|iters| two_threads(&shared, b"left", b"right", iters))
    });

    g.finish();
    println!(
        "random-key limiter: {} keys tracked in {} bytes",
        random.tracked_keys(),
        random.memory_bytes()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
