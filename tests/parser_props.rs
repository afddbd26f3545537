//! Property tests for the wire parsers: feeding the same bytes in one piece or split at any
//! byte boundary must give the same result. The request and response head parsers are
//! re-run on the growing buffer (as the proxy does: `Ok(None)` until complete), so every
//! prefix must either ask for more or already give the final answer; the chunked decoder is
//! stateful and is fed the pieces. Inputs are both valid-shaped (structured generators) and
//! arbitrary or mutated bytes. Redis replies (hostile input too: see `redis::resp`) are fed
//! growing through one resumable `Scan`, as a connection reads them.
//!
//! "Same result" means the same head (every field and the consumed length) or an error in
//! both cases. The error *kind* may differ: a prefix can be refused for what it shows first
//! (a bad first byte is a 400 before the version is seen, 431 for size before the header
//! count), which is the gateway's intended early rejection, not a framing disagreement.

use proptest::prelude::*;
use ringway::http1::{
    normalize_path, parse_request_head, parse_response_head, write_chunk_header, BodyFraming,
    ChunkedDecoder, HeadError, Limits, Method, RequestHead, ResponseHead, Version, LAST_CHUNK,
};
use ringway::redis::{decode_reply, Scan, Value};

/// 128 cases per property (a fraction of a second in all); `PROPTEST_CASES=N` runs more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- request heads ----

/// Everything a parsed request head tells the proxy, comparable across parses.
#[derive(Debug, PartialEq)]
struct ReqSummary {
    consumed: usize,
    method: Method,
    method_bytes: Vec<u8>,
    target: Vec<u8>,
    path: Vec<u8>,
    query: Option<Vec<u8>>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    host: Vec<u8>,
    body: BodyFraming,
    close: bool,
    upgrade: bool,
    expect_continue: bool,
    expect_other: bool,
}

fn req_summary(h: &RequestHead, consumed: usize) -> ReqSummary {
    ReqSummary {
        consumed,
        method: h.method,
        method_bytes: h.method_bytes().to_vec(),
        target: h.target().to_vec(),
        path: h.path().to_vec(),
        query: h.query().map(<[u8]>::to_vec),
        version: h.version,
        headers: h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
        host: h.host.get(&h.buf).to_vec(),
        body: h.body,
        close: h.close,
        upgrade: h.upgrade,
        expect_continue: h.expect_continue,
        expect_other: h.expect_other,
    }
}

fn parse_req(buf: &[u8], limits: &Limits) -> Result<Option<ReqSummary>, HeadError> {
    parse_request_head(buf, limits).map(|r| r.map(|(h, n)| req_summary(&h, n)))
}

/// A parse result with the error kind erased (see the module doc).
fn erased<T>(r: &Result<T, HeadError>) -> Result<&T, ()> {
    r.as_ref().map_err(|_| ())
}

/// Re-parses every prefix as a connection would while bytes trickle in: a prefix either needs
/// more bytes or already gives exactly the answer the whole input gives.
fn check_request_prefixes(input: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let whole = parse_req(input, limits);
    for k in 0..input.len() {
        let part = parse_req(&input[..k], limits);
        if !matches!(part, Ok(None)) {
            prop_assert_eq!(
                erased(&part),
                erased(&whole),
                "prefix of {} bytes of {:?}",
                k,
                String::from_utf8_lossy(input)
            );
        }
    }
    if let Ok(Some(s)) = &whole {
        prop_assert!(s.consumed <= input.len());
        // The head alone parses to the same head.
        prop_assert_eq!(&parse_req(&input[..s.consumed], limits), &whole);
    }
    Ok(())
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"
        ])
        .prop_map(String::from),
        1 => token(),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let segment = "[A-Za-z0-9._~%-]{0,8}";
    let path = prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")));
    let query = prop::option::of("[A-Za-z0-9=&%/?._-]{0,16}");
    prop_oneof![
        6 => (path.clone(), query.clone()).prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}"),
            None => p,
        }),
        1 => ("(http|https)", "[a-z0-9.-]{1,12}", prop::option::of(0u16..), path, query)
            .prop_map(|(s, h, port, p, q)| {
                let mut t = format!("{s}://{h}");
                if let Some(port) = port {
                    t.push_str(&format!(":{port}"));
                }
                t.push_str(&p);
                if let Some(q) = q {
                    t.push('?');
                    t.push_str(&q);
                }
                t
            }),
        1 => Just("*".to_string()),
        1 => "[a-z0-9.-]{1,12}:[0-9]{1,5}",
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "Host", "host", "Content-Length", "Transfer-Encoding", "Connection", "Expect",
            "Upgrade", "Keep-Alive", "TE", "Accept", "X-Forwarded-For",
        ])
        .prop_map(String::from),
        2 => token(),
    ];
    let value = prop_oneof![
        3 => prop::sample::select(vec![
            "example.com", "a.b:8080", "0", "5", "12", "00", "1, 1", "-1", "+5",
            "99999999999999999999", "chunked", "gzip, chunked", "chunked, gzip", "identity",
            "close", "keep-alive", "upgrade", "Upgrade, close", "100-continue", "websocket",
            "",
        ])
        .prop_map(String::from),
        2 => "[ -~\t]{0,16}",
    ];
    (name, value)
}

