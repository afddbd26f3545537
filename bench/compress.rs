//! CPU cost per input byte and output ratio of the response encoders (`compress::Encoder`, the
//! exact code the gateway runs: a fresh encoder per response, sized to the known length, one
//! write, one finish) on a realistic 10 KiB JSON API response, for gzip levels 1/4/5/6/9,
//! brotli 1/4/5/11 and zstd 1/3. These numbers chose the policy's default levels
//! (`src/compress/policy.rs`). Prints a table; asserts only that each output decodes.
//!
//!   cargo bench --bench compress            (BENCH_SECS=0.2 for a quick pass)

use std::hint::black_box;
use std::io::Read;
use std::time::{Duration, Instant};

use ringway::compress::{Coding, CompressPolicy, Encoder};

/// A product-listing page as an API returns it: 10 KiB of JSON objects with ids, names,
/// prices, tags and timestamps (repetitive keys, varied values), like the loadtest's gzip
/// scenario body.
fn document() -> Vec<u8> {
    let names = [
        "Walnut desk lamp",
        "Ceramic pour-over set",
        "Merino crew socks",
        "Cast iron skillet 26cm",
        "Noise-cancelling headphones",
        "Bamboo cutting board",
        "Trail running shoes",
        "Espresso grinder",
    ];
    let tags = [
        "home", "kitchen", "outdoor", "audio", "apparel", "sale", "new",
    ];
    let mut s = String::from("{\"page\":1,\"per_page\":32,\"items\":[");
    let mut i: u64 = 0;
    let mut x: u64 = 0x2545f4914f6cdd1d;
    while s.len() < 10 * 1024 - 300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\":{},\"sku\":\"SKU-{:06}\",\"name\":\"{}\",\"price\":{{\"amount\":{}.{:02},\
             \"currency\":\"EUR\"}},\"stock\":{},\"rating\":{}.{},\"tags\":[\"{}\",\"{}\"],\
             \"updated_at\":\"2026-11-{:02}T{:02}:{:02}:{:02}Z\",\"available\":{}}}",
            1000 + i * 17,
            x % 1_000_000,
            names[(x % 8) as usize],
            x % 300,
            (x >> 8) % 100,
            (x >> 16) % 500,
            1 + (x >> 20) % 4,
            (x >> 24) % 10,
            tags[((x >> 28) % 7) as usize],
            tags[((x >> 32) % 7) as usize],
            1 + (x >> 36) % 28,
            (x >> 40) % 24,
            (x >> 44) % 60,
            (x >> 50) % 60,
            !(x >> 56).is_multiple_of(3),
        ));
        i += 1;
    }
    s.push_str("],\"total\":4711}");
    s.into_bytes()
}

fn encode(policy: &CompressPolicy, coding: Coding, sized: bool, doc: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let len = sized.then_some(doc.len() as u64);
    let mut e = Encoder::sized(policy, coding, len);
    e.write(doc, out);
    e.finish(out);
}

fn decodes(coding: Coding, bytes: &[u8], doc: &[u8]) -> bool {
    let mut v = Vec::new();
    let ok = match coding {
        Coding::Gzip => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut v)
            .is_ok(),
        Coding::Brotli => brotli_decompressor::Decompressor::new(bytes, 4096)
            .read_to_end(&mut v)
            .is_ok(),
        Coding::Zstd => zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut d| d.read_to_end(&mut v))
            .is_ok(),
        Coding::Identity => {
            v.extend_from_slice(bytes);
            true
        }
    };
    ok && v == doc
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let doc = document();
    // (coding, level, sized): the unsized row is a chunked upstream body (no length known;
    // only zstd uses the length).
    let cases: &[(Coding, i32, bool)] = &[
        (Coding::Gzip, 1, true),
        (Coding::Gzip, 4, true),
        (Coding::Gzip, 5, true),
        (Coding::Gzip, 6, true),
        (Coding::Gzip, 9, true),
        (Coding::Brotli, 1, true),
        (Coding::Brotli, 4, true),
        (Coding::Brotli, 5, true),
        (Coding::Brotli, 11, true),
        (Coding::Zstd, 1, true),
        (Coding::Zstd, 3, true),
        (Coding::Zstd, 3, false),
    ];
    println!(
        "input: {} bytes of JSON; {:.1}s per case\n{:<8}{:>6}{:>8}{:>12}{:>12}{:>10}",
        doc.len(),
        secs,
        "coding",
        "level",
        "length",
        "ns/byte",
        "out bytes",
        "ratio"
    );
    let mut out = Vec::with_capacity(doc.len());
    // The fixed cost of one response (encoder setup and teardown): a 64-byte body.
    let tiny = &doc[..64];
    let policy = CompressPolicy::default();
    for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
        let budget = Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < budget || n < 3 {
            encode(&policy, coding, true, black_box(tiny), &mut out);
            black_box(&out);
            n += 1;
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "setup+finish, default level, 64-byte body: {:<5}{:>9.0} ns per response",
            coding.token(),
            ns
        );
    }
    for &(coding, level, sized) in cases {
        let mut policy = CompressPolicy::default();
        match coding {
            Coding::Gzip => policy.gzip_level = level as u32,
            Coding::Brotli => policy.brotli_level = level as u32,
            _ => policy.zstd_level = level,
        }
        encode(&policy, coding, sized, &doc, &mut out);
        assert!(
            decodes(coding, &out, &doc),
            "{coding:?} {level} does not decode"
        );
        let size = out.len();
        // Warm up, then run for the time budget.
        let budget = Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < budget || n < 3 {
            encode(&policy, coding, sized, black_box(&doc), &mut out);
            black_box(&out);
            n += 1;
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{:<8}{:>6}{:>8}{:>12.2}{:>12}{:>10.3}",
            coding.token(),
            level,
            if sized { "known" } else { "chunked" },
            ns / doc.len() as f64,
            size,
            size as f64 / doc.len() as f64
        );
    }
}
