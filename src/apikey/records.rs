//! The key records of `store = "redis"` without the network: how one key is encoded as a Redis
//! hash field, how a record read back is validated, the `KeyCache` that holds the last synced
//! key set across config generations, and the local snapshot file.
//!
//! Invariants:
//! - A record is the keys-file table of that one key (`[[keys]] id = .. hash = ..`), so a
//!   record from Redis goes through exactly the validation the keys file gets (`parse_keys`).
//!   A record that is not valid UTF-8, too large, not exactly one entry, in another hash mode
//!   or stored under a field that is not its own id is skipped as a whole and logged; nothing
//!   half-parsed is ever accepted.
//! - Config compiles never touch the network: in redis mode `load_store` builds the store from
//!   `KeyCache::current_or_snapshot`, which is the last set synced from Redis, or (before the
//!   first sync) the snapshot file, or an empty set with a loud error.
//! - The snapshot is a keys file (`file::render`), written atomically after each sync that
//!   changed the set, so it can also serve as `file` for `store = "file"` in an emergency.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::file::{self, KeyEntry};
use super::types::HashMode;

/// Largest record accepted from Redis, in bytes (a real one is about 250).
pub const MAX_RECORD: usize = 4096;

/// What the background sync needs from `[api_keys]` when `store = "redis"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// Every record must be hashed in this mode.
    pub mode: HashMode,
    /// The local snapshot file.
    pub snapshot: PathBuf,
}

/// Where a key set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Read from Redis at this store version.
    Redis(i64),
    /// Loaded from the snapshot file at start (Redis not synced yet).
    Snapshot,
    /// Nothing known yet: no snapshot and no sync (every key is refused).
    Empty,
}

/// One validated key set and where it came from.
#[derive(Debug)]
pub struct KeySet {
    pub entries: Vec<KeyEntry>,
    pub origin: Origin,
    /// The hash mode every entry was validated against.
    pub mode: HashMode,
}

/// The last known key set of `store = "redis"`, kept in `config::Runtime` across reloads.
/// Written by the background sync thread (and once at the first compile); read by compiles.
#[derive(Default)]
pub struct KeyCache {
    set: ArcSwapOption<KeySet>,
}

impl KeyCache {
    /// The current set, if any was loaded or synced.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.set.load_full()
    }

    /// Replaces the set (after a sync).
    pub fn replace(&self, set: KeySet) {
        self.set.store(Some(Arc::new(set)));
    }

    /// The set a compile builds its store from: the current one if it was validated in
    /// `s.mode`; otherwise the snapshot file (first compile, or the hash mode changed); if
    /// that cannot be read, an empty set, logged as an error.
    pub fn current_or_snapshot(&self, s: &SyncSettings) -> Arc<KeySet> {
        let seen = self.set.load_full();
        if let Some(cur) = seen.as_ref().filter(|c| c.mode == s.mode) {
            return cur.clone();
        }
        let loaded = Arc::new(load_snapshot(s));
        let before = self.set.compare_and_swap(&seen, Some(loaded.clone()));
        let won = match (&*before, &seen) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        // Lost the race: a sync finished meanwhile, and it is newer than any snapshot.
        match &*before {
            Some(other) if !won => other.clone(),
            _ => loaded,
        }
    }
}

/// Reads the snapshot file; problems are logged and give an empty set.
fn load_snapshot(s: &SyncSettings) -> KeySet {
    let empty = |why: String| {
        crate::log::error(&format!(
            "api_keys: {why}; no API key is known until the first sync from Redis (a running gateway refuses every key until then)"
        ));
        KeySet {
            entries: Vec::new(),
            origin: Origin::Empty,
            mode: s.mode,
        }
    };
    let max = crate::bounded_file::MAX_KEYS_FILE_BYTES;
    let src = match crate::bounded_file::read_fresh_to_string(&s.snapshot, max) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return empty(format!("no key snapshot at {}", s.snapshot.display()))
        }
        Err(e) => {
            return empty(format!(
                "cannot read the key snapshot {}: {e}",
                s.snapshot.display()
            ))
        }
    };
    match file::parse_keys(&src, &s.snapshot, s.mode) {
        Ok(entries) => {
            crate::log::info(&format!(
                "api_keys: {} keys from the snapshot {} until the first sync from Redis",
                entries.len(),
                s.snapshot.display()
            ));
            KeySet {
                entries,
                origin: Origin::Snapshot,
                mode: s.mode,
            }
        }
        Err(errs) => {
            let first = errs.first().map(|e| e.to_string()).unwrap_or_default();
            empty(format!("the key snapshot is invalid ({first})"))
        }
    }
}

/// Writes the snapshot (keys-file format, atomic replace, mode 0600 when new).
pub fn write_snapshot(path: &Path, entries: &[KeyEntry]) -> std::io::Result<()> {
    file::write_atomic(path, file::render(entries).as_bytes())
}

/// One key as a Redis hash value (the field is its id).
pub fn encode_record(e: &KeyEntry) -> Vec<u8> {
    file::render_entry(e, "\n").into_bytes()
}

