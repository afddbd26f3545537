//! Response compression on the real gateway against a real upstream: negotiation with
//! q-values picks the coding, the client's body decodes to the upstream's bytes (gzip, brotli,
//! zstd, HTTP/1.1 and HTTP/2), already-encoded responses pass through byte for byte,
//! `Vary: Accept-Encoding`, `Content-Length` → chunked, small bodies / images / no-transform
//! untouched, HEAD, 304 and 206 stay correct; abuse: a 50 MB body streams with bounded memory,
//! hostile `Accept-Encoding` headers.
mod common;
use common::h2::*;
use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

/// The upstream's JSON document of `n` bytes (deterministic, compressible like an API body).
fn doc(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 80);
    let mut i = 0u64;
    while v.len() < n {
        let line = format!(
            "{{\"id\":{i},\"name\":\"product {}\",\"price\":{}.{:02},\"tags\":[\"t{}\"]}},",
            i * 7919 % 1000,
            i % 300,
            i * 31 % 100,
            i % 7
        );
        v.extend_from_slice(line.as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Decodes a body by its `Content-Encoding`.
fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None | Some("identity") => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        Some("br") => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        Some("zstd") => out = zstd::stream::decode_all(body).expect("valid zstd"),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

fn header<'a>(req: &'a Received, name: &str) -> Option<&'a str> {
    req.header(name)
}