/// A request head shaped like real traffic (often valid, sometimes subtly not), followed by
/// some body or pipelined bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..3,
        method(),
        target(),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]),
        prop::collection::vec(header(), 0..8),
        prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n"]),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(blank, m, t, v, hs, eol, tail)| {
            let mut s = "\r\n".repeat(blank);
            s.push_str(&format!("{m} {t} {v}{eol}"));
            for (n, val) in hs {
                s.push_str(&format!("{n}: {val}{eol}"));
            }
            s.push_str(eol);
            let mut b = s.into_bytes();
            b.extend_from_slice(&tail);
            b
        })
}

/// Valid-shaped inputs with one byte replaced, inserted or removed.
fn mutated(base: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (base, any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(|(mut b, at, byte, op)| {
        let i = at.index(b.len() + 1);
        match op {
            0 if i < b.len() => b[i] = byte,
            1 => b.insert(i, byte),
            _ if i < b.len() => {
                b.remove(i);
            }
            _ => {}
        }
        b
    })
}

fn small_limits() -> Limits {
    Limits {
        max_header_bytes: 96,
        max_headers: 3,
        max_uri_bytes: 24,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_head_same_result_at_every_split(input in request()) {
        check_request_prefixes(&input, &Limits::default())?;
    }

    #[test]
    fn request_head_same_result_at_every_split_small_limits(input in request()) {
        check_request_prefixes(&input, &small_limits())?;
    }

    #[test]
    fn request_head_mutated_same_result_at_every_split(input in mutated(request())) {
        check_request_prefixes(&input, &Limits::default())?;
    }

    #[test]
    fn request_head_arbitrary_bytes_same_result_at_every_split(
        input in prop::collection::vec(any::<u8>(), 0..64)
    ) {
        check_request_prefixes(&input, &Limits::default())?;
    }
}

// ---- response heads ----

#[derive(Debug, PartialEq)]
struct ResSummary {
    consumed: usize,
    version: Version,
    status: u16,
    reason: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: BodyFraming,
    close: bool,
}

fn res_summary(h: &ResponseHead, consumed: usize) -> ResSummary {
    ResSummary {
        consumed,
        version: h.version,
        status: h.status,
        reason: h.reason.get(&h.buf).to_vec(),
        headers: h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
        body: h.body,
        close: h.close,
    }
}

fn parse_res(buf: &[u8], method: Method) -> Result<Option<ResSummary>, HeadError> {
    parse_response_head(buf, 512, 6, method).map(|r| r.map(|(h, n)| res_summary(&h, n)))
}

fn check_response_prefixes(input: &[u8], method: Method) -> Result<(), TestCaseError> {
    let whole = parse_res(input, method);
    for k in 0..input.len() {
        let part = parse_res(&input[..k], method);
        if !matches!(part, Ok(None)) {
            prop_assert_eq!(
                erased(&part),
                erased(&whole),
                "prefix of {} bytes of {:?}",
                k,
                String::from_utf8_lossy(input)
            );
        }
    }
    if let Ok(Some(s)) = &whole {
        prop_assert!(s.consumed <= input.len());
        prop_assert_eq!(&parse_res(&input[..s.consumed], method), &whole);
    }
    Ok(())
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1"]),
        prop_oneof![
            3 => prop::sample::select(vec![100u16, 101, 200, 204, 206, 301, 304, 404, 502]),
            1 => 0u16..1200,
        ],
        "[ -~]{0,12}",
        prop::collection::vec(header(), 0..6),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(v, status, reason, hs, tail)| {
            let mut s = format!("{v} {status:03} {reason}\r\n");
            for (n, val) in hs {
                s.push_str(&format!("{n}: {val}\r\n"));
            }
            s.push_str("\r\n");
            let mut b = s.into_bytes();
            b.extend_from_slice(&tail);
            b
        })
}

fn response_method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Connect,
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn response_head_same_result_at_every_split(input in response(), m in response_method()) {
        check_response_prefixes(&input, m)?;
    }

    #[test]
    fn response_head_mutated_same_result_at_every_split(
        input in mutated(response()),
        m in response_method(),
    ) {
        check_response_prefixes(&input, m)?;
    }

    #[test]
    fn response_head_arbitrary_bytes_same_result_at_every_split(
        input in prop::collection::vec(any::<u8>(), 0..64),
        m in response_method(),
    ) {
        check_response_prefixes(&input, m)?;
    }
}

