//! POSTs OTLP/HTTP JSON bodies to the collector over `ureq` (the blocking client the JWKS
//! fetcher uses too), keeping one keep-alive connection in the agent's pool.
//!
//! Runs only on the exporter thread, never on a worker: it resolves host names and blocks on
//! sockets. Bounds: one request (connect, write, response head and body) within `timeout`;
//! response head at most 16 KiB, body at most 4 MiB (read and discarded); no redirects, no
//! proxy from the environment. A pooled connection is probed before reuse; one that still turns
//! out closed (EOF, reset) is retried once on a fresh connection, as the exporter never
//! retries a batch otherwise.

use std::fmt;
use std::io;
use std::time::Duration;

use super::endpoint::Endpoint;

/// Largest response head accepted from the collector.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read (and discarded) from the collector.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// Why a POST failed.
#[derive(Debug)]
pub(crate) enum PostError {
    /// Name resolution or TCP connect failed.
    Connect(ureq::Error),
    /// Reading or writing failed (including timeouts and early close) or the response was
    /// not valid HTTP/1.x or too large.
    Transport(ureq::Error),
    /// Reading the response body failed or it exceeded 4 MiB.
    Body(io::Error),
    /// The collector answered with a non-2xx status.
    Status(u16),
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Connect(e) => write!(f, "connect: {e}"),
            PostError::Transport(ureq::Error::Protocol(e)) => write!(f, "bad response: {e}"),
            PostError::Transport(e) => write!(f, "i/o: {e}"),
            PostError::Body(e) => write!(f, "response body: {e}"),
            PostError::Status(s) => write!(f, "collector answered {s}"),
        }
    }
}

/// A keep-alive client for one endpoint at a time.
#[derive(Default)]
pub(crate) struct Client {
    /// The agent and the timeout it was built with (rebuilt when the timeout changes).
    agent: Option<(ureq::Agent, Duration)>,
}

impl Client {
    /// Drops the kept-alive connection, if any.
    pub(crate) fn close(&mut self) {
        self.agent = None;
    }

    /// POSTs `body` as JSON to `ep` within `timeout`; Ok only for a 2xx answer.
    pub(crate) fn post(
        &mut self,
        ep: &Endpoint,
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, PostError> {
        let agent = self.agent(timeout).clone();
        let url = ep.to_string();
        let host = ep.host_header();
        let attempt = || {
            // Header names keep the casing HTTP/1.1 servers usually see; `Host` and
            // `Content-Length` are set here so ureq does not generate lowercase ones.
            agent
                .post(&url)
                .header_raw("Host", host.as_bytes())
                .header_raw("Content-Type", b"application/json")
                .header_raw("Content-Length", body.len().to_string().as_bytes())
                .send(body)
        };
        let mut resp = match attempt() {
            Err(e) if is_stale(&e) => attempt(),
            r => r,
        }
        .map_err(classify)?;
        let status = resp.status().as_u16();
        // Read the body to its end so the connection can go back to the pool.
        let mut reader = resp.body_mut().with_config().limit(MAX_BODY).reader();
        io::copy(&mut reader, &mut io::sink()).map_err(PostError::Body)?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(PostError::Status(status))
        }
    }

    fn agent(&mut self, timeout: Duration) -> &ureq::Agent {
        if self.agent.as_ref().is_some_and(|(_, t)| *t != timeout) {
            self.agent = None;
        }
        &self
            .agent
            .get_or_insert_with(|| (build_agent(timeout), timeout))
            .0
    }
}

fn build_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_response_header_size(MAX_HEAD)
        .max_idle_connections_per_host(1)
        .user_agent(concat!("ringway/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A failure that a connection closed while idle produces: worth one more try.
fn is_stale(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(e) if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

fn classify(e: ureq::Error) -> PostError {
    let connect = match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::HostUnreachable
        ),
        _ => false,
    };
    if connect {
        PostError::Connect(e)
    } else {
        PostError::Transport(e)
    }
}
