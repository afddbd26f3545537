//! Self-service API keys in the portal (`portal.keys`, off by default): a consumer signs in
//! with an API key they already hold (checked against the compiled key store) or with a JWT
//! verified by a named `jwt` policy, then sees their keys and usage and creates, rotates and
//! revokes keys.
//!
//! Invariants:
//! - Writes go through the Redis key store (`apikey::redis_store`), the same records, Lua
//!   script and optimistic version check as `ringway keys ...`; every instance applies a
//!   change through its key sync within seconds. So self-service needs `[api_keys] store =
//!   "redis"` (a config error otherwise).
//! - A consumer only ever touches records whose `consumer` is their own: rotate and revoke
//!   re-read the record and answer another consumer's key like a missing one (404).
//! - A new key's secret is shown once, in the response to the POST that made it; it is never
//!   stored (only its hash) and never shown again; existing keys show id, dates and status.
//! - The session is an opaque random token in an `HttpOnly; SameSite=Strict` cookie (`Secure`
//!   over TLS); Redis holds only its hash, with the consumer and a per-session CSRF token,
//!   under a TTL. Every state-changing POST carries that CSRF token as a form field
//!   (compared in constant time); `exchange::portal` also refuses a cross-site `Origin`.
//! - Every Redis record the portal makes is bounded per consumer: keys (`MAX_ACTIVE_KEYS`,
//!   `MAX_ISSUED_PER_DAY`) and sessions (`MAX_SIGN_INS_PER_HOUR`, each living at most
//!   `SESSION_SECS`).

use std::fmt::Write;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::html::{page, Esc};
use super::{Portal, SignIn};
use crate::apikey::file::{valid_consumer, KeyEntry};
use crate::apikey::redis_store::{self, StoreKeys, Written};
use crate::apikey::{records, KeyId, KeyStore, SyncSettings};
use crate::policy::pipeline::{Policies, Policy};
use crate::redis::{Client, RedisShared, Script, Value};

static SIGN_INS: Script = Script::new(include_str!("sign_ins.lua"));

/// Name of the session cookie.
pub const COOKIE: &str = "ringway_portal";
/// How long a sign-in lasts, in seconds.
pub const SESSION_SECS: u64 = 3600;
/// Largest form body read.
pub const MAX_FORM: u64 = 8 * 1024;
/// How long a rotated key keeps working, in seconds.
pub const ROTATE_GRACE: u64 = 24 * 3600;
/// Most keys one consumer may hold at once through the portal (active: not revoked, not
/// expired), and most it may be issued (created or rotated) in 24 hours. Every issued key is
/// a record every instance reads and compiles on each change, so an unbounded portal user
/// could slow every instance's key sync (and spread requests over self-made keys to escape a
/// per-key rate limit). Operators issue more with `ringway keys`.
pub const MAX_ACTIVE_KEYS: usize = 20;
pub const MAX_ISSUED_PER_DAY: usize = 20;
/// Most sign-ins one consumer may make in `SESSION_SECS` (429 past it). Each sign-in is a
/// session record in Redis that lives up to `SESSION_SECS`, so this bounds one consumer's
/// live sessions (at most twice this across a window boundary) and so the Redis memory one
/// key holder can take by signing in in a loop.
pub const MAX_SIGN_INS_PER_HOUR: u64 = 30;
/// Days of usage shown.
const USAGE_DAYS: i64 = 7;
/// Attempts of a read-check-write when another writer changed the store meanwhile.
const ATTEMPTS: usize = 8;

/// What the handler needs from the worker and the config generation.
pub struct Ctx<'a> {
    pub portal: &'a Portal,
    pub sign_in: SignIn,
    /// The worker's Redis client and the generation's `[redis]` (self-service needs both).
    pub redis: Option<(Client, &'a Arc<RedisShared>)>,
    pub store: Option<&'a KeyStore>,
    pub sync: Option<&'a SyncSettings>,
    pub policies: &'a Policies,
    /// `[usage]` is configured.
    pub metered: bool,
    /// The worker's JWT verdict cache.
    pub tokens: &'a std::cell::RefCell<crate::jwt::TokenCache>,
    pub now: u64,
    /// The client came over TLS (the cookie gets `Secure`).
    pub secure: bool,
}

/// One request to `/keys...`, already read.
pub struct Req<'a> {
    /// The path after `/keys` (`""`, `/sign-in`, ...).
    pub sub: &'a str,
    /// The `Cookie` header, if any.
    pub cookie: Option<&'a [u8]>,
    /// The form body (POST).
    pub body: &'a [u8],
}

