//! What a policy that asks another HTTP service sees of the call: the request it builds, the
//! answer it reads, why there is none, and the `Services` trait the request path implements
//! (`exchange::callout`, over the upstream's pool on the worker's own runtime). Policies stay
//! free of I/O: they build a `SubRequest`, await `Services::call`, and judge the answer.

use std::time::Duration;

use crate::http1::{Method, ResponseHead};

/// What to send. `head_lines` are complete `name: value\r\n` lines (already validated by the
/// policy); `Host`, `Content-Length` and the framing are written by the caller.
pub struct SubRequest<'a> {
    pub method: Method,
    /// Origin-form target: path and query.
    pub target: &'a [u8],
    pub head_lines: &'a [u8],
    pub body: &'a [u8],
}

/// The answer: its head (status, `header`/`headers`) and the whole body.
pub struct SubResponse {
    pub head: ResponseHead,
    pub body: Vec<u8>,
}

impl SubResponse {
    pub fn status(&self) -> u16 {
        self.head.status
    }
}

/// Why a call produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubError {
    /// The whole call did not finish within its timeout.
    Timeout,
    /// No target available, connect refused, TLS failed, the connection broke: the service
    /// is down or unreachable.
    Unavailable,
    /// The service answered something we refuse: a bad head or framing, or a body larger
    /// than allowed.
    BadResponse,
}

/// Calls a configured upstream (by its index in the generation's upstream list).
#[allow(async_fn_in_trait)] // used through generics on one thread; no `Send` bound wanted
pub trait Services {
    /// Sends `req` to upstream `upstream` and reads the whole answer (its body at most
    /// `max_body` bytes), all within `timeout`.
    async fn call(
        &self,
        upstream: u32,
        req: &SubRequest<'_>,
        max_body: usize,
        timeout: Duration,
    ) -> Result<SubResponse, SubError>;
}