// ---- chunked bodies ----

/// What feeding a decoder produced: body bytes, bytes consumed, done, failed.
#[derive(Debug, PartialEq)]
struct Decoded {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    failed: bool,
}

/// Feeds `pieces` to one decoder the way a connection does: each piece is decoded until it is
/// used up, the decoder is done, or it fails.
fn feed(pieces: &[&[u8]]) -> Decoded {
    let mut dec = ChunkedDecoder::new();
    let mut out = Decoded {
        body: Vec::new(),
        consumed: 0,
        done: false,
        failed: false,
    };
    'pieces: for piece in pieces {
        let mut pos = 0;
        while pos < piece.len() && !dec.is_done() {
            match dec.decode(&piece[pos..]) {
                Ok((n, data)) => {
                    assert!(data.start <= data.end && data.end <= n && n <= piece.len() - pos);
                    out.body.extend_from_slice(&piece[pos..][data]);
                    out.consumed += n;
                    pos += n;
                    if n == 0 {
                        break;
                    }
                }
                Err(_) => {
                    // How much was consumed before the error depends on the pieces; only
                    // the failure and the body forwarded before it are compared.
                    out.failed = true;
                    out.consumed = 0;
                    break 'pieces;
                }
            }
        }
        if dec.is_done() {
            break;
        }
    }
    out.done = dec.is_done();
    out
}

fn check_chunked_splits(input: &[u8]) -> Result<Decoded, TestCaseError> {
    let whole = feed(&[input]);
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        prop_assert_eq!(&feed(&[a, b]), &whole, "split at {}", k);
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    prop_assert_eq!(&feed(&bytes), &whole, "byte by byte");
    Ok(whole)
}

