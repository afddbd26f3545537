//! `ringway keys ...` with `[api_keys] store = "redis"`: the same commands as for the keys
//! file, applied to the Redis key store (`redis_store.rs`) through one blocking client
//! (`redis::block_on`). Every change re-reads the store and writes with the version it read,
//! retrying on a concurrent change, so two admins never lose each other's edit. Running
//! instances apply a change within the sync bound (pub/sub), without a reload.
//!
//! Invariants as for the file: a plain key is printed once, after the write succeeded, and
//! never stored; `list` never prints keys or hashes; records are validated on the way in
//! (they are built by `KeyEntry`) and on the way out (`records::decode_all`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cli_common::{self as cli, Fail, KeysCmd, KeysIo, Loaded};
use super::file::{self, KeyEntry};
use super::key::KeyId;
use super::records;
use super::redis_store::{self, StoreKeys, Stored, Written};
use super::store::Hasher;
use crate::config::errors::ConfigError;
use crate::redis::{Client, RedisError, RedisShared};

/// How often a change is retried when another writer changed the store meanwhile.
const ATTEMPTS: usize = 8;

const APPLIES: &str = "every instance applies it within 2 s";

/// Runs a `keys` subcommand against Redis.
pub(super) fn run(
    cmd: &KeysCmd,
    config: &Path,
    loaded: &Loaded,
    io: &mut KeysIo<'_>,
) -> Result<(), Fail> {
    let shared = redis_shared(config, loaded, io)?;
    let keys = StoreKeys::new(&shared);
    crate::redis::block_on(async {
        let client = Client::new(shared.clone());
        let cx = Cx {
            client: &client,
            keys: &keys,
            loaded,
            config,
        };
        match cmd {
            KeysCmd::Create { consumer, expires } => create(&cx, consumer, *expires, io).await,
            KeysCmd::List => list(&cx, io).await,
            KeysCmd::Revoke { id } => revoke(&cx, id, io).await,
            KeysCmd::Rotate { id, grace, expires } => rotate(&cx, id, *grace, *expires, io).await,
            KeysCmd::Import { from } => import(&cx, from.as_deref(), io).await,
        }
    })
}

struct Cx<'a> {
    client: &'a Client,
    keys: &'a StoreKeys,
    loaded: &'a Loaded,
    config: &'a Path,
}

/// `[redis]` of the config file, compiled (the password comes from the CLI's environment).
fn redis_shared(config: &Path, loaded: &Loaded, io: &KeysIo<'_>) -> Result<Arc<RedisShared>, Fail> {
    let Some(raw) = &loaded.redis else {
        return Err(Fail::Msg(format!(
            "[api_keys] store = \"redis\" needs a [redis] table in {}",
            config.display()
        )));
    };
    let mut errs = Vec::new();
    let mut report = |span: std::ops::Range<usize>, field: &str, msg: String| {
        errs.push(ConfigError::at(config, &loaded.src, span.start, field, msg));
    };
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let settings = crate::redis::compile(raw, io.env, dir, &mut report);
    match settings {
        Some(s) if errs.is_empty() => Ok(Arc::new(RedisShared::new(s))),
        _ => Err(Fail::Config(errs)),
    }
}

fn redis_fail(e: RedisError, k: &StoreKeys) -> Fail {
    Fail::Msg(format!("Redis key store {}: {e}", k.records))
}

fn not_initialized(k: &StoreKeys) -> Fail {
    Fail::Msg(format!(
        "the Redis key store {} does not exist yet (first use, or Redis lost its data): run `ringway keys import` first (it copies api_keys.file, or --from an instance's snapshot; with no file it creates an empty store)",
        k.version
    ))
}

/// The store's validated entries and every field name (valid or not, for unique new ids).
struct View {
    version: Option<i64>,
    entries: Vec<KeyEntry>,
    taken: Vec<Vec<u8>>,
}

