//! OAuth2 token introspection (RFC 7662) and OIDC discovery against the running gateway, with
//! a scripted IdP in this process: it checks the gateway's client authentication (basic or
//! post), answers by token name, serves a discovery document and a JWK Set that tests change.
//! Active, inactive, expired, wrong-audience and wrong-issuer tokens; scopes feeding
//! `authorize`; the positive and negative caches; the IdP down, slow, refusing, huge or not
//! JSON; hostile tokens and hostile answers; discovery for introspection and for `jwt` with a
//! key rotation.
mod common;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const CLIENT_ID: &str = "gate way";
const CLIENT_SECRET: &str = "s3cret:&=";

/// How the stub expects the gateway to authenticate.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Basic,
    Post,
}

/// What the stub serves besides introspection answers.
struct IdpState {
    auth: Auth,
    issuer: String,
    discovery: String,
    jwks: String,
    /// Served at `/keys2`.
    jwks_moved: String,
}

/// The scripted IdP: `POST /introspect` (and `/oauth/v2/introspect`) answer by token prefix.
struct Idp {
    up: Upstream,
    state: Arc<Mutex<IdpState>>,
    issuer: String,
}

fn form_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(body)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect()
}

fn respond(s: &mut std::net::TcpStream, status: u16, ctype: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// Whether the gateway authenticated as it should.
fn client_ok(auth: Auth, req: &Received, fields: &[(String, String)]) -> bool {
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    match auth {
        Auth::Basic => {
            let Some(v) = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Basic "))
            else {
                return false;
            };
            let pair = String::from_utf8(STANDARD.decode(v).unwrap_or_default()).unwrap();
            let Some((id, secret)) = pair.split_once(':') else {
                return false;
            };
            form_decode(id) == CLIENT_ID
                && form_decode(secret) == CLIENT_SECRET
                && field("client_secret").is_none()
        }
        Auth::Post => {
            req.header("authorization").is_none()
                && field("client_id") == Some(CLIENT_ID)
                && field("client_secret") == Some(CLIENT_SECRET)
        }
    }
}

/// The answer for a token, by its prefix.
fn answer(token: &str, issuer: &str) -> (u16, &'static str, String) {
    let name = token.split_once('-').map_or("", |(_, n)| n).to_string();
    let base = |extra: Value| {
        let mut v = json!({"active": true, "sub": name, "aud": ["api", "other"],
            "scope": "read write", "exp": now() + 300, "iss": issuer, "client_id": "app-1"});
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        (200, "application/json", v.to_string())
    };
    match token.split_once('-').map_or(token, |(p, _)| p) {
        "good" => base(json!({})),
        "read" => base(json!({"scope": "read"})),
        "expired" => base(json!({"exp": now() - 10})),
        "notyet" => base(json!({"nbf": now() + 600})),
        "aud" => base(json!({"aud": "other"})),
        "iss" => base(json!({"iss": "https://evil.test"})),
        "client" => base(json!({"client_id": "app-2"})),
        "noclient" => base(json!({"client_id": null})),
        "crlf" => base(json!({"sub": "eve\r\nx-evil: 1"})),
        "svc" => base(json!({"sub": null})),
        "emptysub" => base(json!({"sub": ""})),
        // `short-<unix time>`: expires then.
        "short" => base(json!({"exp": name.parse::<u64>().unwrap_or(0)})),
        "slow" => {
            std::thread::sleep(Duration::from_millis(1500));
            base(json!({}))
        }
        "huge" => base(json!({"pad": "x".repeat(200 * 1024)})),
        "slowno" => {
            std::thread::sleep(Duration::from_millis(300));
            (
                200,
                "application/json",
                json!({"active": false}).to_string(),
            )
        }
        // The same member twice: last-wins parsers read `active: true`, first-wins `false`.
        "dupactive" => {
            let (st, ct, body) = base(json!({}));
            (st, ct, body.replacen('{', "{\"active\":false,", 1))
        }
        // A subject past u64: as a float it would read 1e+22, like every neighbour.
        "bigsub" => {
            let (st, ct, body) = base(json!({"sub": null}));
            (
                st,
                ct,
                body.replacen('{', "{\"sub\":10000000000000000000001,", 1),
            )
        }
        "html" => (200, "text/html", "<html>busy</html>".into()),
        "oops" => (500, "application/json", "{}".into()),
        _ => (
            200,
            "application/json",
            json!({"active": false}).to_string(),
        ),
    }
}

impl Idp {
    fn start(auth: Auth) -> Idp {
        let state = Arc::new(Mutex::new(IdpState {
            auth,
            issuer: String::new(),
            discovery: String::new(),
            jwks: json!({"keys": []}).to_string(),
            jwks_moved: json!({"keys": []}).to_string(),
        }));
        let st = state.clone();
        let up = Upstream::start(Arc::new(move |req, s| {
            let path = req.target.split('?').next().unwrap_or("");
            match (req.method.as_str(), path) {
                ("GET", "/.well-known/openid-configuration") => {
                    let doc = st.lock().unwrap().discovery.clone();
                    respond(s, 200, "application/json", &doc);
                }
                ("GET", "/keys") => {
                    let doc = st.lock().unwrap().jwks.clone();
                    respond(s, 200, "application/json", &doc);
                }
                ("GET", "/keys2") => {
                    let doc = st.lock().unwrap().jwks_moved.clone();
                    respond(s, 200, "application/json", &doc);
                }
                ("POST", "/introspect" | "/oauth/v2/introspect") => {
                    let fields = form(&req.body);
                    let auth = st.lock().unwrap().auth;
                    let ctype_ok =
                        req.header("content-type") == Some("application/x-www-form-urlencoded");
                    let hint = fields
                        .iter()
                        .any(|(k, v)| k == "token_type_hint" && v == "access_token");
                    if !client_ok(auth, req, &fields) || !ctype_ok || !hint {
                        respond(s, 401, "application/json", "{\"error\":\"invalid_client\"}");
                    } else {
                        let token = fields
                            .iter()
                            .find(|(k, _)| k == "token")
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        let iss = st.lock().unwrap().issuer.clone();
                        let (status, ctype, body) = answer(&token, &iss);
                        respond(s, status, ctype, &body);
                    }
                }
                _ => respond(s, 404, "text/plain", "no"),
            }
            Reply::KeepAlive
        }));
        let issuer = format!("http://{}", up.addr);
        {
            let mut s = state.lock().unwrap();
            s.issuer = issuer.clone();
            s.discovery = json!({"issuer": issuer, "introspection_endpoint":
                format!("{issuer}/oauth/v2/introspect"), "jwks_uri": format!("{issuer}/keys")})
            .to_string();
        }
        Idp { up, state, issuer }
    }

    /// Introspection calls so far.
    fn calls(&self) -> usize {
        self.up
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }

    /// The tokens the IdP was asked about, in order.
    fn asked(&self) -> Vec<String> {
        self.up
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .filter_map(|r| {
                form(&r.body)
                    .into_iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v)
            })
            .collect()
    }
}

