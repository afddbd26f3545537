//! Validator tests over real documents and real parsed request heads.

use std::path::Path;

use serde_json::Value;

use super::*;
use crate::http1::{parse_request_head, Limits};
use crate::openapi::load::{parse_text, read_api};

const SPEC_30: &str = r##"
openapi: 3.0.3
info: { title: Pets, version: "1.0" }
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100 } }
        - { name: tags, in: query, schema: { type: array, items: { type: string } } }
        - { name: ids, in: query, explode: false, schema: { type: array, items: { type: integer } } }
        - { name: sp, in: query, style: spaceDelimited, explode: false, schema: { type: array, items: { type: integer } } }
        - { name: pp, in: query, style: pipeDelimited, explode: false, schema: { type: array, items: { type: string } } }
        - { name: filter, in: query, style: deepObject, schema: { type: object, properties: { age: { type: integer }, name: { type: string } } } }
        - { name: flag, in: query, schema: { type: boolean } }
        - { name: q, in: query, schema: { type: string, maxLength: 5 } }
        - { name: day, in: query, schema: { type: string, format: date } }
        - { name: X-Rate, in: header, schema: { type: integer, format: int32 } }
        - { name: X-Req, in: header, required: true, schema: { type: string, format: uuid } }
        - { name: sid, in: cookie, schema: { type: string, minLength: 3 } }
        - { name: maybe, in: query, schema: { type: integer, nullable: true } }
        - { name: u, in: query, schema: { oneOf: [ { type: integer }, { type: string, pattern: "^[a-z]+$" } ] } }
      responses: { "200": { description: ok } }
    post:
      operationId: createPet
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/NewPet" } }
          text/plain: { schema: { type: string } }
      responses: { "201": { description: made } }
  /pets/{petId}/photos/{n}:
    get:
      operationId: getPhoto
      parameters:
        - { $ref: "#/components/parameters/PetId" }
        - { name: n, in: path, required: true, schema: { type: array, items: { type: integer } } }
      responses: { "200": { description: ok } }
    put:
      operationId: putPhoto
      parameters:
        - { $ref: "#/components/parameters/PetId" }
        - { name: n, in: path, required: true, style: label, schema: { type: integer } }
      requestBody:
        content:
          "application/*": { schema: { type: object, required: [x] } }
      responses: { "200": { description: ok } }
components:
  parameters:
    PetId: { name: petId, in: path, required: true, schema: { type: integer, format: int64 } }
  schemas:
    Tag: { type: string, enum: [dog, cat, null], nullable: true }
    Base:
      type: object
      required: [id, name]
      properties:
        id: { type: integer, readOnly: true }
        name: { type: string, minLength: 1 }
    NewPet:
      allOf:
        - $ref: "#/components/schemas/Base"
        - type: object
          properties:
            tag: { $ref: "#/components/schemas/Tag" }
            email: { type: string, format: email }
            owner: { nullable: true, allOf: [ { $ref: "#/components/schemas/Owner" } ] }
            kind: { anyOf: [ { type: integer }, { type: string, minLength: 2 } ] }
            born: { type: string, format: date-time }
            ip: { type: string, format: ipv4 }
            nick: { type: string, format: nickname }
            maybe: { $ref: "#/components/schemas/Maybe" }
    Maybe: { nullable: true, allOf: [ { type: object, properties: { z: { type: string, format: zed } } } ] }
    Owner: { type: object, required: [first], properties: { first: { type: string } } }
"##;

const SPEC_31: &str = r##"
openapi: 3.1.0
info: { title: T, version: "1" }
paths:
  /things/{id}:
    post:
      operationId: makeThing
      parameters:
        - { name: id, in: path, required: true, schema: { type: string, format: uuid } }
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [n]
              properties:
                n: { type: [integer, "null"], exclusiveMinimum: 0 }
                child: { $ref: "#/components/schemas/Node" }
      responses: { "200": { description: ok } }
components:
  schemas:
    Node:
      type: object
      properties:
        next: { $ref: "#/components/schemas/Node" }
        v: { type: integer }
"##;

struct Fixture {
    api: Api,
}

