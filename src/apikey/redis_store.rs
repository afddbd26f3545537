//! The Redis side of `[api_keys] store = "redis"`: where the records live, the two Lua
//! scripts that read and write them atomically, and `sync_once`, which the background thread
//! runs to bring an instance's `KeyCache` up to date.
//!
//! Layout (one hash tag, so everything lives in one cluster slot):
//! - `{prefix}:keys:{store}:records` - a hash, field = key id, value = the key's record
//!   (`records::encode_record`: its keys-file table; never the plaintext key);
//! - `{prefix}:keys:{store}:version` - an integer bumped by every write. A new store starts
//!   at its first writer's clock in milliseconds, not at 1, so a store recreated after Redis
//!   lost its data never reaches a version the lost one had: an instance that missed the loss
//!   (paused, partitioned) compares versions only, and must see the new set as a change;
//! - `{prefix}:keys:{store}:events` - the pub/sub channel; each write publishes its version.
//!
//! Invariants: every write is one `keys_write.lua` call that checks the version the writer
//! read (optimistic concurrency: a concurrent writer makes it return -1 and the CLI re-reads),
//! writes the records, bumps the version and publishes - so a reader never sees half a change.
//! A store whose version key is missing is "not initialized" (first use, or Redis lost its
//! data): instances keep their last key set rather than adopting an empty one, and the CLI
//! refuses to write until `ringway keys import` initializes it.

use crate::redis::{Client, RedisError, RedisShared, Script, Value};

use super::records::{self, KeyCache, KeySet, Origin, SyncSettings};
use super::types::HashMode;

static READ: Script = Script::new(include_str!("keys_read.lua"));
static WRITE: Script = Script::new(include_str!("keys_write.lua"));

/// The Redis names of the key store under the configured prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreKeys {
    pub records: String,
    pub version: String,
    pub channel: String,
}

impl StoreKeys {
    /// The names for `[redis] prefix`.
    pub fn new(shared: &RedisShared) -> StoreKeys {
        StoreKeys {
            records: shared.key("keys", "store", "records"),
            version: shared.key("keys", "store", "version"),
            channel: shared.key("keys", "store", "events"),
        }
    }
}

/// The store as read in one atomic step.
#[derive(Debug, Default)]
pub struct Stored {
    /// `None`: the store is not initialized.
    pub version: Option<i64>,
    /// (field, value) pairs, unvalidated.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

fn protocol(what: &str) -> RedisError {
    RedisError::Protocol(format!("key store: {what}"))
}

fn version_of(v: &Value) -> Result<Option<i64>, RedisError> {
    match v {
        Value::Nil => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| protocol("the version is not an integer")),
        _ => Err(protocol("unexpected version reply")),
    }
}

/// The store's version (`GET`); `None` when not initialized.
pub async fn read_version(client: &Client, k: &StoreKeys) -> Result<Option<i64>, RedisError> {
    let key = k.version.as_bytes();
    let v = client.cmd(Some(key), &[b"GET", key]).await?;
    version_of(&v)
}

/// The version and every record, atomically.
pub async fn read_all(client: &Client, k: &StoreKeys) -> Result<Stored, RedisError> {
    let keys = [k.records.as_bytes(), k.version.as_bytes()];
    let reply = client.eval(&READ, &keys, &[]).await?;
    let mut parts = reply
        .into_array()
        .filter(|p| p.len() == 2)
        .ok_or_else(|| protocol("unexpected read reply"))?;
    let flat = parts
        .pop()
        .and_then(Value::into_array)
        .ok_or_else(|| protocol("unexpected HGETALL reply"))?;
    let version = parts.first().map(version_of).transpose()?.flatten();
    let mut records = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        match (f, v) {
            (Value::Bytes(f), Value::Bytes(v)) => records.push((f, v)),
            _ => return Err(protocol("a record is not a string")),
        }
    }
    Ok(Stored { version, records })
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Applied; the store is now at this version (and it was published).
    Version(i64),
    /// The store changed since `expected` was read: nothing was written.
    Conflict,
}

/// Writes `records` (id, record) if the store is still at `expected` (`None`: not
/// initialized), bumps the version and publishes it, atomically.
pub async fn write(
    client: &Client,
    k: &StoreKeys,
    expected: Option<i64>,
    records: &[(String, Vec<u8>)],
) -> Result<Written, RedisError> {
    let expected = expected.map(|v| v.to_string()).unwrap_or_default();
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis().max(1))
        .to_string();
    let mut args: Vec<&[u8]> = Vec::with_capacity(3 + 2 * records.len());
    args.push(expected.as_bytes());
    args.push(k.channel.as_bytes());
    args.push(first.as_bytes());
    for (id, rec) in records {
        args.push(id.as_bytes());
        args.push(rec);
    }
    let keys = [k.records.as_bytes(), k.version.as_bytes()];
    match client.eval(&WRITE, &keys, &args).await? {
        Value::Int(v) if v > 0 => Ok(Written::Version(v)),
        Value::Int(-2) => Err(protocol(
            "the key store's version counter holds a value no writer puts there (not a \
             positive integer of at most 15 digits); nothing was written: inspect it, or \
             delete it and re-import the keys",
        )),
        Value::Int(_) => Ok(Written::Conflict),
        _ => Err(protocol("unexpected write reply")),
    }
}

/// What the background sync has applied so far (owned by its task).
#[derive(Debug, Default)]
pub struct SyncState {
    /// The store version and hash mode of the set in the cache, once one came from Redis.
    applied: Option<(i64, HashMode)>,
    /// "Not initialized" is logged once per episode.
    reported_missing: bool,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The cache already holds this version.
    Unchanged,
    /// The cache now holds a new set of this many keys: recompile and write the snapshot.
    Changed { keys: usize, version: i64 },
    /// The store does not exist in Redis: the last known set is kept.
    Uninitialized,
}

/// Brings `cache` up to date: one `GET` of the version; when it differs from the applied one,
/// one atomic read of every record, each validated (bad ones skipped and logged).
pub async fn sync_once(
    client: &Client,
    k: &StoreKeys,
    s: &SyncSettings,
    cache: &KeyCache,
    state: &mut SyncState,
) -> Result<SyncOutcome, RedisError> {
    let version = read_version(client, k).await?;
    if version.is_some() && version.map(|v| (v, s.mode)) == state.applied {
        return Ok(SyncOutcome::Unchanged);
    }
    let stored = match version {
        None => Stored::default(),
        Some(_) => read_all(client, k).await?,
    };
    let Some(version) = stored.version else {
        if !state.reported_missing {
            state.reported_missing = true;
            crate::log::error(&format!(
                "api_keys: the Redis key store {} does not exist (first use, or Redis lost its data); keeping the last known keys - run `ringway keys import` (from the keys file or a snapshot) to initialize it",
                k.version
            ));
        }
        return Ok(SyncOutcome::Uninitialized);
    };
    state.reported_missing = false;
    let entries = records::decode_all(&stored.records, s.mode, &k.records);
    let keys = entries.len();
    cache.replace(KeySet {
        entries,
        origin: Origin::Redis(version),
        mode: s.mode,
    });
    state.applied = Some((version, s.mode));
    Ok(SyncOutcome::Changed { keys, version })
}
