//! The exchange: one request on its way through the gateway, whatever wire it came in on.
//!
//! A wire (the HTTP/1.1 connection driver today, HTTP/2 streams next) parses a request into a
//! `RequestHead`, builds an `Exchange` around it and hands it to the phases in
//! `exchange::pipeline`. Routing, the policy guard, forwarding, metrics and logs read and fill
//! in this type only, so each is written once for every wire.
//!
//! Invariants: an exchange lives for one request and one config generation; `facts` is what
//! telemetry records when it ends (the wire adds the byte counts it alone knows).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::config::UpstreamId;
use crate::exchange::origin::{Origin, Scheme};
use crate::http1::RequestHead;
use crate::request_id::RequestId;
use crate::route::{Captures, RouteId};
use crate::trace::TraceContext;

/// Facts about the client connection, fixed for its lifetime (computed once, not per request).
#[derive(Clone)]
pub struct ClientFacts {
    pub peer: SocketAddr,
    /// The client address as written into `X-Forwarded-For`.
    pub peer_ip: String,
    /// `for=...` element of `Forwarded` (IPv6 quoted and bracketed).
    pub forwarded_for: String,
    /// The scheme of the listener the connection came in on.
    pub scheme: Scheme,
    /// What the TLS handshake established (`None` on a plain connection).
    pub tls: Option<std::rc::Rc<TlsFacts>>,
    /// The listener only redirects to https, on this port.
    pub redirect_https: Option<u16>,
    /// The protocol the client speaks on this connection.
    pub protocol: Protocol,
}

/// The client's HTTP version, as telemetry labels it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http1,
    Http2,
}

impl Protocol {
    /// The label in metrics and the access log's `protocol` field (HTTP/1.0 is told apart by
    /// the request head).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
        }
    }
}

/// What a TLS connection's exchanges need from its handshake and listener. Only what the
/// phases read is kept (it lives as long as the connection).
#[derive(Debug, Default)]
pub struct TlsFacts {
    /// The response headers the listener owns (HSTS, nosniff).
    pub security: Option<std::sync::Arc<crate::tls::settings::SecurityHeaders>>,
    /// The client certificate, when one was presented and verified.
    pub peer_cert: Option<crate::tls::client_cert::PeerCert>,
    /// The server name the client sent (lowercase), if any.
    pub sni: Option<Box<str>>,
    /// The listener's certificate selection, to tell whether a request's host is one this
    /// connection may carry (`SniResolver::authoritative`); `None`: `strict_host = false`.
    pub authority: Option<std::sync::Arc<crate::tls::sni::SniResolver>>,
}

impl TlsFacts {
    /// Whether this connection may carry a request for `host` (routing form: lowercase, no
    /// port or trailing dot). See `SniResolver::authoritative`.
    pub fn authoritative(&self, host: &str) -> bool {
        self.authority
            .as_ref()
            .is_none_or(|r| r.authoritative(self.sni.as_deref(), host))
    }
}

impl ClientFacts {
    /// The response headers every response on this connection carries (TLS listeners only).
    pub fn security(&self) -> Option<&crate::tls::settings::SecurityHeaders> {
        self.tls.as_ref().and_then(|t| t.security.as_deref())
    }

    /// The verified client certificate of the connection, if it is TLS and presented one.
    pub fn peer_cert(&self) -> Option<&crate::tls::client_cert::PeerCert> {
        self.tls.as_deref().and_then(|t| t.peer_cert.as_ref())
    }

    pub fn new(peer: SocketAddr, scheme: Scheme) -> ClientFacts {
        let ip = peer.ip().to_canonical();
        ClientFacts {
            peer,
            peer_ip: ip.to_string(),
            forwarded_for: match ip {
                std::net::IpAddr::V4(v4) => format!("for={v4}"),
                std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
            },
            scheme,
            tls: None,
            redirect_https: None,
            protocol: Protocol::Http1,
        }
    }
}

/// One request carried through the phases.
pub struct Exchange<'a> {
    /// Method, target, version, headers and body framing, as the wire parsed them.
    pub head: &'a RequestHead,
    pub rid: RequestId,
    /// Normalized path (dot segments removed; "/" for an empty absolute-form path). Set by
    /// the route phase.
    pub path: Cow<'a, [u8]>,
    /// The client asked to close, or the gateway is draining.
    pub close: bool,
    /// The route template's captures (byte ranges in `path`).
    pub captures: Captures,
    pub client: &'a ClientFacts,
    /// The host to route on (lowercase, no port). A buffer lent by the wire, reused between
    /// requests.
    pub host: String,
    /// Scratch buffer for serialized heads (upstream request, client response), lent by the
    /// wire and reused between requests.
    pub scratch: Vec<u8>,
    /// When the head was complete.
    pub start: Instant,
    /// What the request did so far, for metrics, the access log and spans.
    pub facts: ExchangeFacts,
}

