//! The top-level `[cache]` table: the store's byte bound (SEAM: lane store owns this).

use serde::Deserialize;
use toml::Spanned;

use crate::config::units::RawSize;

/// Default byte bound of the shared store.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCacheSettings {
    /// Bytes the store may hold, bodies and heads counted (default 256MiB).
    #[schemars(with = "Option<RawSize>")]
    pub max_bytes: Option<Spanned<RawSize>>,
}