async fn read(cx: &Cx<'_>) -> Result<View, Fail> {
    let Stored { version, records } = redis_store::read_all(cx.client, cx.keys)
        .await
        .map_err(|e| redis_fail(e, cx.keys))?;
    let entries = records::decode_all(&records, cx.loaded.settings.mode, &cx.keys.records);
    let taken = records.into_iter().map(|(f, _)| f).collect();
    Ok(View {
        version,
        entries,
        taken,
    })
}

/// Read-check-write with retries: `edit` sees the current store and returns the entries to
/// write (`None`: nothing to do). Returns the new version, if anything was written.
async fn change(
    cx: &Cx<'_>,
    allow_uninitialized: bool,
    mut edit: impl FnMut(&View) -> Result<Option<Vec<KeyEntry>>, Fail>,
) -> Result<Option<i64>, Fail> {
    for _ in 0..ATTEMPTS {
        let view = read(cx).await?;
        if view.version.is_none() && !allow_uninitialized {
            return Err(not_initialized(cx.keys));
        }
        let Some(writes) = edit(&view)? else {
            return Ok(None);
        };
        let recs: Vec<(String, Vec<u8>)> = writes
            .iter()
            .map(|e| (e.id.to_string(), records::encode_record(e)))
            .collect();
        match redis_store::write(cx.client, cx.keys, view.version, &recs).await {
            Ok(Written::Version(v)) => return Ok(Some(v)),
            Ok(Written::Conflict) => continue,
            Err(e) => return Err(redis_fail(e, cx.keys)),
        }
    }
    Err(Fail::Msg(
        "the key store kept changing under this command; try again".into(),
    ))
}

fn new_entry(
    hasher: &Hasher,
    consumer: &str,
    now: u64,
    expires: Option<u64>,
    view: &View,
) -> Result<(KeyEntry, String), Fail> {
    cli::generate_entry(hasher, consumer, now, expires, |id| {
        let s = id.to_string();
        view.taken.iter().any(|f| f == s.as_bytes())
    })
}

async fn create(
    cx: &Cx<'_>,
    consumer: &str,
    lifetime: Option<Duration>,
    io: &mut KeysIo<'_>,
) -> Result<(), Fail> {
    file::valid_consumer(consumer)?;
    let now = io.now_unix;
    let expires = lifetime.map(|d| cli::deadline(now, d)).transpose()?;
    let hasher = cli::hasher(cx.loaded, cx.config, io)?;
    let mut made = None;
    change(cx, false, |view| {
        let (entry, plain) = new_entry(&hasher, consumer, now, expires, view)?;
        made = Some((entry.id, plain));
        Ok(Some(vec![entry]))
    })
    .await?;
    let Some((id, plain)) = made else {
        return Err(Fail::Msg("no key was created".into()));
    };
    cli::report_created(io, id, &plain, consumer, expires, APPLIES)
}

fn parse_id(id: &str) -> Result<KeyId, Fail> {
    KeyId::parse(id.trim().as_bytes()).ok_or_else(|| {
        Fail::Msg(format!(
            "no key with id {id:?} (ids are 8 lowercase hex digits, see `ringway keys list`)"
        ))
    })
}

fn find(view: &View, id: KeyId, k: &StoreKeys) -> Result<KeyEntry, Fail> {
    view.entries
        .iter()
        .find(|e| e.id == id)
        .cloned()
        .ok_or_else(|| {
            Fail::Msg(format!(
                "no key with id {id} in the Redis key store {}",
                k.records
            ))
        })
}

async fn revoke(cx: &Cx<'_>, id: &str, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let id = parse_id(id)?;
    let mut outcome = None;
    change(cx, false, |view| {
        let mut e = find(view, id, cx.keys)?;
        outcome = Some((e.consumer.clone(), e.revoked));
        if e.revoked {
            return Ok(None);
        }
        e.revoked = true;
        Ok(Some(vec![e]))
    })
    .await?;
    if let Some((consumer, already)) = outcome {
        let note = if already { " (it already was)" } else { "" };
        let _ = writeln!(
            io.err,
            "revoked key {id} of consumer {consumer}{note} ({APPLIES})"
        );
    }
    Ok(())
}

