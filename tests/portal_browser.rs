//! The developer portal in a real browser: Debian's headless chromium driven through
//! chromedriver (W3C WebDriver, `common::webdriver`). A user opens the portal, finds an
//! operation, fills the "Try it" form and sees the real upstream's answer on the page; signs
//! in with an API key, creates a key, sees it listed, revokes it, and the gateway then refuses
//! it with 401. Screenshots are saved under target/test-artifacts/.
//!
//! Without chromium/chromedriver the tests skip with a message, except when `CI` is set, where
//! they fail (scripts/test.sh installs both).
mod common;
use common::portal::*;
use common::webdriver::{tools, Driver};
use common::*;

use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn browser() -> Option<(String, String)> {
    let found = tools();
    if found.is_none() {
        // Fails when CI is set (scripts/test.sh installs both packages).
        skip_or_fail(
            "chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)",
        );
    }
    found
}

/// Saves a PNG under target/test-artifacts/ and checks it is one.
fn save_png(name: &str, png: &[u8]) -> PathBuf {
    assert!(png.len() > 1000, "screenshot of {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, png).unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() > 0);
    eprintln!("screenshot: {}", p.display());
    p
}

#[test]
fn try_it_sends_a_real_request_through_the_gateway() {
    let Some((driver, chromium)) = browser() else {
        return;
    };
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), false);
    let gw = Gateway::start(&config(&spec, up.addr, "{ path = \"/docs\" }", ""));
    let d = Driver::start(&driver);
    let s = d.session(&chromium);

    s.goto(&gw.url("/docs/"));
    assert!(s.title().contains("Portal Pets"), "{}", s.title());
    // The hostile description is shown as text (and no script ran: the page is intact).
    let intro = s.find("main p.prose", WAIT);
    assert!(s.text(&intro).contains("<script>alert('pwned')</script>"));
    // Find the operation from the index and follow its link.
    let link = s.find("a[href='/docs/op/showPetById']", WAIT);
    s.click(&link);
    let input = s.find("input[data-name='petId']", WAIT);
    assert_eq!(
        s.property(&input, "value"),
        "42",
        "pre-filled from the example"
    );
    s.clear(&input);
    s.send_keys(&input, "7 & co");
    let send = s.find("#try-send", WAIT);
    s.click(&send);
    let status = s.wait_text("#try-status", WAIT, |t| t.starts_with("200"));
    assert!(status.starts_with("200"), "{status}");
    let headers = s.wait_text("#try-headers", WAIT, |t| !t.is_empty());
    assert!(headers.contains("x-upstream: echo"), "{headers}");
    let body = s.wait_text("#try-body-out", WAIT, |t| !t.is_empty());
    // The real upstream saw the gateway path with the parameter percent-encoded.
    assert!(body.contains("/v1/pets/7%20%26%20co"), "{body}");
    assert_eq!(up.last().target, "/v1/pets/7%20%26%20co");
    save_png("portal-try-it.png", &s.screenshot());

    // A POST with the pre-filled JSON body reaches the upstream as sent.
    s.goto(&gw.url("/docs/op/createPet"));
    let body_in = s.find("#try-body", WAIT);
    assert!(s.property(&body_in, "value").contains("\"Rex\""));
    s.click(&s.find("#try-send", WAIT));
    s.wait_text("#try-status", WAIT, |t| t.starts_with("200"));
    let req = up.last();
    assert_eq!(req.method, "POST");
    assert!(String::from_utf8_lossy(&req.body).contains("\"Rex\""));
    assert_eq!(req.header("content-type"), Some("application/json"));
}