impl Fixture {
    fn new(spec: &str) -> Fixture {
        let api = read_api(parse_text(spec).unwrap(), Path::new("t.yaml"), "t").unwrap();
        Fixture { api }
    }

    fn validator(&self, id: &str, max_body: usize) -> Validator {
        let op = self.api.operations.iter().find(|o| o.id == id).unwrap();
        let mut ignored = Vec::new();
        Validator::compile(&self.api, op, max_body, &mut ignored).unwrap()
    }
}

/// Runs `v` on a raw request (`head` without the final CRLF pair), the captures found by
/// matching the path against `template`.
fn run(
    v: &Validator,
    template: &str,
    head: &str,
    body: &[u8],
    complete: bool,
) -> Result<(), Refusal> {
    let raw = format!("{head}\r\n\r\n");
    let (h, _) = parse_request_head(raw.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap();
    let path = h.path().to_vec();
    let captures = captures(template, &path);
    v.check(&Input {
        path: &path,
        captures: &captures,
        head: &h,
        body,
        body_complete: complete,
    })
}

/// Byte ranges of the `{x}` segments of `template` in `path` (whole segments only).
fn captures(template: &str, path: &[u8]) -> Vec<(u16, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let segs: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for (t, s) in template.split('/').zip(segs) {
        if t.starts_with('{') {
            out.push((out.len() as u16, pos..pos + s.len()));
        }
        pos += s.len() + 1;
    }
    out
}

fn get(v: &Validator, target: &str, extra: &str) -> Result<(), Refusal> {
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nX-Req: 123e4567-e89b-12d3-a456-426614174000{extra}"
    );
    run(v, "/pets", &head, b"", true)
}

fn problem(r: &Refusal) -> Value {
    serde_json::from_slice(&r.problem).unwrap()
}

/// The (pointer, keyword) pairs of a refusal.
fn violations(r: &Refusal) -> Vec<(String, String)> {
    problem(r)["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["pointer"].as_str().unwrap().to_string(),
                v["keyword"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn one(r: Result<(), Refusal>) -> (String, String) {
    let r = r.expect_err("should be refused");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.problem));
    let v = violations(&r);
    assert_eq!(v.len(), 1, "{v:?}");
    v.into_iter().next().unwrap()
}

fn pair(p: &str, k: &str) -> (String, String) {
    (p.to_string(), k.to_string())
}

#[test]
fn query_scalars_are_coerced_and_checked() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    assert!(get(&v, "/pets", "").is_ok());
    assert!(get(&v, "/pets?limit=5&flag=true&q=a+b&day=2024-02-29", "").is_ok());
    assert!(
        get(&v, "/pets?unknown=1&limit=7", "").is_ok(),
        "unknown params pass"
    );
    assert_eq!(
        one(get(&v, "/pets?limit=abc", "")),
        pair("/query/limit", "type")
    );
    assert_eq!(
        one(get(&v, "/pets?limit=0", "")),
        pair("/query/limit", "minimum")
    );
    assert_eq!(
        one(get(&v, "/pets?limit=101", "")),
        pair("/query/limit", "maximum")
    );
    assert_eq!(
        one(get(&v, "/pets?limit=1.5", "")),
        pair("/query/limit", "type")
    );
    assert_eq!(
        one(get(&v, "/pets?limit=", "")),
        pair("/query/limit", "type")
    );
    assert_eq!(
        one(get(&v, "/pets?flag=yes", "")),
        pair("/query/flag", "type")
    );
    assert_eq!(
        one(get(&v, "/pets?q=toolong", "")),
        pair("/query/q", "maxLength")
    );
    assert!(get(&v, "/pets?q=%61%62", "").is_ok(), "percent-decoded");
    assert_eq!(
        one(get(&v, "/pets?day=2023-02-29", "")),
        pair("/query/day", "format")
    );
    assert!(
        get(&v, "/pets?l%69mit=5", "").is_ok(),
        "an encoded name is the name"
    );
    assert_eq!(
        one(get(&v, "/pets?l%69mit=500", "")),
        pair("/query/limit", "maximum")
    );
}

