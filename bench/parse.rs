//! HTTP/1.1 wire parsing cost: request heads of three shapes (a small curl-like GET, a
//! browser-like GET with a dozen headers, the head of a 1 KiB POST), a small upstream response
//! head, and chunked decoding of a 64 KiB body sent in 4 KiB chunks.
//!
//! Every parse returns an owned head (its byte copy and header spans), so the measured time
//! includes building and dropping it, as on the real request path. Throughput is in bytes of
//! head, or of decoded chunked body; the chunked decoder is zero-copy, so its plain number is
//! framing cost only, and the `_reframe` variant adds the copy into a re-encoded buffer that
//! forwarding a chunked body costs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::http1::{
    parse_request_head, parse_response_head, write_chunk_header, BodyFraming, ChunkedDecoder,
    Limits, Method, LAST_CHUNK,
};

/// What `curl http://api.example.com/api/users/42` sends (~80 bytes).
const CURL_GET: &[u8] = b"GET /api/users/42 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

/// A browser navigation with 13 headers, cookies included (~700 bytes).
const BROWSER_GET: &[u8] = b"GET /products/12345/reviews?page=2&sort=recent HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/12345\r\n\
Cookie: session=3f2a9c1e7b5d4a60b8e1c2d3f4a5b6c7; _ga=GA1.2.1234567890.1700000000; theme=dark; consent=yes\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Cache-Control: max-age=0\r\n\
\r\n";

/// Head of an API POST carrying a 1 KiB JSON body.
const POST_1K_HEAD: &[u8] = b"POST /api/orders HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: example-client/2.3\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
Content-Length: 1024\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n\
X-Request-Id: 7c9e6679-7425-40de-944b-e07fc1f90ae7\r\n\
\r\n";

/// A small upstream reply (~20 byte JSON body, head only).
const UPSTREAM_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 20\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Server: backend/1.0\r\n\
Cache-Control: no-store\r\n\
\r\n";

const CHUNKED_BODY: usize = 64 * 1024;
const CHUNK: usize = 4 * 1024;

/// `CHUNKED_BODY` bytes as `CHUNK`-sized chunks, then the last chunk.
fn chunked_body() -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNKED_BODY + CHUNKED_BODY / CHUNK * 8 + 5);
    for i in 0..CHUNKED_BODY / CHUNK {
        out.extend_from_slice(format!("{CHUNK:x}\r\n").as_bytes());
        out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, CHUNK));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Decodes a whole chunked body held in `input` and re-frames it into `out` (cleared first) the
/// way the proxy streams a chunked request body upstream. Returns the re-encoded length.
fn decode_reframe(input: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut dec = ChunkedDecoder::new();
    let mut pos = 0;
    while !dec.is_done() {
        match dec.decode(&input[pos..]) {
            Ok((0, _)) => break,
            Ok((consumed, data)) => {
                if !data.is_empty() {
                    write_chunk_header(out, data.len());
                    out.extend_from_slice(&input[pos..][data]);
                    out.extend_from_slice(b"\r\n");
                }
                pos += consumed;
            }
            Err(e) => panic!("bench body does not decode: {e:?}"),
        }
    }
    out.extend_from_slice(LAST_CHUNK);
    out.len()
}

/// Decodes a whole chunked body held in `input`, returning the number of body bytes.
fn decode_all(input: &[u8]) -> usize {
    let mut dec = ChunkedDecoder::new();
    let mut pos = 0;
    let mut body = 0;
    while !dec.is_done() {
        match dec.decode(&input[pos..]) {
            Ok((0, _)) => break,
            Ok((consumed, data)) => {
                body += black_box(&input[pos..][data]).len();
                pos += consumed;
            }
            Err(e) => panic!("bench body does not decode: {e:?}"),
        }
    }
    body
}

fn request_heads(c: &mut Criterion) {
    let limits = Limits::default();
    // The POST head is followed by its body in the read buffer, as it arrives off the wire.
    let mut post = POST_1K_HEAD.to_vec();
    post.extend(std::iter::repeat_n(b'x', 1024));
    let cases: [(&str, &[u8], usize, BodyFraming); 3] = [
        ("curl_get", CURL_GET, 3, BodyFraming::None),
        ("browser_get", BROWSER_GET, 13, BodyFraming::None),
        ("post_1k_head", &post, 7, BodyFraming::Length(1024)),
    ];
    let mut group = c.benchmark_group("parse_request_head");
    for (name, buf, headers, body) in cases {
        let head_len = match parse_request_head(buf, &limits) {
            Ok(Some((h, n))) => {
                assert_eq!(h.headers.len(), headers, "{name}");
                assert_eq!(h.body, body, "{name}");
                n
            }
            other => panic!("{name}: bench input does not parse: {other:?}"),
        };
        group.throughput(Throughput::Bytes(head_len as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_request_head(black_box(buf), &limits))
        });
    }
    group.finish();
}

fn response_head(c: &mut Criterion) {
    let buf = UPSTREAM_RESPONSE;
    match parse_response_head(buf, 64 * 1024, 200, Method::Get) {
        Ok(Some((h, n))) => {
            assert_eq!(
                (h.status, h.body, n),
                (200, BodyFraming::Length(20), buf.len())
            );
        }
        other => panic!("bench response does not parse: {other:?}"),
    }
    let mut group = c.benchmark_group("parse_response_head");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    // The limits the proxy passes for upstream heads.
    group.bench_function("small_200", |b| {
        b.iter(|| parse_response_head(black_box(buf), 64 * 1024, 200, Method::Get))
    });
    group.finish();
}

fn chunked(c: &mut Criterion) {
    let input = chunked_body();
    assert_eq!(decode_all(&input), CHUNKED_BODY);
    let mut group = c.benchmark_group("chunked_decode");
    group.throughput(Throughput::Bytes(CHUNKED_BODY as u64));
    // Framing only: the decoder hands out ranges and never reads the body bytes.
    group.bench_function("64KiB_in_4KiB_chunks", |b| {
        b.iter(|| decode_all(black_box(&input)))
    });
    // Decode plus the copy into a reused buffer with fresh chunk headers, as the proxy does.
    let mut out = Vec::with_capacity(input.len());
    assert_eq!(decode_reframe(&input, &mut out), input.len());
    assert_eq!(out, input);
    group.bench_function("64KiB_in_4KiB_chunks_reframe", |b| {
        b.iter(|| decode_reframe(black_box(&input), black_box(&mut out)))
    });
    group.finish();
}

criterion_group!(benches, request_heads, response_head, chunked);
criterion_main!(benches);
