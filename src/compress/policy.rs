//! The `compress` policy (SEAM: lane compress completes this).

use serde::Deserialize;

use crate::config::errors::Fail;

/// `compress = { ... }` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCompress {}

/// A compiled `compress` policy.
#[derive(Clone, Debug)]
pub struct CompressPolicy {}

/// Compiles `compress = { ... }`; fields in `fail` are relative to the table.
pub fn compile(raw: &RawCompress, fail: &mut Fail<'_>) -> Option<CompressPolicy> {
    let _ = (raw, fail);
    Some(CompressPolicy {})
}