/// The answer: status, extra header lines, HTML body.
pub struct Reply {
    pub status: u16,
    pub fields: Vec<u8>,
    pub body: String,
}

impl Reply {
    fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            fields: Vec::new(),
            body,
        }
    }
}

/// A signed-in consumer.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    pub consumer: String,
    pub csrf: String,
    /// The id of the API key it signed in with (`None`: a JWT sign-in): revoking or
    /// expiring that key ends the session.
    pub via_key: Option<KeyId>,
    /// The Redis key the session lives under.
    key: String,
}

/// What a sign-in proved.
struct Proof {
    consumer: String,
    via_key: Option<KeyId>,
    /// When the credential stops being valid (a token's `exp`), if it says.
    until: Option<u64>,
}

/// The methods each `/keys` path answers (for 405 and `Allow`).
pub fn allowed(sub: &str) -> Option<&'static str> {
    match sub {
        "" | "/" => Some("GET, HEAD"),
        "/sign-in" | "/create" | "/rotate" | "/revoke" | "/sign-out" => Some("POST"),
        _ => None,
    }
}

/// Answers one request to `/keys...` (the method is one `allowed` lists). Every answer is
/// `no-store`: the pages are per consumer and one may hold a new key's secret.
pub async fn handle(cx: &Ctx<'_>, req: &Req<'_>) -> Reply {
    let mut r = answer(cx, req).await;
    r.fields.extend_from_slice(b"cache-control: no-store\r\n");
    r
}

async fn answer(cx: &Ctx<'_>, req: &Req<'_>) -> Reply {
    let Some((client, shared)) = &cx.redis else {
        return error_page(
            cx,
            503,
            "Self-service keys need Redis, which is not configured.",
        );
    };
    let session = match session_from(client, shared, req.cookie).await {
        Ok(s) => s,
        Err(e) => return error_page(cx, 503, &e),
    };
    // A session lives no longer than the key it signed in with.
    let session = match session {
        Some(s) if s.via_key.is_some() => match key_live(cx, client, shared, &s).await {
            Ok(true) => Some(s),
            Ok(false) => {
                let _ = client
                    .cmd(Some(s.key.as_bytes()), &[b"DEL", s.key.as_bytes()])
                    .await;
                None
            }
            Err(e) => return error_page(cx, 503, &e),
        },
        other => other,
    };
    let form = parse_form(req.body);
    match (req.sub, session) {
        ("" | "/", None) => sign_in_page(cx, 200, None),
        ("" | "/", Some(s)) => dashboard(cx, client, shared, &s, None).await,
        ("/sign-in", _) => sign_in(cx, client, shared, &form).await,
        (_, None) => sign_in_page(
            cx,
            401,
            Some("Sign in first (your session may have ended)."),
        ),
        (sub, Some(s)) => {
            let presented = field(&form, "csrf").unwrap_or("");
            if !bool::from(presented.as_bytes().ct_eq(s.csrf.as_bytes())) {
                return error_page(
                    cx,
                    403,
                    "This form did not come from your portal session (the CSRF token is missing or wrong). Reload the page and try again.",
                );
            }
            match sub {
                "/sign-out" => sign_out(cx, client, &s).await,
                "/create" => create(cx, client, shared, &s, &form).await,
                "/rotate" | "/revoke" => change(cx, client, shared, &s, &form, sub).await,
                _ => error_page(cx, 404, "There is no such page."),
            }
        }
    }
}

fn base_keys(cx: &Ctx<'_>) -> String {
    format!("{}/keys", cx.portal.base)
}

fn error_page(cx: &Ctx<'_>, status: u16, msg: &str) -> Reply {
    let main = format!(
        "<h1>Your keys</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"{}\">Back to your keys</a></p>",
        Esc(msg),
        Esc(&base_keys(cx))
    );
    Reply::html(status, page(&cx.portal.frame(), "Your keys", &main))
}

