//! A filter's request callbacks for one request, on this worker's instance, and their
//! verdict for the pipeline (kept apart from `mod.rs`, which `pipeline` names).

use super::{Instances, WasmPolicy};
use crate::policy::pipeline::{Caller, Denial, Effects, Facts};

/// Runs the filter's request callbacks.
pub async fn settle(
    _p: &WasmPolicy,
    _f: &Facts<'_>,
    _caller: &mut Caller<'_>,
    _fx: &mut Effects,
    _instances: &Instances,
) -> Result<(), Denial> {
    Ok(())
}
