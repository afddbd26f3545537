//! W3C Trace Context (level 1) for one request: parse the incoming `traceparent`, continue or
//! start a trace, and write the header sent upstream.
//!
//! Invariants: ids handed out are never all-zero; a malformed `traceparent` is ignored (a new
//! trace starts), never an error; nothing here allocates or makes a syscall per request (the
//! PRNG is seeded from the OS once per worker).

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, which must be at least `2 * bytes.len()` long
/// (extra bytes of `out` are left untouched; a shorter `out` receives only what fits).
pub fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 15) as usize];
    }
}

/// Appends `bytes` as lowercase hex to `out`.
pub fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn lower_hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes lowercase hex `src` (exactly `2 * out.len()` chars) into `out`.
fn decode_lower_hex(src: &[u8], out: &mut [u8]) -> Option<()> {
    if src.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = (lower_hex_val(pair[0])? << 4) | lower_hex_val(pair[1])?;
    }
    Some(())
}

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// Parses a `traceparent` header value per W3C Trace Context level 1.
///
/// Surrounding spaces/tabs (HTTP optional whitespace) are ignored. Version is 2 lowercase hex
/// digits and `ff` is invalid; version `00` must be exactly 55 chars; a higher version is
/// accepted if it has at least 55 chars and char 55 (if present) is `-`. Ids and flags are
/// lowercase hex only; an all-zero trace id or parent id is invalid.
/// Returns `(trace_id, parent_span_id, flags)`.
pub fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = trim_ows(v);
    if v.len() < TRACEPARENT_LEN {
        return None;
    }
    let mut version = [0u8; 1];
    decode_lower_hex(&v[0..2], &mut version)?;
    match version[0] {
        0xff => return None,
        0x00 if v.len() != TRACEPARENT_LEN => return None,
        _ if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    decode_lower_hex(&v[3..35], &mut trace_id)?;
    let mut parent = [0u8; 8];
    decode_lower_hex(&v[36..52], &mut parent)?;
    let mut flags = [0u8; 1];
    decode_lower_hex(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags[0]))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Per-worker id generator (wyrand). Not cryptographic: ids only need to be unique in
/// practice. Seeded from the OS once; `!Sync` by design (one per core).
pub struct IdRng {
    state: u64,
}

impl IdRng {
    /// A generator seeded from `getrandom` (falling back to time, pid and an address).
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15);
            let addr = &seed as *const _ as u64;
            seed = (t ^ (u64::from(std::process::id()) << 32) ^ addr.rotate_left(17)).to_le_bytes();
        }
        IdRng::from_seed(u64::from_le_bytes(seed))
    }

    /// A generator with a fixed seed (tests, benchmarks).
    pub fn from_seed(seed: u64) -> Self {
        IdRng { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// A random span id, never all-zero.
    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let n = self.next_u64();
            if n != 0 {
                return n.to_be_bytes();
            }
        }
    }

    /// A random trace id, never all-zero.
    pub fn trace_id(&mut self) -> [u8; 16] {
        loop {
            let n = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if n != 0 {
                return n.to_be_bytes();
            }
        }
    }

    /// True with probability `ratio` (≤ 0 or NaN: never; ≥ 1: always).
    pub fn chance(&mut self, ratio: f64) -> bool {
        if ratio >= 1.0 {
            return true;
        }
        if ratio.is_nan() || ratio <= 0.0 {
            return false;
        }
        // 53 random bits → uniform in [0, 1).
        ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < ratio
    }
}

impl Default for IdRng {
    fn default() -> Self {
        Self::new()
    }
}

/// The trace position of one request as seen by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace this request belongs to.
    pub trace_id: [u8; 16],
    /// The caller's span (None when the gateway started the trace).
    pub parent_span_id: Option<[u8; 8]>,
    /// The gateway's own span, the parent of the upstream hop.
    pub span_id: [u8; 8],
    /// Whether this trace is recorded (flags bit 0).
    pub sampled: bool,
}

impl TraceContext {
    /// Continues a valid incoming trace (same trace id, sampled from its flags bit 0, a new
    /// span id), or starts a new one (new trace id, sampled with probability `sample_ratio`)
    /// when the header is absent or malformed.
    pub fn from_request(
        traceparent: Option<&[u8]>,
        rng: &mut IdRng,
        sample_ratio: f64,
    ) -> TraceContext {
        if let Some((trace_id, parent, flags)) = traceparent.and_then(parse_traceparent) {
            let mut span_id = rng.span_id();
            while span_id == parent {
                span_id = rng.span_id();
            }
            return TraceContext {
                trace_id,
                parent_span_id: Some(parent),
                span_id,
                sampled: flags & 1 == 1,
            };
        }
        TraceContext {
            trace_id: rng.trace_id(),
            parent_span_id: None,
            span_id: rng.span_id(),
            sampled: rng.chance(sample_ratio),
        }
    }