fn sign_in_page(cx: &Ctx<'_>, status: u16, msg: Option<&str>) -> Reply {
    let mut m = String::from("<h1>Sign in to manage your keys</h1>\n");
    if let Some(msg) = msg {
        let _ = writeln!(m, "<p class=\"error\" role=\"alert\">{}</p>", Esc(msg));
    }
    let (label, hint) = match cx.sign_in {
        SignIn::ApiKey => (
            "Your API key",
            "Sign in with an API key you already hold; it is checked and not stored.",
        ),
        SignIn::Jwt(_) => (
            "Your access token (JWT)",
            "Sign in with a bearer token from your identity provider; it is checked and not stored.",
        ),
    };
    let _ = write!(
        m,
        "<p>{hint}</p>\n<form method=\"post\" action=\"{action}/sign-in\" id=\"sign-in\">\n\
         <p><label for=\"credential\">{label}</label>\n\
         <input id=\"credential\" name=\"credential\" type=\"password\" autocomplete=\"off\" required></p>\n\
         <p><button type=\"submit\">Sign in</button></p>\n</form>\n",
        action = Esc(&base_keys(cx)),
    );
    Reply::html(status, page(&cx.portal.frame(), "Sign in", &m))
}

/// The consumer a sign-in credential proves, or why not.
fn verify(cx: &Ctx<'_>, credential: &str) -> Result<Proof, &'static str> {
    let credential = credential.trim();
    if credential.is_empty() {
        return Err("Enter a credential.");
    }
    let proof = match cx.sign_in {
        SignIn::ApiKey => {
            let store = cx.store.ok_or("No API key is known to this gateway.")?;
            let m = store
                .authenticate(credential.as_bytes(), cx.now)
                .map_err(|_| "That API key is not valid.")?;
            Proof {
                consumer: m.consumer.to_string(),
                via_key: KeyId::parse(m.id.as_bytes()),
                until: None,
            }
        }
        SignIn::Jwt(ix) => {
            let jwt = match cx.policies.list.get(ix as usize).map(|p| &p.policy) {
                Some(Policy::Jwt(j)) => j,
                _ => return Err("The sign-in policy is not a jwt policy."),
            };
            let token = credential
                .strip_prefix("Bearer ")
                .unwrap_or(credential)
                .trim();
            let mut cache = cx.tokens.borrow_mut();
            let v = jwt
                .jwt
                .verify(token.as_bytes(), cx.now, &mut cache)
                .map_err(|_| "That token is not valid.")?;
            Proof {
                consumer: v.consumer.clone().ok_or("That token names no consumer.")?,
                via_key: None,
                until: v.exp,
            }
        }
    };
    // A session value and a key record hold the name; the key files' rule keeps it safe.
    valid_consumer(&proof.consumer).map_err(|_| "Your consumer name cannot own API keys.")?;
    Ok(proof)
}

/// True while the key a session signed in with is still in the store, not revoked and not
/// expired.
async fn key_live(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    s: &Session,
) -> Result<bool, String> {
    let (_, entries, _) = read_store(cx, client, &StoreKeys::new(shared)).await?;
    Ok(entries.iter().any(|e| {
        Some(e.id) == s.via_key
            && e.consumer == s.consumer
            && !e.revoked
            && e.expires.is_none_or(|t| cx.now < t)
    }))
}

async fn sign_in(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    form: &[(String, String)],
) -> Reply {
    let proof = match verify(cx, field(form, "credential").unwrap_or("")) {
        Ok(p) => p,
        Err(why) => return sign_in_page(cx, 401, Some(why)),
    };
    // The session ends with the credential: an hour at most, less when a token expires sooner.
    let secs = match proof.until {
        Some(t) if t <= cx.now => return sign_in_page(cx, 401, Some("That token has expired.")),
        Some(t) => (t - cx.now).min(SESSION_SECS),
        None => SESSION_SECS,
    };
    match count_sign_in(client, shared, &proof.consumer).await {
        Ok(None) => {}
        Ok(Some(wait)) => {
            let mins = wait.div_ceil(60);
            let mut r = sign_in_page(
                cx,
                429,
                Some(&format!(
                    "Too many sign-ins for this consumer in the last hour; try again in \
                     {mins} minute{}.",
                    if mins == 1 { "" } else { "s" }
                )),
            );
            let _ = write!(Fmt(&mut r.fields), "retry-after: {wait}\r\n");
            return r;
        }
        Err(e) => return error_page(cx, 503, &format!("Cannot start a session: {e}")),
    }
    let (Some(token), Some(csrf)) = (random_hex(), random_hex()) else {
        return error_page(cx, 503, "The random source failed; try again.");
    };
    let key = session_key(shared, &token);
    let via = proof.via_key.map(|k| k.to_string()).unwrap_or_default();
    let value = format!("{}\n{csrf}\n{via}", proof.consumer);
    let ttl = secs.to_string();
    let res = client
        .cmd(
            Some(key.as_bytes()),
            &[
                b"SET",
                key.as_bytes(),
                value.as_bytes(),
                b"EX",
                ttl.as_bytes(),
            ],
        )
        .await;
    if let Err(e) = res {
        return error_page(cx, 503, &format!("Cannot start a session: {e}"));
    }
    crate::log::info(&format!(
        "portal: consumer {} signed in {}",
        proof.consumer,
        signed_in_with(proof.via_key)
    ));
    let mut fields = Vec::new();
    cookie_line(&mut fields, cx, &token, secs);
    let _ = write!(Fmt(&mut fields), "location: {}\r\n", base_keys(cx));
    Reply {
        status: 303,
        fields,
        body: String::new(),
    }
}

/// Counts a sign-in of `consumer`: `None` when admitted, else the seconds until the
/// consumer may sign in again (`MAX_SIGN_INS_PER_HOUR`).
async fn count_sign_in(
    client: &Client,
    shared: &RedisShared,
    consumer: &str,
) -> Result<Option<u64>, String> {
    let key = shared.key(
        "portal",
        &crate::redis::key_part(consumer.as_bytes()),
        "sign-ins",
    );
    let limit = MAX_SIGN_INS_PER_HOUR.to_string();
    let window = SESSION_SECS.to_string();
    let v = client
        .eval(
            &SIGN_INS,
            &[key.as_bytes()],
            &[limit.as_bytes(), window.as_bytes()],
        )
        .await
        .map_err(|e| e.to_string())?;
    let parts = v.into_array().unwrap_or_default();
    match (
        parts.first().and_then(|x| x.as_int()),
        parts.get(1).and_then(|x| x.as_int()),
    ) {
        (Some(1), _) => Ok(None),
        (Some(0), Some(wait)) => Ok(Some(u64::try_from(wait).unwrap_or(1).max(1))),
        _ => Err("the sign-in counter script answered something else".into()),
    }
}

async fn sign_out(cx: &Ctx<'_>, client: &Client, s: &Session) -> Reply {
    let _ = client
        .cmd(Some(s.key.as_bytes()), &[b"DEL", s.key.as_bytes()])
        .await;
    let mut fields = Vec::new();
    cookie_line(&mut fields, cx, "", 0);
    let _ = write!(Fmt(&mut fields), "location: {}\r\n", base_keys(cx));
    Reply {
        status: 303,
        fields,
        body: String::new(),
    }
}

fn cookie_line(fields: &mut Vec<u8>, cx: &Ctx<'_>, token: &str, max_age: u64) {
    // Only the self-service pages read the session, so only they are sent it: an operation
    // or route elsewhere under the portal's path never sees the cookie (and none may exist
    // under `{base}/keys`: `config::routes::local_pages_reachable`).
    let path = base_keys(cx);
    let _ = write!(
        Fmt(fields),
        "set-cookie: {COOKIE}={token}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}\r\n",
        if cx.secure { "; Secure" } else { "" }
    );
}

/// `io::Write`-free adapter: `write!` into a byte buffer.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn session_key(shared: &RedisShared, token: &str) -> String {
    shared.key(
        "portal",
        &crate::redis::key_part(token.as_bytes()),
        "session",
    )
}