#[test]
fn query_arrays_in_every_style() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    assert!(get(&v, "/pets?tags=a&tags=b", "").is_ok());
    assert!(get(&v, "/pets?ids=1,2,3", "").is_ok());
    assert_eq!(
        one(get(&v, "/pets?ids=1,x,3", "")),
        pair("/query/ids/1", "type")
    );
    assert!(get(&v, "/pets?sp=1%202+3", "").is_ok());
    assert_eq!(
        one(get(&v, "/pets?sp=1%20b", "")),
        pair("/query/sp/1", "type")
    );
    assert!(get(&v, "/pets?pp=a|b%7Cc", "").is_ok());
    assert!(get(&v, "/pets?filter[age]=3&filter[name]=rex", "").is_ok());
    assert!(
        get(&v, "/pets?filter%5Bage%5D=3", "").is_ok(),
        "encoded brackets"
    );
    assert_eq!(
        one(get(&v, "/pets?filter[age]=old", "")),
        pair("/query/filter/age", "type")
    );
}

#[test]
fn unions_and_nullable_parameters() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    assert!(get(&v, "/pets?maybe=null", "").is_ok());
    assert!(get(&v, "/pets?maybe=4", "").is_ok());
    assert_eq!(
        one(get(&v, "/pets?maybe=x", "")),
        pair("/query/maybe", "type")
    );
    assert!(get(&v, "/pets?u=12", "").is_ok());
    assert!(get(&v, "/pets?u=abc", "").is_ok());
    assert_eq!(one(get(&v, "/pets?u=ABC", "")), pair("/query/u", "oneOf"));
}

#[test]
fn headers_and_cookies() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    let head = "GET /pets HTTP/1.1\r\nHost: x";
    assert_eq!(
        one(run(&v, "/pets", head, b"", true)),
        pair("/header/X-Req", "required")
    );
    assert_eq!(one(get(&v, "/pets", "x")), pair("/header/X-Req", "format"));
    assert!(
        get(&v, "/pets", "\r\nx-rate: 10").is_ok(),
        "names are case-insensitive"
    );
    assert_eq!(
        one(get(&v, "/pets", "\r\nX-Rate: 3000000000")),
        pair("/header/X-Rate", "maximum")
    );
    assert!(get(&v, "/pets", "\r\nCookie: a=1; sid=abcd").is_ok());
    assert_eq!(
        one(get(&v, "/pets", "\r\nCookie: sid=ab")),
        pair("/cookie/sid", "minLength")
    );
}

#[test]
fn path_parameters_by_template_order() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("getPhoto", 1 << 20);
    let t = "/pets/{petId}/photos/{n}";
    let g = |p: &str| run(&v, t, &format!("GET {p} HTTP/1.1\r\nHost: x"), b"", true);
    assert!(g("/pets/12/photos/1,2").is_ok());
    assert_eq!(one(g("/pets/rex/photos/1")), pair("/path/petId", "type"));
    assert_eq!(one(g("/pets/1/photos/1,x")), pair("/path/n/1", "type"));
    assert_eq!(
        one(g("/pets/%ff/photos/1")),
        pair("/path/petId", "encoding")
    );
    assert_eq!(
        one(g("/pets/99999999999999999999/photos/1")),
        pair("/path/petId", "maximum"),
        "int64 range"
    );
    let v = f.validator("putPhoto", 1 << 20);
    let t = "/pets/{petId}/photos/{n}";
    let put = |p: &str| {
        let h = format!(
            "PUT {p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7"
        );
        run(&v, t, &h, br#"{"x":1}"#, true)
    };
    assert!(put("/pets/1/photos/.5").is_ok(), "label style");
    assert_eq!(one(put("/pets/1/photos/5")), pair("/path/n", "style"));
}

fn post(v: &Validator, ct: Option<&str>, body: &[u8], complete: bool) -> Result<(), Refusal> {
    let ct = ct
        .map(|c| format!("\r\nContent-Type: {c}"))
        .unwrap_or_default();
    let len = if body.is_empty() && complete {
        String::new()
    } else {
        format!(
            "\r\nContent-Length: {}",
            body.len() + usize::from(!complete)
        )
    };
    run(
        v,
        "/pets",
        &format!("POST /pets HTTP/1.1\r\nHost: x{ct}{len}"),
        body,
        complete,
    )
}

