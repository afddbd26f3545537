//! The keys file: parsing with positioned errors, in-place edits, atomic rewrites.
//!
//! Format (TOML), one table per key:
//! ```toml
//! [[keys]]
//! id = "1f3a9c07"                      # public key id (8 lowercase hex digits)
//! consumer = "acme"                    # [A-Za-z0-9._-], 1..=64 chars, starts alphanumeric
//! hash = "hmac-sha256:<64 hex digits>" # or "sha256:<hex>"; must match `api_keys.hash`
//! created = "2025-01-31T12:00:00Z"     # RFC 3339 (string or TOML datetime)
//! expires = "2025-03-01T00:00:00Z"     # optional
//! revoked = true                       # optional
//! ```
//! Invariants: the file never holds a key, only its hash. The CLI changes it by editing the
//! text at the spans it parsed (so comments and other entries stay byte-for-byte intact),
//! re-parses the result to prove the edit did exactly what was meant (falling back to a
//! canonical rendering otherwise), and replaces the file atomically (temp file in the same
//! directory, fsync, rename) under an exclusive lock on the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::key::{self, KeyId};
use super::types::HashMode;
use crate::civil::{format_rfc3339, parse_rfc3339};
use crate::config::errors::{array_field_at, line_col, ConfigError, Diag};

/// One key as stored in the keys file (validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// Public key id.
    pub id: KeyId,
    /// The consumer the key belongs to.
    pub consumer: String,
    /// The mode `hash` was computed with.
    pub hash_mode: HashMode,
    /// Hash of the full key string.
    pub hash: [u8; 32],
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; the key is rejected from this instant on.
    pub expires: Option<u64>,
    /// Revoked keys are rejected regardless of expiry.
    pub revoked: bool,
}

/// Where an entry's editable values are in the source text.
#[derive(Clone, Debug)]
pub(crate) struct EntrySpans {
    id: Range<usize>,
    expires: Option<Range<usize>>,
    revoked: Option<Range<usize>>,
}

/// An entry and where its values are in the text.
pub(crate) type Located = (KeyEntry, EntrySpans);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeysFile {
    #[serde(default)]
    keys: Vec<RawKeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyEntry {
    id: Spanned<String>,
    consumer: Spanned<String>,
    hash: Spanned<String>,
    created: Spanned<toml::Value>,
    expires: Option<Spanned<toml::Value>>,
    revoked: Option<Spanned<bool>>,
}

/// A first line for files the CLI creates.
const HEADER: &str =
    "# ringway API keys, managed with `ringway keys`. Only key hashes are stored here.\n";

/// Checks a consumer name: 1..=64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn valid_consumer(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        // Implied by the charset above; kept so the header-value rule has one definition.
        && crate::http1::is_safe_header_value(name.as_bytes());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid consumer name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
        ))
    }
}

fn timestamp(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::String(s) => parse_rfc3339(s),
        toml::Value::Datetime(d) => parse_rfc3339(&d.to_string()),
        other => Err(format!(
            "expected an RFC 3339 timestamp like \"2025-01-31T12:00:00Z\", found {}",
            other.type_str()
        )),
    }
}

/// Parses and validates a keys file whose hashes must all be in `mode`.
pub fn parse_keys(
    src: &str,
    file: &Path,
    mode: HashMode,
) -> Result<Vec<KeyEntry>, Vec<ConfigError>> {
    parse_located(src, file, mode).map(|v| v.into_iter().map(|(e, _)| e).collect())
}

