//! Request validation against an imported OpenAPI document, end to end: a real gateway in
//! front of a real upstream. Requests the contract allows reach the upstream unchanged;
//! requests it forbids get 400 (415 for a content type, 413 past the validation size limit)
//! with an `application/problem+json` body listing each violation, and never reach the
//! upstream. `report` mode forwards and counts, `off` forwards unchecked, authentication
//! answers before validation (401, not 400). Hostile input is a 4xx, never a 5xx. Last,
//! schemathesis (PyPI) fuzzes the gateway with the same document.
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = r##"
openapi: 3.0.3
info: { title: Shop, version: "1.0" }
paths:
  /items:
    get:
      operationId: listItems
      parameters:
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 50 } }
        - { name: tags, in: query, schema: { type: array, maxItems: 3, items: { type: string, enum: [red, blue] } } }
        - { name: active, in: query, schema: { type: boolean } }
        - { name: sid, in: cookie, schema: { type: string, minLength: 3 } }
      responses:
        "200": { description: ok }
        "400": { description: invalid }
    post:
      operationId: createItem
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/NewItem" } }
      responses:
        "201": { description: made }
        "400": { description: invalid }
        "413": { description: too large }
        "415": { description: wrong type }
  /items/{itemId}:
    get:
      operationId: getItem
      parameters:
        - { name: itemId, in: path, required: true, schema: { type: integer, minimum: 1 } }
        - { name: X-Trace, in: header, schema: { type: string, format: uuid } }
      responses:
        "200": { description: ok }
        "400": { description: invalid }
  /search:
    get:
      operationId: search
      parameters:
        - { name: ids, in: query, explode: false, schema: { type: array, items: { type: integer, minimum: 0 } } }
        - { name: filter, in: query, style: deepObject, schema: { type: object, properties: { min: { type: integer }, color: { type: string, enum: [red, blue] } } } }
        - { name: X-Count, in: header, required: true, schema: { type: integer, minimum: 1, maximum: 9 } }
        - { name: day, in: query, schema: { type: string, format: date } }
        - { name: mode, in: query, schema: { oneOf: [ { type: integer }, { type: string, enum: [all, none] } ] } }
        - { name: range, in: query, schema: { type: object, properties: { lo: { type: integer }, hi: { type: integer, maximum: 10 } } } }
      responses:
        "200": { description: ok }
        "400": { description: invalid }
#SECURE#
components:
  schemas:
    NewItem:
      type: object
      required: [name, price]
      additionalProperties: false
      properties:
        name: { type: string, minLength: 1, maxLength: 40 }
        price: { type: number, minimum: 0 }
        tag: { type: string, enum: [red, blue, null], nullable: true }
        email: { type: string, format: email }
        sizes: { type: array, maxItems: 5, items: { type: integer, minimum: 1, maximum: 99 } }
  securitySchemes:
    key: { type: apiKey, in: header, name: X-Key }
"##;

const SECURE: &str = r##"
  /secure/{id}:
    put:
      operationId: updateSecure
      security: [{ key: [] }]
      parameters:
        - { name: id, in: path, required: true, schema: { type: integer } }
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/NewItem" } }
      responses:
        "200": { description: ok }
"##;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(secure: bool) -> Setup {
        Setup::with_spec(&SPEC.replace("#SECURE#", if secure { SECURE } else { "" }))
    }

    fn with_spec(spec: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop.yaml"), spec).unwrap();
        std::fs::write(dir.path().join("keys"), "").unwrap();
        Setup { dir }
    }

    fn spec(&self) -> PathBuf {
        self.dir.path().join("shop.yaml")
    }

    /// The config: the document imported with `mode`, a 1 KiB validation limit, and a marker
    /// route to the same upstream.
    fn config(&self, up: &Upstream, mode: &str) -> String {
        format!(
            "[api_keys]\nfile = \"{keys}\"\nhash = \"sha256\"\n\n{up}\n\
             [[routes]]\nname = \"marker\"\nprefix = \"{MARKER_PATH}\"\nproxy = {{ upstream = \"shop\" }}\n\n\
             [[openapi]]\nspec = \"{spec}\"\nupstream = \"shop\"\nvalidation = \"{mode}\"\n\
             max_body = \"1KiB\"\n",
            keys = self.dir.path().join("keys").display(),
            up = upstream_toml("shop", &[up.addr]),
            spec = self.spec().display(),
        )
    }

    /// Creates an API key for `consumer` with the CLI.
    fn key(&self, consumer: &str) -> String {
        let keys = self.dir.path().join("keys");
        create_key(self.dir.path(), &keys, consumer, None)
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A refused request: method, path, headers, body, then the status, pointer and keyword.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
    &'a str,
);

