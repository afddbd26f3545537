//! Streaming encoders with bounded buffers: gzip (flate2's raw deflate on the pure-Rust
//! zlib-rs backend, with the gzip header and CRC trailer written here; a body of known length
//! up to `ONE_SHOT_MAX` is gathered and gzipped in one call by libdeflate instead), brotli (the
//! `brotli` crate's stream state) and zstd (`zstd-safe`'s streaming context, cargo feature
//! `zstd`).
//!
//! Invariants:
//! - Each call consumes all of its input and appends only what the coding has ready, so the
//!   memory a response holds is the coding's own state (its window: gzip 32 KiB, brotli at
//!   most `BROTLI_MAX_LGWIN`, zstd at most `ZSTD_MAX_WINDOW_LOG`) plus one call's output,
//!   whatever the body's length.
//! - Nothing panics. An encoder error (none is expected on well-formed calls) marks the
//!   encoder failed: it appends nothing more, and the client sees a truncated stream that its
//!   decoder rejects, never bytes it would take as the whole body.
//! - A known body length sizes zstd's window and tables down to the body (its source size
//!   hint): a 10 KiB response does not pay for setting up a 2 MiB window.
//! - gzip and zstd states are reused: each worker thread keeps up to `POOL` of each, reset,
//!   for its next response (thread-per-core: no lock; a pool is per thread, not per Core,
//!   because an encoder is made and dropped inside one exchange on one worker). Setting one
//!   up costs about 8 us (gzip: 160 KiB of zeroed tables) and 10 us (zstd) per response,
//!   15-30% of a 10 KiB response's whole cost (bench/compress.rs).
//! - gzip, whole: a body whose announced length is at most `ONE_SHOT_MAX` (the common API
//!   answer) is gathered until it is complete (no copy when it comes in one piece) and then
//!   compressed by libdeflate in one call: no streaming state to reset, no per-piece calls. At
//!   the same level libdeflate writes no more bytes than zlib-rs (about as many as nginx's
//!   zlib) and takes about 0.7x the time of either on a 10 KiB JSON body (bench/compress.rs,
//!   "gzip backends"). While such a body is gathered a flush emits nothing: its head and bytes
//!   leave together once the body is in (as nginx, which buffers the upstream's answer). A
//!   longer or unknown length streams through zlib-rs, with flushes as they come.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::policy::Coding;
use super::policy::CompressPolicy;

/// brotli's largest window, 2^19 = 512 KiB (ngx_brotli's default; the format allows 16 MiB,
/// which a streamed response would pay for in memory per connection). brotli emits a
/// meta-block per 2^(lgwin+1) bytes of input at most, so a long body's output comes in pieces
/// of up to 1 MiB unless the stream is flushed.
const BROTLI_MAX_LGWIN: u32 = 19;
/// zstd's largest window, 2^19 = 512 KiB (level 3 alone would use 2 MiB).
#[cfg(feature = "zstd")]
const ZSTD_MAX_WINDOW_LOG: u32 = 19;
/// Idle encoder states kept per worker thread and coding (gzip about 300 KiB each, zstd at
/// most a few MiB after a long body).
const POOL: usize = 4;
/// Output grows by this much while a coding has more to give.
const OUT_STEP: usize = 16 * 1024;
/// The longest announced body gathered and gzipped in one call: what one response may hold
/// besides its output (one upstream read, `exchange::body::STREAM_CHUNK`).
const ONE_SHOT_MAX: u64 = 64 * 1024;

/// The gzip member header (RFC 1952): no name, no mtime, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One response body's encoder.
pub struct Encoder {
    coding: Coding,
    inner: Inner,
    /// The body's announced length, and the bytes written so far.
    len: Option<u64>,
    taken: u64,
}