#[test]
fn json_bodies_with_refs_all_of_nullable_and_formats() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("createPet", 1 << 20);
    let j = Some("application/json");
    let ok = |b: &str| post(&v, j, b.as_bytes(), true);
    assert!(
        ok(r#"{"name":"rex"}"#).is_ok(),
        "readOnly id is not required"
    );
    assert!(
        ok(r#"{"name":"rex","tag":null,"owner":null,"kind":3}"#).is_ok(),
        "nullable"
    );
    assert!(ok(r#"{"name":"rex","tag":"cat","owner":{"first":"a"},"kind":"ab"}"#).is_ok());
    assert!(
        ok(r#"{"name":"rex","nick":"anything"}"#).is_ok(),
        "unknown format: annotation"
    );
    assert!(
        ok(r#"{"name":"rex","maybe":null}"#).is_ok(),
        "nullable composed schema"
    );
    assert_eq!(
        one(ok(r#"{"name":"r","maybe":{"z":1}}"#)),
        pair("/body/maybe", "anyOf")
    );
    assert_eq!(one(ok(r#"{}"#)), pair("/body", "required"));
    assert_eq!(one(ok(r#"{"name":1}"#)), pair("/body/name", "type"));
    assert_eq!(
        one(ok(r#"{"name":"r","tag":"cow"}"#)),
        pair("/body/tag", "enum")
    );
    assert_eq!(
        one(ok(r#"{"name":"r","owner":{}}"#)),
        pair("/body/owner", "anyOf")
    );
    assert_eq!(
        one(ok(r#"{"name":"r","kind":"a"}"#)),
        pair("/body/kind", "anyOf")
    );
    assert_eq!(
        one(ok(r#"{"name":"r","email":"nope"}"#)),
        pair("/body/email", "format")
    );
    assert_eq!(
        one(ok(r#"{"name":"r","born":"yesterday"}"#)),
        pair("/body/born", "format")
    );
    assert_eq!(
        one(ok(r#"{"name":"r","ip":"1.2.3.999"}"#)),
        pair("/body/ip", "format")
    );
    assert_eq!(one(ok(r#"{"name":"r""#)), pair("/body", "json"));
    assert!(post(
        &v,
        Some("application/json; charset=utf-8"),
        br#"{"name":"x"}"#,
        true
    )
    .is_ok());
    assert!(
        post(&v, Some("text/plain"), b"not json at all", true).is_ok(),
        "text: type only"
    );
}

#[test]
fn content_type_size_and_presence() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("createPet", 16);
    let r = post(&v, Some("application/xml"), b"<a/>", true).unwrap_err();
    assert_eq!(r.status, 415);
    let p = problem(&r);
    assert_eq!(p["status"], 415);
    assert_eq!(p["violations"][0]["pointer"], "/header/content-type");
    assert!(p["detail"].as_str().unwrap().contains("application/json"));
    assert_eq!(post(&v, None, b"{}", true).unwrap_err().status, 415);
    assert_eq!(post(&v, Some("}{"), b"{}", true).unwrap_err().status, 415);
    let r = post(
        &v,
        Some("application/json"),
        br#"{"name":"0123456789"#,
        false,
    )
    .unwrap_err();
    assert_eq!(r.status, 413);
    assert_eq!(problem(&r)["code"], "body_too_large");
    assert_eq!(
        one(post(&v, Some("application/json"), b"", true)),
        pair("/body", "required")
    );
    assert_eq!(v.body_bytes(), 16);
    assert_eq!(
        f.validator("listPets", 16).body_bytes(),
        0,
        "no body schema, nothing read"
    );
    let put = f.validator("putPhoto", 1 << 20);
    let h = "PUT /pets/1/photos/.2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.a+json\r\nContent-Length: 2";
    let r = run(&put, "/pets/{petId}/photos/{n}", h, b"{}", true);
    assert_eq!(
        one(r),
        pair("/body", "required"),
        "application/* takes a +json body"
    );
}

#[test]
fn openapi_31_uses_2020_12() {
    let f = Fixture::new(SPEC_31);
    let v = f.validator("makeThing", 1 << 20);
    let t = "/things/{id}";
    let p = |id: &str, body: &str| {
        let h = format!(
            "POST /things/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        run(&v, t, &h, body.as_bytes(), true)
    };
    let id = "123e4567-e89b-12d3-a456-426614174000";
    assert!(p(id, r#"{"n":1}"#).is_ok());
    assert!(p(id, r#"{"n":null,"child":{"next":{"next":{"v":1}}}}"#).is_ok());
    assert_eq!(
        one(p(id, r#"{"n":0}"#)),
        pair("/body/n", "exclusiveMinimum")
    );
    assert_eq!(one(p("nope", r#"{"n":1}"#)), pair("/path/id", "format"));
    assert_eq!(
        one(p(id, r#"{"n":1,"child":{"next":{"v":"x"}}}"#)),
        pair("/body/child/next/v", "type")
    );
}

#[test]
fn compile_reports_unknown_formats_non_json_schemas_and_bad_schemas() {
    let f = Fixture::new(SPEC_30);
    let op = f
        .api
        .operations
        .iter()
        .find(|o| o.id == "createPet")
        .unwrap();
    let mut ignored = Vec::new();
    Validator::compile(&f.api, op, 1024, &mut ignored).unwrap();
    let ptrs: Vec<&str> = ignored.iter().map(|i| i.pointer.as_str()).collect();
    assert!(
        ptrs.contains(&"#/components/schemas/NewPet/allOf/1/properties/nick/format"),
        "{ptrs:?}"
    );
    assert!(
        ptrs.contains(&"#/paths/~1pets/post/requestBody/content/text~1plain/schema"),
        "{ptrs:?}"
    );
    assert!(
        ptrs.contains(&"#/components/schemas/Maybe/allOf/0/properties/z/format"),
        "pointers name the document as written, not the nullable rewrite: {ptrs:?}"
    );
    let bad = SPEC_31.replace(
        "type: object\n              required: [n]",
        "type: 5\n              required: [n]",
    );
    let f = Fixture::new(&bad);
    let op = &f.api.operations[0];
    let e = Validator::compile(&f.api, op, 1024, &mut Vec::new()).unwrap_err();
    assert!(e.contains("#/paths/~1things~1{id}/post/requestBody"), "{e}");
    let dangling = SPEC_31.replace(
        "#/components/schemas/Node\" }\n      responses",
        "#/components/schemas/Nope\" }\n      responses",
    );
    let f = Fixture::new(&dangling);
    assert!(Validator::compile(&f.api, &f.api.operations[0], 1024, &mut Vec::new()).is_err());
}

#[test]
fn hostile_bodies_are_refused_without_panics() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("createPet", 4 << 20);
    let j = Some("application/json");
    let deep = "[".repeat(200_000) + &"]".repeat(200_000);
    assert_eq!(
        one(post(&v, j, deep.as_bytes(), true)),
        pair("/body", "json")
    );
    let deep_obj = r#"{"a":"#.repeat(5000) + "1" + &"}".repeat(5000);
    assert_eq!(
        one(post(&v, j, deep_obj.as_bytes(), true)),
        pair("/body", "json")
    );
    assert_eq!(
        one(post(&v, j, b"{\"name\":\"\xff\xfe\"}", true)),
        pair("/body", "json")
    );
    let huge = format!(r#"{{"name":"x","kind":{}}}"#, "9".repeat(5000));
    let _ = post(&v, j, huge.as_bytes(), true); // refused or a float: never a panic
    let _ = post(&v, j, br#"{"name":"x","kind":1e99999}"#, true);
    // A long array under a union: one violation, bounded work and body.
    let many = format!(
        r#"{{"name":"x","tag":"dog","kind":[{}]}}"#,
        "1,".repeat(200_000) + "1"
    );
    let r = post(&v, j, many.as_bytes(), true).unwrap_err();
    assert!(r.problem.len() <= problem::MAX_BODY);
    let bad_props = format!(
        "{{{}\"name\":\"x\"}}",
        (0..5000)
            .map(|i| format!("\"tag\":\"no{i}\","))
            .collect::<String>()
    );
    let r = post(&v, j, bad_props.as_bytes(), true);
    if let Err(r) = r {
        assert!(r.problem.len() <= problem::MAX_BODY);
    }
}

#[test]
fn hostile_parameters_are_refused_without_panics() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    for q in [
        "%",
        "%%",
        "%zz",
        "limit=%",
        "limit=%4",
        "limit=%ff",
        "tags=%ff",
        "filter[=1",
        "filter[]=1",
        "filter]=",
        "=&&=",
        "ids=,,,",
        "ids=",
        "sp=%20%20",
        "pp=|||",
        "limit=1e999999",
        "limit=-0",
        "limit=00001",
        "limit=99999999999999999999999999999",
        "u=%00",
        "filter[age]=%ff",
    ] {
        let r = get(&v, &format!("/pets?{q}"), "");
        if let Err(r) = r {
            assert_eq!(r.status, 400, "{q}");
            let p = problem(&r);
            assert!(!p["violations"].as_array().unwrap().is_empty(), "{q}");
        }
    }
    let long = "x".repeat(3000);
    let r = get(&v, &format!("/pets?q={long}&filter[{long}]=1"), "").unwrap_err();
    assert!(
        r.problem.len() < 2048,
        "client input is not echoed unbounded"
    );
}

#[test]
fn every_violation_is_reported_and_the_list_is_bounded() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("listPets", 1 << 20);
    let ids = (0..500).map(|_| "x").collect::<Vec<_>>().join(",");
    let r = get(&v, &format!("/pets?limit=abc&flag=2&ids=1,{ids}"), "").unwrap_err();
    let p = problem(&r);
    assert_eq!(p["violations"][0]["pointer"], "/query/limit");
    assert_eq!(p["violations"][1]["pointer"], "/query/ids/1");
    let many = format!(r#"{{"name":"x","kind":[{}]}}"#, vec!["true"; 300].join(","));
    let c = f.validator("createPet", 1 << 20);
    let r = post(&c, Some("application/json"), many.as_bytes(), true).unwrap_err();
    assert!(r.violations >= 1);
    let p = problem(&r);
    assert!(p["violations"].as_array().unwrap().len() <= problem::MAX_LISTED);
}

#[test]
fn the_deepest_accepted_body_validates_on_a_quarter_of_a_worker_stack() {
    // Workers run on 2 MiB stacks; a recursive schema walked to the parse depth limit must
    // fit in a quarter of that.
    let depth = body::MAX_DEPTH - 2;
    let body = format!(
        r#"{{"n":1,"child":{}{{"v":1}}{}}}"#,
        r#"{"next":"#.repeat(depth - 2),
        "}".repeat(depth - 2)
    );
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let f = Fixture::new(SPEC_31);
            let v = f.validator("makeThing", 1 << 20);
            let h = format!(
                "POST /things/123e4567-e89b-12d3-a456-426614174000 HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: {}",
                body.len()
            );
            let ok = run(&v, "/things/{id}", &h, body.as_bytes(), true).is_ok();
            let bad = body.replace(r#"{"v":1}"#, r#"{"v":"x"}"#);
            let refused = run(&v, "/things/{id}", &h, bad.as_bytes(), true).is_err();
            (ok, refused)
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), (true, true));
}

/// The simd-json representation gives the verdicts `serde_json::Value` gives, keyword for
/// keyword, on the parts of the contract that are easy to get subtly wrong (number kinds,
/// code-point lengths, uniqueness, enum/const of containers, property names).
#[test]
fn simd_json_values_validate_like_serde_json_values() {
    use jsonschema::json::SerdeJson;
    let spec = r##"
openapi: 3.1.0
info: { title: T, version: "1" }
paths: {}
components:
  schemas:
    S:
      type: object
      properties:
        i: { type: integer, minimum: -5, maximum: 18446744073709551615 }
        n: { type: number, multipleOf: 0.5, exclusiveMaximum: 100 }
        s: { type: string, minLength: 2, maxLength: 3, pattern: "^[a-zé]+$" }
        u: { type: array, uniqueItems: true }
        e: { enum: [1, "a", [1, 2], { k: v }, null] }
        c: { const: { a: [1, 2.5] } }
        b: { type: boolean }
        o: { type: object, propertyNames: { maxLength: 2 }, maxProperties: 2 }
      additionalProperties: false
"##;
    let api = read_api(parse_text(spec).unwrap(), Path::new("t"), "t").unwrap();
    let p = schema::prepare(&api);
    let s = serde_json::json!({"$ref": "#/components/schemas/S"});
    let serde_v = schema::compile::<SerdeJson>(&p, &s, "#/x", &mut Vec::new()).unwrap();
    let simd_v = schema::compile::<simd::SimdTape>(&p, &s, "#/x", &mut Vec::new()).unwrap();
    for body in [
        r#"{"i":3}"#,
        r#"{"i":3.0}"#,
        r#"{"i":-6}"#,
        r#"{"i":18446744073709551615}"#,
        r#"{"i":1.5}"#,
        r#"{"i":-0}"#,
        r#"{"i":1e2}"#,
        r#"{"n":1.5}"#,
        r#"{"n":1.25}"#,
        r#"{"n":100}"#,
        r#"{"n":-1e300}"#,
        r#"{"s":"éé"}"#,
        r#"{"s":"éééé"}"#,
        r#"{"s":"a"}"#,
        r#"{"s":"a\u00e9"}"#,
        r#"{"s":"AB"}"#,
        r#"{"u":[1,2,3]}"#,
        r#"{"u":[1,1.0]}"#,
        r#"{"u":[{"a":1},{"a":1}]}"#,
        r#"{"u":[[1],[1,2]]}"#,
        r#"{"e":1}"#,
        r#"{"e":1.0}"#,
        r#"{"e":"a"}"#,
        r#"{"e":"b"}"#,
        r#"{"e":[1,2]}"#,
        r#"{"e":[2,1]}"#,
        r#"{"e":{"k":"v"}}"#,
        r#"{"e":null}"#,
        r#"{"c":{"a":[1,2.5]}}"#,
        r#"{"c":{"a":[1.0,2.5]}}"#,
        r#"{"c":{"a":[1]}}"#,
        r#"{"b":true}"#,
        r#"{"b":"true"}"#,
        r#"{"o":{"ab":1,"c":2}}"#,
        r#"{"o":{"abc":1}}"#,
        r#"{"o":{"a":1,"b":2,"c":3}}"#,
        r#"{"z":1}"#,
        // Wide objects (more than `simd::WIDE` members) are looked up through their index.
        WIDE_INVALID,
        r#"[]"#,
        r#""x""#,
        r#"null"#,
    ] {
        let serde_value: Value = serde_json::from_str(body).unwrap();
        let mut want: Vec<(String, String)> = serde_v
            .iter_errors(&serde_value)
            .map(|e| {
                (
                    e.instance_path().to_string(),
                    e.kind().keyword().to_string(),
                )
            })
            .collect();
        let mut bytes = body.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let doc = simd::Doc::prepare(&tape.0).unwrap();
        let mut got: Vec<(String, String)> = simd_v
            .iter_errors(doc.root())
            .map(|e| {
                (
                    e.instance_path().to_string(),
                    e.kind().keyword().to_string(),
                )
            })
            .collect();
        // serde_json's map is sorted; the tape keeps the body's order.
        want.sort();
        got.sort();
        assert_eq!(got, want, "{body}");
        assert_eq!(simd_v.is_valid(doc.root()), serde_v.is_valid(&serde_value));
    }
}

/// 18 members: undeclared ones, and declared ones with wrong values, in a wide object.
const WIDE_INVALID: &str = r#"{"z1":1,"z2":2,"z3":3,"z4":4,"z5":5,"z6":6,"z7":7,"z8":8,
    "z9":9,"z10":10,"z11":11,"z12":12,"z13":13,"z14":14,"i":1.5,"s":"ABCD","b":"x","e":"b"}"#;

#[test]
fn numbers_past_f64_and_members_named_twice_are_refused() {
    let f = Fixture::new(SPEC_30);
    let v = f.validator("createPet", 1 << 20);
    let r = post(
        &v,
        Some("application/json"),
        br#"{"name":"x","kind":1e999}"#,
        true,
    );
    assert_eq!(one(r), pair("/body", "json"));
    // A member named twice: the validator and the backend could read different values.
    let twice = br#"{"name":"x","kind":1,"name":5}"#;
    let r = post(&v, Some("application/json"), twice, true);
    assert_eq!(one(r), pair("/body", "json"));
    // In a wide object (hash-indexed) too.
    let wide = format!(
        r#"{{"name":"x",{}"name":"y"}}"#,
        (0..40)
            .map(|i| format!(r#""k{i}":{i},"#))
            .collect::<String>()
    );
    let r = post(&v, Some("application/json"), wide.as_bytes(), true);
    assert_eq!(one(r), pair("/body", "json"));
    let nested = br#"{"name":"x","owner":{"first":"a","first":"b"}}"#;
    assert_eq!(
        one(post(&v, Some("application/json"), nested, true)),
        pair("/body", "json")
    );
}

#[test]
fn the_rarer_styles() {
    let spec = r##"
openapi: 3.0.3
info: { title: T, version: "1" }
paths:
  /r/{lab}/{obj}:
    get:
      operationId: rare
      parameters:
        - { name: lab, in: path, required: true, style: label, explode: true, schema: { type: array, items: { type: integer } } }
        - { name: obj, in: path, required: true, schema: { type: object, properties: { a: { type: integer } }, required: [a] } }
        - { name: point, in: query, schema: { type: object, properties: { x: { type: integer }, y: { type: integer } } } }
        - { name: X-List, in: header, schema: { type: array, items: { type: boolean } } }
        - { name: ids, in: cookie, explode: false, schema: { type: array, items: { type: integer } } }
        - { name: empty, in: query, allowEmptyValue: true, schema: { type: integer } }
      responses: { "200": { description: ok } }
"##;
    let f = Fixture::new(spec);
    let v = f.validator("rare", 1024);
    let t = "/r/{lab}/{obj}";
    let g = |p: &str, extra: &str| {
        run(
            &v,
            t,
            &format!("GET {p} HTTP/1.1\r\nHost: x{extra}"),
            b"",
            true,
        )
    };
    assert!(g("/r/.1.2.3/a,5", "").is_ok());
    assert_eq!(one(g("/r/.1.x/a,5", "")), pair("/path/lab/1", "type"));
    assert_eq!(one(g("/r/.1/b,5", "")), pair("/path/obj", "required"));
    assert_eq!(one(g("/r/.1/a,5,b", "")), pair("/path/obj", "style"));
    assert_eq!(one(g("/r/.1/a,x", "")), pair("/path/obj/a", "type"));
    assert!(
        g("/r/.1/a,1?x=1&y=2", "").is_ok(),
        "exploded form object: its properties"
    );
    assert_eq!(
        one(g("/r/.1/a,1?x=1&y=z", "")),
        pair("/query/point/y", "type")
    );
    assert!(g("/r/.1/a,1", "\r\nX-List: true, false\r\nX-List: true").is_ok());
    assert_eq!(
        one(g("/r/.1/a,1", "\r\nX-List: true,yes")),
        pair("/header/X-List/1", "type")
    );
    assert!(g("/r/.1/a,1", "\r\nCookie: ids=1,2").is_ok());
    assert_eq!(
        one(g("/r/.1/a,1", "\r\nCookie: ids=1,b")),
        pair("/cookie/ids/1", "type")
    );
    assert!(g("/r/.1/a,1?empty=", "").is_ok(), "allowEmptyValue");
    assert_eq!(
        one(g("/r/.1/a,1?empty=e", "")),
        pair("/query/empty", "type")
    );
}
