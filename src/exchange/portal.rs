//! Answers the developer portal's route (`Action::Portal`): pages generated from the imported
//! document(s) by `openapi::portal`.

use std::rc::Rc;

use crate::config::Route;
use crate::core::{Core, Generation};
use crate::openapi::portal::Portal;

use super::body::discard_body;
use super::error::ProxyError;
use super::model::Exchange;
use super::respond;
use super::wire::{Downstream, Outcome};

/// Serves one portal request.
pub async fn serve<D: Downstream>(
    core: &Core,
    gen: &Rc<Generation>,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    portal: &Portal,
) -> Result<Outcome, ProxyError> {
    let _ = (gen, portal);
    discard_body(ex, down, route.max_body).await?;
    let fields = b"content-type: text/plain\r\n";
    Ok(respond::local(
        core,
        ex,
        down,
        501,
        fields,
        Some(b"portal: not built yet\n"),
    )
    .await)
}
