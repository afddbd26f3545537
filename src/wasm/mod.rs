//! Custom policies as proxy-wasm filters: config, compile and the per-worker instances
//! (`filter.rs` runs them for a request). (Seam: the lane that owns this module fills it in.)

pub mod filter;

use serde::Deserialize;

use crate::config::errors::Fail;

/// `[policies.NAME.wasm]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWasm {
    /// The module file (`.wasm` or `.wat`), relative to the config file.
    pub module: Option<String>,
}

/// The compiled policy.
#[derive(Debug)]
pub struct WasmPolicy {
    /// Request body bytes the filter sees (0: none).
    pub body_bytes: usize,
}

/// This worker's filter instances (one per module and config generation), held by `Core`.
#[derive(Default)]
pub struct Instances {}

/// Compiles the policy. Errors go to `errs`.
pub fn compile(
    _raw: &RawWasm,
    _span: std::ops::Range<usize>,
    _base_dir: &std::path::Path,
    _fail: &mut Fail<'_>,
) -> Option<WasmPolicy> {
    Some(WasmPolicy { body_bytes: 0 })
}