/// A gateway with `/api` behind `policy` (an introspect table body), `/write` adding an
/// `authorize` for scope `write`, and `/admin` whose policy requires scope `admin`.
fn gateway(idp: &Idp, app: &Upstream, policy: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_env(&gateway_body(idp, app, policy), 2, env)
}

fn gateway_body(idp: &Idp, app: &Upstream, policy: &str) -> String {
    format!(
        "{}\n{}\n\
         [policies.intro.introspect]\nupstream = \"idp\"\n{policy}\n\n\
         [policies.admin.introspect]\nupstream = \"idp\"\n{policy}\nrequired_scopes = [\"admin\"]\n\n\
         [policies.writer]\nauthorize = {{ scopes = [\"write\"] }}\n\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\npolicies = [\"intro\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"write\"\nprefix = \"/write\"\npolicies = [\"intro\", \"writer\"]\nproxy = {{ upstream = \"app\" }}\n\n\
         [[routes]]\nname = \"admin\"\nprefix = \"/admin\"\npolicies = [\"admin\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("idp", &[idp.up.addr]),
        upstream_toml("app", &[app.addr]),
    )
}

const BASIC: &str = "endpoint = \"/introspect\"\nclient_id = \"gate way\"\n\
                     client_secret_env = \"IDP_SECRET\"\naudience = \"api\"\n\
                     issuer = \"http://127.0.0.1:1\"\ntimeout = \"500ms\"\nnegative_ttl = \"1s\"";