async fn rotate(
    cx: &Cx<'_>,
    id: &str,
    grace: Duration,
    lifetime: Option<Duration>,
    io: &mut KeysIo<'_>,
) -> Result<(), Fail> {
    let now = io.now_unix;
    let grace_end = cli::deadline(now, grace)?;
    let expires = lifetime.map(|d| cli::deadline(now, d)).transpose()?;
    let id = parse_id(id)?;
    let hasher = cli::hasher(cx.loaded, cx.config, io)?;
    let mut made = None;
    change(cx, false, |view| {
        let mut old = find(view, id, cx.keys)?;
        if old.revoked {
            return Err(Fail::Msg(format!(
                "key {id} is revoked; create a new key with `ringway keys create --consumer {}`",
                old.consumer
            )));
        }
        let old_end = old.expires.map_or(grace_end, |t| t.min(grace_end));
        let (entry, plain) = new_entry(&hasher, &old.consumer, now, expires, view)?;
        made = Some((entry.id, plain, old.consumer.clone(), old_end));
        let mut writes = vec![entry];
        if old.expires != Some(old_end) {
            old.expires = Some(old_end);
            writes.push(old);
        }
        Ok(Some(writes))
    })
    .await?;
    let Some((new_id, plain, consumer, old_end)) = made else {
        return Err(Fail::Msg("no key was created".into()));
    };
    cli::report_rotated(io, (id, new_id), &plain, &consumer, old_end, APPLIES)
}

async fn list(cx: &Cx<'_>, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let view = read(cx).await?;
    if view.version.is_none() {
        let _ = writeln!(
            io.err,
            "no keys yet (the Redis key store {} does not exist; run `ringway keys import`)",
            cx.keys.records
        );
        return Ok(());
    }
    cli::print_table(&view.entries, io)
}

/// `keys import [--from FILE]`: adds the file's keys that Redis does not hold yet (a key
/// already in Redis keeps its Redis state: a revocation there is never undone by a file).
async fn import(cx: &Cx<'_>, from: Option<&Path>, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let s = &cx.loaded.settings;
    let path: PathBuf = from.map_or_else(|| s.file.clone(), Path::to_path_buf);
    let src = match crate::bounded_file::read_to_string(
        &path,
        crate::bounded_file::MAX_KEYS_FILE_BYTES,
    ) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Fail::Msg(format!("cannot read {}: {e}", path.display()))),
    };
    let entries = match &src {
        Some(t) => file::parse_keys(t, &path, s.mode).map_err(Fail::Config)?,
        None => Vec::new(),
    };
    let mut counts = (0, 0, false);
    let version = change(cx, true, |view| {
        if src.is_none() && view.version.is_some() {
            return Err(Fail::Msg(format!("{} does not exist", path.display())));
        }
        let new: Vec<KeyEntry> = entries
            .iter()
            .filter(|e| {
                let id = e.id.to_string();
                !view.taken.iter().any(|f| f == id.as_bytes())
            })
            .cloned()
            .collect();
        counts = (new.len(), entries.len() - new.len(), view.version.is_none());
        if new.is_empty() && view.version.is_some() {
            return Ok(None);
        }
        Ok(Some(new))
    })
    .await?;
    let (added, kept, initialized) = counts;
    let what = if initialized {
        "initialized"
    } else {
        "updated"
    };
    let _ = match version {
        Some(v) => writeln!(
            io.err,
            "{what} the Redis key store {} (version {v}): {added} keys added from {}, {kept} already there and left as they are ({APPLIES})",
            cx.keys.records,
            path.display()
        ),
        None => writeln!(
            io.err,
            "nothing to import: all {kept} keys of {} are already in the Redis key store",
            path.display()
        ),
    };
    Ok(())
}
