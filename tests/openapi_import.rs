//! `[[openapi]]` import end to end: a real gateway imports a document, each operation becomes
//! a route to a real upstream (path, methods, prefix, strip_prefix), security schemes become
//! the existing API-key and JWT policies (scopes → authorization), `ringway check` lists the
//! imported routes and every ignored construct with its JSON pointer, conflicts with TOML
//! routes name both sources, a reload picks up an edited document and a broken one keeps the
//! old config serving. Hostile documents (alias bombs, external `$ref`s) are config errors.
mod common;
use common::*;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

const JWT_SECRET: &str = "openapi-import-test-secret-0123456789";

const PETSTORE: &str = r##"
openapi: 3.0.3
info: { title: Pet Store, version: "2.1.0" }
servers: [{ url: "https://pets.example.com/v1" }]
paths:
  /pets:
    get:
      operationId: listPets
      tags: [pets]
      security: []
      responses: { "200": { description: ok } }
    post:
      operationId: createPet
      security: [{ bearer: [pets:write] }]
      requestBody:
        content:
          application/json: { schema: { type: object } }
      responses:
        "201": { description: made, links: { self: { operationId: getPet } } }
      callbacks: { onMade: {} }
  /pets/{petId}:
    parameters:
      - { name: petId, in: path, required: true, schema: { type: string } }
    get:
      operationId: getPet
      responses: { "200": { description: ok } }
    delete:
      operationId: deletePet
      security: [{ key: [] }, { bearer: [] }]
      responses: { "204": { description: gone } }
  /files/{name}.json:
    get:
      operationId: getFile
      parameters: [{ name: name, in: path, required: true, schema: { type: string } }]
      responses: { "200": { description: ok } }
webhooks:
  newPet: { post: { responses: { "200": { description: ok } } } }
components:
  securitySchemes:
    key: { type: apiKey, in: header, name: X-Pet-Key }
    bearer: { type: http, scheme: bearer, bearerFormat: JWT }
