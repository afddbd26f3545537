//! The access log's vocabulary: the line format (`LogFormat`), where lines go (`LogTarget`) and
//! everything one line needs (`LogRecord`, all borrowed).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Line format of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (see [`format_json`](super::format::format_json)).
    Json,
    /// nginx "combined" (see [`format_combined`](super::format::format_combined)).
    Combined,
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output of the process.
    Stdout,
    /// A file opened in append mode (created if missing).
    File(PathBuf),
}

/// Everything one line needs; all borrowed, nothing allocated to build it.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'a> {
    /// When the request started.
    pub time: SystemTime,
    /// The request id (ours or the client's); escaped like any request data.
    pub request_id: &'a str,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<&'a str>,
    /// The client address the gateway decided on (the peer, or behind trusted proxies the
    /// forwarded client: `exchange::origin`).
    pub client: IpAddr,
    /// Request method as received.
    pub method: &'a [u8],
    /// Path plus optional `?query`, as received.
    pub target: &'a [u8],
    /// Protocol, e.g. `HTTP/1.1`.
    pub version: &'a str,
    /// Name of the matched route, if any.
    pub route: Option<&'a str>,
    /// Status sent to the client.
    pub status: u16,
    /// Time from request start to the last response byte.
    pub duration: Duration,
    /// The upstream peer that served the request, if any.
    pub upstream_addr: Option<SocketAddr>,
    /// The name of the upstream that served the request (the line carries `upstream_name`
    /// only then; with a `split` it says which arm served).
    pub upstream_name: Option<&'a str>,
    /// Time spent waiting on the upstream, if it was contacted.
    pub upstream_duration: Option<Duration>,
    /// Upstream attempts made (retries included; 0 when no upstream was contacted).
    pub attempts: u32,
    /// Bytes read from the client for this request.
    pub bytes_in: u64,
    /// Body bytes sent to the client.
    pub bytes_out: u64,
    /// `User-Agent` header value.
    pub user_agent: Option<&'a [u8]>,
    /// `Referer` header value.
    pub referer: Option<&'a [u8]>,
    /// Authenticated consumer name.
    pub consumer: Option<&'a str>,
    /// Who broke the response after its head was sent (`"client"` or `"upstream"`); the JSON
    /// line carries `aborted` only then.
    pub aborted: Option<&'static str>,
}
