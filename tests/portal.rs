//! The developer portal over real sockets (no browser): pages read without JavaScript, the
//! document's text is escaped, every answer carries the CSP and nosniff, unknown pages are 404
//! and other methods 405; self-service keys are off by default, need a CSRF token and a
//! same-origin form, and one consumer cannot touch another's keys. The browser side is in
//! tests/portal_browser.rs.
mod common;
use common::portal::*;
use common::*;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn plain_portal() -> (Gateway, Upstream, tempfile::TempDir) {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), false);
    let gw = Gateway::start(&config(&spec, up.addr, "{ path = \"/docs\" }", ""));
    (gw, up, dir)
}

fn assert_security_headers(r: &Response, what: &str) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

#[test]
fn pages_read_without_javascript_and_escape_the_document() {
    let (gw, up, _dir) = plain_portal();
    let r = get(gw.addr, "/docs/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert_security_headers(&r, "index");
    let html = r.text();
    // Operations grouped by tag, untagged last, each linking to its page.
    let pets = html.find(">pets</h2>").expect("tag heading");
    let other = html
        .find(">Other operations</h2>")
        .expect("untagged heading");
    assert!(pets < other);
    assert!(html.contains("href=\"/docs/op/showPetById\""));
    assert!(html.contains("<code>/v1/pets/{petId}</code>"));
    // The description's <script> is text, not markup.
    assert!(html.contains("Pets for &lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; people"));
    assert!(!html.contains("<script>alert"));
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no external URL"
    );

    let r = get(gw.addr, "/docs/op/showPetById");
    assert_eq!(r.status, 200);
    assert_security_headers(&r, "operation");
    let html = r.text();
    assert!(
        html.contains(
            "<th scope=\"row\"><code>petId</code></th><td>path</td><td>yes</td><td>string</td>"
        ),
        "{html}"
    );
    assert!(html.contains("data-path=\"/v1/pets/{petId}\""));
    assert!(html.contains("<label for=\"try-p1\">"));
    let r = get(gw.addr, "/docs/op/createPet");
    assert!(
        r.text().contains("&quot;name&quot;: &quot;Rex&quot;"),
        "body example"
    );

    // The assets are embedded and typed; nothing reached the upstream.
    let js = get(gw.addr, "/docs/assets/portal.js");
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/javascript"));
    assert!(js.text().contains("try-form"));
    assert_security_headers(&js, "asset");
    let css = get(gw.addr, "/docs/assets/portal.css");
    assert!(css
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    assert_eq!(up.count(), 0);
}

#[test]
fn unknown_pages_are_404_and_other_methods_405() {
    let (gw, up, _dir) = plain_portal();
    for path in [
        "/docs/op/nope",
        "/docs/nope",
        "/docs/assets/../ringway.toml",
        "/docs/assets/x.js",
        "/docs/keys",
    ] {
        let r = get(gw.addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert_security_headers(&r, path);
    }
    for (method, path) in [
        ("POST", "/docs/"),
        ("DELETE", "/docs/op/listPets"),
        ("PUT", "/docs/assets/portal.js"),
    ] {
        let r = request(gw.addr, method, path, &[("Content-Length", "0")], b"");
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // HEAD: the length of the page, no body.
    let mut c = Conn::open(gw.addr);
    let r = c.request("HEAD", "/docs/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(0)
            > 100
    );
    assert!(r.body.is_empty());
    // The connection is still in sync afterwards.
    assert_eq!(c.request("GET", "/docs/op/health", &[], b"").status, 200);
    // The API itself is still proxied next to the portal.
    assert_eq!(get(gw.addr, "/v1/pets").status, 200);
    assert_eq!(up.count(), 1);
}

#[test]
fn self_service_is_off_by_default() {
    let (gw, _up, _dir) = plain_portal();
    assert_eq!(get(gw.addr, "/docs/keys").status, 404);
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/sign-in",
        &[FORM],
        b"credential=x",
    );
    assert!(matches!(r.status, 404 | 405), "{}", r.status);
    assert!(
        !get(gw.addr, "/docs/").text().contains("/docs/keys"),
        "no link to it"
    );
}

/// A gateway with self-service keys (sign-in by API key) over a fresh key store whose
/// `prefix` keeps it apart, once alice's key works. The gateway is first, so it stops first.
fn keys_portal(prefix: &str) -> (Gateway, Upstream, KeyStoreFixture) {
    let store = KeyStoreFixture::new(prefix);
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let gw = store.gateway(&config(
        &spec,
        up.addr,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        &store.tables(),
    ));
    until_status(&gw, &store.alice, 200);
    (gw, up, store)
}

/// Signs in with `key`; returns the session cookie (`name=value`).
fn sign_in(gw: &Gateway, key: &str) -> String {
    let body = format!("credential={key}");
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/sign-in",
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/docs/keys"));
    let set = r.header("set-cookie").expect("session cookie").to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");
    assert!(
        set.contains("; Path=/docs/keys;"),
        "only the self-service pages get the session: {set}"
    );
    assert!(!set.contains(key), "the session is not the key");
    set.split(';').next().unwrap().to_string()
}

/// The keys page for `cookie` and its CSRF token.
fn keys_page(gw: &Gateway, cookie: &str) -> (String, String) {
    let r = request(gw.addr, "GET", "/docs/keys", &[("Cookie", cookie)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = r.text();
    let at =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    let csrf = html[at..at + 64].to_string();
    (html, csrf)
}

fn post(gw: &Gateway, path: &str, cookie: &str, body: &str) -> Response {
    request(
        gw.addr,
        "POST",
        path,
        &[FORM, ("Cookie", cookie)],
        body.as_bytes(),
    )
}

#[test]
fn self_service_keys_with_csrf_and_ownership() {
    let (gw, _up, store) = keys_portal("t-portal-keys");
    assert_eq!(pet_status(&gw, "rwk_00000000_nope"), 401);

    // A wrong credential does not sign in.
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/sign-in",
        &[FORM],
        b"credential=rwk_bad",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The actions are POST only; unknown pages under /keys are 404.
    let r = get(gw.addr, "/docs/keys/revoke");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(
        request(
            gw.addr,
            "PUT",
            "/docs/keys",
            &[("Content-Length", "0")],
            b""
        )
        .status,
        405
    );
    assert_eq!(get(gw.addr, "/docs/keys/nope").status, 404);
    // Without a session the page offers the sign-in form.
    assert!(get(gw.addr, "/docs/keys")
        .text()
        .contains("id=\"credential\""));

    let alice = sign_in(&gw, &store.alice);
    let (html, csrf) = keys_page(&gw, &alice);
    let alice_id = key_id(&store.alice);
    let bob_id = key_id(&store.bob);
    assert!(html.contains(&format!("<code>{alice_id}</code>")), "{html}");
    assert!(!html.contains(&bob_id), "bob's key is not listed to alice");
    assert!(
        !html.contains(&store.alice),
        "an existing key's secret is never shown"
    );
    assert!(html.contains("not metered"));

    // No CSRF token, a wrong one, or a cross-site origin: refused, nothing created.
    assert_eq!(post(&gw, "/docs/keys/create", &alice, "").status, 403);
    assert_eq!(
        post(
            &gw,
            "/docs/keys/create",
            &alice,
            &format!("csrf={}", "0".repeat(64))
        )
        .status,
        403
    );
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/create",
        &[FORM, ("Cookie", &alice), ("Origin", "http://evil.example")],
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 403);
    // A form larger than the portal reads is refused before it is parsed.
    let big = format!("csrf={csrf}&pad={}", "x".repeat(9000));
    assert_eq!(post(&gw, "/docs/keys/create", &alice, &big).status, 413);
    // No session at all.
    assert_eq!(
        post(
            &gw,
            "/docs/keys/create",
            "ringway_portal=00",
            &format!("csrf={csrf}")
        )
        .status,
        401
    );
    assert_eq!(keys_page(&gw, &alice).0.matches("<tr id=\"key-").count(), 1);

    // Create: the secret is shown once and works at the gateway.
    // An opaque (`null`) origin is refused too; a browser's same-origin Origin is accepted.
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/create",
        &[FORM, ("Cookie", &alice), ("Origin", "null")],
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 403);
    let r = request(
        gw.addr,
        "POST",
        "/docs/keys/create",
        &[FORM, ("Cookie", &alice), ("Origin", "http://test")],
        format!("csrf={csrf}&expires_days=30").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let at = html.find("value=\"rwk_").expect("new secret") + "value=\"".len();
    let new_key = html[at..at + 56].to_string();
    until_status(&gw, &new_key, 200);
    let (html, _) = keys_page(&gw, &alice);
    assert!(html.contains(&key_id(&new_key)));
    assert!(!html.contains(&new_key), "shown only once");

    // Alice cannot revoke or rotate bob's key, and cannot tell it from a key that does not
    // exist (same status, same message): ids are not an oracle for who holds what. Bob's key
    // keeps working.
    let missing_id = "0badf00d";
    assert_ne!(bob_id, missing_id);
    for action in ["revoke", "rotate"] {
        let theirs = post(
            &gw,
            &format!("/docs/keys/{action}"),
            &alice,
            &format!("csrf={csrf}&id={bob_id}"),
        );
        let nobodys = post(
            &gw,
            &format!("/docs/keys/{action}"),
            &alice,
            &format!("csrf={csrf}&id={missing_id}"),
        );
        assert_eq!(theirs.status, 404, "{action}: {}", theirs.text());
        assert_eq!(nobodys.status, 404, "{action}: {}", nobodys.text());
        assert_eq!(
            theirs.text().replace(&bob_id, "ID"),
            nobodys.text().replace(missing_id, "ID"),
            "{action}: another consumer's key must read like a missing one"
        );
    }
    // Bob's own session's token does not work with alice's session either.
    let bob = sign_in(&gw, &store.bob);
    let (_, bob_csrf) = keys_page(&gw, &bob);
    assert_ne!(bob_csrf, csrf);
    assert_eq!(
        post(
            &gw,
            "/docs/keys/revoke",
            &alice,
            &format!("csrf={bob_csrf}&id={alice_id}")
        )
        .status,
        403
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(pet_status(&gw, &store.bob), 200);
    assert_eq!(pet_status(&gw, &store.alice), 200);

    // Rotate alice's new key: a new secret; the old one keeps working for the grace period.
    let r = post(
        &gw,
        "/docs/keys/rotate",
        &alice,
        &format!("csrf={csrf}&id={}", key_id(&new_key)),
    );
    assert_eq!(r.status, 200);
    let html = r.text();
    let at = html.find("value=\"rwk_").expect("rotated secret") + "value=\"".len();
    let rotated = html[at..at + 56].to_string();
    assert_ne!(rotated, new_key);
    until_status(&gw, &rotated, 200);
    assert_eq!(pet_status(&gw, &new_key), 200);

    // Revoke: the gateway refuses the key within seconds.
    let r = post(
        &gw,
        "/docs/keys/revoke",
        &alice,
        &format!("csrf={csrf}&id={}", key_id(&rotated)),
    );
    assert_eq!(r.status, 200);
    until_status(&gw, &rotated, 401);

    // Revoking the key a session signed in with ends that session.
    let bob_id = key_id(&store.bob);
    let r = post(
        &gw,
        "/docs/keys/revoke",
        &bob,
        &format!("csrf={bob_csrf}&id={bob_id}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(gw.addr, "GET", "/docs/keys", &[("Cookie", &bob)], b"");
    assert!(r.text().contains("id=\"credential\""), "bob is signed out");
    assert_eq!(
        post(&gw, "/docs/keys/create", &bob, &format!("csrf={bob_csrf}")).status,
        401
    );
    until_status(&gw, &store.bob, 401);

    // Sign out ends the session server-side.
    assert_eq!(
        post(&gw, "/docs/keys/sign-out", &alice, &format!("csrf={csrf}")).status,
        303
    );
    assert!(get(gw.addr, "/docs/keys")
        .text()
        .contains("id=\"credential\""));
    let r = request(gw.addr, "GET", "/docs/keys", &[("Cookie", &alice)], b"");
    assert!(r.text().contains("id=\"credential\""), "signed out");

    // Every change left an audit line naming the consumer, how they signed in and the key
    // ids; no secret reaches the log.
    let alice_via = format!("(signed in with key {alice_id})");
    let wait = std::time::Duration::from_secs(5);
    gw.wait_log(
        &format!("portal: consumer alice signed in with key {alice_id}"),
        wait,
    );
    gw.wait_log(
        &format!(
            "portal: consumer alice created key {} {alice_via}",
            key_id(&new_key)
        ),
        wait,
    );
    gw.wait_log(
        &format!(
            "portal: consumer alice rotated key {} (works until unix ",
            key_id(&new_key)
        ),
        wait,
    );
    gw.wait_log(
        &format!(
            "portal: consumer alice revoked key {} {alice_via}",
            key_id(&rotated)
        ),
        wait,
    );
    gw.wait_log(
        &format!("portal: consumer bob revoked key {bob_id} (signed in with key {bob_id})"),
        wait,
    );
    let logs = gw.logs();
    for secret in [&store.alice, &store.bob, &new_key, &rotated] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the log");
    }
    assert!(!logs.contains(&csrf), "the CSRF token reached the log");
}

/// A portal user could mint keys without end (1 500 in a minute in the audit), each one a
/// record every instance re-reads and recompiles on every change; and rotating a key issued a
/// successor that never expired, even for a key already expired. Now a consumer holds at
/// most 20 active portal keys and is issued at most 20 a day; rotation refuses an expired
/// key and the new key keeps the old one's expiry.
#[test]
fn portal_keys_are_bounded_and_rotation_keeps_the_expiry() {
    let (gw, _up, store) = keys_portal("t-portal-bounds");
    let cli = store.dir.path().join("cli.toml");
    let short = keys_cli(&cli, &["create", "--consumer", "alice", "--expires", "1s"]);
    let alice = sign_in(&gw, &store.alice);
    let (_, csrf) = keys_page(&gw, &alice);
    // The row of key `id` on the dashboard.
    let row = |id: &str| {
        let html = keys_page(&gw, &alice).0;
        let at = html.find(&format!("<tr id=\"key-{id}\"")).expect("key row");
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    let created = |r: &Response| {
        let html = r.text();
        let at = html.find("value=\"rwk_").expect("new secret") + "value=\"".len();
        html[at..at + 56].to_string()
    };
    let rotate = |key: &str| {
        post(
            &gw,
            "/docs/keys/rotate",
            &alice,
            &format!("csrf={csrf}&id={}", key_id(key)),
        )
    };

    // Rotating a key with an expiry: the successor keeps it.
    let r = post(
        &gw,
        "/docs/keys/create",
        &alice,
        &format!("csrf={csrf}&expires_days=30"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let thirty = created(&r);
    let r = rotate(&thirty);
    assert_eq!(r.status, 200, "{}", r.text());
    let successor = created(&r);
    let successor_row = row(&key_id(&successor));
    assert!(!successor_row.contains("never"), "{successor_row}");
    // The outgoing key says what replaced it and offers no second rotation: rotating it again
    // (a double submit, the wrong row) would make a replacement that dies with the grace.
    let old_row = row(&key_id(&thirty));
    assert!(
        old_row.contains("rotated (works until it expires)"),
        "{old_row}"
    );
    assert!(!old_row.contains("/rotate"), "{old_row}");
    assert!(old_row.contains("/revoke"), "{old_row}");
    let r = rotate(&thirty);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("already rotated"), "{}", r.text());
    assert!(!r.text().contains("value=\"rwk_"), "no new key was made");
    // An expired key is not renewed by rotating it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = rotate(&short);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());

    // Two one-day keys made back to back (usually in the same second) are two fresh keys,
    // neither the rotation of the other.
    let twins: Vec<String> = (0..2)
        .map(|_| {
            let r = post(
                &gw,
                "/docs/keys/create",
                &alice,
                &format!("csrf={csrf}&expires_days=1"),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            created(&r)
        })
        .collect();
    for twin in &twins {
        let r = row(&key_id(twin));
        assert!(r.contains("class=\"status\">active<"), "{r}");
        assert!(r.contains("/rotate"), "{r}");
    }

    // Issued today so far: `short` (by the operator, counted too), `thirty`, `successor`, the
    // twins and alice's own key from the fixture. The daily bound stops the 21st.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(post(&gw, "/docs/keys/create", &alice, &format!("csrf={csrf}")).status);
    }
    let made = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(made, 14, "{statuses:?}");
    assert!(statuses[14..].iter().all(|&s| s == 429), "{statuses:?}");
    // Every key made before the bound still works.
    assert_eq!(pet_status(&gw, &successor), 200);
}

#[test]
fn self_service_needs_the_redis_key_store_and_a_jwt_policy() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), false);
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let keys_file = dir.path().join("keys.toml");
    std::fs::write(&keys_file, "").unwrap();
    let file_store = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"sha256\"\n",
        keys_file.display()
    );
    // The file store takes no live writes: a config error naming the field.
    let (code, _, err) = check_config(&config(
        &spec,
        up,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        &file_store,
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("portal.keys") && err.contains("store = \"redis\""),
        "{err}"
    );
    // No key store at all: the same error.
    let (code, _, err) = check_config(&config(
        &spec,
        up,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        "",
    ));
    assert_ne!(code, 0);
    assert!(err.contains("store = \"redis\""), "{err}");
    // sign_in = "jwt" names a policy that must be a jwt policy.
    let redis =
        "[redis]\nnodes = [\"127.0.0.1:1\"]\n[api_keys]\nstore = \"redis\"\nhash = \"sha256\"\n\
                 [policies.ip]\nip = { allow = [\"127.0.0.1/32\"] }\n";
    let (code, _, err) = check_config(&config(
        &spec,
        up,
        "{ path = \"/docs\", keys = { sign_in = \"jwt\", policy = \"ip\" } }",
        redis,
    ));
    assert_ne!(code, 0);
    assert!(err.contains("not a jwt policy"), "{err}");
    let (code, _, err) = check_config(&config(
        &spec,
        up,
        "{ path = \"/docs\", keys = { sign_in = \"jwt\" } }",
        redis,
    ));
    assert_ne!(code, 0);
    assert!(err.contains("portal.keys.policy"), "{err}");
}

/// An HS256 token for `sub`, signed with `secret`.
fn hs256(secret: &str, sub: &str) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#).as_bytes());
    let msg = format!("{head}.{body}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = b64(ring::hmac::sign(&key, msg.as_bytes()).as_ref());
    format!("{msg}.{sig}")
}

#[test]
fn jwt_sign_in_makes_keys_for_the_tokens_consumer() {
    const HS: &str = "portal-jwt-secret-0123456789abcdef";
    let store = KeyStoreFixture::new("t-portal-jwt");
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let extra = format!(
        "{}\n[policies.idp]\njwt = {{ secret = \"{HS}\", algorithms = [\"HS256\"] }}\n",
        store.tables()
    );
    let gw = store.gateway(&config(
        &spec,
        up.addr,
        "{ path = \"/docs\", keys = { sign_in = \"jwt\", policy = \"idp\" } }",
        &extra,
    ));
    // A token signed with another secret, or an API key, does not sign in.
    for bad in [
        hs256("another-secret-0123456789abcdef", "carol"),
        store.alice.clone(),
    ] {
        let body = format!("credential={bad}");
        let r = request(
            gw.addr,
            "POST",
            "/docs/keys/sign-in",
            &[FORM],
            body.as_bytes(),
        );
        assert_eq!(r.status, 401, "{bad}");
    }
    let token = hs256(HS, "carol");
    let page = get(gw.addr, "/docs/keys").text();
    assert!(page.contains("access token (JWT)"), "{page}");
    let carol = sign_in(&gw, &token);
    let (html, csrf) = keys_page(&gw, &carol);
    assert!(html.contains(">carol</strong>"));
    assert!(html.contains("You have no keys."));
    let r = post(&gw, "/docs/keys/create", &carol, &format!("csrf={csrf}"));
    assert_eq!(r.status, 200);
    let html = r.text();
    let at = html.find("value=\"rwk_").expect("new secret") + "value=\"".len();
    let key = html[at..at + 56].to_string();
    until_status(&gw, &key, 200);
    // The key belongs to carol: the upstream is told so.
    assert_eq!(up.last().header("x-consumer"), Some("carol"));
}

#[test]
fn usage_is_shown_when_metered() {
    let store = KeyStoreFixture::new("t-portal-usage");
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let extra = format!("{}\n[usage]\n", store.tables());
    let gw = store.gateway(&config(
        &spec,
        up.addr,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        &extra,
    ));
    until_status(&gw, &store.alice, 200);
    for _ in 0..4 {
        assert_eq!(pet_status(&gw, &store.alice), 200);
        assert_eq!(pet_status(&gw, &store.bob), 200);
    }
    let alice = sign_in(&gw, &store.alice);
    // Counts reach Redis within a few seconds (workers hand off, the flusher writes); a
    // partial flush can show fewer first, so wait for all of them.
    let count = |html: &str| -> Option<u64> {
        let row = html
            .split("<tr>")
            .find(|r| r.contains("<td>showPetById</td><td>2xx</td>"))?;
        row.rsplit("<td>").next()?.split('<').next()?.parse().ok()
    };
    let start = std::time::Instant::now();
    let html = loop {
        let (html, _) = keys_page(&gw, &alice);
        if count(&html).is_some_and(|n| n >= 5) {
            break html;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "usage incomplete after 10 s:\n{html}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(html.contains("id=\"usage-table\""));
    assert!(!html.contains("not metered"));
    // Exactly alice's own successful requests (1 + 4); bob's 4 are not on her page.
    assert_eq!(count(&html), Some(5), "{html}");
}

#[test]
fn over_tls_the_session_cookie_is_secure() {
    use common::tls::{client_config, Ca, ClientOpts, Key, TlsConn};
    let ca = Ca::new("portal test CA");
    let store = KeyStoreFixture::new("t-portal-tls");
    let cert = ca.server(
        store.dir.path(),
        "localhost",
        &["localhost"],
        Key::EcdsaP256,
    );
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\n",
        cert.cert_path.display(),
        cert.key_path.display()
    );
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let body = config(
        &spec,
        up.addr,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        &store.tables(),
    );
    let gw = store.gateway(&format!("{tls}{body}"));
    let client = client_config(&ClientOpts {
        ca_pem: &ca.pem,
        alpn: &[b"http/1.1"],
        ..ClientOpts::default()
    });
    let form = format!("credential={}", store.alice);
    let start = std::time::Instant::now();
    let r = loop {
        // Until the gateway has synced the keys from Redis.
        let mut c = TlsConn::open(gw.addr, "localhost", &client).expect("handshake");
        let r = c
            .request("POST", "/docs/keys/sign-in", &[FORM], form.as_bytes())
            .unwrap();
        if r.status != 401 || start.elapsed() > std::time::Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("; Secure"), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    // A form posted from the plain-HTTP origin of the same host is another origin; the same
    // form from the https origin is accepted (so the 403 is the origin check's).
    let cookie = set.split(';').next().unwrap();
    let mut c = TlsConn::open(gw.addr, "localhost", &client).expect("handshake");
    let page = c
        .request("GET", "/docs/keys", &[("Cookie", cookie)], b"")
        .unwrap()
        .text();
    let at = page.find("name=\"csrf\" value=\"").expect("csrf") + "name=\"csrf\" value=\"".len();
    let csrf = format!("csrf={}", &page[at..at + 64]);
    for (origin, want) in [("http://localhost", 403), ("https://localhost", 200)] {
        let r = c
            .request(
                "POST",
                "/docs/keys/create",
                &[FORM, ("Cookie", cookie), ("Origin", origin)],
                csrf.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, want, "{origin}: {}", r.text());
    }
}

/// Behind a TLS-terminating proxy the browser's origin is `https://host` while the gateway's
/// listener is plain HTTP: the trusted proxy's `X-Forwarded-Proto` decides the scheme the
/// same-origin check expects and the cookie's `Secure` flag. A peer that is not trusted cannot
/// claim https that way.
#[test]
fn behind_a_trusted_tls_proxy_the_forwarded_scheme_is_the_browsers() {
    let store = KeyStoreFixture::new("t-portal-proxy");
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let portal = "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }";
    let body = config(&spec, up.addr, portal, &store.tables());
    let behind = store.gateway(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{body}"
    ));
    let direct = store.gateway(&body);
    until_status(&behind, &store.alice, 200);
    until_status(&direct, &store.alice, 200);
    let form = format!("credential={}", store.alice);
    let proxied = |gw: &Gateway, origin: &str| {
        request(
            gw.addr,
            "POST",
            "/docs/keys/sign-in",
            &[
                FORM,
                ("Host", "portal.example.com"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-For", "203.0.113.9"),
                ("Origin", origin),
            ],
            form.as_bytes(),
        )
    };
    let r = proxied(&behind, "https://portal.example.com");
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").expect("session cookie");
    assert!(set.contains("; Secure"), "{set}");
    // The proxy said https: an http origin is another origin now.
    assert_eq!(proxied(&behind, "http://portal.example.com").status, 403);
    // Without a trusted proxy the claim is the client's own and changes nothing.
    assert_eq!(proxied(&direct, "https://portal.example.com").status, 403);
    let r = proxied(&direct, "http://portal.example.com");
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
}

/// Each sign-in is a session record in Redis for up to an hour: a key holder signing in in a
/// loop is stopped at the per-consumer bound (429 with Retry-After) instead of filling the
/// Redis every instance shares, and other consumers still sign in.
#[test]
fn abuse_sign_ins_in_a_loop_are_bounded_per_consumer() {
    let (gw, _up, store) = keys_portal("t-portal-signins");
    let sessions = || {
        store
            .redis
            .cli(&["--scan", "--pattern", "t-portal-signins:portal:*:session"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let form = format!("credential={}", store.alice);
    let mut refused = None;
    for i in 0..40 {
        let r = request(
            gw.addr,
            "POST",
            "/docs/keys/sign-in",
            &[FORM],
            form.as_bytes(),
        );
        if r.status == 429 {
            refused = Some((i, r));
            break;
        }
        assert_eq!(r.status, 303, "sign-in {i}: {}", r.text());
    }
    let (at, r) = refused.expect("sign-ins in a loop are refused at some point");
    assert_eq!(at, 30, "the bound is 30 sign-ins an hour");
    assert!(
        r.header("set-cookie").is_none(),
        "no session for a refused sign-in"
    );
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&wait), "{wait}");
    assert!(r.text().contains("Too many sign-ins"), "{}", r.text());
    assert_eq!(sessions(), 30, "exactly the admitted sessions exist");
    // More attempts stay refused and make nothing.
    for _ in 0..5 {
        let r = request(
            gw.addr,
            "POST",
            "/docs/keys/sign-in",
            &[FORM],
            form.as_bytes(),
        );
        assert_eq!(r.status, 429);
    }
    assert_eq!(sessions(), 30);
    // Another consumer is not affected.
    let bob = sign_in(&gw, &store.bob);
    assert!(!bob.is_empty());
    assert_eq!(sessions(), 31);
}

/// A route that would win the lookup for one of the portal's own pages (an operation of a
/// hostile or careless document, a `[[routes]]` entry, a host-specific route) would receive
/// the sign-in credential and the session cookie: the config is refused, naming the route and
/// the page. A route that only shares the path space (`prefix = "/"`) is fine.
#[test]
fn abuse_routes_that_would_take_the_portals_pages_are_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("overlap.json");
    let original = r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
          "/docs/keys/sign-in":{"post":{"operationId":"steal","responses":{"200":{"description":"ok"}}}},
          "/pets":{"get":{"operationId":"pets","responses":{"200":{"description":"ok"}}}}}}"#;
    std::fs::write(&spec, original).unwrap();
    let upstream = "[upstreams.app]\ntargets = [{ address = \"127.0.0.1:9\" }]\n\n";
    let listener = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n\n";
    let openapi = format!(
        "[[openapi]]\nspec = \"{}\"\nname = \"a\"\nupstream = \"app\"\nprefix = \"\"\n\
         portal = {{ path = \"/docs\", keys = {{ sign_in = \"api_key\" }} }}\n\n\
         [api_keys]\nstore = \"redis\"\nhash = \"sha256\"\nsnapshot = \"{}\"\n\n[redis]\nnodes = [\"127.0.0.1:6379\"]\n\n",
        spec.display(),
        dir.path().join("snap.toml").display()
    );
    let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{openapi}"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("takes POST /docs/keys/sign-in away from the portal of openapi[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("openapi[0].spec"), "{stderr}");

    // The same document under a prefix is fine, and so is a catch-all route beside the portal.
    let fine = openapi.replace("prefix = \"\"", "prefix = \"/v1\"");
    let catch_all = "[[routes]]\nname = \"rest\"\nprefix = \"/\"\nproxy = { upstream = \"app\" }\n";
    let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{fine}{catch_all}"));
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Anything under /docs/keys, where the session cookie goes, is the portal's alone, even a
    // path it does not serve; elsewhere under /docs a route may live (the cookie is not sent).
    for (extra, needle) in [
        (
            "/docs/keys/extra",
            "could take requests under /docs/keys, where browsers send",
        ),
        ("/docs/{page}/x", "could take requests under /docs/keys"),
    ] {
        std::fs::write(
            &spec,
            format!(
                r#"{{"openapi":"3.0.3","info":{{"title":"t","version":"1"}},"paths":{{
                  "{extra}":{{"get":{{"operationId":"grab","responses":{{"200":{{"description":"ok"}}}}}}}},
                  "/docs/help":{{"get":{{"operationId":"help","responses":{{"200":{{"description":"ok"}}}}}}}}}}}}"#
            ),
        )
        .unwrap();
        let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{openapi}"));
        assert_eq!(code, 1, "{extra}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{extra}: {stderr}");
    }
    std::fs::write(
        &spec,
        r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
          "/docs/help":{"get":{"operationId":"help","responses":{"200":{"description":"ok"}}}}}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{openapi}"));
    assert_eq!(
        code, 0,
        "/docs/help is outside the session's path: {stdout}{stderr}"
    );
    // A page is checked as a request for it is routed: the link to an operation named "."
    // arrives as /docs/op/ once the dot segment is removed, where this route waits.
    std::fs::write(
        &spec,
        r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
          "/pets":{"get":{"operationId":".","responses":{"200":{"description":"ok"}}}},
          "/docs/op/":{"get":{"operationId":"grab","responses":{"200":{"description":"ok"}}}}}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{openapi}"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("takes GET /docs/op/."), "{stderr}");
    std::fs::write(&spec, original).unwrap();

    // A TOML route deeper than the portal's path, or one on a named host, takes pages too;
    // on a named host even a shallow route with a condition does (that tier is looked up
    // before the portal's).
    for (route, needle) in [
        (
            "[[routes]]\nname = \"cond\"\nhosts = [\"portal.example.com\"]\nprefix = \"/\"\nquery = { steal = true }\nproxy = { upstream = \"app\" }\n",
            "route \"cond\" (routes[0]) could take requests under /docs/keys",
        ),
        (
            "[[routes]]\nname = \"put\"\nhosts = [\"*.example.com\"]\npath = \"/{*rest}\"\nmethods = [\"PUT\"]\nproxy = { upstream = \"app\" }\n",
            "route \"put\" (routes[0]) could take requests under /docs/keys",
        ),
        (
            "[[routes]]\nname = \"deep\"\nprefix = \"/docs/assets\"\nproxy = { upstream = \"app\" }\n",
            "route \"deep\" (routes[0]) takes GET /docs/assets/",
        ),
        (
            "[[routes]]\nname = \"named\"\nhosts = [\"portal.example.com\"]\nprefix = \"/\"\nproxy = { upstream = \"app\" }\n",
            "on host \"portal.example.com\"",
        ),
        (
            "[[routes]]\nname = \"op\"\npath = \"/docs/op/{id}\"\nproxy = { upstream = \"app\" }\n",
            "takes GET /docs/op/steal",
        ),
    ] {
        let (code, stdout, stderr) = check_config(&format!("{listener}{upstream}{fine}{route}"));
        assert_eq!(code, 1, "{route}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{route}: {stderr}");
        assert!(stderr.contains("check.toml:"), "{stderr}");
    }
}