enum Inner {
    Gzip(Box<Gzip>),
    Brotli(Box<brotli::enc::encode::BrotliEncoderStateStruct<brotli::enc::StandardAlloc>>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::zstd_safe::CCtx<'static>),
    /// Identity, a coding this build lacks, or a failed/finished encoder: appends nothing more
    /// (identity passes the input through).
    Plain,
    Failed,
}

struct Gzip {
    /// The streaming state, taken from the pool on the first piece that is not the whole body.
    deflate: Option<Compress>,
    level: u32,
    crc: Crc,
    started: bool,
    /// The whole stream was written in one call (libdeflate): nothing more follows.
    whole: bool,
    /// The body's length is known and small: it is gathered in `pending` until complete.
    gather: bool,
    pending: Vec<u8>,
    /// The stream reached its end: only such a state is reset and pooled. zlib-rs 0.6.9 at
    /// level 1 produced a corrupt next stream from a state reset in the middle of one (an
    /// abandoned response; `pooled_states_start_clean`), so abandoned states are dropped.
    ended: bool,
}

thread_local! {
    /// Reset gzip states of this worker, with their level.
    static GZIP_POOL: std::cell::RefCell<Vec<(u32, Compress)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// This worker's libdeflate compressors, by level (one per level used, about 300 KiB
    /// each; a compressor keeps nothing between calls).
    static ONE_SHOT: std::cell::RefCell<[Option<libdeflater::Compressor>; 10]> =
        const { std::cell::RefCell::new([const { None }; 10]) };
}

/// Gzips the whole `body` in one call at `level` (0..=9), appending the gzip stream to `out`.
/// `false` (nothing appended) if it could not (the caller streams instead).
fn gzip_whole(level: u32, body: &[u8], out: &mut Vec<u8>) -> bool {
    ONE_SHOT
        .try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return false;
            };
            let Some(slot) = c.get_mut(level as usize) else {
                return false;
            };
            let c = match slot {
                Some(c) => c,
                None => {
                    let Ok(lvl) = libdeflater::CompressionLvl::new(level as i32) else {
                        return false;
                    };
                    slot.insert(libdeflater::Compressor::new(lvl))
                }
            };
            let start = out.len();
            out.resize(start + c.gzip_compress_bound(body.len()), 0);
            match c.gzip_compress(body, &mut out[start..]) {
                Ok(n) => {
                    out.truncate(start + n);
                    true
                }
                Err(_) => {
                    out.truncate(start);
                    false
                }
            }
        })
        .unwrap_or(false)
}

#[cfg(feature = "zstd")]
thread_local! {
    /// Reset zstd contexts of this worker.
    static ZSTD_POOL: std::cell::RefCell<Vec<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A pooled gzip state at `level`, or a new one.
fn gzip_state(level: u32) -> Compress {
    let pooled = GZIP_POOL
        .try_with(|p| {
            let mut p = p.try_borrow_mut().ok()?;
            let i = p.iter().position(|(l, _)| *l == level)?;
            Some(p.swap_remove(i).1)
        })
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| Compress::new(Compression::new(level), false))
}

/// Hands a finished or abandoned encoder's state back to this worker's pool, reset.
fn recycle(inner: Inner) {
    match inner {
        Inner::Gzip(g) => {
            let Gzip {
                deflate,
                level,
                ended,
                ..
            } = *g;
            let Some(mut deflate) = deflate else {
                return;
            };
            if !ended {
                return;
            }
            let _ = GZIP_POOL.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    if p.len() < POOL {
                        deflate.reset();
                        p.push((level, deflate));
                    }
                }
            });
        }
        #[cfg(feature = "zstd")]
        Inner::Zstd(mut c) => {
            use zstd::zstd_safe::ResetDirective;
            if c.reset(ResetDirective::SessionAndParameters).is_err() {
                return;
            }
            let _ = ZSTD_POOL.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    if p.len() < POOL {
                        p.push(c);
                    }
                }
            });
        }
        _ => {}
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        recycle(std::mem::replace(&mut self.inner, Inner::Failed));
    }
}

impl Encoder {
    /// An encoder for one response; `len`: the body's length when the upstream said it.
    pub fn new(policy: &CompressPolicy, coding: Coding) -> Encoder {
        Encoder::sized(policy, coding, None)
    }

