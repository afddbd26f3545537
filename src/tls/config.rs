//! A listener's `tls = { ... }` table (`RawListenerTls`) and `compile`, which validates it into
//! a `ListenerTls`: certificate files read and checked, the SNI resolver, versions, cipher
//! suites, ALPN, session resumption and client-certificate verification.
//!
//! Runs on the control thread at every compile (start, SIGHUP, `POST /reload`), so certificate
//! files are re-read on reload; a problem is reported through the caller's `Fail` sink with a
//! field relative to the `tls` table and nothing is built. Relative paths resolve against the
//! config file's directory.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::certs::{self, CertFault};
use super::settings::{CertSummary, ClientAuthMode, ListenerTls, ServerParts};
use super::sni::{SniEntry, SniResolver};
use crate::config::errors::{int_in, positive, Fail};
use crate::config::units::RawDuration;

/// `[listeners.tls]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    #[schemars(with = "Vec<RawCertificate>")]
    pub certificates: Spanned<Vec<RawCertificate>>,
    /// A name one of the certificates serves; default: the first certificate.
    #[schemars(with = "Option<String>")]
    pub default_certificate: Option<Spanned<String>>,
    /// `"default"` (serve the default certificate) or `"reject"` (fail the handshake).
    #[schemars(with = "Option<String>")]
    pub unknown_server_name: Option<Spanned<String>>,
    /// `"1.2"` (default) or `"1.3"`.
    #[schemars(with = "Option<serde_json::Value>")]
    pub min_version: Option<Spanned<toml::Value>>,
    /// A subset of the supported suites by IANA name; absent = all.
    #[schemars(with = "Option<Vec<String>>")]
    pub cipher_suites: Option<Vec<Spanned<String>>>,
    /// Offered ALPN protocols; default `["http/1.1"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub alpn: Option<Vec<Spanned<String>>>,
    /// Per-worker TLS session cache entries (session ids; TLS 1.3 without tickets); 0 = off.
    #[schemars(with = "Option<i64>")]
    pub session_cache: Option<Spanned<i64>>,
    pub session_tickets: Option<bool>,
    #[schemars(with = "Option<RawDuration>")]
    pub ticket_key_rotation: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub handshake_timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawClientAuth>")]
    pub client_auth: Option<Spanned<RawClientAuth>>,
    /// `Strict-Transport-Security` on every response: a value such as
    /// `"max-age=31536000; includeSubDomains"`, or `false`. Default `"max-age=31536000"`.
    #[schemars(with = "Option<serde_json::Value>")]
    pub hsts: Option<Spanned<toml::Value>>,
    /// `x-content-type-options: nosniff` on every response (default true).
    pub nosniff: Option<bool>,
    /// Answer 421 to a request whose host none of the connection's certificates serves
    /// (domain fronting: a handshake for one name, a request for another). Default true.
    pub strict_host: Option<bool>,
}

/// One certificate entry.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM chain, leaf first.
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// PEM private key.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// Names served; default: the leaf's DNS subjectAltNames.
    #[schemars(with = "Option<Vec<String>>")]
    pub names: Option<Vec<Spanned<String>>>,
    /// A DER OCSP response to staple.
    #[schemars(with = "Option<String>")]
    pub ocsp: Option<Spanned<String>>,
}

/// `client_auth = { mode = "...", ca = "...", crl = [...] }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    #[schemars(with = "String")]
    pub mode: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub crl: Option<Vec<Spanned<String>>>,
}

/// Where the table sits and the facts a compile needs.
pub struct TlsContext<'a> {
    /// The config file's directory (relative paths resolve against it).
    pub base_dir: &'a Path,
    /// The listener as `name@address`: ticket keys are per listener, so a session from one
    /// listener never resumes on another with other client-certificate rules.
    pub listener: &'a str,
    /// Unix seconds (certificate validity is checked against it).
    pub now: i64,
}

const DEFAULT_SESSION_CACHE: usize = 20_000;
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(6 * 3600);
/// RFC 8446 §4.6.1: ticket lifetimes are at most seven days.
const MAX_TICKET_ROTATION: Duration = Duration::from_secs(7 * 86_400);