fn basic_gateway(idp: &Idp, app: &Upstream) -> Gateway {
    let policy = BASIC.replace("http://127.0.0.1:1", &idp.issuer);
    gateway(idp, app, &policy, &[("IDP_SECRET", CLIENT_SECRET)])
}

fn call(c: &mut Conn, path: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    c.request("GET", path, &[("Authorization", &auth)], b"")
}

fn upstream_header(app: &Upstream, name: &str) -> Option<String> {
    app.last().header(name).map(str::to_string)
}

#[test]
fn an_active_token_reaches_the_upstream_as_its_consumer_and_is_asked_once() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    let r = c.request(
        "GET",
        "/api/x",
        &[
            ("Authorization", "Bearer good-alice"),
            ("X-Consumer", "mallory"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        app.last().header_all("x-consumer"),
        ["alice"],
        "gateway's assertion only"
    );
    assert_eq!(
        upstream_header(&app, "authorization").as_deref(),
        Some("Bearer good-alice"),
        "the token goes on, as with the jwt policy"
    );
    assert_eq!(idp.calls(), 1);
    // Same token again (same connection, same worker): answered from the cache.
    for _ in 0..5 {
        assert_eq!(call(&mut c, "/api/y", "good-alice").status, 200);
    }
    assert_eq!(idp.calls(), 1, "cached verdicts do not reach the IdP");
    // A reload that leaves the policy as it was keeps the worker's cache warm.
    let policy = BASIC.replace("http://127.0.0.1:1", &idp.issuer);
    let body = gateway_body(&idp, &app, &policy) + "\n# reloaded\n";
    assert!(gw.reload(&body), "{}", gw.logs());
    assert_eq!(call(&mut c, "/api/y", "good-alice").status, 200);
    assert_eq!(idp.calls(), 1, "still cached after the reload");
    // A token without `sub` falls back to the answer's client_id.
    assert_eq!(call(&mut c, "/api/z", "svc-x").status, 200);
    assert_eq!(
        upstream_header(&app, "x-consumer").as_deref(),
        Some("app-1")
    );
    // So does an empty `sub`: it names nobody (an empty consumer went upstream before).
    assert_eq!(call(&mut c, "/api/z", "emptysub-x").status, 200);
    assert_eq!(app.last().header_all("x-consumer"), ["app-1"]);
    assert!(
        !gw.logs().contains("good-alice"),
        "the token is never logged"
    );
}

#[test]
fn inactive_expired_not_yet_valid_wrong_audience_and_wrong_issuer_tokens_get_401() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    for token in [
        "inactive-a",
        "expired-a",
        "aud-a",
        "iss-a",
        "crlf-a",
        "notyet-a",
    ] {
        let r = call(&mut c, "/api/x", token);
        assert_eq!(r.status, 401, "{token}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ringway\", error=\"invalid_token\""),
            "{token}"
        );
    }
    let r = c.request("GET", "/api/x", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"ringway\"")
    );
    assert_eq!(app.count(), 0, "nothing refused reached the upstream");
    assert_eq!(idp.calls(), 6);
    // Each refusal is counted by its reason.
    for reason in [
        "inactive_token",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "unsafe_consumer",
        "not_yet_valid",
    ] {
        let labels = [("route", "api"), ("reason", reason)];
        let s = scrape_until(gw.admin, "ringway_auth_failures_total", &labels, 1.0);
        assert_eq!(
            metric(&s, "ringway_auth_failures_total", &labels),
            Some(1.0),
            "{reason}"
        );
    }
}

