//! Shared helpers for the `http1` submodules' tests, and robustness over garbage input.

use super::*;

// ---- shared test helpers (used by the submodules' tests) ----

pub(super) fn parse(s: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request_head(s, &Limits::default())
}

pub(super) fn ok(s: &[u8]) -> (RequestHead, usize) {
    match parse(s) {
        Ok(Some(r)) => r,
        other => panic!(
            "expected a head for {:?}, got {other:?}",
            String::from_utf8_lossy(s)
        ),
    }
}

pub(super) fn err(s: &[u8]) -> HeadError {
    match parse(s) {
        Err(e) => e,
        other => panic!(
            "expected an error for {:?}, got {other:?}",
            String::from_utf8_lossy(s)
        ),
    }
}

/// A GET with `extra` header lines (each ending in CRLF) after `Host: h`.
pub(super) fn get_with(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
}

pub(super) fn post_with(extra: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\nHost: h\r\n{extra}\r\n").into_bytes()
}

/// Small deterministic PRNG for split points and fuzzing.
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Feeds `pieces` one after another through a decoder the way a connection would (keeping
/// unconsumed bytes), returning the body and the bytes left after the end.
pub(super) fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
    let mut dec = ChunkedDecoder::new();
    let mut pending = Vec::new();
    let mut body = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        while !dec.is_done() {
            let (consumed, data) = dec.decode(&pending)?;
            assert!(consumed <= pending.len());
            assert!(data.start <= data.end && data.end <= consumed);
            body.extend_from_slice(&pending[data]);
            pending.drain(..consumed);
            if consumed == 0 {
                break;
            }
        }
    }
    Ok((body, pending, dec.is_done()))
}

pub(super) fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), ChunkError> {
    decode_pieces(&[input])
}

// ---- robustness ----

#[test]
fn no_panics_on_garbage() {
    let mut rng = Rng(7);
    let seeds: [&[u8]; 4] = [
        b"GET http://h:1/a?b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        b"OPTIONS * HTTP/1.0\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    ];
    let alphabet = b"\r\n :;,/?#%*.[]@\t\x00\x7f\xffHTP10aZ";
    let limits = Limits {
        max_header_bytes: 256,
        max_headers: 4,
        max_uri_bytes: 32,
    };
    for _ in 0..20_000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(input.len() + 1);
            match rng.below(3) {
                0 if pos < input.len() => input[pos] = alphabet[rng.below(alphabet.len())],
                1 => input.insert(pos, alphabet[rng.below(alphabet.len())]),
                _ if pos < input.len() => {
                    input.remove(pos);
                }
                _ => {}
            }
        }
        let cut = rng.below(input.len() + 1);
        for buf in [&input[..], &input[..cut]] {
            if let Ok(Some((h, n))) = parse_request_head(buf, &limits) {
                assert!(n <= buf.len());
                let _ = (h.path(), h.query(), h.target(), h.method_bytes());
                let _ = h.headers().count();
                let _ = h.host_for_routing(&mut String::new());
                let _ = normalize_path(h.path());
            }
            let _ = parse_request_head(buf, &Limits::default());
            if let Ok(Some((r, n))) = parse_response_head(buf, 256, 4, Method::Get) {
                assert!(n <= buf.len());
                let _ = (r.reason.get(&r.buf), r.headers().count());
            }
            let _ = decode_all(buf);
            let _ = normalize_path(buf);
        }
    }
}