/// Validates `raw` into a `ListenerTls`; every problem goes to `err`. `None` when anything
/// was wrong.
pub fn compile(
    raw: &RawListenerTls,
    cx: &TlsContext<'_>,
    err: &mut Fail<'_>,
) -> Option<ListenerTls> {
    let mut errs = Counting { inner: err, n: 0 };
    let tls13_only = min_version(raw, &mut errs);
    let provider = Arc::new(provider(raw, tls13_only, &mut errs));
    let loaded = load_certificates(raw, cx, &provider, &mut errs);
    let alpn = alpn(raw, &mut errs);
    let session_cache = int_in(
        &mut errs,
        &raw.session_cache,
        "session_cache",
        DEFAULT_SESSION_CACHE,
        0..=1_000_000,
        "",
    );
    let handshake_timeout = positive(
        &mut errs,
        &raw.handshake_timeout,
        "handshake_timeout",
        DEFAULT_HANDSHAKE_TIMEOUT,
    );
    let rotation = ticket_rotation(raw, &mut errs);
    let hsts = hsts(raw, &mut errs);
    let client_auth = client_auth(raw, cx.base_dir, &mut errs);
    if errs.n > 0 {
        return None;
    }
    let (entries, summaries) = loaded?;
    let resolver = Arc::new(sni_resolver(raw, entries, &mut errs)?);
    let (mode, fingerprint) = client_auth?;
    let description = describe(raw, tls13_only, &alpn, session_cache, &mode);
    let ticketer = match raw.session_tickets.unwrap_or(true) {
        true => {
            let scope = format!("{}|{fingerprint}", cx.listener);
            let Some(t) = super::tickets::shared(&scope, rotation) else {
                let m = "cannot make session-ticket keys: the system random source failed";
                return fail(&mut errs, 0..0, "session_tickets", m.into());
            };
            Some(t)
        }
        false => None,
    };
    let parts = ServerParts {
        provider,
        tls13_only,
        resolver: resolver.clone(),
        client_auth: mode,
        alpn,
        ticketer,
    };
    match super::settings::server_config(parts) {
        Ok(server) => Some(ListenerTls {
            server,
            handshake_timeout,
            certs: summaries,
            session_cache,
            client_trust: fingerprint,
            authority: raw.strict_host.unwrap_or(true).then_some(resolver),
            description,
            security: Arc::new(security_headers(
                hsts.flatten(),
                raw.nosniff.unwrap_or(true),
            )),
        }),
        Err(e) => {
            errs.report(raw.certificates.span(), "", e);
            None
        }
    }
}

/// `TLS 1.2+, ALPN http/1.1, tickets (rotate 6h), session cache 20000, client certificates
/// required` for `check`.
fn describe(
    raw: &RawListenerTls,
    tls13_only: bool,
    alpn: &[Vec<u8>],
    session_cache: usize,
    mode: &ClientAuthMode,
) -> String {
    let versions = if tls13_only { "TLS 1.3" } else { "TLS 1.2+" };
    let alpn: Vec<String> = alpn
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let alpn = if alpn.is_empty() {
        "none".to_string()
    } else {
        alpn.join(",")
    };
    let tickets = match raw.session_tickets.unwrap_or(true) {
        true => "on",
        false => "off",
    };
    let clients = match mode {
        ClientAuthMode::Off => "off",
        ClientAuthMode::Verify { required: true, .. } => "required",
        ClientAuthMode::Verify {
            required: false, ..
        } => "optional",
    };
    format!(
        "{versions}, ALPN {alpn}, session tickets {tickets}, session cache {session_cache}, \
         client certificates {clients}"
    )
}

/// A `Fail` sink that counts what passes through it.
struct Counting<'a, 'b> {
    inner: &'a mut Fail<'b>,
    /// Errors reported so far.
    n: usize,
}

impl crate::config::errors::Report for Counting<'_, '_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        self.n += 1;
        (self.inner)(span, field, message)
    }
}

use crate::config::errors::Report as _;

/// `min_version`: true when TLS 1.3 is the only version.
fn min_version(raw: &RawListenerTls, errs: &mut Counting<'_, '_>) -> bool {
    let Some(v) = &raw.min_version else {
        return false;
    };
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    };
    match text.as_str() {
        "1.2" => false,
        "1.3" => true,
        "1.0" | "1" | "1.1" => {
            errs.report(
                v.span(),
                "min_version",
                format!("TLS {text} is not supported (insecure): use \"1.2\" or \"1.3\""),
            );
            false
        }
        _ => {
            errs.report(
                v.span(),
                "min_version",
                format!("unknown TLS version {text}: use \"1.2\" or \"1.3\""),
            );
            false
        }
    }
}