/// The session the cookie names, if it is live.
async fn session_from(
    client: &Client,
    shared: &RedisShared,
    cookie: Option<&[u8]>,
) -> Result<Option<Session>, String> {
    let Some(token) = cookie.and_then(cookie_value) else {
        return Ok(None);
    };
    let key = session_key(shared, &token);
    let v = client
        .cmd(Some(key.as_bytes()), &[b"GET", key.as_bytes()])
        .await
        .map_err(|e| format!("Cannot read your session: {e}"))?;
    let Value::Bytes(b) = v else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&b);
    let mut parts = text.split('\n');
    let (Some(consumer), Some(csrf), Some(via)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let via_key = match via {
        "" => None,
        id => match KeyId::parse(id.as_bytes()) {
            Some(k) => Some(k),
            None => return Ok(None),
        },
    };
    Ok(Some(Session {
        consumer: consumer.to_string(),
        csrf: csrf.to_string(),
        via_key,
        key,
    }))
}

/// The session token from a `Cookie` header (64 hex digits, else ignored).
pub fn cookie_value(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?;
    text.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    let mut s = String::with_capacity(64);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    Some(s)
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, bad escapes kept as written).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn dec(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            let escaped = match (s[i], s.get(i + 1..i + 3)) {
                (b'%', Some(&[h, l])) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            match (escaped, s[i]) {
                (Some(v), _) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                (None, b'+') => out.push(b' '),
                (None, c) => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    fn hex(c: u8) -> Option<u8> {
        char::from(c).to_digit(16).map(|d| d as u8)
    }
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|p| {
            let mut it = p.splitn(2, |&b| b == b'=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            (dec(k), dec(v))
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every valid record of the store and its version (`None`: not initialized).
async fn read_store(
    cx: &Ctx<'_>,
    client: &Client,
    k: &StoreKeys,
) -> Result<(Option<i64>, Vec<KeyEntry>, Vec<Vec<u8>>), String> {
    let sync = cx
        .sync
        .ok_or("Self-service keys need [api_keys] store = \"redis\".")?;
    let stored = redis_store::read_all(client, k)
        .await
        .map_err(|e| format!("Cannot read the key store: {e}"))?;
    let entries = records::decode_all(&stored.records, sync.mode, &k.records);
    let taken = stored.records.into_iter().map(|(f, _)| f).collect();
    Ok((stored.version, entries, taken))
}

/// What a change did, for the page.
enum Done {
    Created {
        id: KeyId,
        plain: String,
    },
    Rotated {
        old: KeyId,
        id: KeyId,
        plain: String,
        old_end: u64,
    },
    Revoked(KeyId),
}

/// Read-check-write with retries: `edit` returns the records to write or an error (status,
/// message) that stops the change.
async fn write_change(
    cx: &Ctx<'_>,
    client: &Client,
    k: &StoreKeys,
    mut edit: impl FnMut(&[KeyEntry], &[Vec<u8>]) -> Result<(Vec<KeyEntry>, Done), (u16, String)>,
) -> Result<Done, (u16, String)> {
    for _ in 0..ATTEMPTS {
        let (version, entries, taken) = read_store(cx, client, k).await.map_err(|e| (503, e))?;
        if version.is_none() {
            return Err((
                503,
                "The key store is not initialized yet (an operator runs `ringway keys import`)."
                    .into(),
            ));
        }
        let (writes, done) = edit(&entries, &taken)?;
        let recs: Vec<(String, Vec<u8>)> = writes
            .iter()
            .map(|e| (e.id.to_string(), records::encode_record(e)))
            .collect();
        match redis_store::write(client, k, version, &recs).await {
            Ok(Written::Version(_)) => return Ok(done),
            Ok(Written::Conflict) => continue,
            Err(e) => return Err((503, format!("Cannot write the key store: {e}"))),
        }
    }
    Err((503, "The key store kept changing; try again.".into()))
}

/// Whether `consumer` may be issued one more key now (see `MAX_ACTIVE_KEYS`); a rotation
/// retires one key as it issues another, so it only counts against the daily bound.
fn may_issue(
    cx: &Ctx<'_>,
    entries: &[KeyEntry],
    consumer: &str,
    rotation: bool,
) -> Result<(), (u16, String)> {
    let mine = || entries.iter().filter(|e| e.consumer == consumer);
    let day_ago = cx.now.saturating_sub(86_400);
    if mine().filter(|e| e.created > day_ago).count() >= MAX_ISSUED_PER_DAY {
        return Err((
            429,
            format!("{MAX_ISSUED_PER_DAY} keys were issued to you in the last 24 hours, the most the portal issues; try again tomorrow."),
        ));
    }
    let active = mine()
        .filter(|e| !e.revoked && e.expires.is_none_or(|t| cx.now < t))
        .count();
    if !rotation && active >= MAX_ACTIVE_KEYS {
        return Err((
            409,
            format!("You hold {active} active keys, the most the portal issues; revoke one first."),
        ));
    }
    Ok(())
}

/// Whether `old` is the outgoing half of a portal rotation: another key of the same consumer
/// was created exactly `ROTATE_GRACE` before `old` stops working and lives longer (rotation
/// sets the old key's end to the new key's creation plus the grace and gives the new key the
/// old one's later expiry, in one write). Two keys made in the same second with the same
/// one-day expiry are therefore not taken for a rotation; a one-day key made in the same
/// second as a longer-lived one is (rotating it is then refused; creating a key still works).
fn rotated<'e>(mut entries: impl Iterator<Item = &'e KeyEntry>, old: &KeyEntry) -> bool {
    let Some(end) = old.expires else {
        return false;
    };
    entries.any(|e| {
        e.id != old.id
            && e.consumer == old.consumer
            && e.created >= old.created
            && e.created.checked_add(ROTATE_GRACE) == Some(end)
            && e.expires.is_none_or(|x| x > end)
    })
}

fn new_entry(
    cx: &Ctx<'_>,
    consumer: &str,
    expires: Option<u64>,
    taken: &[Vec<u8>],
) -> Result<(KeyEntry, String), (u16, String)> {
    let store = cx
        .store
        .ok_or((503, "No key store is configured.".to_string()))?;
    let hasher = store.hasher();
    let (id, plain) = crate::apikey::key::generate(|id| {
        let s = id.to_string();
        taken.iter().any(|f| f == s.as_bytes())
    })
    .map_err(|e| (503, e))?;
    let entry = KeyEntry {
        id,
        consumer: consumer.to_string(),
        hash_mode: hasher.mode(),
        hash: hasher.hash(plain.as_bytes()),
        created: cx.now,
        expires,
        revoked: false,
    };
    Ok((entry, plain))
}

async fn create(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    s: &Session,
    form: &[(String, String)],
) -> Reply {
    let expires = match field(form, "expires_days").map(str::trim).unwrap_or("") {
        "" | "never" => None,
        d => match d.parse::<u64>() {
            Ok(n) if (1..=3650).contains(&n) && d.bytes().all(|b| b.is_ascii_digit()) => {
                Some(cx.now + n * 86_400)
            }
            _ => {
                return error_page(
                    cx,
                    400,
                    "Expiry must be a number of days from 1 to 3650, or empty for never.",
                )
            }
        },
    };
    let k = StoreKeys::new(shared);
    let res = write_change(cx, client, &k, |entries, taken| {
        may_issue(cx, entries, &s.consumer, false)?;
        let (entry, plain) = new_entry(cx, &s.consumer, expires, taken)?;
        let id = entry.id;
        Ok((vec![entry], Done::Created { id, plain }))
    })
    .await;
    finish(cx, client, shared, s, res).await
}

async fn change(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    s: &Session,
    form: &[(String, String)],
    sub: &str,
) -> Reply {
    let Some(id) = field(form, "id").and_then(|i| KeyId::parse(i.trim().as_bytes())) else {
        return error_page(cx, 400, "No key id was given.");
    };
    let k = StoreKeys::new(shared);
    let res = write_change(cx, client, &k, |entries, taken| {
        // Another consumer's key answers exactly like a key that does not exist: ids are
        // printed in logs and support tickets, and a different answer would tell a signed-in
        // consumer which ids belong to someone else.
        let Some(old) = entries
            .iter()
            .find(|e| e.id == id && e.consumer == s.consumer)
        else {
            return Err((404, format!("You have no key {id}.")));
        };
        let mut old = old.clone();
        if sub == "/revoke" {
            old.revoked = true;
            return Ok((vec![old], Done::Revoked(id)));
        }
        if old.revoked {
            return Err((
                409,
                format!("Key {id} is revoked; create a new key instead."),
            ));
        }
        // An expired key is not renewed by rotating it, and the new key keeps the old one's
        // expiry: rotation replaces a secret, it does not undo an expiry an operator set.
        if old.expires.is_some_and(|t| t <= cx.now) {
            return Err((
                409,
                format!("Key {id} has expired; create a new key instead."),
            ));
        }
        // Rotating the old half of a rotation again would give the new key the grace end as
        // its expiry: a double submit would leave a replacement that dies within a day.
        if rotated(entries.iter(), &old) {
            return Err((
                409,
                format!(
                    "Key {id} was already rotated and works only until its grace ends; rotate \
                     its replacement instead."
                ),
            ));
        }
        may_issue(cx, entries, &s.consumer, true)?;
        let old_end = old
            .expires
            .map_or(cx.now + ROTATE_GRACE, |t| t.min(cx.now + ROTATE_GRACE));
        let (entry, plain) = new_entry(cx, &s.consumer, old.expires, taken)?;
        let new_id = entry.id;
        old.expires = Some(old_end);
        Ok((
            vec![entry, old],
            Done::Rotated {
                old: id,
                id: new_id,
                plain,
                old_end,
            },
        ))
    })
    .await;
    finish(cx, client, shared, s, res).await
}

async fn finish(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    s: &Session,
    res: Result<Done, (u16, String)>,
) -> Reply {
    match res {
        Ok(done) => {
            audit(s, &done);
            dashboard(cx, client, shared, s, Some(done)).await
        }
        Err((status, msg)) => error_page(cx, status, &msg),
    }
}

/// The process log's audit line for a self-service change: who (the consumer and how they
/// signed in) did what to which key id; never a secret. Changes are bounded per consumer, so
/// these lines are too.
fn audit(s: &Session, done: &Done) {
    let what = match done {
        Done::Created { id, .. } => format!("created key {id}"),
        Done::Rotated {
            old, id, old_end, ..
        } => format!("rotated key {old} (works until unix {old_end}) to key {id}"),
        Done::Revoked(id) => format!("revoked key {id}"),
    };
    crate::log::info(&format!(
        "portal: consumer {} {what} (signed in {})",
        s.consumer,
        signed_in_with(s.via_key)
    ));
}

fn signed_in_with(via: Option<KeyId>) -> String {
    via.map_or("with a token".to_string(), |k| format!("with key {k}"))
}

/// The signed-in page: the outcome of the last change (a new key's secret, once), the
/// consumer's keys, their usage, and the forms.
async fn dashboard(
    cx: &Ctx<'_>,
    client: &Client,
    shared: &RedisShared,
    s: &Session,
    done: Option<Done>,
) -> Reply {
    let k = StoreKeys::new(shared);
    let entries = match read_store(cx, client, &k).await {
        Ok((_, e, _)) => e,
        Err(e) => return error_page(cx, 503, &e),
    };
    let mine: Vec<&KeyEntry> = entries
        .iter()
        .filter(|e| e.consumer == s.consumer)
        .collect();
    let action = base_keys(cx);
    let action = Esc(&action);
    let csrf = Esc(&s.csrf);
    let mut m = format!(
        "<h1>Your keys</h1>\n<p>Signed in as <strong id=\"consumer\">{}</strong>.</p>\n",
        Esc(&s.consumer)
    );
    match &done {
        None => {}
        Some(Done::Created { id, plain }) => {
            secret_box(&mut m, &format!("Created key {id}."), plain)
        }
        Some(Done::Rotated {
            old,
            id,
            plain,
            old_end,
        }) => secret_box(
            &mut m,
            &format!(
                "Rotated key {old}: the new key is {id}; {old} keeps working until {}.",
                date_time(*old_end)
            ),
            plain,
        ),
        Some(Done::Revoked(id)) => {
            let _ = writeln!(
                m,
                "<p class=\"message\" role=\"status\">Revoked key {id}. Gateways refuse it within a few seconds.</p>"
            );
        }
    }
    m.push_str("<section aria-labelledby=\"list\">\n<h2 id=\"list\">Keys</h2>\n");
    if mine.is_empty() {
        m.push_str("<p>You have no keys.</p>\n");
    } else {
        m.push_str(
            "<table id=\"keys\">\n<thead><tr><th scope=\"col\">Key id</th><th scope=\"col\">Prefix</th>\
             <th scope=\"col\">Created</th><th scope=\"col\">Expires</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        );
        for e in &mine {
            let live = !e.revoked && e.expires.is_none_or(|t| cx.now < t);
            // The outgoing half of a rotation works until its end but is not rotated again.
            let status = if e.revoked {
                "revoked"
            } else if !live {
                "expired"
            } else if rotated(mine.iter().copied(), e) {
                "rotated (works until it expires)"
            } else {
                "active"
            };
            let _ = write!(
                m,
                "<tr id=\"key-{id}\"><th scope=\"row\"><code>{id}</code></th><td><code>rwk_{id}_…</code></td>\
                 <td>{}</td><td>{}</td><td class=\"status\">{status}</td><td>",
                date_time(e.created),
                e.expires.map_or("never".to_string(), date_time),
                id = e.id,
            );
            if status == "active" {
                let _ = write!(
                    m,
                    "<form class=\"inline\" method=\"post\" action=\"{action}/rotate\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                     <button type=\"submit\" class=\"plain\" id=\"rotate-{id}\">Rotate<span class=\"skip\"> key {id}</span></button></form> ",
                    id = e.id,
                );
            }
            if live {
                let _ = write!(
                    m,
                    "<form class=\"inline\" method=\"post\" action=\"{action}/revoke\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"id\" value=\"{id}\">\
                     <button type=\"submit\" class=\"danger\" id=\"revoke-{id}\">Revoke<span class=\"skip\"> key {id}</span></button></form>",
                    id = e.id,
                );
            }
            m.push_str("</td></tr>\n");
        }
        m.push_str("</tbody>\n</table>\n");
    }
    let _ = write!(
        m,
        "</section>\n<section aria-labelledby=\"new\">\n<h2 id=\"new\">Create a key</h2>\n\
         <form method=\"post\" action=\"{action}/create\" id=\"create-form\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <p><label for=\"expires_days\">Expires after (days, empty for never)</label>\n\
         <input id=\"expires_days\" name=\"expires_days\" type=\"text\" inputmode=\"numeric\" pattern=\"[0-9]*\"></p>\n\
         <p><button type=\"submit\" id=\"create\">Create key</button></p>\n</form>\n</section>\n"
    );
    usage(&mut m, cx, client, shared, &s.consumer).await;
    let _ = writeln!(
        m,
        "<form method=\"post\" action=\"{action}/sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><button type=\"submit\" class=\"plain\" id=\"sign-out\">Sign out</button></p></form>"
    );
    Reply::html(200, page(&cx.portal.frame(), "Your keys", &m))
}

fn secret_box(m: &mut String, what: &str, plain: &str) {
    let _ = write!(
        m,
        "<div class=\"message\" role=\"status\"><p>{}</p>\n\
         <p>Copy the key now: it is shown only this once.</p>\n\
         <p><label for=\"new-secret\">New key</label>\n\
         <input id=\"new-secret\" class=\"secret\" type=\"text\" readonly value=\"{}\"></p></div>\n",
        Esc(what),
        Esc(plain)
    );
}

async fn usage(m: &mut String, cx: &Ctx<'_>, client: &Client, shared: &RedisShared, who: &str) {
    m.push_str("<section aria-labelledby=\"usage\">\n<h2 id=\"usage\">Usage</h2>\n");
    if !cx.metered {
        m.push_str("<p>This gateway does not meter usage (not metered).</p>\n</section>\n");
        return;
    }
    let today = crate::usage::cell::today();
    let rows =
        match crate::usage::export::read(client, shared, today - (USAGE_DAYS - 1), today).await {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    m,
                    "<p class=\"error\">Usage is unavailable: {}</p>\n</section>",
                    Esc(&e.to_string())
                );
                return;
            }
        };
    let mine: Vec<_> = rows
        .iter()
        .filter(|r| matches!(&r.cell.who, crate::usage::field::DecodedWho::Named(n) if n == who))
        .collect();
    let _ = writeln!(m, "<p>Requests in the last {USAGE_DAYS} days (UTC).</p>");
    if mine.is_empty() {
        m.push_str("<p>No requests yet.</p>\n</section>\n");
        return;
    }
    m.push_str(
        "<table id=\"usage-table\">\n<thead><tr><th scope=\"col\">Date</th><th scope=\"col\">Route</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Requests</th></tr></thead>\n<tbody>\n",
    );
    for r in mine.iter().take(500) {
        let _ = writeln!(
            m,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}xx</td><td>{}</td></tr>",
            Esc(&r.date),
            Esc(r.cell.route.as_deref().unwrap_or("(no route)")),
            r.cell.class,
            r.requests
        );
    }
    m.push_str("</tbody>\n</table>\n</section>\n");
}

/// `YYYY-MM-DD HH:MM UTC`.
fn date_time(unix: u64) -> String {
    let day = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    format!(
        "{} {:02}:{:02} UTC",
        crate::usage::cell::day_label(day),
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_hostile_input_does_not_panic() {
        let f = parse_form(b"csrf=ab%20c&id=0123abcd&x=a+b&bad=%zz%4&&=&k");
        assert_eq!(field(&f, "csrf"), Some("ab c"));
        assert_eq!(field(&f, "x"), Some("a b"));
        assert_eq!(field(&f, "bad"), Some("%zz%4"));
        assert_eq!(field(&f, "k"), Some(""));
        assert_eq!(parse_form(b"%").len(), 1);
        assert_eq!(parse_form(&[b'&'; 1000]).len(), 0);
        assert!(parse_form(&b"a=1&".repeat(1000)).len() <= 32);
    }

    #[test]
    fn cookie_token_is_only_accepted_in_its_shape() {
        let t = "a".repeat(64);
        let h = format!("x=1; {COOKIE}={t}; y=2");
        assert_eq!(cookie_value(h.as_bytes()), Some(t));
        assert_eq!(cookie_value(format!("{COOKIE}=zz").as_bytes()), None);
        assert_eq!(cookie_value(b"\xff\xfe"), None);
        assert_eq!(
            cookie_value(format!("{COOKIE}={}", "g".repeat(64)).as_bytes()),
            None
        );
    }

    #[test]
    fn dates_and_methods() {
        assert_eq!(date_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(date_time(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(allowed(""), Some("GET, HEAD"));
        assert_eq!(allowed("/revoke"), Some("POST"));
        assert_eq!(allowed("/other"), None);
    }
}