#[test]
fn keys_are_created_listed_and_revoked_in_the_browser() {
    let Some((driver, chromium)) = browser() else {
        return;
    };
    let store = KeyStoreFixture::new("t-portal-browser");
    let up = Upstream::echo();
    let spec = write_spec(store.dir.path(), true);
    let gw = store.gateway(&config(
        &spec,
        up.addr,
        "{ path = \"/docs\", keys = { sign_in = \"api_key\" } }",
        &store.tables(),
    ));
    until_status(&gw, &store.alice, 200);
    let d = Driver::start(&driver);
    let s = d.session(&chromium);

    // From the index, the "Your keys" link leads to the sign-in form.
    s.goto(&gw.url("/docs/"));
    s.click(&s.find("nav a[href='/docs/keys']", WAIT));
    let cred = s.find("#credential", WAIT);
    s.send_keys(&cred, &store.alice);
    s.click(&s.find("#sign-in button[type=submit]", WAIT));
    let who = s.wait_text("#consumer", WAIT, |t| !t.is_empty());
    assert_eq!(who, "alice");

    // Create a key: its secret is shown once; it is listed and works at the gateway.
    s.click(&s.find("#create", WAIT));
    let secret = s.find("#new-secret", WAIT);
    let key = s.property(&secret, "value");
    assert!(key.starts_with("rwk_") && key.len() == 56, "{key}");
    let id = key_id(&key);
    let row = s.find(&format!("#key-{id}"), WAIT);
    assert!(s.text(&row).contains("active"), "{}", s.text(&row));
    until_status(&gw, &key, 200);
    save_png("portal-keys-created.png", &s.screenshot());

    // Revoke it: the page says so and the gateway answers 401 within the sync bound.
    s.click(&s.find(&format!("#revoke-{id}"), WAIT));
    s.wait_text(&format!("#key-{id} .status"), WAIT, |t| t == "revoked");
    until_status(&gw, &key, 401);
    // Alice's sign-in key is untouched.
    assert_eq!(pet_status(&gw, &store.alice), 200);
    save_png("portal-keys-revoked.png", &s.screenshot());
}

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

#[test]
fn reads_without_javascript_and_works_from_the_keyboard() {
    let Some((driver, chromium)) = browser() else {
        return;
    };
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), false);
    let gw = Gateway::start(&config(&spec, up.addr, "{ path = \"/docs\" }", ""));
    let d = Driver::start(&driver);

    // JavaScript off: the index and an operation page still read fully.
    {
        let s = d.session_with(&chromium, &["--blink-settings=scriptEnabled=false"]);
        s.goto(&gw.url("/docs/"));
        s.click(&s.find("a[href='/docs/op/listPets']", WAIT));
        let h1 = s.find("main h1", WAIT);
        assert_eq!(s.text(&h1), "List all pets");
        let cell = s.find("table tbody th[scope=row]", WAIT);
        assert_eq!(s.text(&cell), "limit");
        let note = s.find("noscript p", WAIT);
        assert!(s.text(&note).contains("needs JavaScript"));
        // The form that cannot work without a script is not shown.
        let form = s.find("#try-form", WAIT);
        assert!(!s.displayed(&form));
        save_png("portal-no-javascript.png", &s.screenshot());
    }

    // Keyboard only: the first Tab reaches the skip link, which moves focus to the content;
    // then Tab through the form to the button and Enter sends the request.
    let s = d.session(&chromium);
    s.goto(&gw.url("/docs/op/listPets"));
    let form = s.find("#try-form", WAIT);
    assert!(s.displayed(&form), "the script shows the form");
    s.press(TAB);
    let first = s.active();
    assert_eq!(s.text(&first), "Skip to content");
    s.press(ENTER);
    assert!(s.url().ends_with("#main"), "{}", s.url());
    let before = up.count();
    let mut sent = false;
    for _ in 0..40 {
        s.press(TAB);
        let el = s.active();
        if s.attribute(&el, "id").as_deref() == Some("try-send") {
            s.press(ENTER);
            sent = true;
            break;
        }
    }
    assert!(sent, "the Send button is not reachable with Tab");
    s.wait_text("#try-status", WAIT, |t| t.starts_with("200"));
    assert_eq!(up.count(), before + 1);
    assert_eq!(
        up.last().target,
        "/v1/pets?limit=5",
        "the example value was sent"
    );
}