/// A chunked body built from parts (size spelling, extensions, trailers), with the body it
/// carries. Sometimes followed by pipelined bytes, which must be left unconsumed.
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, usize)> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..40),
        0usize..3,     // leading zeros
        any::<bool>(), // upper-case hex
        prop::option::of("[ \t]{0,2};[a-z]{1,5}(=[a-z0-9]{1,5})?"),
    );
    let trailer = ("[A-Za-z0-9-]{1,10}", "[ -~]{0,12}");
    (
        prop::collection::vec(chunk, 0..6),
        prop::collection::vec(trailer, 0..3),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(chunks, trailers, tail)| {
            let mut wire = Vec::new();
            let mut body = Vec::new();
            for (data, zeros, upper, ext) in chunks {
                let size = format!("{}{:x}", "0".repeat(zeros), data.len());
                let size = if upper { size.to_uppercase() } else { size };
                wire.extend_from_slice(size.as_bytes());
                if let Some(ext) = ext {
                    wire.extend_from_slice(ext.as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&data);
                wire.extend_from_slice(b"\r\n");
                body.extend_from_slice(&data);
            }
            wire.extend_from_slice(b"0\r\n");
            for (name, value) in trailers {
                wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            let end = wire.len();
            wire.extend_from_slice(&tail);
            (wire, body, end)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn chunked_valid_same_result_at_every_split((wire, body, end) in chunked_body()) {
        let got = check_chunked_splits(&wire)?;
        prop_assert!(got.done && !got.failed);
        prop_assert_eq!(got.body, body);
        prop_assert_eq!(got.consumed, end);
    }

    #[test]
    fn chunked_mutated_same_result_at_every_split(
        wire in mutated(chunked_body().prop_map(|(w, _, _)| w))
    ) {
        let got = check_chunked_splits(&wire)?;
        prop_assert!(!(got.done && got.failed));
    }

    #[test]
    fn chunked_arbitrary_bytes_same_result_at_every_split(
        input in prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(b"0123456789abcdefAF;: \t\r\n".to_vec())],
            0..64,
        )
    ) {
        check_chunked_splits(&input)?;
    }

    #[test]
    fn chunked_encoder_round_trips(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8),
        cuts in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut wire = Vec::new();
        for c in &chunks {
            write_chunk_header(&mut wire, c.len());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(LAST_CHUNK);
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        for &n in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(n.min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        let got = feed(&pieces);
        prop_assert!(got.done && !got.failed);
        prop_assert_eq!(got.consumed, wire.len());
        prop_assert_eq!(got.body, chunks.concat());
    }

    #[test]
    fn chunk_header_announces_its_size(len in any::<usize>()) {
        let mut head = Vec::new();
        write_chunk_header(&mut head, len);
        let mut dec = ChunkedDecoder::new();
        prop_assert_eq!(dec.decode(&head).map(|(n, r)| (n, r.len())), Ok((head.len(), 0)));
        let data = [b'x'; 40];
        let (n, r) = dec.decode(&data).unwrap();
        prop_assert_eq!(r.len(), len.min(data.len()));
        prop_assert!(n >= r.len());
    }
}

// ---- path normalization ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalized_paths_are_rooted_dot_free_and_stable(
        tail in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!["/", ".", "..", "%2e", "%2E", "%2F", "%41", "%7e", "%", "a", "~"])
                    .prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 1..3),
            ],
            0..12,
        )
    ) {
        let mut path = b"/".to_vec();
        path.extend(tail.concat());
        if let Some(once) = normalize_path(&path) {
            prop_assert!(once.starts_with(b"/"));
            prop_assert!(!once.split(|&b| b == b'/').skip(1).any(|s| s == b"." || s == b".."));
            let twice = normalize_path(&once);
            prop_assert_eq!(twice.as_deref(), Some(&*once));
        }
    }
}

// ---- Redis replies ----

/// A RESP2 reply and the value it encodes (error replies stand as `Err(text)`).
fn resp_value() -> impl Strategy<Value = (Vec<u8>, Value)> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,12}".prop_map(|s| (
            format!("+{s}\r\n").into_bytes(),
            Value::Status(s.into_bytes())
        )),
        any::<i64>().prop_map(|n| (format!(":{n}\r\n").into_bytes(), Value::Int(n))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut r = format!("${}\r\n", b.len()).into_bytes();
            r.extend_from_slice(&b);
            r.extend_from_slice(b"\r\n");
            (r, Value::Bytes(b))
        }),
        Just((b"$-1\r\n".to_vec(), Value::Nil)),
        Just((b"*-1\r\n".to_vec(), Value::Nil)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(|items| {
            let mut r = format!("*{}\r\n", items.len()).into_bytes();
            let mut vs = Vec::new();
            for (bytes, v) in items {
                r.extend(bytes);
                vs.push(v);
            }
            (r, Value::Array(vs))
        })
    })
}

proptest! {
    #![proptest_config(config())]

    /// A reply read a piece at a time through one `Scan` (as a connection reads it) decodes to
    /// the value it encodes, at the same length, and not before its last byte; so does the
    /// whole, with a second reply behind it.
    #[test]
    fn redis_replies_decode_the_same_at_every_split((bytes, value) in resp_value(), cut in 1usize..7) {
        let mut scan = Scan::default();
        let mut end = 0;
        while end < bytes.len() - 1 {
            end = (end + cut).min(bytes.len() - 1);
            prop_assert_eq!(decode_reply(&mut scan, &bytes[..end]).unwrap(), None);
        }
        let (got, n) = decode_reply(&mut scan, &bytes).unwrap().unwrap();
        prop_assert_eq!((got.unwrap(), n), (value.clone(), bytes.len()));
        let mut two = bytes.clone();
        two.extend_from_slice(b"+OK\r\n");
        let (got, n) = decode_reply(&mut Scan::default(), &two).unwrap().unwrap();
        prop_assert_eq!((got.unwrap(), n), (value, bytes.len()));
    }
}
