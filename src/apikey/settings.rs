//! The `[api_keys]` config table and `load_store`, which turns it plus the keys file into a
//! `KeyStore` on every config load.
//!
//! ```toml
//! [api_keys]
//! file = "keys.toml"                 # relative to the config file's directory
//! hash = "hmac-sha256"               # (default) or "sha256"
//! secret_env = "RINGWAY_KEY_SECRET"  # (default) env var holding the HMAC secret
//! store = "file"                     # (default) or "redis": records live in Redis ([redis])
//! snapshot = "keys.snapshot.toml"    # redis store: last synced key set (default shown)
//! ```
//! With `store = "redis"`, `file` is optional (it is where `ringway keys import` reads from)
//! and the compiled store comes from `redis_store::KeyCache` (the last key set synced from
//! Redis, or the snapshot file at start), never from a network call during a compile.
//! Problems in the table are reported through a callback with spans in the main config;
//! problems in the keys file come back as `ConfigError`s naming the keys file and line.
//! The secret is read from the environment at load time and lives only inside the store.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::file::parse_keys;
use super::records::{KeyCache, SyncSettings};
use super::store::KeyStore;
use super::types::HashMode;
use crate::config::errors::ConfigError;

/// Env var holding the HMAC secret unless `api_keys.secret_env` names another.
pub const DEFAULT_SECRET_ENV: &str = "RINGWAY_KEY_SECRET";

/// Shortest HMAC secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The `[api_keys]` table of the main config, as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    /// Keys file, relative to the config file's directory (required with `store = "file"`;
    /// with `store = "redis"` the default source of `ringway keys import`).
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// `"hmac-sha256"` (default) or `"sha256"`.
    #[schemars(with = "Option<String>")]
    pub hash: Option<Spanned<String>>,
    /// Env var holding the HMAC secret (default `RINGWAY_KEY_SECRET`).
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    /// Where the key records live: `"file"` (default) or `"redis"` (needs `[redis]`).
    #[schemars(with = "Option<String>")]
    pub store: Option<Spanned<String>>,
    /// `store = "redis"`: the local copy of the last synced key set (keys-file format),
    /// loaded at start when Redis cannot be reached (default `keys.snapshot.toml`).
    #[schemars(with = "Option<String>")]
    pub snapshot: Option<Spanned<String>>,
}

/// Where key records live (`api_keys.store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The keys file; the CLI edits it, a reload applies it.
    File,
    /// A Redis hash; the CLI writes it and publishes, instances sync within seconds.
    Redis,
}

/// Default snapshot file name (next to the config) for `store = "redis"`.
pub const DEFAULT_SNAPSHOT: &str = "keys.snapshot.toml";

/// `[api_keys]` validated; the secret is not read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysSettings {
    /// The keys file, resolved against the config file's directory (redis store: the default
    /// import source, `keys.toml` when not set).
    pub file: PathBuf,
    pub mode: HashMode,
    pub store: StoreKind,
    /// The snapshot file of the redis store, resolved against the config file's directory.
    pub snapshot: PathBuf,
    pub secret_env: String,
    /// Span of the setting that made HMAC mode apply (for "secret missing" errors).
    secret_span: Range<usize>,
}

/// Callback for problems in the `[api_keys]` table: (span in the main config, dotted field,
/// message).
pub type TableErr<'a> = &'a mut dyn FnMut(Range<usize>, &str, String);

