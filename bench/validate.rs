//! JSON request-body validation in memory: what simd-json buys over serde_json on the
//! request path, for a ~1 KiB JSON object (the body of the policies scenario's validated POST).
//!
//! - `parse/serde_json`: `serde_json::from_slice::<Value>`.
//! - `parse/simd_json`: `openapi::validate::parse_json` (simd-json into a `serde_json::Value`
//!   on a per-thread copy with reused buffers, depth-limited).
//! - `parse/simd_json_borrowed`: simd-json's borrowed values on a copy (what the validator
//!   parsed into before it read the tape: a tree of maps to build and drop).
//! - `parse/simd_json_tape`: simd-json's tape on a padded copy with a reused tape (what the
//!   validator parses into: it validates the tape in place).
//! - `schema_only`: the compiled schema on an already parsed value.
//! - `parse+schema/serde_json`: serde_json parse then the schema.
//! - `check/simd_json`: `Validator::check` on the whole request (parameters, content type,
//!   simd-json parse onto the tape, schema on it): what a request pays.
//!
//! Prints ns per body; asserts that the fixture is valid (a broken fixture cannot pass as fast).
//!
//!   cargo bench --bench validate

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::http1::{parse_request_head, Limits};
use ringway::openapi::load::{parse_text, read_api};
use ringway::openapi::validate::{parse_json, Input, Validator};
use serde_json::Value;

const SPEC: &str = r##"
openapi: 3.1.0
info: { title: Orders, version: "1" }
paths:
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/Order" } }
      responses: { "201": { description: made } }
components:
  schemas:
    Order:
      type: object
      required: [id, customer, items]
      additionalProperties: false
      properties:
        id: { type: string, format: uuid }
        customer:
          type: object
          required: [name, email]
          properties:
            name: { type: string, maxLength: 80 }
            email: { type: string, format: email }
            address: { $ref: "#/components/schemas/Address" }
        items: { type: array, maxItems: 50, items: { $ref: "#/components/schemas/Item" } }
        note: { type: [string, "null"], maxLength: 200 }
    Address:
      type: object
      properties:
        street: { type: string }
        city: { type: string }
        zip: { type: string, pattern: "^[0-9]{5}$" }
    Item:
      type: object
      required: [sku, qty, price]
      properties:
        sku: { type: string, minLength: 3 }
        qty: { type: integer, minimum: 1 }
        price: { type: number, minimum: 0 }
"##;

/// A ~1 KiB order.
fn body() -> Vec<u8> {
    let items: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:04}","qty":{},"price":{}.5}}"#,
                i + 1,
                i * 3
            )
        })
        .collect();
    format!(
        r#"{{"id":"123e4567-e89b-12d3-a456-426614174000","customer":{{"name":"Ada Lovelace","email":"ada@example.com","address":{{"street":"12 Analytical Way","city":"London","zip":"12345"}}}},"items":[{}],"note":"leave at the door, please; the dog is friendly"}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let api = read_api(parse_text(SPEC).expect("spec"), Path::new("b.yaml"), "b").expect("api");
    let op = &api.operations[0];
    let v = Validator::compile(&api, op, 1 << 20, &mut Vec::new()).expect("compile");
    let body = body();
    eprintln!("body: {} bytes", body.len());
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (head, _) = parse_request_head(head.as_bytes(), &Limits::default())
        .expect("head")
        .expect("complete");
    let input = Input {
        path: b"/orders",
        captures: &[],
        head: &head,
        body: &body,
        body_complete: true,
    };
    assert!(v.check(&input).is_ok(), "the fixture must be valid");

    // The same schema compiled on its own, for the parse-vs-schema split.
    let doc: Value = (*api.doc).clone();
    let mut schema = doc["components"]["schemas"]["Order"].clone();
    schema["$defs"] = doc["components"]["schemas"].clone();
    let text = schema
        .to_string()
        .replace("#/components/schemas/", "#/$defs/");
    let schema: Value = serde_json::from_str(&text).expect("schema");
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema");
    let parsed: Value = serde_json::from_slice(&body).expect("json");
    assert!(compiled.is_valid(&parsed));

    let mut g = c.benchmark_group("validate_1k");
    g.bench_function("parse/serde_json", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&body)).expect("json")))
    });
    g.bench_function("parse/simd_json", |b| {
        b.iter(|| black_box(parse_json(black_box(&body)).expect("json")))
    });
    let mut copy = Vec::with_capacity(body.len());
    let mut buffers = simd_json::Buffers::new(body.len());
    g.bench_function("parse/simd_json_borrowed", |b| {
        b.iter(|| {
            copy.clear();
            copy.extend_from_slice(black_box(&body));
            let v = simd_json::to_borrowed_value_with_buffers(&mut copy, &mut buffers);
            black_box(v.is_ok())
        })
    });
    let mut padded = Vec::with_capacity(body.len() + simd_json::INPUT_PADDING);
    let mut tape = simd_json::Tape(Vec::new());
    g.bench_function("parse/simd_json_tape", |b| {
        b.iter(|| {
            padded.clear();
            padded.extend_from_slice(black_box(&body));
            padded.resize(body.len() + simd_json::INPUT_PADDING, b' ');
            let mut nodes = std::mem::replace(&mut tape, simd_json::Tape(Vec::new())).reset();
            let ok = simd_json::fill_tape_padded(&mut padded, body.len(), &mut buffers, &mut nodes)
                .is_ok();
            tape = nodes.reset();
            black_box(ok)
        })
    });
    g.bench_function("schema_only", |b| {
        b.iter(|| black_box(compiled.is_valid(black_box(&parsed))))
    });
    g.bench_function("parse+schema/serde_json", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&body)).expect("json");
            black_box(compiled.is_valid(&v))
        })
    });
    g.bench_function("parse+schema/simd_json", |b| {
        b.iter(|| {
            let v = parse_json(black_box(&body)).expect("json");
            black_box(compiled.is_valid(&v))
        })
    });
    g.bench_function("check/simd_json", |b| {
        b.iter(|| black_box(v.check(black_box(&input)).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