    /// As `new`, with the body's length when known (sizes the coding's window).
    pub fn sized(policy: &CompressPolicy, coding: Coding, len: Option<u64>) -> Encoder {
        let inner = match coding {
            Coding::Identity => Inner::Plain,
            Coding::Gzip => {
                let level = policy.gzip_level.min(9);
                Inner::Gzip(Box::new(Gzip {
                    deflate: None,
                    level,
                    crc: Crc::new(),
                    started: false,
                    whole: false,
                    gather: matches!(len, Some(n) if n <= ONE_SHOT_MAX),
                    pending: Vec::new(),
                    ended: false,
                }))
            }
            Coding::Brotli => brotli_state(policy.brotli_level),
            Coding::Zstd => zstd_state(policy.zstd_level, len),
        };
        Encoder {
            coding,
            inner,
            len,
            taken: 0,
        }
    }

    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Compresses `input`, appending whatever output is ready to `out`.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.taken = self.taken.saturating_add(input.len() as u64);
        let complete = self.len == Some(self.taken);
        let ok = match &mut self.inner {
            Inner::Plain => {
                if self.coding == Coding::Identity {
                    out.extend_from_slice(input);
                }
                true
            }
            Inner::Failed => true,
            Inner::Gzip(g) => g.write(input, complete, out),
            Inner::Brotli(s) => brotli_run(s, Op::Process, input, out),
            #[cfg(feature = "zstd")]
            Inner::Zstd(c) => zstd_run(c, Op::Process, input, out),
        };
        if !ok {
            self.inner = Inner::Failed;
        }
    }

    /// Appends output ready so far without ending the stream (a streamed response's flush):
    /// everything written so far becomes decodable by the client, except a small gzip body of
    /// known length, which is held until it is complete (see the module header).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        // The whole announced body is in: `finish` follows at once, and a flush before it
        // would only add a block boundary (bytes and CPU) to the common small response.
        if self.len == Some(self.taken) {
            return;
        }
        let ok = match &mut self.inner {
            Inner::Plain | Inner::Failed => true,
            Inner::Gzip(g) => !g.started || g.whole || g.run(&[], FlushCompress::Sync, out),
            Inner::Brotli(s) => brotli_run(s, Op::Flush, &[], out),
            #[cfg(feature = "zstd")]
            Inner::Zstd(c) => zstd_run(c, Op::Flush, &[], out),
        };
        if !ok {
            self.inner = Inner::Failed;
        }
    }

    /// Ends the stream, appending the rest of the output. Later calls append nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let ok = match &mut self.inner {
            Inner::Plain | Inner::Failed => true,
            Inner::Gzip(g) => g.finish(out),
            Inner::Brotli(s) => brotli_run(s, Op::Finish, &[], out),
            #[cfg(feature = "zstd")]
            Inner::Zstd(c) => zstd_run(c, Op::Finish, &[], out),
        };
        let next = if ok && self.coding == Coding::Identity {
            Inner::Plain
        } else {
            Inner::Failed
        };
        let done = std::mem::replace(&mut self.inner, next);
        if ok {
            recycle(done);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Process,
    Flush,
    Finish,
}

impl Gzip {
    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&GZIP_HEADER);
        }
    }

    /// `complete`: with `input`, the announced length has been reached.
    fn write(&mut self, input: &[u8], complete: bool, out: &mut Vec<u8>) -> bool {
        if self.whole {
            return input.is_empty();
        }
        if self.gather && !self.started {
            if !complete {
                if self.pending.len() + input.len() <= ONE_SHOT_MAX as usize {
                    self.pending.extend_from_slice(input);
                    return true;
                }
                // More than announced (never through the forward phase): stream it all.
                let held = std::mem::take(&mut self.pending);
                self.gather = false;
                return self.write(&held, false, out) && self.write(input, false, out);
            }
            let whole = if self.pending.is_empty() {
                input
            } else {
                self.pending.extend_from_slice(input);
                &self.pending[..]
            };
            if gzip_whole(self.level, whole, out) {
                self.started = true;
                self.whole = true;
                self.pending = Vec::new();
                return true;
            }
            // libdeflate refused (no memory for its state): stream what was gathered.
            let held = std::mem::take(&mut self.pending);
            self.gather = false;
            return if held.is_empty() {
                self.write(input, false, out)
            } else {
                self.write(&held, false, out)
            };
        }
        self.header(out);
        self.crc.update(input);
        self.run(input, FlushCompress::None, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if self.whole {
            return true;
        }
        // A gathered body that ended short of its length (or an empty one) is compressed as
        // it is; the framing below the encoder reports the short body.
        if !self.started {
            let held = std::mem::take(&mut self.pending);
            if gzip_whole(self.level, &held, out) {
                self.started = true;
                self.whole = true;
                return true;
            }
            self.gather = false;
            if !self.write(&held, false, out) {
                return false;
            }
        }
        self.header(out);
        if !self.run(&[], FlushCompress::Finish, out) {
            return false;
        }
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.ended = true;
        true
    }

    /// Feeds all of `input` with `flush`, growing `out` while deflate has output ready.
    fn run(&mut self, mut input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) -> bool {
        let level = self.level;
        let deflate = self.deflate.get_or_insert_with(|| gzip_state(level));
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(OUT_STEP.max(input.len() / 4));
            }
            let (before_in, before_out) = (deflate.total_in(), deflate.total_out());
            let spare = out.capacity() - out.len();
            let status = match deflate.compress_vec(input, out, flush) {
                Ok(s) => s,
                Err(_) => return false,
            };
            let used = (deflate.total_in() - before_in) as usize;
            let produced = (deflate.total_out() - before_out) as usize;
            input = input.get(used..).unwrap_or_default();
            match (status, flush) {
                (Status::StreamEnd, _) => return true,
                (_, FlushCompress::Finish) => {}
                // All input taken and output room left over: deflate has nothing more now.
                _ if input.is_empty() && produced < spare => return true,
                _ => {}
            }
            if used == 0 && produced == 0 && spare >= 64 {
                return false; // no progress with room to spare: never loop forever
            }
        }
    }
}

