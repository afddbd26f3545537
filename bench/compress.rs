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
    document_of(10 * 1024)
}

/// The same kind of page, about `size` bytes long.
fn document_of(size: usize) -> Vec<u8> {
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
    while s.len() + 300 < size {
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
    backends(secs);
}

/// Runs `f` for the time budget (after one warm-up call) and returns ns per call.
fn time_per_call(secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget || n < 3 {
        f();
        n += 1;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// What nginx's gzip filter does per response, through the C zlib (libz-sys: the system
/// zlib when present, as nginx links it): a fresh raw-deflate state whose window and hash are
/// sized down to a known length (`ngx_http_gzip_filter_memory`'s loop), one `deflate` to the
/// end, the CRC, the 18 bytes of gzip header and trailer. Returns the gzip stream's length.
mod nginx_zlib {
    use libz_sys as z;
    use std::ffi::{c_int, c_uint, c_void};

    extern "C" {
        fn malloc(n: usize) -> *mut c_void;
        fn free(p: *mut c_void);
    }

    unsafe extern "C" fn zalloc(_: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
        // SAFETY: malloc accepts any size; zlib checks for null.
        unsafe { malloc(items as usize * size as usize) }
    }

    unsafe extern "C" fn zfree(_: *mut c_void, p: *mut c_void) {
        // SAFETY: `p` came from `zalloc`.
        unsafe { free(p) }
    }

    /// nginx's window bits and memLevel for a body of `len` bytes (defaults 15 and 8).
    pub fn sizing(len: usize) -> (c_int, c_int) {
        let (mut wbits, mut memlevel) = (15, 8);
        while wbits > 9 && len < (1usize << (wbits - 1)).saturating_sub(262) {
            wbits -= 1;
            memlevel -= 1;
        }
        (wbits, memlevel.max(1))
    }

    pub fn gzip(level: i32, body: &[u8], out: &mut Vec<u8>) -> usize {
        let (wbits, memlevel) = sizing(body.len());
        out.clear();
        out.resize(body.len() + body.len() / 8 + 64, 0);
        let mut s = z::z_stream {
            next_in: body.as_ptr() as *mut u8,
            avail_in: body.len() as c_uint,
            total_in: 0,
            next_out: out[10..].as_mut_ptr(),
            avail_out: (out.len() - 18) as c_uint,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        };
        // SAFETY: `s` is a fully initialised stream with valid allocators; the input and output
        // pointers cover live buffers of the stated lengths; the state is ended before return.
        let n = unsafe {
            let rc = z::deflateInit2_(
                &mut s,
                level,
                z::Z_DEFLATED,
                -wbits,
                memlevel,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            );
            assert_eq!(rc, z::Z_OK);
            let rc = z::deflate(&mut s, z::Z_FINISH);
            assert_eq!(rc, z::Z_STREAM_END);
            let n = s.total_out as usize;
            z::deflateEnd(&mut s);
            n
        };
        // SAFETY: the body is a live slice of the stated length.
        let crc = unsafe { z::crc32(0, body.as_ptr(), body.len() as c_uint) } as u32;
        out[..10].copy_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        out.truncate(10 + n);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.len()
    }
}

/// The gzip backends on whole bodies of several sizes: ringway's encoder as the gateway runs it
/// for a known length in one piece (libdeflate one-shot), its streaming path (zlib-rs, a
/// chunked body), libdeflate at neighbouring levels, and nginx's C zlib sized to the body.
/// Decides which level of libdeflate does the work of zlib's level 5 (output no larger).
fn backends(secs: f64) {
    println!("\ngzip backends, whole body per call: ns per body (output bytes)");
    let sizes = [1024usize, 10 * 1024, 64 * 1024];
    print!("{:<34}", "backend");
    for n in sizes {
        print!("{:>22}", format!("{} B", document_of(n).len()));
    }
    println!();
    let docs: Vec<Vec<u8>> = sizes.iter().map(|&n| document_of(n)).collect();
    let mut out = Vec::new();
    for level in [4u32, 5, 6] {
        let row = |name: String, f: &mut dyn FnMut(&[u8], &mut Vec<u8>) -> usize| {
            print!("{name:<34}");
            let mut out = Vec::new();
            for doc in &docs {
                let size = f(doc, &mut out);
                let ns = time_per_call(secs, || {
                    f(black_box(doc), &mut out);
                });
                print!("{:>22}", format!("{:.1} us ({size})", ns / 1000.0));
            }
            println!();
        };
        let mut policy = CompressPolicy::default();
        policy.gzip_level = level;
        row(
            format!("ringway encoder, known length L{level}"),
            &mut |doc, out| {
                encode(&policy, Coding::Gzip, true, doc, out);
                out.len()
            },
        );
        row(
            format!("ringway streaming (zlib-rs) L{level}"),
            &mut |doc, out| {
                out.clear();
                let mut e = Encoder::new(&policy, Coding::Gzip);
                // Two pieces: the streaming path, as for a chunked body.
                let half = doc.len() / 2;
                e.write(&doc[..half], out);
                e.write(&doc[half..], out);
                e.finish(out);
                out.len()
            },
        );
        row(
            format!("nginx: C zlib sized to body L{level}"),
            &mut |doc, out| nginx_zlib::gzip(level as i32, doc, out),
        );
    }
    for level in [4i32, 5, 6, 7] {
        let Ok(lvl) = libdeflater::CompressionLvl::new(level) else {
            continue;
        };
        let mut c = libdeflater::Compressor::new(lvl);
        print!("{:<34}", format!("libdeflate L{level}"));
        for doc in &docs {
            let mut run = |doc: &[u8]| {
                out.resize(c.gzip_compress_bound(doc.len()), 0);
                let n = c.gzip_compress(doc, &mut out).unwrap_or(0);
                out.truncate(n);
                n
            };
            let size = run(doc);
            let ns = time_per_call(secs, || {
                run(black_box(doc));
            });
            print!("{:>22}", format!("{:.1} us ({size})", ns / 1000.0));
        }
        println!();
    }
}