/// Asserts a validation refusal: the status, the problem content type and shape, and that a
/// violation has `pointer` and `keyword`.
fn refused(r: &Response, status: u16, pointer: &str, keyword: &str, label: &str) {
    assert_eq!(r.status, status, "{label}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{label}"
    );
    let p = r.json();
    assert_eq!(p["status"], status, "{label}");
    assert_eq!(
        p["type"], "urn:ringway:problem:request-validation",
        "{label}"
    );
    let found = p["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no violations: {p}"))
        .iter()
        .any(|v| v["pointer"] == pointer && v["keyword"] == keyword);
    assert!(found, "{label}: no {pointer} {keyword} in {p}");
}

#[test]
fn valid_requests_reach_the_upstream_and_invalid_ones_never_do() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);

    // Allowed: forwarded as sent.
    let r = get(
        gw.addr,
        "/items?limit=5&tags=red&tags=blue&active=true&other=x",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last().target,
        "/items?limit=5&tags=red&tags=blue&active=true&other=x"
    );
    let body = br#"{"name":"lamp","price":12.5,"tag":null,"email":"a@b.example","sizes":[1,2]}"#;
    let r = request(gw.addr, "POST", "/items", &[JSON], body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.last().body,
        body.to_vec(),
        "the body is forwarded unchanged"
    );
    let trace = ("X-Trace", "123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(
        request(gw.addr, "GET", "/items/7", &[trace], b"").status,
        200
    );
    // A chunked body is read ahead (unconsumed) and forwarded whole.
    let chunked = b"b\r\n{\"name\":\"a\"\r\nd\r\n,\"price\":1.0}\r\n0\r\n\r\n";
    let r = request(
        gw.addr,
        "POST",
        "/items",
        &[JSON, ("Transfer-Encoding", "chunked")],
        chunked,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().body, br#"{"name":"a","price":1.0}"#.to_vec());

    // Forbidden: refused with a problem body, and the upstream sees nothing.
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/items?limit=abc",
            vec![],
            vec![],
            400,
            "/query/limit",
            "type",
        ),
        (
            "GET",
            "/items?limit=500",
            vec![],
            vec![],
            400,
            "/query/limit",
            "maximum",
        ),
        (
            "GET",
            "/items?tags=green",
            vec![],
            vec![],
            400,
            "/query/tags/0",
            "enum",
        ),
        (
            "GET",
            "/items/0",
            vec![],
            vec![],
            400,
            "/path/itemId",
            "minimum",
        ),
        (
            "GET",
            "/items/abc",
            vec![],
            vec![],
            400,
            "/path/itemId",
            "type",
        ),
        (
            "GET",
            "/items/1",
            vec![("X-Trace", "nope")],
            vec![],
            400,
            "/header/X-Trace",
            "format",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x"}"#.to_vec(),
            400,
            "/body",
            "required",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x","price":-1}"#.to_vec(),
            400,
            "/body/price",
            "minimum",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x","price":1,"evil":1}"#.to_vec(),
            400,
            "/body",
            "additionalProperties",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x","price":1,"tag":"green"}"#.to_vec(),
            400,
            "/body/tag",
            "enum",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x","price":1,"email":"no"}"#.to_vec(),
            400,
            "/body/email",
            "format",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x","price":1,"sizes":[1,"2"]}"#.to_vec(),
            400,
            "/body/sizes/1",
            "type",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            br#"{"name":"x",}"#.to_vec(),
            400,
            "/body",
            "json",
        ),
        (
            "POST",
            "/items",
            vec![JSON],
            vec![],
            400,
            "/body",
            "required",
        ),
        (
            "POST",
            "/items",
            vec![("Content-Type", "text/plain")],
            b"hello".to_vec(),
            415,
            "/header/content-type",
            "contentType",
        ),
        (
            "POST",
            "/items",
            vec![],
            b"{}".to_vec(),
            415,
            "/header/content-type",
            "contentType",
        ),
    ];
    for (method, path, headers, body, status, pointer, keyword) in cases {
        let label = format!("{method} {path} {}", String::from_utf8_lossy(&body));
        let before = up.snapshot();
        let r = request(gw.addr, method, path, &headers, &body);
        refused(&r, status, pointer, keyword, &label);
        assert_nothing_reached(&gw, &up, before, &label);
    }

    // Past the 1 KiB validation limit (the route's own limit is larger): 413, not streamed.
    let big = format!(r#"{{"name":"{}","price":1}}"#, "n".repeat(2000));
    let before = up.snapshot();
    let r = request(gw.addr, "POST", "/items", &[JSON], big.as_bytes());
    refused(&r, 413, "/body", "size", "2 KiB body");
    assert_nothing_reached(&gw, &up, before, "2 KiB body");
}