/// Validates the table. `config_dir` is the main config file's directory.
pub fn resolve(raw: &RawApiKeys, config_dir: &Path, err: TableErr<'_>) -> Option<KeysSettings> {
    let mut ok = true;
    let store = match &raw.store {
        None => StoreKind::File,
        Some(s) => match s.get_ref().as_str() {
            "file" => StoreKind::File,
            "redis" => StoreKind::Redis,
            other => {
                err(
                    s.span(),
                    "api_keys.store",
                    format!("unknown store {other:?}: use \"file\" (default) or \"redis\""),
                );
                ok = false;
                StoreKind::File
            }
        },
    };
    let file = match (&raw.file, store) {
        (Some(f), _) if f.get_ref().trim().is_empty() => {
            err(f.span(), "api_keys.file", "must name the keys file".into());
            ok = false;
            String::new()
        }
        (Some(f), _) => f.get_ref().clone(),
        (None, StoreKind::Redis) => "keys.toml".to_string(),
        (None, StoreKind::File) => {
            // No span of the table itself: point at any field it has.
            let at = [&raw.hash, &raw.secret_env, &raw.snapshot]
                .into_iter()
                .flatten()
                .map(|f| f.span())
                .next()
                .unwrap_or(0..0);
            err(
                at,
                "api_keys.file",
                "must name the keys file (or set store = \"redis\")".into(),
            );
            ok = false;
            String::new()
        }
    };
    let snapshot = match &raw.snapshot {
        Some(s) if s.get_ref().trim().is_empty() => {
            err(s.span(), "api_keys.snapshot", "must name a file".into());
            ok = false;
            String::new()
        }
        Some(s) if store == StoreKind::File => {
            err(
                s.span(),
                "api_keys.snapshot",
                "only applies with store = \"redis\"".into(),
            );
            ok = false;
            String::new()
        }
        Some(s) => s.get_ref().clone(),
        None => DEFAULT_SNAPSHOT.to_string(),
    };
    let mode = match &raw.hash {
        None => HashMode::HmacSha256,
        Some(h) => HashMode::parse(h.get_ref()).unwrap_or_else(|| {
            err(
                h.span(),
                "api_keys.hash",
                format!(
                    "unknown hash {:?}: use \"hmac-sha256\" (default) or \"sha256\"",
                    h.get_ref()
                ),
            );
            ok = false;
            HashMode::HmacSha256
        }),
    };
    let secret_env = match &raw.secret_env {
        None => DEFAULT_SECRET_ENV.to_string(),
        Some(s) => {
            let name = s.get_ref();
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                err(
                    s.span(),
                    "api_keys.secret_env",
                    format!("invalid environment variable name {name:?}"),
                );
                ok = false;
            }
            name.clone()
        }
    };
    let secret_span = raw
        .secret_env
        .as_ref()
        .map(|s| s.span())
        .or_else(|| raw.hash.as_ref().map(|h| h.span()))
        .or_else(|| raw.file.as_ref().map(|f| f.span()))
        .or_else(|| raw.store.as_ref().map(|s| s.span()))
        .unwrap_or(0..0);
    ok.then(|| KeysSettings {
        file: config_dir.join(file),
        mode,
        store,
        snapshot: config_dir.join(snapshot),
        secret_env,
        secret_span,
    })
}

impl KeysSettings {
    /// Reads the HMAC secret from the environment (`None` in sha256 mode). A missing, empty
    /// or too short secret is an error positioned at the setting that asked for HMAC.
    pub fn secret(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Vec<u8>>, SettingError> {
        if self.mode != HashMode::HmacSha256 {
            return Ok(None);
        }
        let error = |message: String| SettingError {
            span: self.secret_span.clone(),
            field: "api_keys.secret_env",
            message,
        };
        match env(&self.secret_env) {
            None => Err(error(format!(
                "hash mode hmac-sha256 needs a secret in the environment variable {} (unset); set it, e.g. to the output of `head -c 32 /dev/urandom | base64`, or use hash = \"sha256\"",
                self.secret_env
            ))),
            Some(s) if s.len() < MIN_SECRET_LEN => Err(error(format!(
                "the secret in {} is too short ({} bytes; at least {MIN_SECRET_LEN}, 32 or more recommended)",
                self.secret_env,
                s.len()
            ))),
            Some(s) => Ok(Some(s.into_bytes())),
        }
    }
}

/// A problem with a setting of the `[api_keys]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    /// Span in the main config.
    pub span: Range<usize>,
    /// Dotted field path.
    pub field: &'static str,
    pub message: String,
}

/// Reads an env var as UTF-8 (non-UTF-8 counts as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What `load_store` produced: the compiled store, and for `store = "redis"` what the
/// background sync needs.
pub struct LoadedStore {
    pub store: Arc<KeyStore>,
    pub sync: Option<SyncSettings>,
}

/// Builds the key store for `[api_keys]` on a config load: validates the table (problems go to
/// `table_err`, spans in the main config), reads the HMAC secret from the process
/// environment, then reads and validates the keys file (problems are pushed to `file_errs`,
/// naming the keys file), or with `store = "redis"` takes the last synced key set from
/// `cache` (no network call). Returns `None` if anything was reported.
pub fn load_store(
    raw: &RawApiKeys,
    config_dir: &Path,
    cache: &KeyCache,
    table_err: TableErr<'_>,
    file_errs: &mut Vec<ConfigError>,
) -> Option<LoadedStore> {
    load_store_with_env(raw, config_dir, cache, &process_env, table_err, file_errs)
}