fn brotli_state(quality: u32) -> Inner {
    use brotli::enc::encode::{BrotliEncoderParameter as P, BrotliEncoderStateStruct};
    let mut s = BrotliEncoderStateStruct::new(brotli::enc::StandardAlloc::default());
    // A fixed window, not one sized to a known length: the brotli crate at quality 5 took
    // 470 ns per byte with a 16 KiB window on a 10 KiB body, 17 with 512 KiB (and quality 4
    // was faster too); a size hint changed nothing (bench/compress.rs).
    let ok = s.set_parameter(P::BROTLI_PARAM_QUALITY, quality.min(11))
        && s.set_parameter(P::BROTLI_PARAM_LGWIN, BROTLI_MAX_LGWIN);
    if ok {
        Inner::Brotli(Box::new(s))
    } else {
        Inner::Failed
    }
}

fn brotli_run(
    s: &mut brotli::enc::encode::BrotliEncoderStateStruct<brotli::enc::StandardAlloc>,
    op: Op,
    input: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    use brotli::enc::encode::BrotliEncoderOperation as O;
    let operation = match op {
        Op::Process => O::BROTLI_OPERATION_PROCESS,
        Op::Flush => O::BROTLI_OPERATION_FLUSH,
        Op::Finish => O::BROTLI_OPERATION_FINISH,
    };
    let mut in_left = input.len();
    let mut in_at = 0;
    let mut total = None;
    loop {
        let start = out.len();
        out.resize(start + OUT_STEP, 0);
        let mut out_left = OUT_STEP;
        let mut out_at = 0;
        let ok = s.compress_stream(
            operation,
            &mut in_left,
            input,
            &mut in_at,
            &mut out_left,
            &mut out[start..],
            &mut out_at,
            &mut total,
            &mut |_, _, _, _| (),
        );
        out.truncate(start + out_at);
        if !ok {
            return false;
        }
        let more = s.has_more_output();
        let done = match op {
            Op::Process | Op::Flush => in_left == 0 && !more,
            Op::Finish => s.is_finished(),
        };
        if done {
            return true;
        }
    }
}

