//! The MCP endpoint end to end: a real gateway importing a petstore document, a real echo
//! upstream, and an independent client, the official `mcp` Python SDK (tests/mcp/client.py),
//! which initializes, lists the tools, calls tools that reach the upstream and gets a policy
//! denial back as a tool error. Raw HTTP tests pin the JSON-RPC errors and the transport's
//! rules (sessions, Origin, sizes, methods) and try to abuse them (session floods, credential
//! smuggling, rate limits bypassed through tools).
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const SECRET: &str = "an-hmac-secret-of-sufficient-length";

const PETSTORE: &str = r##"
openapi: 3.0.3
info: { title: Petstore, version: "1.0.0", description: A pet store. }
components:
  securitySchemes:
    apiKey: { type: apiKey, in: header, name: X-API-Key }
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id: { type: integer, format: int64 }
        name: { type: string }
        tag: { type: string, nullable: true }
security:
  - apiKey: []
paths:
  /pets:
    get:
      operationId: listPets
      summary: List all pets
      parameters:
        - { name: limit, in: query, required: false, schema: { type: integer, maximum: 100 } }
      responses: { "200": { description: ok } }
    post:
      operationId: createPet
      summary: Create a pet
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: "#/components/schemas/Pet" } }
      responses: { "201": { description: created } }
  /pets/{petId}:
    get:
      operationId: showPetById
      summary: Info for a specific pet
      parameters:
        - { name: petId, in: path, required: true, schema: { type: string } }
      responses: { "200": { description: ok } }
    delete:
      operationId: deletePet
      summary: Not exposed as a tool
      parameters:
        - { name: petId, in: path, required: true, schema: { type: string } }
      responses: { "204": { description: gone } }
  /files/{name}.json:
    get:
      operationId: getFile
      summary: Not served (a parameter inside a segment), so no tool
      parameters:
        - { name: name, in: path, required: true, schema: { type: string } }
      responses: { "200": { description: ok } }
"##;

struct Setup {
    _dir: tempfile::TempDir,
    config: String,
    key: String,
    gw: Gateway,
    up: Upstream,
}

/// A gateway importing the petstore with an API-key store holding one key (for `alice`).
/// `extra_policies`: TOML for `[policies.*]` the block lists in `policies`.
fn setup(block_policies: &str, extra_policies: &str) -> Setup {
    setup_mcp(block_policies, extra_policies, "")
}

/// `setup` with more keys in the `mcp` table (`mcp_extra`: `, origins = [...]`).
fn setup_mcp(block_policies: &str, extra_policies: &str, mcp_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("petstore.yaml");
    std::fs::write(&spec, PETSTORE).unwrap();
    let keys_file = dir.path().join("keys.toml");
    let key = create_key(dir.path(), &keys_file, "alice", Some(SECRET));
    let up = Upstream::echo();
    let config = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"hmac-sha256\"\n\n{extra_policies}\n{}\n\
         [[openapi]]\nspec = \"{}\"\nname = \"pets\"\nupstream = \"pets\"\nprefix = \"/v1\"\n\
         policies = [{block_policies}]\n\
         mcp = {{ path = \"/mcp\", tools = [\"listPets\", \"createPet\", \"showPetById\"]{mcp_extra} }}\n",
        keys_file.display(),
        upstream_toml("pets", &[up.addr]),
        spec.display()
    );
    let gw = Gateway::start_env(&config, 2, &[("RINGWAY_KEY_SECRET", SECRET)]);
    Setup {
        _dir: dir,
        config,
        key,
        gw,
        up,
    }
}

const ACCEPT: (&str, &str) = ("Accept", "application/json, text/event-stream");
const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

fn post(c: &mut Conn, extra: &[(&str, &str)], body: &str) -> Response {
    let mut h = vec![ACCEPT, JSON_CT];
    h.extend_from_slice(extra);
    c.request("POST", "/mcp", &h, body.as_bytes())
}

/// Initializes a session; returns its id.
fn initialize(c: &mut Conn, version: &str) -> String {
    let r = post(
        c,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["protocolVersion"], json!(version));
    r.header("mcp-session-id")
        .expect("a session id")
        .to_string()
}

/// `tools/call` of `name` with `args` on session `sid`, carrying the API key `key`: the
/// JSON-RPC answer.
fn call_tool(c: &mut Conn, sid: &str, key: &str, name: &str, args: Value) -> Value {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":args}});
    rpc(c, sid, &[("X-API-Key", key)], body).json()
}

