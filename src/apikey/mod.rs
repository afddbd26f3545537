//! API keys for consumers: the key format, the keys file, the compiled `KeyStore` the request
//! path authenticates against, and the `ringway keys` CLI that manages the file.
//!
//! Invariants:
//! - **No plaintext keys at rest.** The keys file holds a public key id and a hash of the full
//!   key (`hmac-sha256:<hex>` keyed with a server secret, or plain `sha256:<hex>`); a key is
//!   printed exactly once, by the CLI that generated it.
//! - **Constant-time comparison** of the presented key's hash with the stored one (`subtle`).
//! - `KeyStore` is immutable and `Send + Sync`; it is rebuilt from the file on every config load
//!   (start, SIGHUP, admin reload), so CLI changes apply on reload. Expiry is checked against the
//!   caller's clock on every request, so a rotation grace period ends on time without a reload.
//! - With `store = "redis"` the records live in Redis (`redis_store.rs`); a compile builds the
//!   store from the last synced set (`records::KeyCache`), and the background sync
//!   (`crate::key_sync`) recompiles the serving config when that set changes, so the request
//!   path is the same for both stores.
//!
//! Key format (see `key.rs`): `rwk_<id>_<secret>`, 56 ASCII bytes, where `id` is 8 lowercase hex
//! digits (32 random bits; public, stored in the file, fine to log) and `secret` is 32 random
//! bytes in unpadded base64url (43 chars, alphabet `A-Z a-z 0-9 - _`). The hash covers the whole
//! key string. Lookup: check the shape → id → entry (ahash map) → hash the presented key →
//! constant-time compare → revoked? → expired?
//!
//! This file only declares the modules and re-exports; `types.rs` holds `HashMode` and
//! `KeyError`, shared by the store, the keys file, the settings and the CLI.

pub mod cli;
mod cli_common;
pub mod file;
pub mod key;
pub mod records;
mod redis_cli;
pub mod redis_store;
pub mod settings;
pub mod store;
mod types;

pub use key::{key_id, KeyId};
pub use records::{KeyCache, SyncSettings};
pub use settings::{
    load_store, load_store_with_env, LoadedStore, RawApiKeys, StoreKind, DEFAULT_SECRET_ENV,
};
pub use store::{KeyMatch, KeyStore};
pub use types::{HashMode, KeyError};