    /// Appends the 55-byte header value sent upstream, `00-<trace>-<span_id>-<flags>`: the
    /// gateway's span is the upstream's parent.
    pub fn write_traceparent(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"00-");
        push_hex(&self.trace_id, out);
        out.push(b'-');
        push_hex(&self.span_id, out);
        out.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
    }

    /// The trace id as 32 lowercase hex chars (for logs and response headers).
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex_lower(&self.trace_id, &mut out);
        out
    }

    /// The gateway's span id as 16 lowercase hex chars.
    pub fn span_id_hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex_lower(&self.span_id, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: [u8; 16] = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    const PARENT: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

    #[test]
    fn parses_spec_example() {
        assert_eq!(parse_traceparent(VALID), Some((TRACE, PARENT, 1)));
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(parse_traceparent(unsampled), Some((TRACE, PARENT, 0)));
        assert_eq!(
            parse_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t"),
            Some((TRACE, PARENT, 1))
        );
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase trace
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", // uppercase parent
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", // uppercase flags
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // non-hex version
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // 00 too long
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 with extra
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // too short
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // separator 1
            b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", // separator 2
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", // separator 3
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // non-hex trace
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", // non-hex parent
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", // non-hex flags
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // future, no dash at 55
            b"",
        ];
        for b in bad {
            assert_eq!(
                parse_traceparent(b),
                None,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn accepts_future_versions() {
        assert_eq!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some((TRACE, PARENT, 1))
        );
        assert_eq!(
            parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"),
            Some((TRACE, PARENT, 9))
        );
    }

    #[test]
    fn continues_incoming_trace() {
        let mut rng = IdRng::from_seed(7);
        let ctx = TraceContext::from_request(Some(VALID), &mut rng, 0.0);
        assert_eq!(ctx.trace_id, TRACE);
        assert_eq!(ctx.parent_span_id, Some(PARENT));
        assert_ne!(ctx.span_id, PARENT);
        assert_ne!(ctx.span_id, [0; 8]);
        assert!(ctx.sampled, "sampled comes from the flags, not the ratio");
        assert_eq!(&ctx.trace_id_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");

        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let ctx = TraceContext::from_request(Some(unsampled), &mut rng, 1.0);
        assert_eq!(ctx.trace_id, TRACE);
        assert!(!ctx.sampled);
    }

    #[test]
    fn malformed_or_absent_starts_new_trace() {
        let mut rng = IdRng::from_seed(9);
        let bad = b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let a = TraceContext::from_request(Some(bad), &mut rng, 1.0);
        assert_ne!(a.trace_id, TRACE);
        assert_ne!(a.trace_id, [0; 16]);
        assert_eq!(a.parent_span_id, None);
        assert!(a.sampled);
        let b = TraceContext::from_request(None, &mut rng, 0.0);
        assert_ne!(a.trace_id, b.trace_id);
        assert!(!b.sampled);
    }

    #[test]
    fn traceparent_round_trips() {
        let mut rng = IdRng::new();
        for sampled in [true, false] {
            let mut ctx = TraceContext::from_request(Some(VALID), &mut rng, 1.0);
            ctx.sampled = sampled;
            let mut out = b"prefix".to_vec();
            ctx.write_traceparent(&mut out);
            let v = &out[6..];
            assert_eq!(v.len(), TRACEPARENT_LEN);
            assert_eq!(
                parse_traceparent(v),
                Some((ctx.trace_id, ctx.span_id, u8::from(sampled)))
            );
        }
    }

    #[test]
    fn sampling_ratio_is_roughly_respected() {
        let mut rng = IdRng::from_seed(42);
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        assert!((0..100).all(|_| rng.chance(1.0)));
        assert!((0..100).all(|_| !rng.chance(0.0)));
        assert!(!rng.chance(f64::NAN));
    }

    #[test]
    fn hex_helpers() {
        let mut out = [b'.'; 6];
        hex_lower(&[0x0a, 0xff], &mut out);
        assert_eq!(&out, b"0aff..");
        let mut v = Vec::new();
        push_hex(&[0x00, 0x9c], &mut v);
        assert_eq!(v, b"009c");
    }
}