/// `load_store` with an explicit environment lookup (for tests).
pub fn load_store_with_env(
    raw: &RawApiKeys,
    config_dir: &Path,
    cache: &KeyCache,
    env: &dyn Fn(&str) -> Option<String>,
    table_err: TableErr<'_>,
    file_errs: &mut Vec<ConfigError>,
) -> Option<LoadedStore> {
    let settings = resolve(raw, config_dir, table_err)?;
    let secret = match settings.secret(env) {
        Ok(s) => s,
        Err(e) => {
            table_err(e.span, e.field, e.message);
            return None;
        }
    };
    let file_err = |message: String| ConfigError {
        file: settings.file.clone(),
        line: 0,
        col: 0,
        field: String::new(),
        message,
    };
    if settings.store == StoreKind::Redis {
        let sync = SyncSettings {
            mode: settings.mode,
            snapshot: settings.snapshot.clone(),
        };
        let set = cache.current_or_snapshot(&sync);
        return match KeyStore::new(settings.mode, secret.as_deref(), &set.entries) {
            Ok(s) => Some(LoadedStore {
                store: Arc::new(s),
                sync: Some(sync),
            }),
            Err(m) => {
                // Records were validated in this mode when they entered the cache.
                file_errs.push(file_err(m));
                None
            }
        };
    }
    let max = crate::bounded_file::MAX_KEYS_FILE_BYTES;
    // A file that cannot be read is the config's problem: named at `api_keys.file`.
    let span = raw.file.as_ref().map_or(0..0, |f| f.span());
    let src = match crate::bounded_file::read_to_string(&settings.file, max) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            table_err(
                span,
                "api_keys.file",
                format!(
                    "keys file {} does not exist (create keys with `ringway keys create`)",
                    settings.file.display()
                ),
            );
            return None;
        }
        Err(e) => {
            table_err(
                span,
                "api_keys.file",
                format!("cannot read keys file {}: {e}", settings.file.display()),
            );
            return None;
        }
    };
    let entries = match parse_keys(&src, &settings.file, settings.mode) {
        Ok(e) => e,
        Err(errs) => {
            file_errs.extend(errs);
            return None;
        }
    };
    match KeyStore::new(settings.mode, secret.as_deref(), &entries) {
        Ok(s) => Some(LoadedStore {
            store: Arc::new(s),
            sync: None,
        }),
        Err(m) => {
            // parse_keys already rejects what KeyStore::new checks; kept for safety.
            file_errs.push(file_err(m));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::file::{append, KeyEntry};
    use crate::apikey::key;
    use crate::apikey::store::Hasher;
    use crate::apikey::KeyError;

    #[derive(Deserialize, schemars::JsonSchema)]
    struct Main {
        api_keys: RawApiKeys,
    }

    const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-0123";

    fn raw(table: &str) -> (String, RawApiKeys) {
        let src = format!("[server]\nworkers = 1\n\n[api_keys]\n{table}");
        let m: Main = toml::from_str(&src).unwrap();
        (src, m.api_keys)
    }

    type Reported = Vec<(usize, String, String)>;

    /// Loads with a fake env; returns the store, table errors as (line, field, message), and
    /// keys-file errors.
    fn load(
        table: &str,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> (Option<Arc<KeyStore>>, Reported, Vec<ConfigError>) {
        let cache = KeyCache::default();
        let (src, r) = raw(table);
        let mut table_errs = Vec::new();
        let mut file_errs = Vec::new();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let store = load_store_with_env(
            &r,
            dir,
            &cache,
            &lookup,
            &mut |span, field, msg| {
                let (line, _) = crate::config::errors::line_col(&src, span.start);
                table_errs.push((line, field.to_string(), msg));
            },
            &mut file_errs,
        )
        .map(|l| l.store);
        (store, table_errs, file_errs)
    }

    fn write_key(dir: &Path, mode: HashMode, secret: Option<&[u8]>) -> String {
        let h = Hasher::new(mode, secret).unwrap();
        let (id, k) = key::generate(|_| false).unwrap();
        let e = KeyEntry {
            id,
            consumer: "acme".into(),
            hash_mode: mode,
            hash: h.hash(k.as_bytes()),
            created: 0,
            expires: None,
            revoked: false,
        };
        std::fs::write(dir.join("keys.toml"), append("", &e)).unwrap();
        k
    }

    #[test]
    fn hmac_store_loads_with_the_env_secret() {
        let dir = tempfile::tempdir().unwrap();
        let k = write_key(dir.path(), HashMode::HmacSha256, Some(SECRET.as_bytes()));
        let (store, t, f) = load(
            "file = \"keys.toml\"\n",
            dir.path(),
            &[(DEFAULT_SECRET_ENV, SECRET)],
        );
        assert!(t.is_empty() && f.is_empty(), "{t:?} {f:?}");
        let store = store.unwrap();
        assert!(store.authenticate(k.as_bytes(), 1).is_ok());
        // Another secret (custom env var): the same key no longer matches.
        let (store, t, _) = load(
            "file = \"keys.toml\"\nsecret_env = \"OTHER\"\n",
            dir.path(),
            &[("OTHER", "a-different-secret-0123456789")],
        );
        assert!(t.is_empty(), "{t:?}");
        assert_eq!(
            store.unwrap().authenticate(k.as_bytes(), 1),
            Err(KeyError::Unknown)
        );
    }

    #[test]
    fn sha256_store_needs_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let k = write_key(dir.path(), HashMode::Sha256, None);
        let (store, t, f) = load("file = \"keys.toml\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert!(t.is_empty() && f.is_empty(), "{t:?} {f:?}");
        assert!(store.unwrap().authenticate(k.as_bytes(), 1).is_ok());
    }

    #[test]
    fn table_problems_are_reported_with_main_config_lines() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), HashMode::HmacSha256, Some(SECRET.as_bytes()));
        let (store, t, _) = load("file = \"keys.toml\"\n", dir.path(), &[]);
        assert!(store.is_none());
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].0, t[0].1.as_str()), (5, "api_keys.secret_env"));
        assert!(t[0].2.contains(DEFAULT_SECRET_ENV), "{}", t[0].2);

        let (_, t, _) = load(
            "file = \"keys.toml\"\nsecret_env = \"K\"\n",
            dir.path(),
            &[("K", "short")],
        );
        assert_eq!((t[0].0, t[0].1.as_str()), (6, "api_keys.secret_env"));
        assert!(t[0].2.contains("too short"), "{}", t[0].2);

        let (_, t, _) = load("file = \"keys.toml\"\nhash = \"md5\"\n", dir.path(), &[]);
        assert_eq!((t[0].0, t[0].1.as_str()), (6, "api_keys.hash"));
        let (_, t, _) = load("file = \"\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert_eq!((t[0].0, t[0].1.as_str()), (5, "api_keys.file"));
        let (_, t, _) = load("file = \"k\"\nsecret_env = \"1 BAD\"\n", dir.path(), &[]);
        assert_eq!((t[0].0, t[0].1.as_str()), (6, "api_keys.secret_env"));
    }

    #[test]
    fn keys_file_problems_name_the_config_field_or_the_keys_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file that cannot be read at all is named at the config's `api_keys.file`.
        let (store, t, f) = load("file = \"nope.toml\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert!(store.is_none() && f.is_empty());
        assert_eq!((t[0].0, t[0].1.as_str()), (5, "api_keys.file"));
        assert!(t[0].2.contains("does not exist"), "{}", t[0].2);
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let (store, t, _) = load("file = \"adir\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert!(store.is_none());
        assert_eq!((t[0].0, t[0].1.as_str()), (5, "api_keys.file"));
        assert!(t[0].2.contains("cannot read keys file"), "{}", t[0].2);

        std::fs::write(
            dir.path().join("bad.toml"),
            "# c\n[[keys]]\nid = \"nothex!!\"\n",
        )
        .unwrap();
        let (store, _, f) = load("file = \"bad.toml\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert!(store.is_none());
        assert_eq!(f[0].file, dir.path().join("bad.toml"));
        assert_eq!(f[0].line, 2, "{}", f[0]); // missing fields: reported at the table header
    }

    #[test]
    fn redis_store_builds_from_the_cache_and_validates_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        // No keys file needed; no snapshot yet: an empty store (logged), not an error.
        let (store, t, f) = load("store = \"redis\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert!(t.is_empty() && f.is_empty(), "{t:?} {f:?}");
        assert!(store.unwrap().is_empty());
        let (_, t, _) = load("store = \"etcd\"\nhash = \"sha256\"\n", dir.path(), &[]);
        assert_eq!((t[0].0, t[0].1.as_str()), (5, "api_keys.store"));
        let (_, t, _) = load(
            "hash = \"sha256\"\nsnapshot = \"s.toml\"\n",
            dir.path(),
            &[],
        );
        assert!(t.iter().any(|e| e.1 == "api_keys.file"), "{t:?}");
        assert!(t.iter().any(|e| e.1 == "api_keys.snapshot"), "{t:?}");
        let (_, t, _) = load(
            "store = \"redis\"\nhash = \"sha256\"\nsnapshot = \" \"\n",
            dir.path(),
            &[],
        );
        assert_eq!((t[0].0, t[0].1.as_str()), (7, "api_keys.snapshot"));
    }

    #[test]
    fn raw_table_denies_unknown_fields() {
        let r: Result<Main, _> = toml::from_str("[api_keys]\nfile = \"k\"\nhsah = \"sha256\"\n");
        assert!(r.is_err());
    }
}
