//! Response head serialization cost, done the way the proxy does it: into one reused `Vec`,
//! status line by `http1::write_status_line`, header lines by `http1::write_header`, the
//! content-length digits written by hand.
//!
//! Measured: a fixed handful of headers, the same head re-serialized from a parsed upstream
//! response by the gateway's own field filter and head writer, and a 404 problem response
//! (`exchange::respond::problem` + the head writer).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::conn::client::{response_head, ExchangeLines};
use ringway::exchange::error::{ErrorKind, ProxyError};
use ringway::exchange::forward::filter_response_fields;
use ringway::exchange::respond::problem;
use ringway::exchange::wire::{BodyLen, Response};
use ringway::http1::push_decimal;
use ringway::http1::{self, BodyFraming, Method, ResponseHead, Version};

const REQUEST_ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

const UPSTREAM_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 20\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Server: backend/1.0\r\n\
Cache-Control: no-store\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=5\r\n\
\r\n";

/// A 200 with a fixed handful of headers and a content-length.
fn handful(out: &mut Vec<u8>, body_len: u64) {
    out.clear();
    http1::write_status_line(out, 200);
    http1::write_header(out, b"content-type", b"application/json");
    http1::write_header(out, b"date", b"Mon, 01 Jan 2024 00:00:00 GMT");
    http1::write_header(out, b"server", b"backend/1.0");
    http1::write_header(out, b"cache-control", b"no-store");
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, body_len);
    out.extend_from_slice(b"\r\n");
    http1::write_header(out, b"x-request-id", REQUEST_ID.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The client response head from a parsed upstream head, built by the gateway's own functions
/// (the forward phase's field filter, then the HTTP/1.1 wire's head writer) for a keep-alive
/// HTTP/1.1 client and a length-delimited body. `fields` is the reused field-line buffer.
fn from_upstream(out: &mut Vec<u8>, fields: &mut Vec<u8>, resp: &ResponseHead) {
    fields.clear();
    filter_response_fields(
        resp,
        None,
        &ringway::exchange::forward::Owned::default(),
        fields,
    );
    let body = match resp.body {
        BodyFraming::Length(n) => BodyLen::Length(n),
        BodyFraming::None => BodyLen::Bare,
        _ => BodyLen::Unknown,
    };
    let r = Response {
        status: resp.status,
        fields,
        body,
        keep: true,
    };
    let lines = ExchangeLines {
        request_id: REQUEST_ID.as_bytes(),
        trace: None,
        lines: b"",
    };
    out.clear();
    response_head(out, &r, Version::Http11, &lines);
}

fn response_heads(c: &mut Criterion) {
    let resp = match http1::parse_response_head(UPSTREAM_RESPONSE, 64 * 1024, 200, Method::Get) {
        Ok(Some((h, _))) => h,
        other => panic!("bench response does not parse: {other:?}"),
    };
    let mut out = Vec::with_capacity(1024);
    let mut fields = Vec::with_capacity(1024);
    handful(&mut out, 20);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n") && out.ends_with(b"\r\n\r\n"));
    from_upstream(&mut out, &mut fields, &resp);
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.contains("content-length: 20\r\n") && !text.contains("keep-alive"));

    let mut group = c.benchmark_group("serialize_response_head");
    group.bench_function("handful", |b| {
        b.iter(|| handful(black_box(&mut out), black_box(20)))
    });
    group.bench_function("from_upstream_head", |b| {
        b.iter(|| from_upstream(black_box(&mut out), &mut fields, black_box(&resp)))
    });
    group.finish();
}

/// A complete problem response, as the gateway builds it: `respond::problem` for the fields
/// and body, then the one head writer.
fn render(err: &ProxyError, out: &mut Vec<u8>) {
    let (mut fields, mut body) = (Vec::with_capacity(64), Vec::with_capacity(192));
    problem(err, REQUEST_ID, &mut fields, &mut body);
    let end = http1::HeadEnd {
        framing: http1::Framing::Length(body.len() as u64),
        request_id: REQUEST_ID.as_bytes(),
        trace: None,
        lines: b"",
        keep: true,
        version: Version::Http11,
    };
    http1::write_response_head(out, err.status(), &fields, &end);
    out.extend_from_slice(&body);
}

fn error_render(c: &mut Criterion) {
    let err = ProxyError::new(ErrorKind::NoRoute);
    let mut out = Vec::with_capacity(1024);
    render(&err, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n") && out.ends_with(b"}\n"));

    let mut group = c.benchmark_group("error_render");
    group.bench_function("404_problem_json", |b| {
        b.iter(|| {
            out.clear();
            render(black_box(&err), &mut out);
        })
    });
    group.finish();
}

criterion_group!(benches, response_heads, error_render);
criterion_main!(benches);