/// IANA name of a suite (rustls names TLS 1.3 suites `TLS13_*`; IANA writes `TLS_*`).
fn iana_name(s: &rustls::SupportedCipherSuite) -> String {
    let name = s.suite().as_str().unwrap_or("unknown");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    }
}

/// The default HSTS policy: one year, this host only (no includeSubDomains, no preload: those
/// commit other hosts and are the operator's call).
const DEFAULT_HSTS: &str = "max-age=31536000";

/// `hsts`: the `strict-transport-security` line every response on the listener carries, or
/// none (`false`). `None` when the value is refused.
fn hsts(raw: &RawListenerTls, errs: &mut Counting<'_, '_>) -> Option<Option<Box<[u8]>>> {
    let value = match raw.hsts.as_ref().map(|v| (v.get_ref(), v.span())) {
        None => DEFAULT_HSTS.to_string(),
        Some((toml::Value::Boolean(false), _)) => return Some(None),
        Some((toml::Value::Boolean(true), _)) => DEFAULT_HSTS.to_string(),
        Some((toml::Value::String(s), span)) => {
            if !valid_hsts(s) {
                let m = format!(
                    "bad hsts value {s:?}: expected \"max-age=SECONDS\" optionally followed by \
                     \"; includeSubDomains\" and \"; preload\", or false"
                );
                errs.report(span, "hsts", m);
                return None;
            }
            s.clone()
        }
        Some((_, span)) => {
            let m = "hsts must be a string like \"max-age=31536000\" or false".to_string();
            errs.report(span, "hsts", m);
            return None;
        }
    };
    Some(Some(
        format!("strict-transport-security: {value}\r\n")
            .into_bytes()
            .into_boxed_slice(),
    ))
}

/// The listener's own response headers: HSTS and nosniff, each optional.
fn security_headers(hsts: Option<Box<[u8]>>, nosniff: bool) -> super::settings::SecurityHeaders {
    let mut lines = hsts.clone().map(Vec::from).unwrap_or_default();
    if nosniff {
        lines.extend_from_slice(b"x-content-type-options: nosniff\r\n");
    }
    super::settings::SecurityHeaders {
        lines: lines.into_boxed_slice(),
        hsts: hsts.is_some(),
        nosniff,
    }
}

/// `max-age=N` then any of `includeSubDomains` / `preload`, separated by `;` (RFC 6797).
fn valid_hsts(v: &str) -> bool {
    let mut parts = v.split(';').map(str::trim);
    let age_ok = parts
        .next()
        .and_then(|p| p.strip_prefix("max-age="))
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
    age_ok
        && parts.all(|p| {
            p.eq_ignore_ascii_case("includeSubDomains") || p.eq_ignore_ascii_case("preload")
        })
}

/// Rank of a suite in the server's order (lower first); the sort is stable.
fn preference(s: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as C;
    match s {
        C::TLS13_AES_128_GCM_SHA256 => 0,
        C::TLS13_AES_256_GCM_SHA384 => 1,
        C::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 4,
        _ => 5,
    }
}

/// The ring provider in the server's preference order, with `cipher_suites` applied (in the
/// order written).
fn provider(
    raw: &RawListenerTls,
    tls13_only: bool,
    errs: &mut Counting<'_, '_>,
) -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    // The server's preference decides (`ignore_client_order`): AES-128-GCM first (its SHA-256
    // transcript hash runs on SHA-NI where SHA-384 may not), then AES-256-GCM, then ChaCha20
    // (clients without AES instructions list it first only among themselves).
    p.cipher_suites.sort_by_key(|s| preference(s.suite()));
    if tls13_only {
        p.cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13);
    }
    let Some(wanted) = &raw.cipher_suites else {
        return p;
    };
    let all = p.cipher_suites.clone();
    let mut chosen = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let name = w.get_ref().to_ascii_uppercase();
        let found = rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .find(|s| iana_name(s) == name || s.suite().as_str() == Some(name.as_str()));
        match found {
            Some(s) if all.iter().any(|a| a.suite() == s.suite()) => {
                if !chosen
                    .iter()
                    .any(|c: &rustls::SupportedCipherSuite| c.suite() == s.suite())
                {
                    chosen.push(*s);
                }
            }
            Some(_) => errs.report(
                w.span(),
                &format!("cipher_suites[{i}]"),
                format!("{name} is a TLS 1.2 suite but min_version is \"1.3\""),
            ),
            None => {
                let known: Vec<String> = all.iter().map(iana_name).collect();
                errs.report(
                    w.span(),
                    &format!("cipher_suites[{i}]"),
                    format!(
                        "unknown cipher suite {name:?}; supported: {}",
                        known.join(", ")
                    ),
                )
            }
        }
    }
    if !chosen.is_empty()
        && !chosen
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13)
    {
        let span = wanted.first().map(|w| w.span()).unwrap_or(0..0);
        errs.report(
            span,
            "cipher_suites",
            "needs at least one TLS 1.3 suite (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 \
             or TLS_CHACHA20_POLY1305_SHA256)"
                .into(),
        );
    }
    if !chosen.is_empty() {
        p.cipher_suites = chosen;
    }
    p
}