/// The scripted upstream. Paths (by prefix of the last segment):
/// `json` 20 000-byte JSON with Content-Length, a strong ETag and Accept-Ranges, answering
/// If-None-Match with 304 and Range with 206; `chunked` the same body chunked; `small` 200
/// bytes; `png` 20 000 bytes of image/png; `pre` the JSON already gzip-encoded; `nt` JSON with
/// `Cache-Control: no-transform`; `vary` JSON with `Vary: Origin`; `big` 50 MB of text/plain,
/// chunked, written in 64 KiB pieces.
fn upstream() -> Upstream {
    Upstream::start(Arc::new(|req: &Received, s: &mut std::net::TcpStream| {
        let path = req.target.rsplit('/').next().unwrap_or("").to_string();
        let json = doc(20_000);
        let head_only = req.method == "HEAD";
        let mut send = |status: &str, fields: &str, body: &[u8]| {
            let mut out = format!("HTTP/1.1 {status}\r\n{fields}").into_bytes();
            if !fields.contains("transfer-encoding") {
                out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if !head_only {
                out.extend_from_slice(body);
            }
            let _ = s.write_all(&out);
        };
        if path.starts_with("json") {
            let inm = header(req, "if-none-match").unwrap_or("");
            if inm.contains("\"v1\"") {
                // Content-Length of the identity representation, as RFC 9110 allows on a 304.
                let _ = s.write_all(
                    b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 20000\r\n\r\n",
                );
            } else if header(req, "range").is_some() {
                send(
                    "206 Partial Content",
                    "content-type: application/json\r\ncontent-range: bytes 0-1999/20000\r\netag: \"v1\"\r\n",
                    &json[..2000],
                );
            } else {
                send(
                    "200 OK",
                    "content-type: application/json; charset=utf-8\r\netag: \"v1\"\r\naccept-ranges: bytes\r\n",
                    &json,
                );
            }
        } else if path.starts_with("chunked") {
            let mut out =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec();
            for piece in json.chunks(3000) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = s.write_all(&out);
        } else if path.starts_with("small") {
            send("200 OK", "content-type: application/json\r\n", &json[..200]);
        } else if path.starts_with("png") {
            send("200 OK", "content-type: image/png\r\n", &json);
        } else if path.starts_with("pre") {
            send(
                "200 OK",
                "content-type: application/json\r\ncontent-encoding: gzip\r\n",
                &gzip(&json),
            );
        } else if path.starts_with("nt") {
            send(
                "200 OK",
                "content-type: application/json\r\ncache-control: max-age=60, no-transform\r\n",
                &json,
            );
        } else if path.starts_with("vary") {
            send(
                "200 OK",
                "content-type: application/json\r\nvary: Origin\r\n",
                &json,
            );
        } else if path.starts_with("big") {
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
            if s.write_all(head).is_err() {
                return Reply::Close;
            }
            let piece = big_piece();
            for _ in 0..BIG_PIECES {
                let mut out = format!("{:x}\r\n", piece.len()).into_bytes();
                out.extend_from_slice(&piece);
                out.extend_from_slice(b"\r\n");
                if s.write_all(&out).is_err() {
                    return Reply::Close;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        } else {
            send("404 Not Found", "content-type: text/plain\r\n", b"no");
        }
        Reply::KeepAlive
    }))
}

const BIG_PIECES: usize = 800; // × 64 KiB = 50 MiB

/// 64 KiB of log-like text that compresses about 10:1 but not to nothing.
fn big_piece() -> Vec<u8> {
    let mut v = Vec::with_capacity(64 * 1024);
    let mut x = 0x9e3779b97f4a7c15u64;
    while v.len() < 64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(
            format!(
                "2026-12-04T23:{:02}:{:02}Z level=info req={:016x} status=200\n",
                x % 60,
                (x >> 8) % 60,
                x
            )
            .as_bytes(),
        );
    }
    v.truncate(64 * 1024);
    v
}

fn config(up: SocketAddr) -> String {
    format!(
        "[policies.gz]\ncompress = {{ }}\n\n\
         [policies.gzfirst]\ncompress = {{ codings = [\"gzip\", \"br\"], gzip_level = 6 }}\n\n{}\n\
         [[routes]]\nname = \"pref\"\nprefix = \"/pref\"\npolicies = [\"gzfirst\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"plain\"\nprefix = \"/plain\"\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"c\"\nprefix = \"/\"\npolicies = [\"gz\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up])
    )
}

fn get(addr: SocketAddr, path: &str, ae: Option<&str>, extra: &[(&str, &str)]) -> Response {
    let mut h: Vec<(&str, &str)> = extra.to_vec();
    if let Some(ae) = ae {
        h.push(("Accept-Encoding", ae));
    }
    request(addr, "GET", path, &h, b"")
}

#[test]
fn negotiation_picks_the_coding_and_the_body_decodes() {
    let up = upstream();
    let gw = Gateway::start(&config(up.addr));
    let json = doc(20_000);
    // (path, Accept-Encoding, expected coding)
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("/json", Some("gzip, deflate, br, zstd"), Some("zstd")),
        ("/json", Some("gzip, deflate, br"), Some("gzip")),
        ("/json", Some("br"), Some("br")),
        (
            "/json",
            Some("gzip;q=0.5, br;q=0.9, zstd;q=0.1"),
            Some("br"),
        ),
        ("/json", Some("GZIP ; Q=1 , Br;q=0.999"), Some("gzip")),
        ("/json", Some("x-gzip"), Some("gzip")),
        ("/json", Some("*"), Some("zstd")),
        ("/json", Some("*;q=0.5, zstd;q=0"), Some("gzip")),
        ("/json", Some("identity;q=1, gzip;q=0.5"), None),
        ("/json", Some("identity;q=0, br"), Some("br")),
        ("/json", Some("gzip;q=0"), None),
        ("/json", Some("gzip;q=2"), None),
        ("/json", Some("deflate"), None),
        ("/json", Some(""), None),
        ("/json", None, None),
        // The route's own order: gzip before br on a tie.
        ("/pref/json", Some("br, gzip, zstd"), Some("gzip")),
        ("/pref/json", Some("zstd"), None),
        // A route without the policy never compresses.
        ("/plain/json", Some("gzip, br, zstd"), None),
        // Chunked upstream body, other compressible type.
        ("/chunked", Some("br"), Some("br")),
    ];
    for &(path, ae, want) in cases {
        let r = get(gw.addr, path, ae, &[]);
        assert_eq!(r.status, 200, "{path} {ae:?}");
        assert_eq!(r.header("content-encoding"), want, "{path} {ae:?}");
        assert_eq!(decode(want, &r.body), json, "{path} {ae:?}: decoded body");
        if want.is_some() {
            assert_eq!(
                r.framing, "chunked",
                "{path} {ae:?}: Content-Length became chunked"
            );
            assert!(r.header("content-length").is_none());
            assert!(
                r.body.len() < json.len() / 3,
                "{path} {ae:?}: {}",
                r.body.len()
            );
            assert_eq!(
                r.header("etag"),
                Some("W/\"v1\"").filter(|_| path.contains("json"))
            );
            assert!(
                r.header("accept-ranges").is_none(),
                "{path}: ranges of compressed bytes"
            );
        } else if path != "/plain/json" {
            assert_eq!(r.header("content-length"), Some("20000"), "{path} {ae:?}");
            assert_eq!(r.header("etag"), Some("\"v1\""));
        }
        let vary = r.header_all("vary").join(",").to_ascii_lowercase();
        assert_eq!(
            vary.contains("accept-encoding"),
            !path.starts_with("/plain"),
            "{path} {ae:?}: Vary {vary:?}, set whether or not this client got compression"
        );
    }
}

#[test]
fn untouched_responses_pass_through_byte_identical() {
    let up = upstream();
    let gw = Gateway::start(&config(up.addr));
    let json = doc(20_000);
    let ae = Some("gzip, br, zstd");

    // Already encoded: byte for byte, never re-compressed, length kept.
    let r = get(gw.addr, "/pre", ae, &[]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, gzip(&json), "already-encoded body changed");
    assert_eq!(r.framing, "length");
    // It depends on Accept-Encoding even though the upstream did not say so: a cache behind
    // the gateway must not hand it to a client without gzip.
    let vary = r.header_all("vary").join(",").to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "Vary {vary:?}");

    // A client that asks intermediaries not to transform gets the upstream's bytes.
    let r = get(
        gw.addr,
        "/json",
        ae,
        &[("Cache-Control", "max-age=0, No-Transform")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-encoding").is_none(),
        "no-transform client got a coding"
    );
    assert_eq!(r.body, json);
    assert_eq!(r.header("content-length"), Some("20000"));

    // Below min_bytes, an incompressible type, no-transform.
    for (path, len) in [("/small", 200), ("/png", 20_000), ("/nt", 20_000)] {
        let r = get(gw.addr, path, ae, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-encoding").is_none(),
            "{path} was compressed"
        );
        assert_eq!(r.body, json[..len], "{path}");
        assert_eq!(
            r.header("content-length"),
            Some(len.to_string().as_str()),
            "{path}"
        );
    }
    // An image never varies on Accept-Encoding here; a small JSON body never gets compressed
    // for anyone either.
    let r = get(gw.addr, "/png", ae, &[]);
    assert!(r.header("vary").is_none(), "{:?}", r.headers);
}

#[test]
fn vary_merges_into_the_upstreams() {
    let up = upstream();
    let gw = Gateway::start(&config(up.addr));
    for ae in [Some("gzip"), None] {
        let r = get(gw.addr, "/vary", ae, &[]);
        let all = r.header_all("vary").join(", ").to_ascii_lowercase();
        assert!(
            all.contains("origin") && all.contains("accept-encoding"),
            "{all}"
        );
        assert_eq!(all.matches("accept-encoding").count(), 1, "{all}");
    }
}

#[test]
fn head_conditional_and_range_stay_correct() {
    let up = upstream();
    let gw = Gateway::start(&config(up.addr));
    let ae = Some("gzip");

    // HEAD: the head GET gets, no body.
    let mut c = Conn::open(gw.addr);
    let h = c.request("HEAD", "/json", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert_eq!(h.header("etag"), Some("W/\"v1\""));
    assert!(
        h.header("content-length").is_none(),
        "HEAD announced the identity length"
    );
    assert!(h
        .header_all("vary")
        .join(",")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    // The connection is still in sync: a GET on it decodes.
    let g = c.request("GET", "/json", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(decode(g.header("content-encoding"), &g.body), doc(20_000));

    // If-None-Match with the weak tag the client got: the upstream's 304 passes through,
    // uncompressed and bodiless.
    let r = get(gw.addr, "/json", ae, &[("If-None-Match", "W/\"v1\"")]);
    assert_eq!(r.status, 304);
    assert!(r.header("content-encoding").is_none());
    assert!(r.body.is_empty());
    assert_eq!(
        up.last().header("if-none-match"),
        Some("W/\"v1\""),
        "the validator reached the upstream"
    );
    // It carries the validator and Vary its 200 had: a strong tag here would give the
    // client's stored gzip copy a strong validator of the identity bytes. The identity
    // length goes too.
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert!(
        r.header("content-length").is_none_or(|l| l == "0"),
        "{:?}",
        r.header("content-length")
    );
    assert!(r
        .header_all("vary")
        .join(",")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    // A client that asked for no coding gets the 304 as the upstream sent it.
    let r = get(gw.addr, "/json", None, &[("If-None-Match", "\"v1\"")]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"v1\""));

    // Range: the upstream's 206 is never compressed.
    let r = get(gw.addr, "/json", ae, &[("Range", "bytes=0-1999")]);
    assert_eq!(r.status, 206);
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.header("content-range"), Some("bytes 0-1999/20000"));
    assert_eq!(r.body, doc(20_000)[..2000]);
}

#[test]
fn http2_client_gets_a_correct_compressed_body() {
    let up = upstream();
    let gw = start_h2c(&config(up.addr));
    let mut c = H2Client::h2c(gw.addr).expect("h2c");
    for (ae, want) in [("br", "br"), ("gzip", "gzip"), ("zstd, gzip", "zstd")] {
        for path in ["/json", "/chunked"] {
            let r = c
                .request("GET", path, &[("accept-encoding", ae)], b"")
                .expect("h2 response");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), Some(want), "{path} {ae}");
            assert!(r.header("content-length").is_none(), "{path} {ae}");
            assert_eq!(decode(Some(want), &r.body), doc(20_000), "{path} {ae}");
        }
    }
    let r = c
        .request("HEAD", "/json", &[("accept-encoding", "gzip")], b"")
        .expect("h2 HEAD");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.body.is_empty());
    let r = c
        .request("GET", "/pre", &[("accept-encoding", "gzip")], b"")
        .expect("h2 pre");
    assert_eq!(r.body, gzip(&doc(20_000)));
}

