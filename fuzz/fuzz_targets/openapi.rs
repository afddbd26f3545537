//! OpenAPI documents and the requests validated against them. The first byte picks the mode:
//! - even: the rest is a document (YAML or JSON text) to `openapi::load::parse_text` and
//!   `read_api`, then every operation's validator is compiled;
//! - odd: the rest is a request (query and JSON body, split at the first NUL) checked against
//!   a fixed document's `POST /orders` (parameters, `$ref`s, `oneOf`, a pattern, formats).
//!
//! Invariants besides "no panic": a refusal is 400, 413 or 415 with a problem body that is
//! JSON, names the same status, and stays within its bound.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringway::http1::{parse_request_head, Limits};
use ringway::openapi::load::{parse_text, read_api};
use ringway::openapi::validate::{Input, Validator};

const DOC: &str = r##"
openapi: 3.1.0
info: { title: fuzz, version: "1" }
paths:
  /orders:
    post:
      operationId: createOrder
      parameters:
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100 } }
        - { name: tags, in: query, style: form, explode: false, schema: { type: array, items: { type: string, maxLength: 8 } } }
        - { name: filter, in: query, style: deepObject, schema: { type: object, properties: { a: { type: number } } } }
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/Order" } }
      responses: { "200": { description: ok } }
components:
  schemas:
    Order:
      type: object
      required: [customer]
      properties:
        customer: { type: string, pattern: "^[a-z]+(-[a-z0-9]+)*$" }
        when: { type: string, format: date-time }
        items: { type: array, maxItems: 50, items: { oneOf: [{ type: integer }, { $ref: "#/components/schemas/Order" }] } }
"##;

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let doc = parse_text(DOC).expect("fixture parses");
        let api = read_api(doc, Path::new("fuzz.yaml"), "fuzz").expect("fixture reads");
        Validator::compile(&api, &api.operations[0], 4096, &mut Vec::new()).expect("compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(doc) = parse_text(text) else {
            return;
        };
        let Ok(api) = read_api(doc, Path::new("fuzz.yaml"), "fuzz") else {
            return;
        };
        for op in &api.operations {
            let _ = Validator::compile(&api, op, 4096, &mut Vec::new());
        }
        return;
    }
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut req = b"POST /orders?".to_vec();
    req.extend_from_slice(query);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\n");
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    let Ok(Some((head, _))) = parse_request_head(&req, &Limits::default()) else {
        return;
    };
    let v = validator();
    let input = Input {
        path: b"/orders",
        captures: &[],
        head: &head,
        body: &body[..body.len().min(4096)],
        body_complete: body.len() <= 4096,
    };
    if let Err(r) = v.check(&input) {
        assert!(matches!(r.status, 400 | 413 | 415), "status {}", r.status);
        assert!(
            r.problem.len() <= 8192,
            "problem body of {} bytes",
            r.problem.len()
        );
        let p: serde_json::Value = serde_json::from_slice(&r.problem).expect("problem is JSON");
        assert_eq!(p["status"], r.status);
    }
});