fn rpc(c: &mut Conn, sid: &str, extra: &[(&str, &str)], body: Value) -> Response {
    let mut h = vec![("Mcp-Session-Id", sid)];
    h.extend_from_slice(extra);
    post(c, &h, &body.to_string())
}

// ---- the independent client ----

fn python_sdk() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import mcp.client.streamable_http"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the `mcp` Python SDK is missing (scripts/test.sh installs it: pip install mcp)"
            );
        }
        eprintln!("skipped: the `mcp` Python SDK is not installed (pip install mcp)");
    }
    ok
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

#[test]
fn the_python_sdk_lists_calls_and_gets_denials_as_tool_errors() {
    if !python_sdk() {
        return;
    }
    let s = setup("", "");
    let url = s.gw.url("/mcp");
    let out = Command::new("python3")
        .arg(client_script())
        .arg(&url)
        .arg(&s.key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.gw.logs()
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The handshake: negotiated down to the version the gateway speaks.
    assert_eq!(report["protocol"], json!("2025-06-18"), "{report}");
    assert_eq!(report["server"], json!("ringway"));
    assert_eq!(report["has_tools"], json!(true));

    // Only the selected operations, with their input schemas.
    let tools = report["tools"].as_object().unwrap();
    let mut names: Vec<_> = tools.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["createPet", "listPets", "showPetById"]);
    assert_eq!(
        tools["listPets"]["properties"]["limit"]["type"],
        json!("integer")
    );
    assert_eq!(tools["showPetById"]["required"], json!(["petId"]));
    assert_eq!(
        tools["createPet"]["properties"]["body"]["$ref"],
        json!("#/$defs/Pet")
    );
    assert_eq!(
        tools["createPet"]["$defs"]["Pet"]["required"],
        json!(["id", "name"])
    );
    assert!(
        tools["listPets"]["properties"].get("X-API-Key").is_none(),
        "the credential is not a tool argument"
    );

    // Calls reach the upstream through the operation's route, with alice's key.
    let list = &report["list"];
    assert_eq!(list["isError"], json!(false), "{list}");
    assert_eq!(
        list["structured"]["target"],
        json!("/v1/pets?limit=2"),
        "{list}"
    );
    assert!(
        list["structured"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-consumer", "alice"])),
        "the consumer is the MCP client's key: {list}"
    );
    let show = &report["show"];
    assert_eq!(
        show["structured"]["target"],
        json!("/v1/pets/p%201"),
        "{show}"
    );
    let create = &report["create"];
    assert_eq!(create["structured"]["method"], json!("POST"), "{create}");
    assert_eq!(
        create["structured"]["body"],
        json!("{\"id\":7,\"name\":\"rex\"}")
    );
    let seen = s.up.requests();
    assert!(seen.iter().any(|r| r.target == "/v1/pets?limit=2"));
    assert!(
        seen.iter().all(|r| r.header("x-api-key").is_none()),
        "the key never reaches the upstream (the api_key policy strips it)"
    );

    // Protocol errors for what cannot be a request.
    assert_eq!(report["unknown"]["code"], json!(-32602), "{report}");
    assert!(report["unknown"]["message"]
        .as_str()
        .unwrap()
        .contains("noSuchTool"));
    assert_eq!(report["missing_arg"]["code"], json!(-32602));
    assert!(report["missing_arg"]["message"]
        .as_str()
        .unwrap()
        .contains("petId"));

    // A policy denial is a tool error with the status and the problem text.
    for case in ["denied", "bad_key"] {
        let d = &report[case];
        assert_eq!(d["isError"], json!(true), "{case}: {d}");
        let text = d["text"].as_str().unwrap();
        assert!(text.starts_with("HTTP 401"), "{case}: {text}");
    }
    let before = seen.len();
    // The denied calls never reached the upstream (only the key-bearing calls did).
    assert!(before >= 3);

    // A bad argument: the route's validation refuses it (400) as a tool error, and the
    // upstream never sees it.
    let bad = &report["bad_arg"];
    assert_eq!(bad["isError"], json!(true), "{bad}");
    assert!(
        bad["text"].as_str().unwrap().starts_with("HTTP 400"),
        "{bad}"
    );
    assert!(
        !s.up
            .requests()
            .iter()
            .any(|r| r.target.contains("limit=many")),
        "the invalid call reached the upstream"
    );
}

// ---- raw HTTP: the transport's rules and the JSON-RPC errors ----

#[test]
fn jsonrpc_errors_are_clear() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);

    let r = post(&mut c, &[], "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], json!(-32700));

    let r = post(
        &mut c,
        &[],
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], json!(-32600));

    // Without a session: 400 naming the header.
    let r = post(
        &mut c,
        &[],
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string(),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Mcp-Session-Id"), "{}", r.text());

    let sid = initialize(&mut c, "2025-06-18");
    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    );
    assert_eq!((r.status, r.body.len()), (202, 0));

    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":"a","method":"resources/list"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["error"]["code"], json!(-32601));
    assert_eq!(r.json()["id"], json!("a"));

    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
    );
    assert_eq!(r.json()["result"], json!({}));

    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"deletePet","arguments":{"petId":"1"}}}),
    );
    assert_eq!(
        r.json()["error"]["code"],
        json!(-32602),
        "an operation not selected is no tool"
    );
    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"listPets","arguments":{"limit":1,"extra":true}}}),
    );
    assert_eq!(r.json()["error"]["code"], json!(-32602));
    assert!(r.text().contains("extra"), "{}", r.text());

    // Batches were dropped in 2025-06-18; a 2025-03-26 session may send them.
    let batch = json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"nope"}]);
    let r = rpc(&mut c, &sid, &[], batch.clone());
    assert_eq!(r.status, 400);
    let old = initialize(&mut c, "2025-03-26");
    let r = rpc(&mut c, &old, &[], batch);
    assert_eq!(r.status, 200);
    let answers = r.json();
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{answers}");
    assert_eq!(answers[1]["error"]["code"], json!(-32601));

    // The version header must be this session's.
    let r = rpc(
        &mut c,
        &sid,
        &[("MCP-Protocol-Version", "2024-01-01")],
        json!({"jsonrpc":"2.0","id":6,"method":"ping"}),
    );
    assert_eq!(r.status, 400);
    let r = rpc(
        &mut c,
        &sid,
        &[("MCP-Protocol-Version", "2025-06-18")],
        json!({"jsonrpc":"2.0","id":6,"method":"ping"}),
    );
    assert_eq!(r.status, 200);

    let r = c.request(
        "POST",
        "/mcp",
        &[
            ACCEPT,
            ("Content-Type", "text/plain"),
            ("Mcp-Session-Id", &sid),
        ],
        b"{}",
    );
    assert_eq!(r.status, 415);
}