/// `parse_keys`, keeping where each entry's values are for in-place edits.
pub(crate) fn parse_located(
    src: &str,
    file: &Path,
    mode: HashMode,
) -> Result<Vec<Located>, Vec<ConfigError>> {
    let mut errs = Diag::new(file, src);
    let raw: RawKeysFile = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let start = e.span().map(|s| s.start).unwrap_or(0);
            errs.at(
                start..start,
                array_field_at(src, start, "keys"),
                e.message().trim().to_string(),
            );
            return Err(errs.list);
        }
    };
    let mut out = Vec::with_capacity(raw.keys.len());
    let mut seen: ahash::AHashMap<u32, usize> = ahash::AHashMap::new();
    for (i, r) in raw.keys.iter().enumerate() {
        let before = errs.list.len();
        let entry = check_entry(i, r, src, mode, &mut seen, &mut errs);
        if let Some(entry) = entry.filter(|_| errs.list.len() == before) {
            out.push((
                entry,
                EntrySpans {
                    id: r.id.span(),
                    expires: r.expires.as_ref().map(|x| x.span()),
                    revoked: r.revoked.as_ref().map(|x| x.span()),
                },
            ));
        }
    }
    if errs.list.is_empty() {
        Ok(out)
    } else {
        Err(errs.list)
    }
}

/// Validates `keys[i]`: a unique 8-hex id (`seen` maps ids to where they first appeared), a
/// valid consumer, a hash in `mode`, RFC 3339 times. Every problem is reported; `None` when
/// a value could not be read.
fn check_entry(
    i: usize,
    r: &RawKeyEntry,
    src: &str,
    mode: HashMode,
    seen: &mut ahash::AHashMap<u32, usize>,
    errs: &mut Diag,
) -> Option<KeyEntry> {
    let f = |name: &str| format!("keys[{i}].{name}");
    let id = KeyId::parse(r.id.get_ref().as_bytes());
    match id {
        None => errs.at(
            r.id.span(),
            f("id"),
            format!(
                "invalid key id {:?}: expected 8 lowercase hex digits",
                r.id.get_ref()
            ),
        ),
        Some(id) => {
            if let Some(prev) = seen.insert(id.0, r.id.span().start) {
                let (line, _) = line_col(src, prev);
                errs.at(
                    r.id.span(),
                    f("id"),
                    format!("duplicate key id {id} (also on line {line})"),
                );
            }
        }
    }
    if let Err(m) = valid_consumer(r.consumer.get_ref()) {
        errs.at(r.consumer.span(), f("consumer"), m);
    }
    let hash = entry_hash(r, mode, &f, errs);
    let created = timestamp(r.created.get_ref())
        .map_err(|m| errs.at(r.created.span(), f("created"), m))
        .ok();
    let expires = match &r.expires {
        None => Some(None),
        Some(x) => timestamp(x.get_ref())
            .map(Some)
            .map_err(|m| errs.at(x.span(), f("expires"), m))
            .ok(),
    };
    let ((hash_mode, hash), created, expires) = (hash?, created?, expires?);
    Some(KeyEntry {
        id: id?,
        consumer: r.consumer.get_ref().clone(),
        hash_mode,
        hash,
        created,
        expires,
        revoked: r.revoked.as_ref().is_some_and(|v| *v.get_ref()),
    })
}