#[cfg(feature = "zstd")]
fn zstd_state(level: i32, len: Option<u64>) -> Inner {
    use zstd::zstd_safe::{CCtx, CParameter as P};
    let pooled = ZSTD_POOL
        .try_with(|p| p.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten();
    let Some(mut c) = pooled.or_else(CCtx::try_create) else {
        return Inner::Failed;
    };
    let mut ok = c.set_parameter(P::CompressionLevel(level)).is_ok();
    let window = match len {
        Some(n) => (64 - n.max(1).leading_zeros()).clamp(10, ZSTD_MAX_WINDOW_LOG),
        None => ZSTD_MAX_WINDOW_LOG,
    };
    ok &= c.set_parameter(P::WindowLog(window)).is_ok();
    if let Some(n) = len {
        // A hint, not a promise: a body that turns out longer still encodes correctly.
        ok &= c
            .set_parameter(P::SrcSizeHint(n.min(i32::MAX as u64) as u32))
            .is_ok();
    }
    if ok {
        Inner::Zstd(c)
    } else {
        Inner::Failed
    }
}

#[cfg(not(feature = "zstd"))]
fn zstd_state(_level: i32, _len: Option<u64>) -> Inner {
    // Unreachable through config (compile refuses "zstd" without the feature).
    Inner::Failed
}

#[cfg(feature = "zstd")]
fn zstd_run(
    c: &mut zstd::zstd_safe::CCtx<'static>,
    op: Op,
    input: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    use zstd::zstd_safe::{zstd_sys::ZSTD_EndDirective as E, InBuffer, OutBuffer};
    let directive = match op {
        Op::Process => E::ZSTD_e_continue,
        Op::Flush => E::ZSTD_e_flush,
        Op::Finish => E::ZSTD_e_end,
    };
    let mut inb = InBuffer::around(input);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(OUT_STEP);
        }
        let start = out.len();
        let spare = out.capacity() - start;
        let mut outb = OutBuffer::around_pos(out, start);
        let left = match c.compress_stream2(&mut outb, &mut inb, directive) {
            Ok(left) => left,
            Err(_) => return false,
        };
        let produced = outb.pos() - start;
        let input_done = inb.pos() == input.len();
        match op {
            // `continue`: done once the input is taken and output did not fill the room.
            Op::Process if input_done && produced < spare => return true,
            Op::Flush | Op::Finish if input_done && left == 0 => return true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn doc(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 64);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"name\":\"item {}\",\"price\":{}}},",
                    i * 7 % 13,
                    i % 97
                )
                .as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn encode(c: Coding, body: &[u8], pieces: usize, len: Option<u64>) -> Vec<u8> {
        let p = CompressPolicy::default();
        let mut e = Encoder::sized(&p, c, len);
        let mut out = Vec::new();
        for (i, chunk) in body.chunks(body.len().div_ceil(pieces).max(1)).enumerate() {
            e.write(chunk, &mut out);
            if i % 3 == 1 {
                e.flush(&mut out);
            }
        }
        e.finish(&mut out);
        out
    }

    fn decode(c: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        match c {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut v)
                    .expect("gzip");
            }
            Coding::Brotli => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut v)
                    .expect("br");
            }
            Coding::Zstd => {
                v = zstd::stream::decode_all(bytes).expect("zstd");
            }
            Coding::Identity => v.extend_from_slice(bytes),
        }
        v
    }

    #[test]
    fn round_trips() {
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd, Coding::Identity] {
            for n in [0, 1, 100, 10 * 1024, 300 * 1024] {
                let body = doc(n);
                for pieces in [1, 7] {
                    for len in [None, Some(n as u64)] {
                        let enc = encode(c, &body, pieces, len);
                        assert_eq!(decode(c, &enc), body, "{c:?} n={n} pieces={pieces}");
                        if n >= 10 * 1024 && c != Coding::Identity {
                            assert!(enc.len() < n / 3, "{c:?} {n}: {}", enc.len());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flush_makes_written_bytes_decodable() {
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let p = CompressPolicy::default();
            let mut e = Encoder::new(&p, c);
            let mut out = Vec::new();
            e.write(b"data: hello\n\n", &mut out);
            e.flush(&mut out);
            let mut got = Vec::new();
            // A streaming decoder reads what is there without the end of the stream.
            let _ = match c {
                Coding::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut got),
                Coding::Brotli => brotli::Decompressor::new(&out[..], 64).read_to_end(&mut got),
                _ => zstd::stream::read::Decoder::new(&out[..])
                    .expect("zstd")
                    .read_to_end(&mut got),
            };
            assert_eq!(got, b"data: hello\n\n", "{c:?}");
        }
    }

    #[test]
    fn output_per_call_is_bounded() {
        // 8 MiB of incompressible input in 16 KiB pieces: no call returns much more than its
        // input, what is held back at the end is bounded, and the total decodes.
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let p = CompressPolicy::default();
            let mut e = Encoder::new(&p, c);
            let mut x = 0x9e3779b97f4a7c15u64;
            let mut all_out = Vec::new();
            let mut out = Vec::new();
            for _ in 0..512 {
                let chunk: Vec<u8> = (0..16 * 1024)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                out.clear();
                e.write(&chunk, &mut out);
                // brotli: one meta-block (1 MiB of input at most) per call.
                assert!(out.len() <= (1 << 20) + 64 * 1024, "{c:?}: {}", out.len());
                all_out.extend_from_slice(&out);
            }
            out.clear();
            e.finish(&mut out);
            // What a coding holds back is bounded by its window and block (brotli: up to two
            // 512 KiB windows of incompressible input), not by the body.
            assert!(out.len() <= 2 << 20, "{c:?} finish: {}", out.len());
            all_out.extend_from_slice(&out);
            assert_eq!(decode(c, &all_out).len(), 512 * 16 * 1024, "{c:?}");
        }
    }

    #[test]
    fn pooled_states_start_clean() {
        // Alternating levels and codings, some abandoned mid-stream: every reused state
        // encodes the next body alone, at its own level.
        let body = doc(50_000);
        // Same input, same level: the same bytes every time (a state that kept history or
        // another level's settings would differ).
        let mut first: std::collections::HashMap<(u32, Coding), Vec<u8>> = Default::default();
        for round in 0..3 {
            for level in [1, 9] {
                for c in [Coding::Gzip, Coding::Zstd] {
                    let mut p = CompressPolicy::default();
                    p.gzip_level = level;
                    p.zstd_level = level as i32;
                    let mut abandoned = Encoder::new(&p, c);
                    abandoned.write(&body[..1000], &mut Vec::new());
                    drop(abandoned);
                    let mut e = Encoder::sized(&p, c, Some(body.len() as u64));
                    let mut out = Vec::new();
                    e.write(&body, &mut out);
                    e.finish(&mut out);
                    assert_eq!(decode(c, &out), body, "{c:?} level {level}");
                    let seen = first.entry((level, c)).or_insert_with(|| out.clone());
                    assert_eq!(*seen, out, "{c:?} level {level} round {round}");
                }
            }
        }
    }

    #[test]
    fn flush_after_the_whole_known_body_adds_nothing() {
        let body = doc(10_000);
        for c in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let p = CompressPolicy::default();
            let run = |flush: bool| {
                let mut e = Encoder::sized(&p, c, Some(body.len() as u64));
                let mut out = Vec::new();
                e.write(&body, &mut out);
                if flush {
                    e.flush(&mut out);
                }
                e.finish(&mut out);
                out
            };
            assert_eq!(run(true), run(false), "{c:?}");
        }
    }

    #[test]
    fn a_whole_body_in_one_call_is_no_larger_than_streamed() {
        // The one-call path (libdeflate) against the streaming path (zlib-rs) at every level:
        // the same body decodes from both, and the one call does at least the same work (its
        // output is not more than 2% larger).
        let body = doc(10_348);
        for level in 1..=9 {
            let mut p = CompressPolicy::default();
            p.gzip_level = level;
            let mut whole = Vec::new();
            let mut e = Encoder::sized(&p, Coding::Gzip, Some(body.len() as u64));
            e.write(&body, &mut whole);
            e.finish(&mut whole);
            // Unknown length, two pieces: the streaming path.
            let mut streamed = Vec::new();
            let mut e = Encoder::new(&p, Coding::Gzip);
            let (a, b) = body.split_at(body.len() / 2);
            e.write(a, &mut streamed);
            e.write(b, &mut streamed);
            e.finish(&mut streamed);
            assert_eq!(decode(Coding::Gzip, &whole), body, "level {level}");
            assert_eq!(decode(Coding::Gzip, &streamed), body, "level {level}");
            assert!(
                whole.len() * 100 <= streamed.len() * 102,
                "level {level}: {} bytes in one call, {} streamed",
                whole.len(),
                streamed.len()
            );
        }
    }

    #[test]
    fn finished_encoder_appends_nothing() {
        let p = CompressPolicy::default();
        let mut e = Encoder::new(&p, Coding::Gzip);
        let mut out = Vec::new();
        e.write(b"abc", &mut out);
        e.finish(&mut out);
        let n = out.len();
        e.write(b"more", &mut out);
        e.flush(&mut out);
        e.finish(&mut out);
        assert_eq!(out.len(), n);
    }
}