#[test]
fn sessions_end_and_unknown_ones_are_404() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    assert_eq!(rpc(&mut c, &sid, &[], ping.clone()).status, 200);

    // A session is valid on any connection (and so any worker).
    for _ in 0..4 {
        let mut other = Conn::open(s.gw.addr);
        assert_eq!(rpc(&mut other, &sid, &[], ping.clone()).status, 200);
    }

    // A reload keeps sessions (the table lives outside the config generation).
    assert!(s.gw.reload(&s.config));
    assert_eq!(rpc(&mut c, &sid, &[], ping.clone()).status, 200);

    let r = rpc(
        &mut c,
        "0123456789abcdef0123456789abcdef",
        &[],
        ping.clone(),
    );
    assert_eq!(
        r.status, 404,
        "an unknown session makes the client re-initialize"
    );

    let r = c.request("DELETE", "/mcp", &[("Mcp-Session-Id", &sid)], b"");
    assert_eq!(r.status, 204);
    assert_eq!(rpc(&mut c, &sid, &[], ping.clone()).status, 404);
    let r = c.request("DELETE", "/mcp", &[("Mcp-Session-Id", &sid)], b"");
    assert_eq!(r.status, 404);

    // No SSE stream is offered.
    let r = c.request("GET", "/mcp", &[("Accept", "text/event-stream")], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, DELETE"));
}

#[test]
fn an_initialize_flood_does_not_end_other_clients_sessions() {
    let s = setup("", "");
    let mut victim = Conn::open_from(s.gw.addr, "127.0.0.2");
    let sid = initialize(&mut victim, "2025-06-18");
    // One client opens more sessions than the whole table holds (4 096) and never uses them.
    let mut c = Conn::open(s.gw.addr);
    let first = initialize(&mut c, "2025-06-18");
    for _ in 0..4200 {
        initialize(&mut c, "2025-06-18");
    }
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let r = rpc(&mut victim, &sid, &[], ping.clone());
    assert_eq!(
        r.status, 200,
        "the other client's session survives the flood"
    );
    let r = rpc(&mut c, &first, &[], ping);
    assert_eq!(
        r.status, 404,
        "the flooder's own idlest session went instead"
    );
}

