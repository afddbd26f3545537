//! The pieces of `ringway keys` both stores share: the subcommands (`KeysCmd`), what a run
//! reads and writes (`KeysIo`), how it fails (`Fail`), the config reduced to `[api_keys]` and
//! `[redis]` (`load_settings`), the hasher for new keys, and the `list` table.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use serde::Deserialize;

use super::file::KeyEntry;
use super::key::KeyId;
use super::settings::{self, KeysSettings, RawApiKeys};
use super::store::Hasher;
use crate::civil::format_rfc3339;
use crate::config::errors::ConfigError;
use crate::config::units::parse_duration;

/// Latest timestamp the keys file can hold (9999-12-31T23:59:59Z).
const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// `ringway keys …` subcommands. Embed as `Keys { #[command(subcommand)] cmd: KeysCmd }`; the
/// config file comes from the top-level (global) `--config`.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum KeysCmd {
    /// Generate a key for a consumer; prints it once on stdout.
    Create {
        /// The consumer the key belongs to (A-Z a-z 0-9 . _ -).
        #[arg(long)]
        consumer: String,
        /// Key lifetime, e.g. 30d, 12h (default: no expiry).
        #[arg(long, value_parser = parse_lifetime)]
        expires: Option<Duration>,
    },
    /// List keys: id, consumer, created, expires, status. Never prints keys or hashes.
    List,
    /// Revoke the key with this id.
    Revoke {
        /// Key id (8 hex digits, as shown by `list`).
        id: String,
    },
    /// Create a new key for the same consumer and let the old one expire after a grace period.
    Rotate {
        /// Id of the key to replace.
        id: String,
        /// How long the old key keeps working, e.g. 24h, 7d, 0s (an earlier expiry is kept).
        #[arg(long, default_value = "24h", value_parser = parse_grace)]
        grace: Duration,
        /// Lifetime of the new key (default: no expiry).
        #[arg(long, value_parser = parse_lifetime)]
        expires: Option<Duration>,
    },
    /// Copy the keys file into the Redis key store (`store = "redis"`); keys already in Redis
    /// are left as they are. Also initializes an empty store when the file does not exist.
    Import {
        /// Keys file to read (default: `api_keys.file`).
        #[arg(long)]
        from: Option<std::path::PathBuf>,
    },
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    // Bounded before parse_duration so its unit multiplication cannot overflow.
    if s.trim().bytes().take_while(u8::is_ascii_digit).count() > 9 {
        return Err(format!("duration {s:?} is too large"));
    }
    parse_duration(s)
}

fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let d = parse_dur(s)?;
    if d < Duration::from_secs(1) {
        return Err("a key lifetime must be at least 1s".into());
    }
    Ok(d)
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    parse_dur(s)
}

/// Where `run_with` writes and what it reads from the outside world (injected for tests).
pub struct KeysIo<'a> {
    /// Keys (create/rotate) and the list table.
    pub out: &'a mut dyn Write,
    /// Notes and errors.
    pub err: &'a mut dyn Write,
    /// The current time, Unix seconds.
    pub now_unix: u64,
    /// Environment lookup (for the HMAC secret).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

pub(crate) enum Fail {
    Config(Vec<ConfigError>),
    Msg(String),
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Msg(m)
    }
}

/// The main config, reduced to `[api_keys]`; every other table is ignored.
#[derive(Deserialize)]
struct MainConfig {
    api_keys: Option<RawApiKeys>,
    /// Read only with `store = "redis"`.
    redis: Option<crate::redis::RawRedis>,
}

/// `[api_keys]` of the main config, validated, plus the config text (for error positions).
pub(crate) struct Loaded {
    pub(crate) settings: KeysSettings,
    pub(crate) src: String,
    pub(crate) redis: Option<crate::redis::RawRedis>,
}