/// `hash = "MODE:HEX"`, which must be in the configured `mode`.
fn entry_hash(
    r: &RawKeyEntry,
    mode: HashMode,
    f: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> Option<(HashMode, [u8; 32])> {
    let parsed = r
        .hash
        .get_ref()
        .split_once(':')
        .and_then(|(m, hex)| Some((HashMode::parse(m)?, key::unhex::<32>(hex)?)));
    match parsed {
        Some((m, h)) if m == mode => Some((m, h)),
        Some((m, _)) => {
            errs.at(
                r.hash.span(),
                f("hash"),
                format!(
                    "hash is {m} but api_keys.hash is {mode}: recreate the key or change api_keys.hash"
                ),
            );
            None
        }
        None => {
            errs.at(
                r.hash.span(),
                f("hash"),
                "expected \"hmac-sha256:<64 hex digits>\" or \"sha256:<64 hex digits>\"",
            );
            None
        }
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn newline(src: &str) -> &'static str {
    if src.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// Renders one entry as a `[[keys]]` table.
pub(crate) fn render_entry(e: &KeyEntry, nl: &str) -> String {
    let mut s = format!(
        "[[keys]]{nl}id = \"{}\"{nl}consumer = {}{nl}hash = \"{}:{}\"{nl}created = \"{}\"{nl}",
        e.id,
        toml_str(&e.consumer),
        e.hash_mode.name(),
        key::hex(&e.hash),
        format_rfc3339(e.created),
    );
    if let Some(x) = e.expires {
        s.push_str(&format!("expires = \"{}\"{nl}", format_rfc3339(x)));
    }
    if e.revoked {
        s.push_str(&format!("revoked = true{nl}"));
    }
    s
}

/// The whole file in canonical form (used when an in-place edit cannot be proven right).
pub(crate) fn render(entries: &[KeyEntry]) -> String {
    let mut s = String::from(HEADER);
    for e in entries {
        s.push('\n');
        s.push_str(&render_entry(e, "\n"));
    }
    s
}

/// Appends a new entry to the text of a keys file (empty text = new file).
pub(crate) fn append(src: &str, e: &KeyEntry) -> String {
    let nl = newline(src);
    let mut s = if src.is_empty() {
        HEADER.to_string()
    } else {
        src.to_string()
    };
    if !s.ends_with('\n') {
        s.push_str(nl);
    }
    s.push_str(nl);
    s.push_str(&render_entry(e, nl));
    s
}

/// Sets `name = value` in the entry at `at`: replaces the existing value at `existing`, or
/// adds the pair right after the entry's `id` (as a new line in a `[[keys]]` table, or as
/// `, name = value` in an inline table).
fn set_value(
    src: &str,
    at: &EntrySpans,
    existing: Option<&Range<usize>>,
    name: &str,
    value: &str,
) -> String {
    let mut s = String::with_capacity(src.len() + 32);
    if let Some(r) = existing.filter(|r| src.get(r.start..r.end).is_some()) {
        s.push_str(&src[..r.start]);
        s.push_str(value);
        s.push_str(&src[r.end..]);
        return s;
    }
    let after_id = at.id.end.min(src.len());
    let line_end = src[after_id..]
        .find('\n')
        .map(|i| after_id + i)
        .unwrap_or(src.len());
    let rest = src[after_id..line_end].trim_start();
    if rest.starts_with(',') || rest.starts_with('}') {
        s.push_str(&src[..after_id]);
        s.push_str(&format!(", {name} = {value}"));
        s.push_str(&src[after_id..]);
    } else {
        // Before a CR of a CRLF line ending, so the line keeps its ending.
        let cut = if src[..line_end].ends_with('\r') {
            line_end - 1
        } else {
            line_end
        };
        s.push_str(&src[..cut]);
        s.push_str(newline(src));
        s.push_str(&format!("{name} = {value}"));
        s.push_str(&src[cut..]);
    }
    s
}

/// Marks the entry at `at` revoked.
pub(crate) fn set_revoked(src: &str, at: &EntrySpans) -> String {
    set_value(src, at, at.revoked.as_ref(), "revoked", "true")
}

/// Sets the entry's `expires`.
pub(crate) fn set_expires(src: &str, at: &EntrySpans, unix: u64) -> String {
    let v = format!("\"{}\"", format_rfc3339(unix));
    set_value(src, at, at.expires.as_ref(), "expires", &v)
}

/// Holds an exclusive lock on a directory for one read-modify-write of a file in it. (The
/// file itself is replaced by rename, so its inode cannot carry the lock.)
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let f = File::open(dir)?;
    f.lock()?;
    Ok(f)
}

/// The file `write_atomic` replaces for `path`: the symlink's target when `path` is one (the
/// link is kept), else `path`. Writers lock that file's directory, so two writers reaching the
/// same file through different links still exclude each other.
pub(crate) fn written_path(path: &Path) -> io::Result<std::path::PathBuf> {
    match fs::canonicalize(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `data` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. A new file gets mode 0600; an existing file keeps its mode, owner
/// and group (a keys file `root:ringway 0640` stays readable by the gateway after `keys
/// create`), and a symlink is written through: the file it names is replaced, the link stays.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let target = written_path(path)?;
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let (mode, owner) = match fs::metadata(path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0o600, None),
        Err(e) => return Err(e),
    };
    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        key::hex(&nonce)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if let Some((uid, gid)) = owner {
            // Root can give the file back to its owner; another user can at least keep the
            // group when it belongs to it. Otherwise the new file is the writer's.
            if std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).is_err() {
                let _ = std::os::unix::fs::fchown(&f, None, Some(gid));
            }
        }
        // Explicit, so the umask does not change an existing file's mode (and after the
        // chown, which may clear set-id bits).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Best effort: makes the rename durable; the data is already complete either way.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::store::Hasher;

    const P: &str = "keys.toml";
    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(src: &str) -> Result<Vec<KeyEntry>, Vec<ConfigError>> {
        parse_keys(src, Path::new(P), HashMode::Sha256)
    }

    fn err(src: &str) -> ConfigError {
        match parse(src) {
            Ok(_) => panic!("expected an error for:\n{src}"),
            Err(e) => e[0].clone(),
        }
    }

    fn good(id: &str) -> String {
        format!(
            "[[keys]]\nid = \"{id}\"\nconsumer = \"acme\"\nhash = \"sha256:{H}\"\ncreated = \"2025-01-01T00:00:00Z\"\n"
        )
    }

    #[test]
    fn parses_a_valid_file() {
        let src = format!(
            "# keys\n{}\n{}expires = 2025-02-01T00:00:00Z\nrevoked = true\n",
            good("0000000a"),
            good("0000000b")
        );
        let v = parse(&src).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, KeyId(10));
        assert_eq!(v[0].created, 1_735_689_600);
        assert_eq!(v[0].expires, None);
        assert_eq!(v[1].expires, Some(1_738_368_000));
        assert!(v[1].revoked && !v[0].revoked);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_fields_name_line_and_field() {
        let two = format!(
            "{}\n{}",
            good("0000000a"),
            good("0000000b").replace("\"acme\"", "\"a c\"")
        );
        // Line 9 is the second entry's `consumer`.
        let e = err(&two);
        assert_eq!((e.line, e.field.as_str()), (9, "keys[1].consumer"), "{e}");
        assert_eq!(e.file, Path::new(P));
        assert!(
            e.to_string()
                .starts_with("keys.toml:9:12: keys[1].consumer:"),
            "{e}"
        );

        let e = err(&good("0000000G"));
        assert_eq!((e.line, e.field.as_str()), (2, "keys[0].id"), "{e}");
        let e = err(&good("0000000a").replace("sha256:", "md5:"));
        assert_eq!((e.line, e.field.as_str()), (4, "keys[0].hash"), "{e}");
        let e = err(&good("0000000a").replace(H, "abc"));
        assert_eq!((e.line, e.field.as_str()), (4, "keys[0].hash"), "{e}");
        let e = err(&good("0000000a").replace("sha256:", "hmac-sha256:"));
        assert!(e.message.contains("api_keys.hash"), "{e}");
        let e = err(&good("0000000a").replace("2025-01-01T00:00:00Z", "yesterday"));
        assert_eq!((e.line, e.field.as_str()), (5, "keys[0].created"), "{e}");
        let e = err(&format!("{}expires = 5\n", good("0000000a")));
        assert_eq!((e.line, e.field.as_str()), (6, "keys[0].expires"), "{e}");
        let e = err(&format!("{}\n{}", good("0000000a"), good("0000000a")));
        assert_eq!((e.line, e.field.as_str()), (8, "keys[1].id"), "{e}");
        assert!(e.message.contains("line 2"), "{e}");
    }

    #[test]
    fn serde_errors_are_positioned() {
        let e = err(&format!(
            "{}\n{}colour = 1\n",
            good("0000000a"),
            good("0000000b")
        ));
        assert_eq!((e.line, e.field.as_str()), (12, "keys[1].colour"), "{e}");
        let e = err(&format!("{}revoked = \"yes\"\n", good("0000000a")));
        assert_eq!((e.line, e.field.as_str()), (6, "keys[0].revoked"), "{e}");
        let e = err(&format!(
            "{}\n[[keys]]\nid = \"0000000b\"\n",
            good("0000000a")
        ));
        assert_eq!((e.line, e.field.as_str()), (7, "keys[1]"), "{e}");
        assert!(e.message.contains("missing field"), "{e}");
        let e = err("version = 2\n");
        assert_eq!((e.line, e.field.as_str()), (1, "version"), "{e}");
        let e = err("[[keys]\n");
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn edits_keep_everything_else() {
        let src = format!(
            "# top comment\n{}\n# about b\n{}\n{}",
            good("0000000a"),
            good("0000000b"),
            good("0000000c")
        );
        let located = parse_located(&src, Path::new(P), HashMode::Sha256).unwrap();
        let revoked = set_revoked(&src, &located[1].1);
        let v = parse(&revoked).unwrap();
        assert!(!v[0].revoked && v[1].revoked && !v[2].revoked);
        assert!(revoked.contains("# top comment\n") && revoked.contains("# about b\n"));
        assert_eq!(revoked.len(), src.len() + "revoked = true\n".len());
        // Revoking again replaces the value instead of adding a second key.
        let located = parse_located(&revoked, Path::new(P), HashMode::Sha256).unwrap();
        assert_eq!(set_revoked(&revoked, &located[1].1), revoked);

        let exp = set_expires(&revoked, &located[2].1, 86_400);
        let v = parse(&exp).unwrap();
        assert_eq!(v[2].expires, Some(86_400));
        let located = parse_located(&exp, Path::new(P), HashMode::Sha256).unwrap();
        let exp2 = set_expires(&exp, &located[2].1, 3_600);
        assert_eq!(parse(&exp2).unwrap()[2].expires, Some(3_600));
        assert_eq!(exp2.len(), exp.len());
    }

    #[test]
    fn edits_work_in_inline_tables_and_crlf() {
        let src = format!("keys = [{{ id = \"0000000a\", consumer = \"a\", hash = \"sha256:{H}\", created = \"2025-01-01T00:00:00Z\" }}]\n");
        let located = parse_located(&src, Path::new(P), HashMode::Sha256).unwrap();
        let out = set_revoked(&src, &located[0].1);
        assert!(parse(&out).unwrap()[0].revoked, "{out}");

        let crlf = good("0000000a").replace('\n', "\r\n");
        let located = parse_located(&crlf, Path::new(P), HashMode::Sha256).unwrap();
        let out = set_expires(&crlf, &located[0].1, 60);
        assert_eq!(parse(&out).unwrap()[0].expires, Some(60));
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn append_and_render_round_trip() {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let e = KeyEntry {
            id: KeyId(0xdead_beef),
            consumer: "acme.web-1".into(),
            hash_mode: HashMode::Sha256,
            hash: h.hash(b"whatever"),
            created: 1_700_000_000,
            expires: Some(1_800_000_000),
            revoked: true,
        };
        let new = append("", &e);
        assert!(new.starts_with('#'));
        assert_eq!(parse(&new).unwrap(), vec![e.clone()]);
        let mut e2 = e.clone();
        e2.id = KeyId(1);
        e2.expires = None;
        e2.revoked = false;
        let no_nl = good("0000000a").trim_end().to_string();
        let both = append(&no_nl, &e2);
        assert_eq!(parse(&both).unwrap().len(), 2);
        assert_eq!(
            parse(&render(&[e.clone(), e2.clone()])).unwrap(),
            vec![e, e2]
        );
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }

    #[test]
    fn consumers() {
        assert!(valid_consumer("acme").is_ok());
        assert!(valid_consumer("a.b_c-9").is_ok());
        assert!(valid_consumer("").is_err());
        assert!(valid_consumer("-a").is_err());
        assert!(valid_consumer("a b").is_err());
        assert!(valid_consumer(&"a".repeat(65)).is_err());
        assert!(valid_consumer("é").is_err());
    }

    #[test]
    fn atomic_write_creates_0600_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.toml");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let _lock = lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn atomic_write_keeps_the_group_and_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        write_atomic(&real, b"one").unwrap();
        // As root (CI), give the file another group, as `root:ringway 0640` would be.
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            std::os::unix::fs::chown(&real, Some(0), Some(65534)).unwrap();
        }
        let link = dir.path().join("keys.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"two").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read(&real).unwrap(),
            b"two",
            "the named file was replaced"
        );
        if root {
            assert_eq!(
                fs::metadata(&real).unwrap().gid(),
                65534,
                "the group is kept"
            );
        }
    }
}