#[test]
fn allowed_clients_refuse_tokens_issued_to_other_clients() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let policy = format!(
        "{}\nallowed_clients = [\"app-1\", \"app-3\"]",
        BASIC.replace("http://127.0.0.1:1", &idp.issuer)
    );
    let gw = gateway(&idp, &app, &policy, &[("IDP_SECRET", CLIENT_SECRET)]);
    let mut c = Conn::open(gw.addr);
    assert_eq!(
        call(&mut c, "/api/x", "good-alice").status,
        200,
        "client app-1"
    );
    for token in ["client-alice", "noclient-alice"] {
        let r = call(&mut c, "/api/x", token);
        assert_eq!(r.status, 401, "{token}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ringway\", error=\"invalid_token\""),
            "{token}"
        );
    }
    assert_eq!(app.count(), 1, "only app-1's token reached the upstream");
    let labels = [("route", "api"), ("reason", "client_not_allowed")];
    let s = scrape_until(gw.admin, "ringway_auth_failures_total", &labels, 2.0);
    assert_eq!(
        metric(&s, "ringway_auth_failures_total", &labels),
        Some(2.0)
    );
}

#[test]
fn scopes_feed_authorize_and_required_scopes() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    assert_eq!(call(&mut c, "/write/x", "good-bob").status, 200);
    let r = call(&mut c, "/write/x", "read-bob");
    assert_eq!(r.status, 403, "authorize needs scope write");
    let r = call(&mut c, "/admin/x", "good-bob");
    assert_eq!(r.status, 403, "the policy's required_scopes");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"ringway\", error=\"insufficient_scope\"")
    );
    assert_eq!(app.count(), 1);
}

#[test]
fn a_flood_of_one_bad_token_asks_the_idp_once_per_negative_ttl() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    for _ in 0..50 {
        assert_eq!(call(&mut c, "/api/x", "inactive-flood").status, 401);
    }
    assert_eq!(idp.calls(), 1, "the refusal is cached");
    // Other connections may land on the other worker: each worker asks at most once.
    for _ in 0..20 {
        let mut c2 = Conn::open(gw.addr);
        assert_eq!(call(&mut c2, "/api/x", "inactive-flood").status, 401);
    }
    assert!(idp.calls() <= 2, "one call per worker, got {}", idp.calls());
    // Concurrent requests while the IdP is still thinking: they wait for the one call.
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let addr = gw.addr;
            std::thread::spawn(move || get_bearer(addr, "slowno-flood").status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 401);
    }
    let slow_calls = idp.asked().iter().filter(|t| *t == "slowno-flood").count();
    assert!(
        slow_calls <= 2,
        "in-flight calls are shared per worker: {slow_calls}"
    );
    // negative_ttl = 1s: the IdP is asked again afterwards (a token may become valid).
    std::thread::sleep(Duration::from_millis(1200));
    let before = idp.calls();
    assert_eq!(call(&mut c, "/api/x", "inactive-flood").status, 401);
    assert_eq!(idp.calls(), before + 1);
}

#[test]
fn an_active_answer_is_cached_no_longer_than_the_token_lives() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    // exp = now + 2: cached (cache_ttl is 60s) only until then.
    let token = format!("short-{}", now() + 2);
    assert_eq!(call(&mut c, "/api/x", &token).status, 200);
    assert_eq!(call(&mut c, "/api/x", &token).status, 200);
    assert_eq!(idp.calls(), 1);
    std::thread::sleep(Duration::from_millis(3100));
    let r = call(&mut c, "/api/x", &token);
    assert_eq!(r.status, 401, "expired by now");
    assert_eq!(idp.calls(), 2, "the expired entry was not reused");
}