security: [{ key: [] }]
"##;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(spec: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pets.yaml"), spec).unwrap();
        std::fs::write(dir.path().join("keys"), "").unwrap();
        Setup { dir }
    }

    fn spec(&self) -> PathBuf {
        self.dir.path().join("pets.yaml")
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// Creates an API key for `consumer` with the CLI.
    fn key(&self, consumer: &str) -> String {
        let keys = self.dir.path().join("keys");
        create_key(self.dir.path(), &keys, consumer, None)
    }

    fn config(&self, up: std::net::SocketAddr, block_extra: &str) -> String {
        format!(
            "[api_keys]\nfile = \"{keys}\"\nhash = \"sha256\"\n\n\
             [policies.jwt]\njwt = {{ secret = \"{JWT_SECRET}\", algorithms = [\"HS256\"] }}\n\n\
             {up}\n\
             [[openapi]]\nspec = \"{spec}\"\nupstream = \"pets\"\nprefix = \"/v1\"\n\
             security = {{ bearer = \"jwt\" }}\n{block_extra}\n",
            keys = self.keys().display(),
            up = upstream_toml("pets", &[up]),
            spec = self.spec().display(),
        )
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 token for `sub` with `scope`.
fn token(sub: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub": sub, "scope": scope, "exp": now + 300, "iat": now});
    let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_SECRET.as_bytes());
    let sig = ring::hmac::sign(&k, input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

fn start(setup: &Setup, up: &Upstream, extra: &str) -> Gateway {
    Gateway::start(&setup.config(up.addr, extra))
}

/// `ringway check` of `text` with a listener added.
fn check(text: &str) -> (i32, String, String) {
    check_config(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n{text}"
    ))
}

#[test]
fn operations_become_routes_with_their_methods_and_prefix() {
    let up = Upstream::echo();
    let s = Setup::new(PETSTORE);
    let key = s.key("alice");
    let gw = start(&s, &up, "");
    // listPets declares `security: []`: anonymous; the path keeps the prefix upstream.
    let r = get(gw.addr, "/v1/pets");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().target, "/v1/pets");
    // GET also answers HEAD; a method the document does not declare is 405, never forwarded.
    let before = up.count();
    assert_eq!(request(gw.addr, "HEAD", "/v1/pets", &[], b"").status, 200);
    let r = request(gw.addr, "PUT", "/v1/pets", &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(
        up.count(),
        before + 1,
        "the PUT must not reach the upstream"
    );
    // Without the prefix there is no route.
    assert_eq!(get(gw.addr, "/pets").status, 404);
    // getPet uses the global security: an API key in X-Pet-Key.
    assert_eq!(get(gw.addr, "/v1/pets/7").status, 401);
    let r = request(gw.addr, "GET", "/v1/pets/7", &[("X-Pet-Key", &key)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/v1/pets/7");
    assert!(
        seen.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("x-consumer") && v == "alice"),
        "{:?}",
        seen.headers
    );
    assert!(
        !seen
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-pet-key")),
        "the key must not reach the upstream"
    );
    // The operation whose path splits a segment is not served (and `check` says so).
    assert_eq!(get(gw.addr, "/v1/files/a.json").status, 404);
}

#[test]
fn bearer_schemes_use_the_mapped_jwt_policy_and_scopes_authorize() {
    let up = Upstream::echo();
    let s = Setup::new(PETSTORE);
    let gw = start(&s, &up, "");
    let body = br#"{"name":"rex"}"#;
    let json = ("Content-Type", "application/json");
    let r = request(gw.addr, "POST", "/v1/pets", &[json], body);
    assert_eq!(r.status, 401, "{}", r.text());
    let weak = format!("Bearer {}", token("bob", "pets:read"));
    let r = request(
        gw.addr,
        "POST",
        "/v1/pets",
        &[json, ("Authorization", &weak)],
        body,
    );
    assert_eq!(r.status, 403, "a token without pets:write: {}", r.text());
    let strong = format!("Bearer {}", token("bob", "pets:read pets:write"));
    let before = up.count();
    let r = request(
        gw.addr,
        "POST",
        "/v1/pets",
        &[json, ("Authorization", &strong)],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), before + 1);
    // deletePet lists two alternatives; the first (the API key) is enforced: a bearer token
    // alone is refused rather than let through unchecked.
    let r = request(
        gw.addr,
        "DELETE",
        "/v1/pets/7",
        &[("Authorization", &strong)],
        b"",
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn strip_prefix_sends_the_document_path_upstream() {
    let up = Upstream::echo();
    let s = Setup::new(PETSTORE);
    let gw = start(&s, &up, "strip_prefix = true");
    assert_eq!(get(gw.addr, "/v1/pets?limit=3").status, 200);
    assert_eq!(up.last().target, "/pets?limit=3");
}

#[test]
fn check_lists_imported_routes_and_every_ignored_construct() {
    let s = Setup::new(PETSTORE);
    let text = s.config(std::net::SocketAddr::from(([127, 0, 0, 1], 9)), "");
    let (code, out, err) = check(&text);
    assert_eq!(code, 0, "{err}");
    for want in [
        "openapi \"pets\"",
        "Pet Store 2.1.0, OpenAPI 3.0",
        "route listPets (from #/paths/~1pets/get)",
        "route deletePet (from #/paths/~1pets~1{petId}/delete)",
        "#/servers:",
        "#/webhooks:",
        "#/paths/~1pets/post/callbacks:",
        "#/paths/~1pets/post/responses/201/links:",
        "#/paths/~1pets~1{petId}/delete/security/1: only the first security alternative",
        "#/paths/~1files~1{name}.json/get: path \"/files/{name}.json\" cannot be a route template",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn conflicts_and_bad_blocks_are_config_errors_naming_file_line_and_both_sources() {
    let s = Setup::new(PETSTORE);
    let up = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    // A TOML route on the same path and method.
    let text = format!(
        "{}\n[[routes]]\nname = \"mine\"\npath = \"/v1/pets\"\nmethods = [\"POST\"]\n\
         proxy = {{ upstream = \"pets\" }}\n",
        s.config(up, "")
    );
    let (code, _, err) = check(&text);
    assert_eq!(code, 1);
    assert!(err.contains("check.toml:"), "{err}");
    assert!(err.contains("openapi[0].spec"), "{err}");
    assert!(
        err.contains("operation \"createPet\" (#/paths/~1pets/post)")
            && err.contains("route \"mine\" (routes[0])"),
        "{err}"
    );
    // A TOML route with an operation's name.
    let text = format!(
        "{}\n[[routes]]\nname = \"getPet\"\npath = \"/elsewhere\"\nproxy = {{ upstream = \"pets\" }}\n",
        s.config(up, "")
    );
    let (code, _, err) = check(&text);
    assert_eq!(code, 1);
    assert!(err.contains("same name as route \"getPet\""), "{err}");
    // A bearer scheme with no policy mapped to it.
    let text = s
        .config(up, "")
        .replace("security = { bearer = \"jwt\" }\n", "");
    let (code, _, err) = check(&text);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "security scheme \"bearer\" (#/components/securitySchemes/bearer) needs a jwt"
        ),
        "{err}"
    );
    // Unknown upstream, mapped scheme the document lacks, bad validation mode, bad paths.
    for (extra, field, words) in [
        (
            "validation = \"strict\"",
            "openapi[0].validation",
            "unknown mode",
        ),
        (
            "operation_validation = { listPets = \"loose\" }",
            "openapi[0].operation_validation.listPets",
            "unknown mode",
        ),
        (
            "operation_validation = { nope = \"off\" }",
            "openapi[0].operation_validation.nope",
            "no operation",
        ),
        (
            "security = { nope = \"jwt\" }",
            "openapi[0].security.nope",
            "no security scheme",
        ),
        (
            "portal = { path = \"docs\" }",
            "openapi[0].portal.path",
            "must start with '/'",
        ),
        (
            "mcp = { path = \"/mcp\", tools = [\"nope\"] }",
            "openapi[0].mcp.tools[0]",
            "no operation",
        ),
    ] {
        let mut text = s.config(up, extra);
        if extra.starts_with("security") {
            text = text.replace("security = { bearer = \"jwt\" }\n", "");
            text = text.replace(extra, "security = { bearer = \"jwt\", nope = \"jwt\" }");
        }
        let (code, _, err) = check(&text);
        assert_eq!(code, 1, "{extra}");
        assert!(err.contains(field) && err.contains(words), "{extra}: {err}");
    }
    let text = s
        .config(up, "")
        .replace("upstream = \"pets\"\nprefix", "upstream = \"cats\"\nprefix");
    let (code, _, err) = check(&text);
    assert_eq!(code, 1);
    assert!(
        err.contains("openapi[0].upstream") && err.contains("unknown upstream"),
        "{err}"
    );
}

#[test]
fn hostile_documents_are_errors_that_name_the_document_and_pointer() {
    let up = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let mut bomb = String::from("openapi: 3.1.0\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let cases = [
        (bomb.as_str(), "alias bomb"),
        (
            "openapi: 3.1.0\npaths:\n  /a:\n    get:\n      parameters: [{ $ref: 'http://evil.test/p.yaml' }]\n",
            "#/paths/~1a/get/parameters/0/$ref",
        ),
        ("swagger: '2.0'\n", "Swagger 2.0"),
        ("openapi: 3.1.0\npaths: [\n", "invalid YAML"),
        ("{\"openapi\": \"3.1.0\", ", "invalid JSON"),
    ];
    for (doc, words) in cases {
        let s = Setup::new(doc);
        let (code, _, err) = check(&s.config(up, ""));
        assert_eq!(code, 1, "{words}");
        assert!(err.contains("openapi[0].spec"), "{err}");
        assert!(err.contains("pets.yaml"), "{err}");
        assert!(err.contains(words), "want {words:?}: {err}");
    }
    let s = Setup::new(PETSTORE);
    let text = s.config(up, "").replace("pets.yaml", "missing.yaml");
    let (code, _, err) = check(&text);
    assert_eq!(code, 1);
    assert!(
        err.contains("missing.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn a_reload_picks_up_the_edited_document_and_a_broken_one_keeps_the_old_routes() {
    let up = Upstream::echo();
    let s = Setup::new(PETSTORE);
    let gw = start(&s, &up, "");
    assert_eq!(get(gw.addr, "/v1/owners").status, 404);
    let more = PETSTORE.replace(
        "  /pets/{petId}:\n",
        "  /owners:\n    get:\n      operationId: listOwners\n      security: []\n      responses: { \"200\": { description: ok } }\n  /pets/{petId}:\n",
    );
    std::fs::write(s.spec(), more).unwrap();
    gw.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(5), || {
        get(gw.addr, "/v1/owners").status == 200
    })
    .expect("the new operation is served after SIGHUP");
    // A broken document: the reload fails, the routes stay.
    std::fs::write(
        s.spec(),
        "openapi: 3.1.0\npaths: {/x: {get: {parameters: [{$ref: '#/nope'}]}}}\n",
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_log("does not resolve", Duration::from_secs(5));
    assert_eq!(get(gw.addr, "/v1/owners").status, 200);
    assert_eq!(get(gw.addr, "/v1/pets").status, 200);
}

#[test]
fn an_api_key_in_the_query_is_taken_out_before_forwarding() {
    let up = Upstream::echo();
    let doc = PETSTORE.replace(
        "key: { type: apiKey, in: header, name: X-Pet-Key }",
        "key: { type: apiKey, in: query, name: pet_key }",
    );
    let s = Setup::new(&doc);
    let key = s.key("carol");
    let gw = start(&s, &up, "");
    let r = get(gw.addr, &format!("/v1/pets/9?pet_key={key}&x=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let target = up.last().target;
    assert!(!target.contains(&key), "{target}");
    assert!(target.contains("x=1"), "{target}");
}

#[test]
fn operation_validation_overrides_the_blocks_mode() {
    let doc = r#"
openapi: 3.1.0
info: { title: Modes, version: "1" }
paths:
  /strict:
    get:
      operationId: strict
      parameters: [{ name: n, in: query, schema: { type: integer } }]
      responses: { "200": { description: ok } }
  /lenient:
    get:
      operationId: lenient
      parameters: [{ name: n, in: query, schema: { type: integer } }]
      responses: { "200": { description: ok } }
  /watched:
    get:
      operationId: watched
      parameters: [{ name: n, in: query, schema: { type: integer } }]
      responses: { "200": { description: ok } }
components:
  securitySchemes:
    bearer: { type: http, scheme: bearer }
"#;
    let up = Upstream::echo();
    let s = Setup::new(doc);
    let gw = start(
        &s,
        &up,
        "operation_validation = { lenient = \"off\", watched = \"report\" }",
    );
    let r = get(gw.addr, "/v1/strict?n=abc");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let before = up.count();
    assert_eq!(get(gw.addr, "/v1/lenient?n=abc").status, 200);
    assert_eq!(get(gw.addr, "/v1/watched?n=abc").status, 200);
    assert_eq!(up.count(), before + 2);
    gw.wait_log(
        "openapi validation (report mode) of watched",
        Duration::from_secs(3),
    );
    assert!(!gw.logs().contains("of lenient"), "{}", gw.logs());
}