/// `alpn`: the protocols offered, in server preference order (default `h2`, then
/// `http/1.1`). A client that offers neither still gets HTTP/1.1.
fn alpn(raw: &RawListenerTls, errs: &mut Counting<'_, '_>) -> Vec<Vec<u8>> {
    let Some(list) = &raw.alpn else {
        return vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let field = format!("alpn[{i}]");
        let proto = p.get_ref().as_str();
        match proto {
            "http/1.1" | "h2" if out.iter().any(|o| o == proto.as_bytes()) => {
                errs.report(p.span(), &field, format!("{proto:?} is listed twice"))
            }
            "http/1.1" | "h2" => out.push(proto.as_bytes().to_vec()),
            other => errs.report(
                p.span(),
                &field,
                format!("unknown ALPN protocol {other:?}: use \"h2\" and/or \"http/1.1\""),
            ),
        }
    }
    out
}

fn ticket_rotation(raw: &RawListenerTls, errs: &mut Counting<'_, '_>) -> Duration {
    let d = positive(
        errs,
        &raw.ticket_key_rotation,
        "ticket_key_rotation",
        DEFAULT_TICKET_ROTATION,
    );
    if d > MAX_TICKET_ROTATION {
        if let Some(s) = &raw.ticket_key_rotation {
            errs.report(
                s.span(),
                "ticket_key_rotation",
                "must be at most 7d (tickets live at most seven days)".into(),
            );
        }
        return DEFAULT_TICKET_ROTATION;
    }
    d
}

/// A config path: absolute as is, relative against the config file's directory.
fn resolve(base_dir: &Path, p: &Spanned<String>) -> PathBuf {
    base_dir.join(p.get_ref())
}

/// Loads every certificate; the SNI entries and what `check` shows, or `None` after errors.
fn load_certificates(
    raw: &RawListenerTls,
    cx: &TlsContext<'_>,
    provider: &rustls::crypto::CryptoProvider,
    errs: &mut Counting<'_, '_>,
) -> Option<(Vec<SniEntry>, Vec<CertSummary>)> {
    let list = raw.certificates.get_ref();
    if list.is_empty() {
        errs.report(
            raw.certificates.span(),
            "certificates",
            "needs at least one { cert = \"...\", key = \"...\" }".into(),
        );
        return None;
    }
    let mut entries = Vec::new();
    let mut summaries = Vec::new();
    let mut ok = true;
    for (i, c) in list.iter().enumerate() {
        match load_one(c, i, cx, provider, errs) {
            Some((e, s)) => {
                entries.push(e);
                summaries.push(s);
            }
            None => ok = false,
        }
    }
    ok.then_some((entries, summaries))
}