#[test]
fn idp_down_slow_refusing_huge_or_not_json_is_503_and_not_cached() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    let mut c = Conn::open(gw.addr);
    for token in ["slow-a", "huge-a", "html-a", "oops-a"] {
        let t0 = Instant::now();
        let r = call(&mut c, "/api/x", token);
        assert_eq!(r.status, 503, "{token}: {}", r.text());
        assert!(
            t0.elapsed() < Duration::from_millis(1400),
            "{token}: bounded by timeout"
        );
    }
    let before = idp.calls();
    assert_eq!(call(&mut c, "/api/x", "html-a").status, 503);
    assert_eq!(idp.calls(), before + 1, "IdP failures are not cached");
    assert_eq!(app.count(), 0);

    // An IdP nobody listens on.
    let dead = refused_port();
    let body = format!(
        "[upstreams.idp]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\n{}\n\
         [policies.intro.introspect]\nupstream = \"idp\"\nendpoint = \"/introspect\"\n\
         client_id = \"a\"\nclient_secret = \"b\"\n\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"intro\"]\nproxy = {{ upstream = \"app\" }}\n",
        upstream_toml("app", &[app.addr])
    );
    let gw2 = Gateway::start(&body);
    let r = get_bearer(gw2.addr, "good-a");
    assert_eq!(r.status, 503);
    assert_eq!(app.count(), 0);
}

fn get_bearer(addr: SocketAddr, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    request(addr, "GET", "/api/x", &[("Authorization", &auth)], b"")
}

#[test]
fn wrong_client_credentials_are_503_and_post_auth_sends_them_in_the_body_and_the_token_can_stay_behind(
) {
    // The IdP expects client_secret_post; a basic-auth gateway is refused by it: 503.
    let idp = Idp::start(Auth::Post);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    assert_eq!(get_bearer(gw.addr, "good-a").status, 503);
    drop(gw);
    let policy = BASIC.replace("http://127.0.0.1:1", &idp.issuer)
        + "\nauth = \"post\"\nforward_token = false";
    let gw = gateway(&idp, &app, &policy, &[("IDP_SECRET", CLIENT_SECRET)]);
    let r = get_bearer(gw.addr, "good-carol");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        upstream_header(&app, "x-consumer").as_deref(),
        Some("carol")
    );
    assert_eq!(
        upstream_header(&app, "authorization"),
        None,
        "forward_token = false"
    );
}

#[test]
fn hostile_tokens_and_answers_never_reach_the_upstream() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let gw = basic_gateway(&idp, &app);
    // 10 KB token: refused without asking the IdP.
    let long = format!("good-{}", "a".repeat(10 * 1024));
    let r = get_bearer(gw.addr, &long);
    assert_eq!(r.status, 401);
    // Characters outside RFC 6750's b64token: refused without asking the IdP.
    for t in ["good-a\"b", "good-a,b", "good-a;b"] {
        assert_eq!(get_bearer(gw.addr, t).status, 401, "{t}");
    }
    assert_eq!(idp.calls(), 0);
    // CR/LF in the token: the HTTP parser refuses the request before any policy.
    let raw_req = b"GET /api/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good-a\rx\r\n\r\n";
    let status = first_status(&raw(gw.addr, raw_req));
    assert!(status == 400 || status == 401, "{status}");
    // An answer whose sub would inject a header line upstream.
    let r = get_bearer(gw.addr, "crlf-x");
    assert_eq!(r.status, 401);
    assert_eq!(app.count(), 0);
    assert_eq!(idp.asked(), ["crlf-x"]);
    // An answer with a member twice is not one the gateway can read one way: 503 (the IdP
    // misbehaves), never the last copy's `active: true`.
    assert_eq!(get_bearer(gw.addr, "dupactive-x").status, 503);
    assert_eq!(app.count(), 0);
    // A numeric subject past u64 names nobody (it would collapse onto 1e+22 with every
    // neighbour): the consumer comes from `client_id` instead.
    assert_eq!(get_bearer(gw.addr, "bigsub-x").status, 200);
    assert_eq!(
        upstream_header(&app, "x-consumer").as_deref(),
        Some("app-1")
    );
}