/// Validates one record read from Redis: `field` must be the record's own id, `value` one
/// keys-file entry hashed in `mode`. The error says why it is skipped (for the log).
pub fn decode_record(field: &[u8], value: &[u8], mode: HashMode) -> Result<KeyEntry, String> {
    if value.len() > MAX_RECORD {
        return Err(format!(
            "record is {} bytes (at most {MAX_RECORD})",
            value.len()
        ));
    }
    let text = std::str::from_utf8(value).map_err(|_| "record is not UTF-8".to_string())?;
    let label = Path::new("record");
    let mut entries = file::parse_keys(text, label, mode).map_err(|errs| {
        errs.first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "invalid record".into())
    })?;
    if entries.len() != 1 {
        return Err(format!("record holds {} keys (expected 1)", entries.len()));
    }
    let entry = entries.remove(0);
    if entry.id.to_string().as_bytes() != field {
        return Err(format!(
            "record of key {} is stored under another id",
            entry.id
        ));
    }
    Ok(entry)
}

/// Printable form of a hash field for log lines (hostile bytes are escaped, length capped).
pub fn show_field(field: &[u8]) -> String {
    let cut = &field[..field.len().min(64)];
    let mut s = String::from_utf8_lossy(cut).escape_debug().to_string();
    if field.len() > 64 {
        s.push_str("...");
    }
    s
}

/// `text` with control characters escaped (parser messages may quote hostile input).
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

/// Validates every record; a bad one is skipped with a log line naming its field.
pub fn decode_all(records: &[(Vec<u8>, Vec<u8>)], mode: HashMode, source: &str) -> Vec<KeyEntry> {
    let mut out = Vec::with_capacity(records.len());
    for (field, value) in records {
        match decode_record(field, value, mode) {
            Ok(e) => out.push(e),
            Err(why) => crate::log::warn(&format!(
                "api_keys: skipped the record \"{}\" in {source}: {}",
                show_field(field),
                printable(&why)
            )),
        }
    }
    out.sort_by_key(|e| (e.created, e.id.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::key;
    use crate::apikey::store::Hasher;

    fn entry() -> KeyEntry {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let (id, k) = key::generate(|_| false).unwrap();
        KeyEntry {
            id,
            consumer: "acme".into(),
            hash_mode: HashMode::Sha256,
            hash: h.hash(k.as_bytes()),
            created: 1_700_000_000,
            expires: Some(1_800_000_000),
            revoked: true,
        }
    }

    #[test]
    fn records_round_trip() {
        let e = entry();
        let v = encode_record(&e);
        let field = e.id.to_string();
        assert_eq!(decode_record(field.as_bytes(), &v, HashMode::Sha256), Ok(e));
    }

    #[test]
    fn hostile_records_are_refused_whole() {
        let e = entry();
        let field = e.id.to_string();
        let v = encode_record(&e);
        let text = String::from_utf8(v.clone()).unwrap();
        let mode = HashMode::Sha256;
        let bad: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"00000000".to_vec(), v.clone()),                  // another id
            (field.clone().into(), b"\xff\xfe".to_vec()),       // not UTF-8
            (field.clone().into(), vec![b'#'; MAX_RECORD + 1]), // too big
            (field.clone().into(), b"".to_vec()),               // no entry
            (field.clone().into(), format!("{text}\n{text}").into()), // two entries
            (
                field.clone().into(),
                text.replace("consumer", "colour").into(),
            ),
            (
                field.clone().into(),
                text.replace("sha256:", "sha256:zz").into(),
            ),
            (field.clone().into(), b"[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
            (field.clone().into(), format!("{text}admin = true\n").into()),
        ];
        for (f, v) in &bad {
            assert!(
                decode_record(f, v, mode).is_err(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        // Another hash mode than the config's.
        assert!(decode_record(field.as_bytes(), text.as_bytes(), HashMode::HmacSha256).is_err());
        let mut all = bad;
        all.push((field.into(), v));
        let got = decode_all(&all, mode, "test");
        assert_eq!(got, vec![e]);
        assert_eq!(show_field(b"a\x1b[31m"), "a\\u{1b}[31m");
        assert_eq!(printable("x\u{1b}[0m\ny"), "x\\u{1b}[0m\\ny");
    }

    #[test]
    fn cache_prefers_a_sync_and_falls_back_to_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let s = SyncSettings {
            mode: HashMode::Sha256,
            snapshot: dir.path().join("snap.toml"),
        };
        let cache = KeyCache::default();
        let set = cache.current_or_snapshot(&s);
        assert_eq!((set.origin, set.entries.len()), (Origin::Empty, 0));
        let e = entry();
        write_snapshot(&s.snapshot, std::slice::from_ref(&e)).unwrap();
        // The empty set stays until a sync (or a mode change) replaces it.
        assert_eq!(cache.current_or_snapshot(&s).origin, Origin::Empty);
        let fresh = KeyCache::default();
        let set = fresh.current_or_snapshot(&s);
        assert_eq!(
            (set.origin, &set.entries[..]),
            (Origin::Snapshot, &[e.clone()][..])
        );
        fresh.replace(KeySet {
            entries: Vec::new(),
            origin: Origin::Redis(7),
            mode: HashMode::Sha256,
        });
        assert_eq!(fresh.current_or_snapshot(&s).origin, Origin::Redis(7));
        // A broken snapshot: empty set, no panic.
        std::fs::write(&s.snapshot, "[[keys]]\nid = 1\n").unwrap();
        assert_eq!(
            KeyCache::default().current_or_snapshot(&s).origin,
            Origin::Empty
        );
    }
}