#[test]
fn a_foreign_origin_is_refused() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}).to_string();
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "null",
    ] {
        let r = post(&mut c, &[("Origin", origin)], &init);
        assert_eq!(r.status, 403, "{origin}");
    }
    let r = post(&mut c, &[("Origin", "http://localhost:6274")], &init);
    assert_eq!(r.status, 200, "a local inspector may connect");
    drop(s);

    // `mcp.origins` lets a named web app in, and only it.
    let s = setup_mcp("", "", ", origins = [\"https://agent.example\"]");
    let mut c = Conn::open(s.gw.addr);
    let r = post(&mut c, &[("Origin", "https://agent.example")], &init);
    assert_eq!(r.status, 200);
    let r = post(&mut c, &[("Origin", "https://agent.example.evil")], &init);
    assert_eq!(r.status, 403);
}

#[test]
fn oversized_messages_are_refused() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    // Over the 1 MiB message limit by half: what the gateway has not read when it answers
    // 413 stays under the lingering drain's 1 MiB, so the client always finishes its write and
    // reads the answer. (With 2 MiB, a read that stopped just past 1 MiB left slightly more than
    // the drain takes, and the close reset the client mid-write: a rare EPIPE.)
    let pad = "x".repeat(3 << 19);
    let body = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":pad}});
    let r = rpc(&mut c, &sid, &[], body);
    assert_eq!(r.status, 413);
}

/// Tool calls go through the operation's policies: a rate limit on the API's routes counts
/// them, so an agent cannot use the MCP endpoint to get around it.
#[test]
fn tool_calls_pay_the_routes_rate_limit() {
    let s = setup(
        "\"limit\"",
        "[policies.limit]\nrate_limit = { key = \"ip\", limits = [{ requests = 2, per = \"1h\" }] }\n",
    );
    let mut c = Conn::open(s.gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"listPets","arguments":{}}});
    let key = s.key.clone();
    let mut results = Vec::new();
    for _ in 0..3 {
        let r = rpc(&mut c, &sid, &[("X-API-Key", &key)], call.clone());
        assert_eq!(r.status, 200);
        results.push(r.json()["result"].clone());
    }
    assert_eq!(results[0]["isError"], json!(false), "{}", results[0]);
    assert_eq!(results[1]["isError"], json!(false));
    assert_eq!(results[2]["isError"], json!(true));
    let text = results[2]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("HTTP 429"), "{text}");
    // The direct route shares the same budget (same client address).
    let r = c.request("GET", "/v1/pets", &[("X-API-Key", &key)], b"");
    assert_eq!(r.status, 429);
    assert_eq!(s.up.count(), 2);
}

/// A tool argument cannot smuggle a header or a second request into the call.
#[test]
fn arguments_cannot_smuggle() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    let key = s.key.clone();
    let call = |c: &mut Conn, args: Value| call_tool(c, &sid, &key, "showPetById", args);
    let r = call(&mut c, json!({"petId": "1 X\r\nHost: x\r\n\r\nGET admin"}));
    assert_eq!(r["result"]["isError"], json!(false), "{r}");
    let last = s.up.last();
    assert_eq!(
        last.target,
        "/v1/pets/1%20X%0D%0AHost%3A%20x%0D%0A%0D%0AGET%20admin"
    );
    assert_eq!(s.up.count(), 1, "one request upstream, not two");
    // A slash in a path argument stays inside its segment: encoded, which the gateway's path
    // rules refuse (a tool error), never a walk up the tree.
    let r = call(&mut c, json!({"petId": "../../admin"}));
    assert_eq!(r["result"]["isError"], json!(true), "{r}");
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 400"));
    assert_eq!(s.up.count(), 1);
    let r = call(&mut c, json!({"petId": {"nested": [1]}}));
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
}