#[test]
fn discovery_names_the_introspection_endpoint_and_is_refused_off_the_upstream() {
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let policy = format!(
        "issuer = \"{}\"\nclient_id = \"gate way\"\nclient_secret = \"{CLIENT_SECRET}\"",
        idp.issuer
    );
    let gw = gateway(&idp, &app, &policy, &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get_bearer(gw.addr, "good-dora");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "before discovery: fail closed");
        assert!(Instant::now() < deadline, "discovery never completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(upstream_header(&app, "x-consumer").as_deref(), Some("dora"));
    let asked: Vec<String> = idp
        .up
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.target.clone())
        .collect();
    assert!(
        asked.iter().all(|t| t == "/oauth/v2/introspect"),
        "{asked:?}"
    );
    drop(gw);

    // A document pointing the endpoint at another host is refused: no call, 503, logged.
    idp.state.lock().unwrap().discovery = json!({"issuer": idp.issuer,
        "introspection_endpoint": "http://127.0.0.2:9/steal"})
    .to_string();
    let before = idp.calls();
    let gw = gateway(&idp, &app, &policy, &[]);
    gw.wait_log(
        "not a target of the policy's upstream",
        Duration::from_secs(5),
    );
    assert_eq!(get_bearer(gw.addr, "good-dora").status, 503);
    assert_eq!(idp.calls(), before);
    drop(gw);

    // A document for another issuer is refused too.
    idp.state.lock().unwrap().discovery = json!({"issuer": "https://evil.test",
        "introspection_endpoint": format!("{}/introspect", idp.issuer)})
    .to_string();
    let gw = gateway(&idp, &app, &policy, &[]);
    gw.wait_log("not the configured", Duration::from_secs(5));
    assert_eq!(get_bearer(gw.addr, "good-dora").status, 503);
}

// ---------------------------------------------------------------------------------------------
// `jwt` with `issuer` only: keys from the discovered `jwks_uri`, rotated.

fn es256_key() -> (ring::signature::EcdsaKeyPair, Value) {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = key.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..65])});
    (key, jwk)
}

fn sign(key: &ring::signature::EcdsaKeyPair, kid: &str, claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let msg = format!("{head}.{body}");
    let sig = key
        .sign(&ring::rand::SystemRandom::new(), msg.as_bytes())
        .unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = json!(kid);
    jwk
}

