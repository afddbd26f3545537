//! Chunked transfer coding: the zero-copy, incremental [`ChunkedDecoder`] and the pieces for
//! re-encoding a body ([`write_chunk_header`], [`LAST_CHUNK`]).
//!
//! Invariants: the decoder never copies or buffers body bytes (it returns ranges into its
//! input), accepts only plain hex sizes of at most 16 digits, bounds the size line and the
//! trailer section, keeps the raw trailer lines it checked (`trailers`, for a proxy that passes
//! them on through `forwardable_trailers`), and stays failed after its first error.

use super::types::{is_ctl, is_tchar};

/// Longest chunk-size line (size, extensions and CRLF) the decoder accepts.
const MAX_CHUNK_LINE: usize = 4096;

/// Most trailer-section bytes (all trailer lines plus the final CRLF) the decoder accepts.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Chunked transfer-coding decoder that yields data without copying.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Chunk size being parsed, then bytes of chunk data still to come.
    size: u64,
    /// Hex digits seen in the current size line.
    digits: u8,
    /// Bytes of the current size line (incl. extensions and CRLF).
    line_len: usize,
    /// Bytes of the trailer section so far (incl. the final CRLF).
    trailer_len: usize,
    /// The trailer lines as received (each ending in CRLF; the final empty line excluded).
    trailers: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// BWS after the size; only more BWS or ';' may follow.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// CR of the size line seen; expecting LF.
    SizeLf,
    /// Chunk data; `size` bytes remain.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Start of a trailer line, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to CR.
    TrailerValue,
    /// CR of a trailer line seen; expecting LF.
    TrailerLf,
    /// CR of the final empty line seen; expecting LF.
    FinalLf,
    Done,
    Failed(&'static str),
}

/// A chunked-coding violation (bad size, overflow, missing CRLF, bad trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `input`. Returns `(consumed, data)` where `data` is a range *within input* of body
    /// bytes to forward (possibly empty). Call again with the unconsumed rest until it returns
    /// consumed == 0 (needs more input) or `is_done()`. Trailers are consumed and dropped.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, std::ops::Range<usize>), ChunkError> {
        let mut i = 0;
        loop {
            match self.state {
                ChunkState::Failed(e) => return Err(ChunkError(e)),
                ChunkState::Done => return Ok((i, i..i)),
                _ if i == input.len() => return Ok((i, i..i)),
                ChunkState::Data => {
                    let avail = input.len() - i;
                    let n = if self.size < avail as u64 {
                        self.size as usize
                    } else {
                        avail
                    };
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    return Ok((i + n, i..i + n));
                }
                _ => {
                    if let Err(e) = self.step(input[i]) {
                        self.state = ChunkState::Failed(e);
                        return Err(ChunkError(e));
                    }
                    i += 1;
                }
            }
        }
    }

    /// Advances the framing state machine by one byte (never called in `Data`).
    fn step(&mut self, b: u8) -> Result<(), &'static str> {
        use ChunkState as S;
        match self.state {
            S::SizeStart | S::Size | S::SizeWs | S::Ext | S::SizeLf => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err("chunk size line too long");
                }
            }
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_BYTES {
                    return Err("trailer section too large");
                }
                let final_cr = self.state == S::TrailerStart && b == b'\r';
                if !final_cr && self.state != S::FinalLf {
                    self.trailers.push(b);
                }
            }
            _ => {}
        }
        self.state = match (self.state, b) {
            (S::SizeStart | S::Size, _) if b.is_ascii_hexdigit() => {
                if self.digits >= 16 {
                    return Err("chunk size too large");
                }
                self.digits += 1;
                let d = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => b - b'A' + 10,
                };
                self.size = (self.size << 4) | u64::from(d);
                S::Size
            }
            (S::SizeStart, _) => return Err("invalid chunk size"),
            (S::Size, b'\r') => S::SizeLf,
            (S::Size | S::SizeWs, b' ' | b'\t') => S::SizeWs,
            (S::Size | S::SizeWs, b';') => S::Ext,
            (S::Size | S::SizeWs, _) => return Err("invalid chunk size"),
            (S::Ext, b'\r') => S::SizeLf,
            (S::Ext, _) if is_ctl(b) => return Err("invalid chunk extension"),
            (S::Ext, _) => S::Ext,
            (S::SizeLf, b'\n') => {
                self.line_len = 0;
                self.digits = 0;
                if self.size == 0 {
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::SizeLf, _) => return Err("expected LF after chunk size"),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataCr, _) => return Err("expected CRLF after chunk data"),
            (S::DataLf, b'\n') => S::SizeStart,
            (S::DataLf, _) => return Err("expected LF after chunk data"),
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart | S::TrailerName, _) if is_tchar(b) => S::TrailerName,
            (S::TrailerStart, _) => return Err("invalid trailer field"),
            (S::TrailerName, b':') => S::TrailerValue,
            (S::TrailerName, _) => return Err("invalid trailer field name"),
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, _) if is_ctl(b) => return Err("invalid trailer field value"),
            (S::TrailerValue, _) => S::TrailerValue,
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::TrailerLf, _) => return Err("expected LF after trailer field"),
            (S::FinalLf, b'\n') => S::Done,
            (S::FinalLf, _) => return Err("expected LF after trailer section"),
            (S::Data | S::Done | S::Failed(_), _) => self.state,
        };
        Ok(())
    }

    /// True once the last-chunk, trailers and final CRLF have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The trailer lines of a finished body, as received (syntax already checked).
    pub fn trailers(&self) -> &[u8] {
        if self.is_done() {
            &self.trailers
        } else {
            &[]
        }
    }
}