/// A path argument of `.` or `..` (or with such a piece, or empty) would be a dot segment
/// that path normalization resolves into another route (another operation, an unexposed
/// one, the MCP endpoint itself): refused as invalid params, nothing reaches the upstream.
#[test]
fn dot_segment_path_arguments_are_refused() {
    let s = setup("", "");
    let mut c = Conn::open(s.gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    let key = s.key.clone();
    let call = |c: &mut Conn, args: Value| call_tool(c, &sid, &key, "showPetById", args);
    for bad in [
        json!("."),
        json!(".."),
        json!(""),
        json!(["a", ".."]),
        json!({"x": ".."}),
    ] {
        let r = call(&mut c, json!({ "petId": bad }));
        assert_eq!(r["error"]["code"], json!(-32602), "{bad}: {r}");
        assert_eq!(s.up.count(), 0, "{bad}: reached the upstream");
    }
    // Dots inside a value are ordinary characters.
    let r = call(&mut c, json!({"petId": "v1.2..3"}));
    assert_eq!(r["result"]["isError"], json!(false), "{r}");
    assert_eq!(s.up.last().target, "/v1/pets/v1.2..3");
}

/// Consumer identity from a bearer token: the MCP request's `Authorization` rides on every
/// call, so the operation's JWT policy sees (and names) the agent's own user.
#[test]
fn a_bearer_token_is_the_consumer() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    const HS: &str = "a-jwt-hmac-secret-that-is-long-enough!!";
    let spec_text = PETSTORE
        .replace(
            "apiKey: { type: apiKey, in: header, name: X-API-Key }",
            "bearerAuth: { type: http, scheme: bearer }",
        )
        .replace("  - apiKey: []", "  - bearerAuth: []");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("petstore.yaml");
    std::fs::write(&spec, spec_text).unwrap();
    let up = Upstream::echo();
    let config = format!(
        "[policies.jwt]\njwt = {{ secret = \"{HS}\", algorithms = [\"HS256\"] }}\n\n{}\n\
         [[openapi]]\nspec = \"{}\"\nupstream = \"pets\"\nprefix = \"/v1\"\n\
         security = {{ bearerAuth = \"jwt\" }}\nmcp = {{ path = \"/mcp\" }}\n",
        upstream_toml("pets", &[up.addr]),
        spec.display()
    );
    let gw = Gateway::start(&config);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let input = format!(
        "{}.{}",
        B64.encode(json!({"alg":"HS256","typ":"JWT"}).to_string()),
        B64.encode(json!({"sub":"agent-7","exp":exp}).to_string())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HS.as_bytes());
    let sig = B64.encode(ring::hmac::sign(&key, input.as_bytes()).as_ref());
    let bearer = format!("Bearer {input}.{sig}");

    let mut c = Conn::open(gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    // Every served operation is a tool by default; one that is not served is none.
    let listed = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .json();
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["createPet", "deletePet", "listPets", "showPetById"]);
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"showPetById","arguments":{"petId":"9"}}});
    let r = rpc(&mut c, &sid, &[("Authorization", &bearer)], call.clone()).json();
    assert_eq!(r["result"]["isError"], json!(false), "{r}");
    let seen = up.last();
    assert_eq!(seen.target, "/v1/pets/9");
    assert_eq!(
        seen.header("x-consumer"),
        Some("agent-7"),
        "{:?}",
        seen.headers
    );

    let r = rpc(&mut c, &sid, &[], call.clone()).json();
    assert_eq!(r["result"]["isError"], json!(true), "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("HTTP 401"), "{text}");
    let r = rpc(&mut c, &sid, &[("Authorization", "Bearer x.y.z")], call).json();
    assert_eq!(r["result"]["isError"], json!(true), "{r}");
    assert_eq!(up.count(), 1, "refused calls never reach the upstream");
}

/// A huge answer is cut at 256 KiB in the tool result (and says so), not copied whole.
#[test]
fn a_huge_answer_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("petstore.yaml");
    std::fs::write(&spec, PETSTORE.replace("security:\n  - apiKey: []\n", "")).unwrap();
    let big: &'static str = Box::leak("p".repeat(3 << 20).into_boxed_str());
    let up = Upstream::fixed(200, big, "big");
    let config = format!(
        "{}\n[[openapi]]\nspec = \"{}\"\nupstream = \"pets\"\nmcp = {{ path = \"/mcp\" }}\n",
        upstream_toml("pets", &[up.addr]),
        spec.display()
    );
    let gw = Gateway::start(&config);
    let mut c = Conn::open(gw.addr);
    let sid = initialize(&mut c, "2025-06-18");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"listPets"}});
    let r = rpc(&mut c, &sid, &[], call.clone());
    assert!(r.body.len() < 300 * 1024, "{} bytes", r.body.len());
    let v = r.json();
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("ppp") && text.ends_with("bytes]"),
        "{}",
        &text[text.len() - 80..]
    );
    assert!(text.contains("truncated"));
    // The gateway is fine afterwards (the cut-off upstream exchange ended cleanly).
    let r = rpc(
        &mut c,
        &sid,
        &[],
        json!({"jsonrpc":"2.0","id":2,"method":"ping"}),
    );
    assert_eq!(r.status, 200);
    let r = rpc(&mut c, &sid, &[], call).json();
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}