#[test]
fn hostile_accept_encoding_is_handled() {
    let up = upstream();
    let gw = Gateway::start(&config(up.addr));
    let json = doc(20_000);
    let long_junk = "x".repeat(8000);
    let many = "a;q=0.1, ".repeat(880) + "gzip";
    let cut_q = " ".repeat(1018) + "gzip;q=0";
    let cases: Vec<(String, Option<&str>)> = vec![
        // 8 KB of one token, then a real coding past the cap: not read.
        (format!("{long_junk}, gzip"), None),
        // ~8 KB of elements: the coding after the element cap is not read.
        (many, None),
        // An element cut by the byte cap must not read as q=1.
        (cut_q, None),
        ("gzip;q=0.5555".into(), None),
        ("gzip;q=1e3".into(), None),
        ("gzip;q=NaN, br;q=0.1".into(), Some("br")),
        ("gzip;;;;q=1;;".into(), None),
        (",,,,,,,,,,,,,,".into(), None),
        ("gzip\t;\tq=0.9".into(), Some("gzip")),
    ];
    for (ae, want) in &cases {
        let r = get(gw.addr, "/json", Some(ae), &[]);
        assert_eq!(r.status, 200, "{:.40}", ae);
        assert_eq!(r.header("content-encoding"), *want, "{:.40}", ae);
        assert_eq!(decode(*want, &r.body), json, "{:.40}", ae);
    }
    // Many Accept-Encoding lines share one budget.
    let mut extra: Vec<(&str, &str)> = vec![("Accept-Encoding", "foo"); 40];
    extra.push(("Accept-Encoding", "gzip"));
    let r = request(gw.addr, "GET", "/json", &extra, b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-encoding").is_none());
    // The gateway is still fine.
    let r = get(gw.addr, "/json", Some("gzip"), &[]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn fifty_megabytes_stream_compressed_with_bounded_memory() {
    let up = upstream();
    let gw = Gateway::start_workers(&config(up.addr), 1);
    // Warm up (allocator arenas, the pools, one compressed response).
    let r = get(gw.addr, "/json", Some("br"), &[]);
    assert_eq!(r.header("content-encoding"), Some("br"));
    let before = rss_kib(gw.pid());
    let piece = big_piece();

    for coding in ["gzip", "br", "zstd"] {
        let mut c = Conn::open(gw.addr);
        c.send(&build_request(
            "GET",
            "/big",
            &[("Accept-Encoding", coding)],
            b"",
        ));
        // Read the chunked body and decode it as it streams, watching the gateway's RSS.
        let r = c.read_response(false).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert!(
            r.body.len() < 50 << 20 >> 2,
            "{coding}: {} bytes",
            r.body.len()
        );
        let got = decode(Some(coding), &r.body);
        assert_eq!(got.len(), BIG_PIECES * piece.len(), "{coding}");
        assert!(
            got.chunks(piece.len()).all(|p| p == piece),
            "{coding}: body differs"
        );
        let after = rss_kib(gw.pid());
        eprintln!("{coding}: gateway RSS {before} KiB before, {after} KiB after 50 MiB");
        assert!(
            after < before + 8 * 1024,
            "{coding}: gateway RSS grew from {before} KiB to {after} KiB over a 50 MiB body"
        );
    }
}

#[test]
fn config_errors_name_the_file_line_and_field() {
    let up = Upstream::echo();
    let body = format!(
        "[policies.gz]\ncompress = {{ codings = [\"gzip\", \"deflate\"], gzip_level = 12, types = [\"json\"] }}\n\n{}\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\npolicies = [\"gz\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let (code, out, err) = check_config(&body);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    for (field, words) in [
        ("policies.gz.compress.codings[1]", "deflate"),
        ("policies.gz.compress.gzip_level", "between 1 and 9"),
        ("policies.gz.compress.types[0]", "media type"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(field))
            .unwrap_or_else(|| panic!("no error for {field}: {err}"));
        assert!(line.contains("check.toml:2:"), "{line}");
        assert!(line.contains(words), "{line}");
    }
    let (code, _, err) = check_config(&body.replace("compress = {", "compress = { level = 3,"));
    assert_eq!(code, 1);
    assert!(err.contains("level"), "unknown field refused: {err}");
}

#[test]
fn a_cache_hit_serves_the_stored_compressed_variant() {
    let up = upstream();
    let body = format!(
        "[policies.gz]\ncompress = {{ }}\n\n[policies.c]\ncache = {{ ttl = \"60s\" }}\n\n{}\n\
         [[routes]]\nname = \"c\"\nprefix = \"/\"\npolicies = [\"c\", \"gz\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    );
    let gw = Gateway::start(&body);
    let json = doc(20_000);
    let first = get(gw.addr, "/json", Some("gzip"), &[]);
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert_eq!(decode(Some("gzip"), &first.body), json);
    let upstream_calls = up.count();
    let hit = get(gw.addr, "/json", Some("gzip"), &[]);
    assert_eq!(
        up.count(),
        upstream_calls,
        "second gzip request reached the upstream"
    );
    assert_eq!(hit.header("content-encoding"), Some("gzip"));
    assert_eq!(hit.body, first.body, "a hit is the stored compressed bytes");
    assert_eq!(
        hit.header("content-length"),
        Some(hit.body.len().to_string().as_str()),
        "a hit has its length"
    );
    assert_eq!(hit.header("etag"), Some("W/\"v1\""));
    // Another coding, and none: their own variants, never the gzip bytes.
    for ae in [Some("br"), None] {
        for _ in 0..2 {
            let r = get(gw.addr, "/json", ae, &[]);
            assert_eq!(r.header("content-encoding"), ae, "{ae:?}");
            assert_eq!(decode(ae, &r.body), json, "{ae:?}");
        }
    }
}

/// The payloads of the complete chunks in `raw` (a response head, then chunked framing).
fn chunk_payloads(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(start) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return out;
    };
    let mut rest = &raw[start + 4..];
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        let body = &rest[eol + 2..];
        if size == 0 || body.len() < size + 2 {
            break;
        }
        out.extend_from_slice(&body[..size]);
        rest = &body[size + 2..];
    }
    out
}

#[test]
fn a_slowly_streamed_body_is_not_held_back_by_the_encoder() {
    // The upstream sends one event-like piece, then waits until the client has decoded it:
    // the gateway flushes the encoder when the upstream pauses instead of sitting on it.
    let gates: Vec<Gate> = (0..3).map(|_| Gate::new()).collect();
    let queue = Arc::new(std::sync::Mutex::new(gates.clone()));
    let up = Upstream::start(Arc::new(
        move |_req: &Received, s: &mut std::net::TcpStream| {
            let g = {
                let mut q = queue.lock().unwrap();
                if q.is_empty() {
                    Gate::new()
                } else {
                    q.remove(0)
                }
            };
            let first = "{\"event\":\"first\"}\n".repeat(100);
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n\
                 transfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                    first.len()
                )
                .as_bytes(),
            );
            g.wait(std::time::Duration::from_secs(10));
            let _ = s.write_all(b"5\r\nlast\n\r\n0\r\n\r\n");
            Reply::KeepAlive
        },
    ));
    let gw = Gateway::start(&config(up.addr));
    for (coding, gate) in ["gzip", "br", "zstd"].into_iter().zip(&gates) {
        let mut c = Conn::open(gw.addr);
        c.send(&build_request(
            "GET",
            "/stream",
            &[("Accept-Encoding", coding)],
            b"",
        ));
        let want = "{\"event\":\"first\"}\n".repeat(100);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let mut seen = false;
        while std::time::Instant::now() < deadline && !seen {
            let n = c.stream.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            let payload = chunk_payloads(&raw);
            let mut got = Vec::new();
            // A stream cut mid-way: what decodes so far is what counts.
            let _ = match coding {
                "gzip" => flate2::read::GzDecoder::new(&payload[..]).read_to_end(&mut got),
                "br" => {
                    brotli_decompressor::Decompressor::new(&payload[..], 4096).read_to_end(&mut got)
                }
                _ => match zstd::stream::read::Decoder::new(&payload[..]) {
                    Ok(mut d) => d.read_to_end(&mut got),
                    Err(e) => Err(e),
                },
            };
            seen = got == want.as_bytes();
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head:.300}"
        );
        assert!(
            seen,
            "{coding}: the first piece never decoded while the upstream paused"
        );
        gate.open();
    }
}