#[test]
fn the_problem_body_is_bounded_and_does_not_echo_the_request() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    // Many violations at once: listed up to a bound, the body stays small.
    let sizes = vec!["0"; 100].join(",");
    let secret = "s3cr3t-".repeat(25);
    let body = format!(r#"{{"name":"{secret}{secret}","price":"x","sizes":[{sizes}]}}"#);
    let r = request(gw.addr, "POST", "/items", &[JSON], body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.body.len() <= 8192, "{} bytes", r.body.len());
    assert!(
        !r.text().contains("s3cr3t"),
        "a value is echoed: {}",
        r.text()
    );
    let p = r.json();
    assert!(p["violations"].as_array().unwrap().len() <= 20, "{p}");
    assert_eq!(up.count(), 0);
}

#[test]
fn hostile_requests_are_client_errors_never_server_errors() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    // Room for the hostile bodies to be parsed rather than refused by size.
    let config = s
        .config(&up, "enforce")
        .replace(r#"max_body = "1KiB""#, r#"max_body = "2MiB""#);
    let gw = Gateway::start_workers(&config, 1);
    let deep = "[".repeat(50_000) + &"]".repeat(50_000);
    let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(400), "}".repeat(400));
    let huge_num = format!(r#"{{"name":"x","price":{}}}"#, "9".repeat(500));
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        deep_obj.into_bytes(),
        b"{\"name\":\"\xff\xfe\",\"price\":1}".to_vec(),
        br#"{"name":"x","price":1e99999}"#.to_vec(),
        b"\x00\x01\x02".to_vec(),
        b"{\"name\":\"\\ud800\",\"price\":1}".to_vec(),
    ];
    for (i, b) in bodies.iter().enumerate() {
        let r = request(gw.addr, "POST", "/items", &[JSON], b);
        assert!(
            (400..500).contains(&r.status),
            "body {i}: {} {}",
            r.status,
            r.text()
        );
    }
    // A wide object (60 000 members, hash-indexed by the validator) naming `name` twice at its
    // two ends: refused as invalid JSON, and answered at once.
    let members: String = (0..60_000).map(|i| format!(r#""k{i}":{i},"#)).collect();
    let twice = format!(r#"{{"name":"x","price":1,{members}"name":"y"}}"#);
    let started = std::time::Instant::now();
    let r = request(gw.addr, "POST", "/items", &[JSON], twice.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("twice"), "{}", r.text());
    // Without the duplicate it is judged by the schema like any object: a client error or a
    // pass, never a 5xx, and never a scan per lookup (seconds with 60 000 members).
    let wide = format!(r#"{{"name":"x","price":1,{members}"tag":"y"}}"#);
    let r = request(gw.addr, "POST", "/items", &[JSON], wide.as_bytes());
    assert!(r.status < 500, "{} {}", r.status, r.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    // A number past f64's range is a float (refused by nothing here but the type): no 5xx.
    let r = request(gw.addr, "POST", "/items", &[JSON], huge_num.as_bytes());
    assert!(r.status < 500, "{} {}", r.status, r.text());
    for q in [
        "/items?limit=%ff",
        "/items?limit=%",
        "/items?tags=%zz&tags=%00",
        "/items?limit=1e999999",
        "/items?limit=99999999999999999999999999999",
        "/items/%ff%fe",
        "/items/1%2C2",
        "/items?%ff=%ff&=&&",
    ] {
        let r = get(gw.addr, q);
        assert!(
            (200..500).contains(&r.status),
            "{q}: {} {}",
            r.status,
            r.text()
        );
    }
    let r = request(gw.addr, "GET", "/items/1", &[("X-Trace", "\u{7f}x")], b"");
    assert!(r.status < 500, "{}", r.status);
}

#[test]
fn report_mode_forwards_and_counts_off_mode_does_not_check() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = Gateway::start_workers(&s.config(&up, "report"), 1);
    let r = request(gw.addr, "POST", "/items", &[JSON], br#"{"price":"free"}"#);
    assert_eq!(r.status, 200, "report mode forwards: {}", r.text());
    assert_eq!(up.last().body, br#"{"price":"free"}"#.to_vec());
    assert_eq!(get(gw.addr, "/items?limit=5").status, 200);
    gw.wait_log("report mode", Duration::from_secs(5));
    let samples = scrape(gw.admin);
    let count = |result: &str| {
        metric(
            &samples,
            "ringway_openapi_validation_total",
            &[("operation", "createItem"), ("result", result)],
        )
    };
    assert_eq!(count("reported"), Some(1.0), "{samples:?}");
    drop(gw);

    let up = Upstream::echo();
    let gw = Gateway::start_workers(&s.config(&up, "off"), 1);
    let r = request(
        gw.addr,
        "POST",
        "/items",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 200, "off mode forwards: {}", r.text());
    assert_eq!(get(gw.addr, "/items?limit=abc").status, 200);
    assert_eq!(up.count(), 2);
}

#[test]
fn authentication_answers_before_validation() {
    let up = Upstream::echo();
    let s = Setup::new(true);
    let key = s.key("ann");
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    let bad = br#"{"price":"x"}"#;
    let r = request(gw.addr, "PUT", "/secure/abc", &[JSON], bad);
    assert_eq!(
        r.status,
        401,
        "no key: 401 before any validation: {}",
        r.text()
    );
    let k = ("X-Key", key.as_str());
    let r = request(gw.addr, "PUT", "/secure/abc", &[JSON, k], bad);
    refused(&r, 400, "/path/id", "type", "authenticated, invalid");
    let good = br#"{"name":"a","price":2}"#;
    let r = request(gw.addr, "PUT", "/secure/4", &[JSON, k], good);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
}

#[test]
fn a_reload_recompiles_the_schemas_and_a_broken_schema_keeps_the_old_ones() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let config = s.config(&up, "enforce");
    let gw = Gateway::start_workers(&config, 1);
    assert_eq!(get(gw.addr, "/items?limit=20").status, 200);
    let spec = std::fs::read_to_string(s.spec()).unwrap();
    let tighter = spec.replace("minimum: 1, maximum: 50", "minimum: 1, maximum: 10");
    std::fs::write(s.spec(), &tighter).unwrap();
    assert!(gw.reload(&config), "{}", gw.logs());
    let r = get(gw.addr, "/items?limit=20");
    refused(&r, 400, "/query/limit", "maximum", "after the reload");
    // A schema that does not compile is a config error naming its pointer; the old
    // generation keeps validating.
    let broken = tighter.replace("maximum: 10 }", "maximum: ten }");
    std::fs::write(s.spec(), broken).unwrap();
    assert!(!gw.reload(&config));
    let logs = gw.logs();
    assert!(
        logs.contains("#/paths/~1items/get/parameters/0/schema"),
        "the error names the pointer: {logs}"
    );
    refused(
        &get(gw.addr, "/items?limit=20"),
        400,
        "/query/limit",
        "maximum",
        "kept",
    );
    assert_eq!(get(gw.addr, "/items?limit=5").status, 200);
}

#[test]
fn http2_requests_are_validated_the_same_way() {
    use common::h2::{start_h2c_workers, H2Client};
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = start_h2c_workers(&s.config(&up, "enforce"), 1);
    let mut c = H2Client::h2c(gw.addr).expect("h2c");
    let json = [("content-type", "application/json")];
    let r = c
        .request("POST", "/items", &json, br#"{"name":"a","price":1}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(up.last().body, br#"{"name":"a","price":1}"#.to_vec());
    let r = c
        .request("POST", "/items", &json, br#"{"name":"a"}"#)
        .unwrap();
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let big = format!(r#"{{"name":"{}","price":1}}"#, "n".repeat(3000));
    let r = c.request("POST", "/items", &json, big.as_bytes()).unwrap();
    assert_eq!(r.status, 413);
    let r = c.get("/items?limit=abc").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(up.count(), 1, "only the valid request reached the upstream");
}

/// A parameter given twice is refused unless it is an exploded array: backends differ on
/// which occurrence they read (Django, PHP and Rails the last), so validating one and
/// forwarding both let `limit=5&limit=500` past `maximum`.
#[test]
fn repeated_parameters_are_refused_unless_they_are_exploded_arrays() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    let count = ("X-Count", "1");
    // Allowed: an exploded array's items, one occurrence of everything else.
    let r = get(gw.addr, "/items?tags=red&tags=blue&limit=5");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        gw.addr,
        "GET",
        "/items",
        &[("Cookie", "sid=abc; other=1")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        gw.addr,
        "GET",
        "/search?filter[min]=1&filter[color]=red&lo=1&hi=5",
        &[count],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Path and query, headers, the pointer of the `repeated` violation.
    type Repeated<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Repeated> = vec![
        ("/items?limit=5&limit=500", vec![], "/query/limit"),
        ("/items?limit=5&limit=5", vec![], "/query/limit"),
        ("/items?limit=5&lim%69t=500", vec![], "/query/limit"),
        ("/search?ids=1,2&ids=3", vec![count], "/query/ids"),
        (
            "/search?filter[color]=red&filter[color]=green",
            vec![count],
            "/query/filter/color",
        ),
        ("/search?lo=1&hi=5&hi=500", vec![count], "/query/range/hi"),
        ("/items", vec![("Cookie", "sid=abc; sid=x")], "/cookie/sid"),
        (
            "/items",
            vec![("Cookie", "sid=abc"), ("Cookie", "sid=x")],
            "/cookie/sid",
        ),
        // A scalar header on two lines: validated joined as `1,500`, read by a backend as
        // either; refused, not joined.
        (
            "/search",
            vec![("X-Count", "1"), ("X-Count", "500")],
            "/header/X-Count",
        ),
    ];
    for (path, headers, pointer) in cases {
        let label = format!("{path} {headers:?}");
        let before = up.snapshot();
        let r = request(gw.addr, "GET", path, &headers, b"");
        refused(&r, 400, pointer, "repeated", &label);
        assert_nothing_reached(&gw, &up, before, &label);
    }
}

/// Spellings a validator that reads names and numbers one way let through while common
/// backends read them another: `X_Count` is `HTTP_X_COUNT` to CGI, WSGI, Rack and PHP, as
/// `X-Count` is; `1e1` passed `limit <= 50` while `parseInt("1000e-1")` is 1000; and Python's
/// cookie parser reads `x=1, sid=ab` as a `sid` cookie, PHP `s%69d=ab` as `sid`. Each was
/// forwarded unvalidated; now each is validated as the parameter (or counted as its second
/// copy), and refused.
#[test]
fn spellings_backends_read_as_the_parameter_are_validated_too() {
    let up = Upstream::echo();
    let s = Setup::new(false);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    let count = ("X-Count", "1");
    for (path, headers) in [
        ("/search", vec![("X_Count", "5")]),
        ("/items?limit=50", vec![("Cookie", "x=1, sid=abc")]),
        ("/items/7", vec![]),
    ] {
        let r = request(gw.addr, "GET", path, &headers, b"");
        assert_eq!(r.status, 200, "{path} {headers:?}: {}", r.text());
    }
    type Spelled<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Spelled> = vec![
        (
            "/search",
            vec![("X_Count", "500")],
            "/header/X-Count",
            "maximum",
        ),
        (
            "/search",
            vec![("x_count", "0")],
            "/header/X-Count",
            "minimum",
        ),
        (
            "/search",
            vec![count, ("X_Count", "500")],
            "/header/X-Count",
            "repeated",
        ),
        ("/items?limit=1e1", vec![], "/query/limit", "type"),
        ("/items?limit=10.0", vec![], "/query/limit", "type"),
        ("/items?limit=1000e-2", vec![], "/query/limit", "type"),
        ("/items/1e3", vec![], "/path/itemId", "type"),
        ("/search?ids=1,2e0", vec![count], "/query/ids/1", "type"),
        (
            "/items",
            vec![("Cookie", "x=1, sid=ab")],
            "/cookie/sid",
            "minLength",
        ),
        (
            "/items",
            vec![("Cookie", "s%69d=ab")],
            "/cookie/sid",
            "minLength",
        ),
        (
            "/items",
            vec![("Cookie", "sid=abc; x=1, sid=zzzz")],
            "/cookie/sid",
            "repeated",
        ),
    ];
    for (path, headers, pointer, keyword) in cases {
        let label = format!("{path} {headers:?}");
        let before = up.snapshot();
        let r = request(gw.addr, "GET", path, &headers, b"");
        refused(&r, 400, pointer, keyword, &label);
        assert_nothing_reached(&gw, &up, before, &label);
    }
}

const TWO_TYPES_SPEC: &str = r##"
openapi: 3.0.3
info: { title: Notes, version: "1.0" }
paths:
  /notes:
    post:
      operationId: createNote
      requestBody:
        required: true
        content:
          text/plain: { schema: { type: string } }
          application/json:
            schema: { type: object, required: [title], additionalProperties: false, properties: { title: { type: string, maxLength: 5 } } }
      responses: { "201": { description: created } }
"##;

/// Two `Content-Type` lines: the validator read the first (`text/plain`: content type only)
/// while a backend reading the last parsed unvalidated JSON. Refused with 400, whichever
/// comes first, and a comma-joined list is no media type (415).
#[test]
fn a_request_with_two_content_types_is_refused() {
    let up = Upstream::echo();
    let s = Setup::with_spec(TWO_TYPES_SPEC);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    let body = br#"{"title":"far too long","admin":true}"#;
    let text = ("Content-Type", "text/plain");
    let r = request(gw.addr, "POST", "/notes", &[text], body);
    assert_eq!(r.status, 200, "text is checked by its type: {}", r.text());
    let r = request(gw.addr, "POST", "/notes", &[JSON], br#"{"title":"hi"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    for headers in [vec![text, JSON], vec![JSON, text], vec![JSON, JSON]] {
        let label = format!("{headers:?}");
        let before = up.snapshot();
        let r = request(gw.addr, "POST", "/notes", &headers, body);
        refused(&r, 400, "/header/content-type", "repeated", &label);
        assert_nothing_reached(&gw, &up, before, &label);
    }
    let list = ("Content-Type", "text/plain, application/json");
    let before = up.snapshot();
    let r = request(gw.addr, "POST", "/notes", &[list], body);
    refused(&r, 415, "/header/content-type", "contentType", "a list");
    assert_nothing_reached(&gw, &up, before, "a list");
}

const WILDCARD_SPEC: &str = r##"
openapi: 3.0.3
info: { title: Uploads, version: "1.0" }
paths:
  /anything:
    post:
      operationId: anything
      requestBody:
        required: true
        content:
          "*/*":
            schema: { type: object, properties: { size: { type: integer, maximum: 10 } } }
      responses: { "200": { description: ok } }
  /app:
    post:
      operationId: app
      requestBody:
        required: true
        content:
          "application/*":
            schema: { type: object, properties: { size: { type: integer, maximum: 10 } } }
      responses: { "200": { description: ok } }
"##;

/// A wildcard media range that carries a schema describes the body whatever its label: a
/// backend (FastAPI, say) parses it as JSON regardless, so it is validated as JSON with no
/// `Content-Type`, with `text/plain`, or with an `application/*` type that is not JSON.
#[test]
fn a_body_under_a_wildcard_range_with_a_schema_is_validated() {
    let up = Upstream::echo();
    let s = Setup::with_spec(WILDCARD_SPEC);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    let big = br#"{"size":999}"#;
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/anything", vec![]),
        ("/anything", vec![("Content-Type", "text/plain")]),
        ("/app", vec![("Content-Type", "application/x-json")]),
        ("/app", vec![JSON]),
    ];
    for (path, headers) in &cases {
        let label = format!("{path} {headers:?}");
        let before = up.snapshot();
        let r = request(gw.addr, "POST", path, headers, big);
        refused(&r, 400, "/body/size", "maximum", &label);
        assert_nothing_reached(&gw, &up, before, &label);
        let r = request(gw.addr, "POST", path, headers, br#"{"size":5}"#);
        assert_eq!(r.status, 200, "{label}: {}", r.text());
    }
    let before = up.snapshot();
    let text = [("Content-Type", "text/plain")];
    let r = request(gw.addr, "POST", "/anything", &text, b"not json");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_nothing_reached(&gw, &up, before, "not json");
}

const PATTERN_SPEC: &str = r##"
openapi: 3.0.3
info: { title: Accounts, version: "1.0" }
paths:
  /accounts:
    post:
      operationId: createAccount
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                password: { type: string, pattern: "(?=.*[A-Z])(?=.*[0-9])" }
                code: { type: string, pattern: "^[a-z]+$" }
                nick: { type: string, not: { pattern: "(?=.*admin)" } }
      responses: { "201": { description: created } }
  /tags:
    post:
      operationId: setTags
      requestBody:
        required: true
        content:
          application/json:
            schema: { type: array, items: { type: string, pattern: "^(?:a|(?=a)a)*$" } }
      responses: { "200": { description: ok } }
"##;

/// A look-around `pattern` is the backtracking engine's: its cost is bounded per value (a
/// 60 000-byte string against an unanchored look-ahead took 8 s, quadratic) and per request
/// (5 000 short strings each running to the backtrack limit took 8 s), so no request pins a
/// worker; a pattern the linear engine runs checks any length.
#[test]
fn pattern_checks_cannot_pin_a_worker() {
    let up = Upstream::echo();
    let s = Setup::with_spec(PATTERN_SPEC);
    let config = s
        .config(&up, "enforce")
        .replace(r#"max_body = "1KiB""#, r#"max_body = "1MiB""#);
    let gw = Gateway::start_workers(&config, 1);
    let post = |path: &str, body: &str| request(gw.addr, "POST", path, &[JSON], body.as_bytes());

    // Allowed: a look-ahead on a plausible value, a linear pattern on a long one.
    let ok = format!(r#"{{"password":"{}A1","nick":"bob"}}"#, "a".repeat(1000));
    assert_eq!(post("/accounts", &ok).status, 200);
    let long_code = format!(r#"{{"code":"{}"}}"#, "z".repeat(200_000));
    let r = post("/accounts", &long_code);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post("/accounts", r#"{"password":"weak"}"#);
    refused(&r, 400, "/body/password", "pattern", "weak password");
    assert_eq!(up.count(), 2);

    // Hostile: each answered at once, refused, and nothing reaches the upstream.
    let long_password = format!(r#"{{"password":"{}"}}"#, "a".repeat(60_000));
    let long_nick = format!(r#"{{"nick":"{}"}}"#, "a".repeat(60_000));
    let tags: Vec<String> = (0..5000)
        .map(|i| format!(r#""{}{i}b""#, "a".repeat(30)))
        .collect();
    let tags = format!("[{}]", tags.join(","));
    for (label, path, body, pointer) in [
        (
            "a 60 000-byte value",
            "/accounts",
            &long_password,
            "/body/password",
        ),
        ("a value under `not`", "/accounts", &long_nick, ""),
        ("5 000 catastrophic strings", "/tags", &tags, "/body/0"),
    ] {
        let before = up.snapshot();
        let started = Instant::now();
        let r = post(path, body);
        let took = started.elapsed();
        refused(&r, 400, pointer, "pattern", label);
        assert!(took < Duration::from_secs(2), "{label}: {took:?}");
        assert_nothing_reached(&gw, &up, before, label);
    }
}

const PROPERTY_NAME_SPEC: &str = r##"
openapi: 3.0.3
info: { title: Labels, version: "1.0" }
paths:
  /labels:
    post:
      operationId: setLabels
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              patternProperties: { "#NAME#": { type: integer } }
      responses: { "200": { description: ok } }
"##;

/// Runs `ringway check` on `setup`'s enforcing config; returns the exit code and stderr.
fn check_setup(setup: &Setup, up: &Upstream) -> (Option<i32>, String) {
    let path = setup.dir.path().join("ringway.toml");
    std::fs::write(&path, setup.config(up, "enforce")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `patternProperties` run on client property names, which no budget covers inside the schema
/// crate: a look-around there made one 60 000-byte name cost the worker seconds (quadratic).
/// Such a document is refused when loaded, naming the schema; a linear `patternProperties`
/// checks any name at once.
#[test]
fn property_name_patterns_run_in_linear_time_or_not_at_all() {
    let up = Upstream::echo();
    let lookaround = Setup::with_spec(&PROPERTY_NAME_SPEC.replace("#NAME#", "(?=.*[A-Z])"));
    let (code, err) = check_setup(&lookaround, &up);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("patternProperties") && err.contains("/paths/~1labels/post"),
        "the error names the keyword and the operation: {err}"
    );

    let linear = Setup::with_spec(&PROPERTY_NAME_SPEC.replace("#NAME#", "^[a-z]+$"));
    let config = linear
        .config(&up, "enforce")
        .replace(r#"max_body = "1KiB""#, r#"max_body = "1MiB""#);
    let gw = Gateway::start_workers(&config, 1);
    let post = |body: &str| request(gw.addr, "POST", "/labels", &[JSON], body.as_bytes());
    assert_eq!(post(r#"{"size": 3}"#).status, 200);
    let r = post(r#"{"size": "big"}"#);
    refused(
        &r,
        400,
        "/body/size",
        "type",
        "a value against its name's schema",
    );
    let started = Instant::now();
    let r = post(&format!(r#"{{"{}": "x"}}"#, "a".repeat(200_000)));
    assert_eq!(r.status, 400, "a 200 000-byte name: {}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Where schemathesis's CLI is, if installed.
fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["st", "schemathesis"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs `cmd` for at most `limit`, killing it after; returns (exit code, output).
fn run_bounded(mut cmd: Command, limit: Duration, out_file: &Path) -> (Option<i32>, String) {
    let log = std::fs::File::create(out_file).unwrap();
    let mut child = cmd
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start schemathesis");
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (code, std::fs::read_to_string(out_file).unwrap_or_default())
}

/// schemathesis generates valid and invalid requests from the document: the gateway never
/// answers 5xx, accepts what the document allows (2xx from the tolerant upstream) and
/// rejects what it forbids.
#[test]
fn schemathesis_finds_no_server_error_and_no_wrong_verdict() {
    let Some(st) = schemathesis() else {
        skip_or_fail("schemathesis is not installed (pip install schemathesis)");
        return;
    };
    // The document as OpenAPI 3.0 (draft 4 after the rewrite) and as 3.1 (2020-12).
    let v30 = SPEC.replace("#SECURE#", "");
    let v31 = v30.replace("openapi: 3.0.3", "openapi: 3.1.0").replace(
        "tag: { type: string, enum: [red, blue, null], nullable: true }",
        "tag: { type: [string, \"null\"], enum: [red, blue, null] }",
    );
    assert_ne!(v30, v31);
    for spec in [v30, v31] {
        run_schemathesis(&st, &spec);
    }
}

fn run_schemathesis(st: &Path, spec: &str) {
    let up = Upstream::echo();
    let s = Setup::with_spec(spec);
    let gw = Gateway::start_workers(&s.config(&up, "enforce"), 1);
    // Bounded by default; a longer hunt: RINGWAY_ST_EXAMPLES=500 RINGWAY_ST_SEED=7.
    let examples = std::env::var("RINGWAY_ST_EXAMPLES").unwrap_or_else(|_| "25".into());
    let seed = std::env::var("RINGWAY_ST_SEED").unwrap_or_else(|_| "16".into());
    let mut cmd = Command::new(st);
    cmd.arg("run")
        .arg(s.spec())
        .args(["--url", &format!("http://{}", gw.addr)])
        .args([
            "--checks",
            "not_a_server_error,positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--workers",
            "1",
        ])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--request-timeout", "5"])
        .current_dir(s.dir.path());
    let (code, out) = run_bounded(cmd, Duration::from_secs(90), &s.dir.path().join("st.log"));
    let tail: String = out
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("schemathesis summary:\n{tail}");
    assert_eq!(code, Some(0), "schemathesis failed or timed out:\n{tail}");
    assert!(up.count() > 0, "nothing reached the upstream:\n{tail}");
    let logs = gw.logs();
    assert!(!logs.contains("panic"), "{logs}");
}

/// A `pattern` ECMA 262 refuses (a quantifier on a quantifier) is refused when the document
/// loads, naming the schema, rather than read the Rust engine's way (`(a{2}){2}`); so is one
/// too large for the linear engine that uses no look-around (it would otherwise move to the
/// backtracking engine, which checks only the first 2 048 bytes of a value).
#[test]
fn patterns_ecma_refuses_or_too_large_for_the_linear_engine_are_config_errors() {
    let up = Upstream::echo();
    for (pattern, needle) in [
        ("^a{2}{2}$", "a quantifier follows another"),
        ("^(?:a{1000}){1000}$", "cannot be compiled"),
    ] {
        let spec = PROPERTY_NAME_SPEC
            .replace(
                "patternProperties: { \"#NAME#\": { type: integer } }",
                &format!("properties: {{ code: {{ type: string, pattern: \"{pattern}\" }} }}"),
            )
            .replace("openapi: 3.0.3", "openapi: 3.1.0");
        assert!(spec.contains(pattern));
        let (code, err) = check_setup(&Setup::with_spec(&spec), &up);
        assert_eq!(code, Some(1), "{pattern}: {err}");
        assert!(
            err.contains(needle) && err.contains("/paths/~1labels/post"),
            "{pattern}: {err}"
        );
    }
}