fn load_one(
    c: &RawCertificate,
    i: usize,
    cx: &TlsContext<'_>,
    provider: &rustls::crypto::CryptoProvider,
    errs: &mut Counting<'_, '_>,
) -> Option<(SniEntry, CertSummary)> {
    let field = |f: &str| format!("certificates[{i}].{f}");
    let ocsp = c.ocsp.as_ref().map(|o| resolve(cx.base_dir, o));
    let loaded = certs::load(
        provider,
        &resolve(cx.base_dir, &c.cert),
        &resolve(cx.base_dir, &c.key),
        ocsp.as_deref(),
        cx.now,
    );
    let loaded = match loaded {
        Ok(l) => l,
        Err(CertFault::Cert(m)) => return fail(errs, c.cert.span(), &field("cert"), m),
        Err(CertFault::Key(m)) => return fail(errs, c.key.span(), &field("key"), m),
        Err(CertFault::Ocsp(m)) => {
            let span = c.ocsp.as_ref().map(|o| o.span()).unwrap_or(0..0);
            return fail(errs, span, &field("ocsp"), m);
        }
    };
    let names = served_names(c, &loaded, i, errs)?;
    let summary = CertSummary {
        file: c.cert.get_ref().clone(),
        names: names.clone(),
        key_type: loaded.key_type.clone(),
        not_after: loaded.not_after,
        ocsp: c.ocsp.is_some(),
    };
    Some((
        SniEntry {
            key: loaded.key,
            names,
            sans: loaded.sans,
        },
        summary,
    ))
}

fn fail<T>(errs: &mut Counting<'_, '_>, span: Range<usize>, field: &str, m: String) -> Option<T> {
    errs.report(span, field, m);
    None
}

/// The names a certificate serves: `names` (each covered by a SAN) or the SANs themselves.
fn served_names(
    c: &RawCertificate,
    loaded: &certs::LoadedCert,
    i: usize,
    errs: &mut Counting<'_, '_>,
) -> Option<Vec<String>> {
    let Some(names) = &c.names else {
        if loaded.sans.is_empty() {
            return fail(
                errs,
                c.cert.span(),
                &format!("certificates[{i}].cert"),
                format!(
                    "certificate {} has no DNS subjectAltName: list the names it serves in `names`",
                    c.cert.get_ref()
                ),
            );
        }
        return Some(loaded.sans.clone());
    };
    let mut out = Vec::new();
    let before = errs.n;
    for (j, n) in names.iter().enumerate() {
        let field = format!("certificates[{i}].names[{j}]");
        let name = n.get_ref().to_ascii_lowercase();
        if let Err(m) = certs::check_name(&name) {
            errs.report(n.span(), &field, m);
        } else if !loaded.sans.iter().any(|s| certs::covers(s, &name)) {
            let sans = match loaded.sans.is_empty() {
                true => "none".to_string(),
                false => loaded.sans.join(", "),
            };
            let m = format!(
                "{name} is not covered by certificate {} (its DNS names: {sans})",
                c.cert.get_ref()
            );
            errs.report(n.span(), &field, m);
        } else if !out.contains(&name) {
            out.push(name);
        }
    }
    if errs.n > before {
        return None;
    }
    if out.is_empty() {
        let field = format!("certificates[{i}].names");
        return fail(
            errs,
            c.cert.span(),
            &field,
            "must list at least one name".into(),
        );
    }
    Some(out)
}

fn sni_resolver(
    raw: &RawListenerTls,
    entries: Vec<SniEntry>,
    errs: &mut Counting<'_, '_>,
) -> Option<SniResolver> {
    let reject = match &raw.unknown_server_name {
        None => false,
        Some(s) => match s.get_ref().as_str() {
            "default" => false,
            "reject" => true,
            other => {
                return fail(
                    errs,
                    s.span(),
                    "unknown_server_name",
                    format!("unknown action {other:?}: use \"default\" or \"reject\""),
                )
            }
        },
    };
    let default = raw.default_certificate.as_ref();
    match SniResolver::build(entries, default.map(|d| d.get_ref().as_str()), reject) {
        Ok(r) => Some(r),
        Err((usize::MAX, m)) => {
            let span = default.map(|d| d.span()).unwrap_or(0..0);
            fail(errs, span, "default_certificate", m)
        }
        Err((i, m)) => {
            let span = raw
                .certificates
                .get_ref()
                .get(i)
                .map(|c| c.cert.span())
                .unwrap_or(0..0);
            fail(errs, span, &format!("certificates[{i}]"), m)
        }
    }
}