/// gzip for bodies of every shape the encoder distinguishes: a known length that arrives in
/// one upstream read (gzipped whole, in one call), a known length that arrives in two reads
/// 50 ms apart, and a chunked body (both streamed): each decodes to exactly the upstream's
/// bytes, at 1 KiB, 10 KiB and 200 KiB; an empty body passes through.
#[test]
fn gzip_bodies_of_known_and_unknown_length_decode_exactly() {
    // Paths: /whole-N, /split-N (Content-Length, two writes), /chunked-N.
    let up = Upstream::start(Arc::new(|req: &Received, s: &mut std::net::TcpStream| {
        let last = req.target.rsplit('/').next().unwrap_or("").to_string();
        let (kind, n) = last.split_once('-').unwrap_or(("", "0"));
        let body = doc(n.parse().unwrap_or(0));
        let head = |framing: &str| {
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\n")
                .into_bytes()
        };
        match kind {
            "whole" => {
                let mut out = head(&format!("content-length: {}\r\n", body.len()));
                out.extend_from_slice(&body);
                let _ = s.write_all(&out);
            }
            "split" => {
                let mut out = head(&format!("content-length: {}\r\n", body.len()));
                let half = body.len() / 2;
                out.extend_from_slice(&body[..half]);
                let _ = s.write_all(&out);
                let _ = s.flush();
                std::thread::sleep(std::time::Duration::from_millis(50));
                let _ = s.write_all(&body[half..]);
            }
            _ => {
                let mut out = head("transfer-encoding: chunked\r\n");
                for piece in body.chunks(4000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = s.write_all(&out);
            }
        }
        Reply::KeepAlive
    }));
    let gw = Gateway::start(&format!(
        "[policies.gz]\ncompress = {{ codings = [\"gzip\"], gzip_level = 5 }}\n\n{}\n\
         [[routes]]\nname = \"all\"\nprefix = \"/\"\npolicies = [\"gz\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[up.addr])
    ));
    for kind in ["whole", "split", "chunked"] {
        for n in [1024, 10 * 1024, 200 * 1024] {
            let path = format!("/{kind}-{n}");
            // Twice: the second response reuses the worker's warm state.
            for round in 0..2 {
                let r = get(gw.addr, &path, Some("gzip"), &[]);
                assert_eq!(r.status, 200, "{path}");
                assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
                assert_eq!(r.framing, "chunked", "{path}");
                let got = decode(Some("gzip"), &r.body);
                assert!(got == doc(n), "{path} round {round}: decoded body differs");
                assert!(r.body.len() < n / 2, "{path}: {} bytes", r.body.len());
            }
        }
    }
    let r = get(gw.addr, "/whole-0", Some("gzip"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body.is_empty());
}