pub(crate) fn load_settings(config: &Path) -> Result<Loaded, Fail> {
    let src = crate::bounded_file::read_to_string(config, crate::bounded_file::MAX_CONFIG_BYTES)
        .map_err(|e| format!("cannot read config {}: {e}", config.display()))?;
    let main: MainConfig = toml::from_str(&src).map_err(|e| {
        let start = e.span().map(|s| s.start).unwrap_or(0);
        Fail::Config(vec![ConfigError::at(
            config,
            &src,
            start,
            "api_keys",
            e.message().trim(),
        )])
    })?;
    let raw = main.api_keys.ok_or_else(|| {
        format!(
            "{} has no [api_keys] table (add one with `file = \"keys.toml\"`)",
            config.display()
        )
    })?;
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut errs = Vec::new();
    let settings = settings::resolve(&raw, dir, &mut |span, field, msg| {
        errs.push(ConfigError::at(config, &src, span.start, field, msg))
    });
    match settings {
        Some(settings) if errs.is_empty() => Ok(Loaded {
            settings,
            src,
            redis: main.redis,
        }),
        _ => Err(Fail::Config(errs)),
    }
}

/// The hasher for new keys (reads the HMAC secret).
pub(crate) fn hasher(loaded: &Loaded, config: &Path, io: &KeysIo<'_>) -> Result<Hasher, Fail> {
    let secret = loaded.settings.secret(io.env).map_err(|e| {
        Fail::Config(vec![ConfigError::at(
            config,
            &loaded.src,
            e.span.start,
            e.field,
            e.message,
        )])
    })?;
    Ok(Hasher::new(loaded.settings.mode, secret.as_deref())?)
}

pub(crate) fn deadline(now: u64, d: Duration) -> Result<u64, String> {
    now.checked_add(d.as_secs())
        .filter(|&t| t <= MAX_TIMESTAMP)
        .ok_or_else(|| "that duration ends after the year 9999".to_string())
}

pub(crate) fn status(e: &KeyEntry, now: u64) -> &'static str {
    if e.revoked {
        "revoked"
    } else if e.expires.is_some_and(|t| now >= t) {
        "expired"
    } else {
        "active"
    }
}

/// The `list` table: id, consumer, created, expires, status (never keys or hashes).
pub(crate) fn print_table(entries: &[KeyEntry], io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.id.to_string(),
                e.consumer.clone(),
                format_rfc3339(e.created),
                e.expires.map_or_else(|| "-".to_string(), format_rfc3339),
                status(e, io.now_unix).to_string(),
            ]
        })
        .collect();
    let header = ["ID", "CONSUMER", "CREATED", "EXPIRES", "STATUS"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    io.out
        .write_all(table.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    Ok(())
}

/// Prints a new key (stdout, once) and what was done (stderr); `applies` says when the change
/// takes effect for this store.
pub(crate) fn report_created(
    io: &mut KeysIo<'_>,
    id: KeyId,
    plain: &str,
    consumer: &str,
    expires: Option<u64>,
    applies: &str,
) -> Result<(), Fail> {
    writeln!(io.out, "{plain}").map_err(|e| format!("cannot write the key to stdout: {e}"))?;
    let until = expires
        .map(|t| format!(", expires {}", format_rfc3339(t)))
        .unwrap_or_default();
    let _ = writeln!(
        io.err,
        "created key {id} for consumer {consumer}{until}; it will not be shown again, store it now ({applies})"
    );
    Ok(())
}

/// A new key for `consumer`: an id that `taken` does not hold, its plaintext (shown once) and
/// the entry that stores only its hash.
pub(crate) fn generate_entry(
    hasher: &Hasher,
    consumer: &str,
    now: u64,
    expires: Option<u64>,
    taken: impl Fn(KeyId) -> bool,
) -> Result<(KeyEntry, String), Fail> {
    let (id, plain) = super::key::generate(taken)?;
    let entry = KeyEntry {
        id,
        consumer: consumer.to_string(),
        hash_mode: hasher.mode(),
        hash: hasher.hash(plain.as_bytes()),
        created: now,
        expires,
        revoked: false,
    };
    Ok((entry, plain))
}

/// Prints a rotated key's replacement (stdout, once) and what was done (stderr).
pub(crate) fn report_rotated(
    io: &mut KeysIo<'_>,
    (id, new_id): (KeyId, KeyId),
    plain: &str,
    consumer: &str,
    old_end: u64,
    applies: &str,
) -> Result<(), Fail> {
    writeln!(io.out, "{plain}").map_err(|e| format!("cannot write the key to stdout: {e}"))?;
    let _ = writeln!(
        io.err,
        "rotated key {id} -> {new_id} for consumer {consumer}; {id} expires {}; the new key will not be shown again, store it now ({applies})",
        format_rfc3339(old_end)
    );
    Ok(())
}