/// The facts telemetry needs about one request, filled in along the request path.
#[derive(Default)]
pub struct ExchangeFacts {
    /// Status sent to the client (0 = nothing was sent).
    pub status: u16,
    /// Request head bytes plus request body bytes read.
    pub bytes_in: u64,
    /// Bytes written to the client for this request (head and body on HTTP/1.1; DATA payload
    /// on HTTP/2, whose head is HPACK-compressed into the connection's shared state).
    pub bytes_out: u64,
    /// Of `bytes_out`, the response head (HTTP/1.1 only): the access log reports body bytes
    /// (`bytes_out - head_out`, nginx's `$body_bytes_sent`), the metrics the whole.
    pub head_out: u64,
    pub route: Option<RouteId>,
    pub upstream: Option<UpstreamFacts>,
    /// The trace this request belongs to (when propagation is on).
    pub trace: Option<TraceContext>,
    /// Response header that carries the trace id (when configured).
    pub trace_header: Option<Rc<str>>,
    /// Header lines (`name: value\r\n`) every response to this request carries: CORS,
    /// RateLimit, and a denial's WWW-Authenticate / Retry-After.
    pub resp_lines: Vec<u8>,
    /// Why a policy refused the caller (auth failures by reason, for metrics).
    pub auth_failure: Option<&'static str>,
    /// Rate-limit outcome on a limited route (`Some(true)` = admitted).
    pub rate_limited: Option<bool>,
    /// The authenticated consumer (kept only when the access log, spans or `[usage]` need it).
    pub consumer: Option<std::sync::Arc<str>>,
    /// A policy verified who the caller is (an API key, a JWT, a client certificate, a
    /// forward-auth or introspection answer), with or without a consumer name: the cache
    /// never shares such a request's answer unless told to.
    pub verified_caller: bool,
    /// Who sent the request (decided once, when its head is complete).
    pub origin: Origin,
    /// Why the request ended badly after its response head went out (client or upstream
    /// abort), for the log.
    pub aborted: Option<crate::exchange::error::Side>,
    /// The wire's protocol (the HTTP/1.1 head the phases see is the same for both).
    pub protocol: Protocol,
    /// A policy's own answer to the client (`ErrorKind::PolicyReply`), rendered by
    /// `exchange::respond::error`.
    pub policy_reply: Option<Box<crate::policy::pipeline::LocalReply>>,
}

impl ExchangeFacts {
    /// The trace id echoed to the client in `tracing.response_header`: the header's name and
    /// the id in lowercase hex; `None` without such a header or without a trace.
    pub fn trace_echo(&self) -> Option<(&str, [u8; 32])> {
        match (&self.trace_header, &self.trace) {
            (Some(name), Some(t)) => Some((name, t.trace_id_hex())),
            _ => None,
        }
    }
}

impl UpstreamFacts {
    /// The upstream facts in `slot` (created for upstream `id` on the first attempt), with
    /// this attempt's failed connects added.
    pub fn attempt(
        slot: &mut Option<UpstreamFacts>,
        id: UpstreamId,
        connect_errors: u32,
    ) -> &mut UpstreamFacts {
        let facts = slot.get_or_insert(UpstreamFacts {
            id,
            addr: None,
            reused: false,
            connect_errors: 0,
            duration: None,
            in_flight: None,
            attempts: 1,
        });
        facts.connect_errors += connect_errors;
        facts
    }
}

/// The upstream side of a proxied request.
pub struct UpstreamFacts {
    pub id: UpstreamId,
    /// The target that served the request (`None` when no connection was made).
    pub addr: Option<SocketAddr>,
    /// The request went out on a pooled connection.
    pub reused: bool,
    /// Failed connection attempts before the one used (or before giving up).
    pub connect_errors: u32,
    /// From sending the request to the complete response head.
    pub duration: Option<std::time::Duration>,
    /// Counts this request in flight to its target (least-request upstreams) until the
    /// exchange ends.
    pub in_flight: Option<crate::upstream::least_request::InFlight>,
    /// Attempts made (the last one's number: `x-ringway-attempts`; a free resend of a stale
    /// pooled connection does not count).
    pub attempts: u32,
}