/// `client_auth`: the verification mode and a fingerprint of its trust inputs (so ticket keys
/// change when the CA or CRLs do: a session resumed under other trust would skip a check).
fn client_auth(
    raw: &RawListenerTls,
    base_dir: &Path,
    errs: &mut Counting<'_, '_>,
) -> Option<(ClientAuthMode, String)> {
    let Some(ca) = &raw.client_auth else {
        return Some((ClientAuthMode::Off, "off".into()));
    };
    let a = ca.get_ref();
    let mode = a.mode.get_ref().as_str();
    let required = match mode {
        "off" => {
            if let Some(c) = &a.ca {
                return fail(
                    errs,
                    c.span(),
                    "client_auth.ca",
                    "is only used with mode \"optional\" or \"required\"".into(),
                );
            }
            return Some((ClientAuthMode::Off, "off".into()));
        }
        "optional" => false,
        "required" => true,
        other => {
            return fail(
                errs,
                a.mode.span(),
                "client_auth.mode",
                format!("unknown mode {other:?}: use \"off\", \"optional\" or \"required\""),
            )
        }
    };
    let Some(ca_path) = &a.ca else {
        return fail(
            errs,
            ca.span(),
            "client_auth.ca",
            format!("mode \"{mode}\" needs `ca`, the PEM bundle of CAs client certificates must chain to"),
        );
    };
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let roots = read_roots(&resolve(base_dir, ca_path), &mut digest)
        .map_err(|m| errs.report(ca_path.span(), "client_auth.ca", m))
        .ok()?;
    let mut crls = Vec::new();
    for (i, c) in a.crl.iter().flatten().enumerate() {
        match read_crls(&resolve(base_dir, c), &mut digest) {
            Ok(mut list) => crls.append(&mut list),
            Err(m) => errs.report(c.span(), &format!("client_auth.crl[{i}]"), m),
        }
    }
    let fp: String = digest.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((
        ClientAuthMode::Verify {
            roots: Arc::new(roots),
            crls,
            required,
        },
        format!("{mode}:{fp}"),
    ))
}

fn read_roots(
    path: &Path,
    digest: &mut ring::digest::Context,
) -> Result<rustls::RootCertStore, String> {
    let chain = certs::read_chain(path, "CA bundle")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in chain {
        digest.update(&c);
        roots
            .add(c)
            .map_err(|e| format!("CA bundle {}: unusable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn read_crls(
    path: &Path,
    digest: &mut ring::digest::Context,
) -> Result<Vec<rustls_pki_types::CertificateRevocationListDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let pem = certs::read_file(path, "CRL")?;
    let mut out = Vec::new();
    for c in rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("CRL {}: bad PEM: {e}", path.display()))?;
        digest.update(&c);
        out.push(c);
    }
    if out.is_empty() {
        return Err(format!(
            "CRL {} holds no PEM \"X509 CRL\" block",
            path.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles a `tls` table; returns the (relative field, message) of every error.
    fn errors(src: &str) -> Vec<(String, String)> {
        let raw: RawListenerTls = toml::from_str(src).unwrap();
        let cx = TlsContext {
            base_dir: Path::new("/nonexistent"),
            listener: "t@127.0.0.1:0",
            now: 0,
        };
        let mut out = Vec::new();
        let mut sink = |_: Range<usize>, f: &str, m: String| out.push((f.to_string(), m));
        assert!(compile(&raw, &cx, &mut sink).is_none());
        out
    }

    #[test]
    fn every_bad_setting_is_reported_by_its_field() {
        let e = errors(
            "certificates = []\nmin_version = \"1.0\"\nalpn = [\"spdy/3\"]\n\
             cipher_suites = [\"TLS_AES_128_GCM_SHA256\", \"bogus\"]\n\
             client_auth = { mode = \"off\", ca = \"x.pem\" }\nhandshake_timeout = \"0s\"",
        );
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "min_version",
                "cipher_suites[1]",
                "certificates",
                "alpn[0]",
                "handshake_timeout",
                "client_auth.ca"
            ],
            "{e:?}"
        );
    }

    #[test]
    fn suites_take_iana_and_rustls_names() {
        let s = rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384;
        assert_eq!(iana_name(&s), "TLS_AES_256_GCM_SHA384");
        let s = rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256;
        assert_eq!(iana_name(&s), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        // A TLS 1.2 suite under min_version 1.3 is named as such.
        let e = errors(
            "certificates = []\nmin_version = \"1.3\"\n\
             cipher_suites = [\"tls13_aes_128_gcm_sha256\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]",
        );
        assert_eq!(e[0].0, "cipher_suites[1]", "{e:?}");
        assert!(e[0].1.contains("TLS 1.2 suite"), "{e:?}");
    }
}