#[test]
fn jwt_discovery_follows_the_jwks_uri_through_a_key_rotation() {
    let idp = Idp::start(Auth::Basic);
    let (k1, jwk1) = es256_key();
    let (k2, jwk2) = es256_key();
    idp.state.lock().unwrap().jwks = json!({"keys": [with_kid(jwk1, "k1")]}).to_string();
    let app = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ issuer = \"{}\", algorithms = [\"ES256\"], min_refresh = \"1s\" }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        idp.issuer,
        upstream_toml("app", &[app.addr])
    );
    let gw = Gateway::start(&body);
    let claims = |sub: &str| json!({"sub": sub, "iss": idp.issuer, "exp": now() + 300});
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_bearer(gw.addr, &sign(&k1, "k1", &claims("erin"))).status != 200 {
        assert!(Instant::now() < deadline, "discovery + first JWKS fetch");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(upstream_header(&app, "x-consumer").as_deref(), Some("erin"));
    // A token from another issuer is refused even though it verifies.
    let other = json!({"sub": "x", "iss": "https://evil.test", "exp": now() + 300});
    assert_eq!(get_bearer(gw.addr, &sign(&k1, "k1", &other)).status, 401);

    // The IdP rotates to k2 and moves its key set to /keys2 (the old URL still serves k1): the
    // unknown kid triggers a refresh, which must read the discovery document again to find it.
    {
        let mut st = idp.state.lock().unwrap();
        st.jwks_moved = json!({"keys": [with_kid(jwk2, "k2")]}).to_string();
        st.discovery =
            json!({"issuer": idp.issuer, "jwks_uri": format!("{}/keys2", idp.issuer)}).to_string();
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while get_bearer(gw.addr, &sign(&k2, "k2", &claims("finn"))).status != 200 {
        assert!(Instant::now() < deadline, "rotation picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get_bearer(gw.addr, &sign(&k1, "k1", &claims("erin"))).status,
        401
    );
    let fetched = idp
        .up
        .requests()
        .iter()
        .filter(|r| r.target == "/.well-known/openid-configuration")
        .count();
    assert!(fetched >= 2, "discovery re-read on refresh: {fetched}");
    assert!(gw.logs().contains("/keys2"), "the new jwks_uri is logged");
}

#[test]
fn jwt_discovery_refuses_a_document_for_another_issuer() {
    let idp = Idp::start(Auth::Basic);
    let (k1, jwk1) = es256_key();
    {
        let mut st = idp.state.lock().unwrap();
        st.jwks = json!({"keys": [with_kid(jwk1, "k1")]}).to_string();
        st.discovery = json!({"issuer": "https://evil.test",
            "jwks_uri": format!("{}/keys", idp.issuer)})
        .to_string();
    }
    let app = Upstream::echo();
    let body = format!(
        "[policies.jwt]\njwt = {{ issuer = \"{}\", algorithms = [\"ES256\"] }}\n\n{}\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\npolicies = [\"jwt\"]\nproxy = {{ upstream = \"app\" }}\n",
        idp.issuer,
        upstream_toml("app", &[app.addr])
    );
    let gw = Gateway::start(&body);
    gw.wait_log("not the configured", Duration::from_secs(5));
    let t = sign(
        &k1,
        "k1",
        &json!({"sub": "x", "iss": idp.issuer, "exp": now() + 300}),
    );
    assert_eq!(
        get_bearer(gw.addr, &t).status,
        401,
        "no keys from a foreign document"
    );
    assert!(
        !idp.up.requests().iter().any(|r| r.target == "/keys"),
        "the foreign document's jwks_uri is never fetched"
    );
    assert_eq!(app.count(), 0);
}

#[test]
fn http2_streams_share_one_introspection_per_token() {
    use common::h2::{start_h2c, H2Client, H2Req};
    let idp = Idp::start(Auth::Basic);
    let app = Upstream::echo();
    let policy = format!(
        "endpoint = \"/introspect\"\nclient_id = \"gate way\"\nclient_secret = \"{}\"",
        CLIENT_SECRET.replace('"', "\\\"")
    );
    let gw = start_h2c(&gateway_body(&idp, &app, &policy));
    let mut c = H2Client::h2c(gw.addr).unwrap();
    // Ten streams at once on one connection (one worker) while the IdP takes 300 ms.
    let reqs = (0..10)
        .map(|i| H2Req::get(&format!("/api/{i}")).header("authorization", "Bearer slowno-h2"))
        .collect();
    for r in c.concurrent(reqs) {
        assert_eq!(r.unwrap().status, 401);
    }
    assert_eq!(
        idp.asked(),
        ["slowno-h2"],
        "one call for ten concurrent streams"
    );
    let reqs = (0..10)
        .map(|i| H2Req::get(&format!("/api/{i}")).header("authorization", "Bearer good-h2"))
        .collect();
    for r in c.concurrent(reqs) {
        assert_eq!(r.unwrap().status, 200);
    }
    assert_eq!(idp.calls(), 2);
    assert_eq!(app.count(), 10);
    assert!(app
        .requests()
        .iter()
        .all(|r| r.header("x-consumer") == Some("h2")));
}