/// Fields a trailer section must not carry, or that only mean something to one hop (RFC 9110
/// §6.5.1): framing, routing, authentication, controls, and content metadata. A proxy drops
/// them rather than let a trailer smuggle what the header section decided.
const NOT_IN_TRAILERS: &[&[u8]] = &[
    b"authorization",
    b"cache-control",
    b"connection",
    b"content-encoding",
    b"content-length",
    b"content-range",
    b"content-type",
    b"cookie",
    b"expect",
    b"host",
    b"keep-alive",
    b"max-forwards",
    b"pragma",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"proxy-connection",
    b"range",
    b"set-cookie",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"www-authenticate",
];

/// Appends the trailer fields of `raw` (`name: value` lines) that may be passed on, as
/// `name: value\r\n` lines with lowercase names and trimmed values.
pub fn forwardable_trailers(raw: &[u8], out: &mut Vec<u8>) {
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty()
            || !name.iter().all(|&b| is_tchar(b))
            || value.iter().any(|&b| is_ctl(b))
            || NOT_IN_TRAILERS.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        out.extend(name.iter().map(u8::to_ascii_lowercase));
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the last chunk with `trailers` (`name: value\r\n` lines, possibly none) and the
/// final CRLF.
pub fn write_last_chunk(out: &mut Vec<u8>, trailers: &[u8]) {
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(b"\r\n");
}

/// Appends `{len:x}\r\n`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut i = digits.len();
    let mut v = len;
    loop {
        i -= 1;
        digits[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The terminating zero-length chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::super::tests::{decode_all, decode_pieces, Rng};
    use super::*;

    // ---- chunked decoding ----

    #[test]
    fn chunked_basic() {
        let (body, rest, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert!(rest.is_empty());
        assert!(done);

        let (body, _, done) =
            decode_all(b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789abcdefghij");
        assert!(done);

        let (body, _, done) = decode_all(b"0\r\n\r\n").unwrap();
        assert!(body.is_empty() && done);

        // Leading zeros are fine.
        let (body, _, done) = decode_all(b"0005\r\nhello\r\n000\r\n\r\n").unwrap();
        assert_eq!(body, b"hello");
        assert!(done);
    }

    #[test]
    fn chunked_stops_at_end() {
        let (body, rest, done) = decode_all(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        assert!(done);
        let mut dec = ChunkedDecoder::new();
        let input = b"0\r\n\r\nXYZ";
        assert_eq!(dec.decode(input).unwrap(), (5, 5..5));
        assert!(dec.is_done());
        assert_eq!(dec.decode(b"XYZ").unwrap(), (0, 0..0));
    }

    #[test]
    fn chunked_data_range_is_within_input() {
        let mut dec = ChunkedDecoder::new();
        let input = b"4\r\nabcd\r\n0\r\n\r\n";
        let (consumed, data) = dec.decode(input).unwrap();
        assert_eq!((consumed, data.clone()), (7, 3..7));
        assert_eq!(&input[data], b"abcd");
        let (consumed, data) = dec.decode(&input[7..]).unwrap();
        assert_eq!(consumed, 7);
        assert!(data.is_empty());
        assert!(dec.is_done());
        assert_eq!(dec.decode(b"").unwrap(), (0, 0..0));
    }

    #[test]
    fn chunked_extensions_and_trailers() {
        let (body, _, done) =
            decode_all(b"5;name=value;q=\"a b\"\r\nhello\r\n5 ; x\r\nworld\r\n0;last\r\n\r\n")
                .unwrap();
        assert_eq!(body, b"helloworld");
        assert!(done);
        let (body, rest, done) =
            decode_all(b"2\r\nhi\r\n0\r\nExpires: never\r\nX-Sum:\tabc \r\n\r\nnext").unwrap();
        assert_eq!(body, b"hi");
        assert_eq!(rest, b"next");
        assert!(done);
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"G\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"+5\r\nhello\r\n",
            b"-5\r\n",
            b"0x5\r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\rhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r",
            b"10000000000000000\r\n",
            b"00000000000000001\r\n",
            b"5;a\x01b\r\nhello\r\n",
            b"5;a\nhello\r\n",
            b"0\r\n\n",
            b"0\r\nFoo: bar\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: empty\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\n\rX",
        ] {
            let r = decode_all(bad);
            assert!(r.is_err(), "{:?} -> {r:?}", String::from_utf8_lossy(bad));
        }
        // Once failed, the decoder stays failed.
        let mut dec = ChunkedDecoder::new();
        assert!(dec.decode(b"Z").is_err());
        assert!(dec.decode(b"5\r\nhello\r\n").is_err());
        assert!(dec.decode(b"").is_err());
    }

    #[test]
    fn chunked_size_limits() {
        // 16 hex digits are accepted (size line parses; data just has not arrived yet).
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.decode(b"ffffffffffffffff\r\nab").unwrap(), (20, 18..20));
        assert!(!dec.is_done());

        let mut line = b"1;".to_vec();
        line.extend_from_slice(&vec![b'a'; MAX_CHUNK_LINE - 4]);
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(decode_all(&line).unwrap().0, b"x");
        let mut line = b"1;".to_vec();
        line.extend_from_slice(&vec![b'a'; MAX_CHUNK_LINE - 3]);
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            decode_all(&line).unwrap_err(),
            ChunkError("chunk size line too long")
        );

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILER_BYTES + 100 {
            trailers.extend_from_slice(b"X-Trailer: some value here\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_all(&trailers).unwrap_err(),
            ChunkError("trailer section too large")
        );
    }

    fn encode_chunked(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(40));
            write_chunk_header(&mut out, n);
            if rng.below(3) == 0 {
                // Sneak an extension in before the CRLF.
                out.truncate(out.len() - 2);
                out.extend_from_slice(b";ext=\"v\"\r\n");
            }
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        if rng.below(2) == 0 {
            out.extend_from_slice(LAST_CHUNK);
        } else {
            out.extend_from_slice(b"0\r\nX-T: 1\r\nY: two words\r\n\r\n");
        }
        out
    }

    #[test]
    fn chunked_every_split_point() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let body: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut encoded = encode_chunked(&mut rng, &body);
        encoded.extend_from_slice(b"TAIL");
        for split in 0..=encoded.len() {
            let (got, rest, done) = decode_pieces(&[&encoded[..split], &encoded[split..]]).unwrap();
            assert_eq!(got, body, "split at {split}");
            assert_eq!(rest, b"TAIL");
            assert!(done);
        }
    }

    #[test]
    fn chunked_one_byte_at_a_time() {
        let mut rng = Rng(42);
        let body: Vec<u8> = (0..500u32).map(|i| (i % 256) as u8).collect();
        let encoded = encode_chunked(&mut rng, &body);
        let pieces: Vec<&[u8]> = encoded.chunks(1).collect();
        let (got, rest, done) = decode_pieces(&pieces).unwrap();
        assert_eq!(got, body);
        assert!(rest.is_empty());
        assert!(done);
    }

    #[test]
    fn chunked_random_splits() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for round in 0..300 {
            let len = rng.below(300);
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let encoded = encode_chunked(&mut rng, &body);
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < encoded.len() {
                let n = 1 + rng.below(12);
                let end = (at + n).min(encoded.len());
                pieces.push(&encoded[at..end]);
                at = end;
            }
            let (got, rest, done) = decode_pieces(&pieces).unwrap();
            assert_eq!(got, body, "round {round}");
            assert!(rest.is_empty());
            assert!(done);
        }
    }

    #[test]
    fn trailers_are_kept_and_filtered_for_forwarding() {
        let mut d = ChunkedDecoder::new();
        let body = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nContent-Length: 5\r\nX-Sum:  7 \r\n\r\n";
        let (used, _) = d.decode(body).unwrap();
        let mut rest = &body[used..];
        while !d.is_done() {
            let (n, _) = d.decode(rest).unwrap();
            rest = &rest[n..];
        }
        assert_eq!(
            d.trailers(),
            b"grpc-status: 0\r\nContent-Length: 5\r\nX-Sum:  7 \r\n"
        );
        let mut out = Vec::new();
        forwardable_trailers(d.trailers(), &mut out);
        assert_eq!(out, b"grpc-status: 0\r\nx-sum: 7\r\n");
        let mut last = Vec::new();
        write_last_chunk(&mut last, &out);
        assert_eq!(last, b"0\r\ngrpc-status: 0\r\nx-sum: 7\r\n\r\n");
    }
}