/// The portal's session cookie never reaches an upstream, whatever route a request that
/// carried it took: a browser sends it to every path under `/docs/keys`, and a spelling such
/// as `/docs/keys/..;/help` normalizes to a proxied route. Other cookies pass unchanged.
#[test]
fn abuse_the_session_cookie_never_reaches_an_upstream() {
    let (gw, up, store) = keys_portal("t-portal-strip");
    let session = sign_in(&gw, &store.alice);
    for (path, cookie) in [
        ("/v1/pets", format!("a=1; {session}; b=2")),
        ("/docs/keys/..;/..;/v1/pets", format!("{session}; a=1; b=2")),
    ] {
        let before = up.count();
        let r = request(
            gw.addr,
            "GET",
            path,
            &[
                ("Cookie", cookie.as_str()),
                ("X-Api-Key", store.alice.as_str()),
            ],
            b"",
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(up.count(), before + 1, "{path} reached the upstream");
        let got = up.last();
        assert_eq!(got.header("cookie"), Some("a=1; b=2"), "{path}");
    }
    // A request whose only cookie is the session sends none.
    let r = request(
        gw.addr,
        "GET",
        "/v1/pets",
        &[
            ("Cookie", session.as_str()),
            ("X-Api-Key", store.alice.as_str()),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        up.last().header("cookie").is_none(),
        "{:?}",
        up.last().headers
    );
}
