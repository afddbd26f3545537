//! Choosing a content coding from `Accept-Encoding` (RFC 9110 12.5.3), with q-values.
//!
//! SEAM (lane compress completes this).

use crate::http1::RequestHead;

use super::policy::CompressPolicy;

/// A content coding the gateway can produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Coding {
    #[default]
    Identity,
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    /// The token in `Content-Encoding` (and the cache's secondary key).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The coding this request gets on a route with `policy`: the acceptable one (q > 0) with the
/// highest q, ties broken by the policy's preference order; `Identity` when none is.
pub fn negotiate(policy: &CompressPolicy, head: &RequestHead) -> Coding {
    let _ = (policy, head);
    Coding::Identity
}
