//! Response compression: the `compress` policy a route lists (`policy`), the coding chosen
//! from `Accept-Encoding` (`negotiate`), whether a response is compressed and how its head
//! changes (`applies`, `rewrite_fields`), and the streaming encoders (`encoder`).
//!
//! The forward phase wraps the client's wire in `exchange::shape::Shaped`, which runs the
//! encoder between the upstream's body and the wire (and the cache's recorder after it, so a
//! stored variant is the compressed one).
//!
//! SEAM (lane compress completes this): the signatures are the contract.

pub mod encoder;
pub mod negotiate;
pub mod policy;

pub use encoder::Encoder;
pub use negotiate::{negotiate, Coding};
pub use policy::{CompressPolicy, RawCompress};

/// Whether the response to this request is compressed with `coding` (already negotiated, not
/// `Identity`): a status with a body (not 206 or 304), no `Content-Encoding` already, no
/// `Cache-Control: no-transform`, a compressible `Content-Type`, and a known length at least
/// `min_bytes` (an unknown length counts as large enough).
pub fn applies(policy: &CompressPolicy, coding: Coding, resp: &crate::http1::ResponseHead) -> bool {
    let _ = (policy, resp);
    coding != Coding::Identity && false
}

/// Whether `resp` may be compressed at all by the route's policy (its type), so its fields get
/// `Vary: Accept-Encoding` whichever coding this client asked for.
pub fn varies(policy: &CompressPolicy, resp: &crate::http1::ResponseHead) -> bool {
    let _ = (policy, resp);
    false
}

/// The client's field lines for a response compressed with `coding`: `Content-Length`
/// dropped, `Content-Encoding: coding` added, a strong `ETag` made weak. `Vary` is handled by
/// `add_vary`.
pub fn rewrite_fields(coding: Coding, fields: &[u8], out: &mut Vec<u8>) {
    let _ = coding;
    out.extend_from_slice(fields);
}

/// Adds `accept-encoding` to the `Vary` among `fields` (merging into an existing `Vary` line,
/// or adding one); leaves `Vary: *` alone.
pub fn add_vary(fields: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(fields);
}
