//! Per-core telemetry: what a worker records when a request finishes. Metrics go into this
//! core's own counters and histograms (`metrics::CoreMetrics`, merged only when the admin API
//! scrapes), access-log lines into this core's buffer (`accesslog::CoreLog`, handed to the
//! writer thread in batches) and sampled spans into this core's batch (`trace::CoreSpans`,
//! handed to the OTLP exporter thread).
//!
//! Invariants: nothing here takes a lock or writes memory another core writes; the worker's
//! periodic `flush` is the only hand-off point; a slow writer or a dead collector costs a
//! counted drop, never a stalled request.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::accesslog::redact::redact_target;
use crate::accesslog::{CoreLog, LogFormat, LogRecord};
use crate::config::{AccessLogFormat, Compiled, TracingSettings};
use crate::exchange::error::Side;
use crate::exchange::ExchangeFacts as Exchange;
use crate::http1::{Method, RequestHead, Version};
use crate::metrics::{CoreCounter, CoreMetrics, CoreSnapshot, RouteSlot, UpstreamSlot};
use crate::shared::Shared;
use crate::trace::{CoreSpans, IdRng, SpanRecord, TraceContext};

/// Status recorded for a request that ended before any response was sent (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// One worker's telemetry state.
pub struct CoreTelemetry {
    worker: usize,
    shared: Arc<Shared>,
    metrics: RefCell<CoreMetrics>,
    log: RefCell<Option<CoreLog>>,
    spans: RefCell<Option<CoreSpans>>,
    rng: RefCell<IdRng>,
    /// `[usage]` counts since the last hand-off to the Redis thread.
    usage: crate::usage::Recorder,
}

/// Metric slots of one config generation's routes and upstreams (indexed by their ids).
pub struct Slots {
    pub routes: Vec<RouteSlot>,
    pub upstreams: Vec<UpstreamSlot>,
    /// Route names for `[usage]` (empty when metering is off).
    pub route_names: Vec<Arc<str>>,
}

/// Index into `metrics::METHOD_LABELS`.
fn method_label(m: Method) -> u8 {
    match m {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Delete => 4,
        Method::Connect => 5,
        Method::Options => 6,
        Method::Trace => 7,
        Method::Patch => 8,
        Method::Other => 9,
    }
}

fn protocol_flag(p: crate::exchange::model::Protocol) -> u8 {
    match p {
        crate::exchange::model::Protocol::Http1 => 0,
        crate::exchange::model::Protocol::Http2 => crate::metrics::HTTP2_FLAG,
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    }
}

impl CoreTelemetry {
    pub fn new(worker: usize, shared: Arc<Shared>) -> CoreTelemetry {
        CoreTelemetry {
            worker,
            shared,
            metrics: RefCell::new(CoreMetrics::new()),
            log: RefCell::new(None),
            spans: RefCell::new(None),
            rng: RefCell::new(IdRng::new()),
            usage: crate::usage::Recorder::default(),
        }
    }

    /// Stable metric slots for a new generation (called when the generation changes).
    pub fn slots(&self, cfg: &Compiled) -> Slots {
        let mut m = self.metrics.borrow_mut();
        Slots {
            routes: cfg.routes.iter().map(|r| m.route_slot(&r.name)).collect(),
            upstreams: cfg
                .upstreams
                .iter()
                .map(|u| m.upstream_slot(&u.name))
                .collect(),
            route_names: match cfg.usage {
                Some(_) => cfg
                    .routes
                    .iter()
                    .map(|r| Arc::from(r.name.as_str()))
                    .collect(),
                None => Vec::new(),
            },
        }
    }

    /// The request's trace: continues a valid incoming `traceparent`, else starts one.
    pub fn trace_context(
        &self,
        t: &TracingSettings,
        traceparent: Option<&[u8]>,
    ) -> Option<TraceContext> {
        t.propagate.then(|| {
            TraceContext::from_request(traceparent, &mut self.rng.borrow_mut(), t.sample_ratio)
        })
    }

    /// Records a finished request: metrics, access-log line, span.
    pub fn on_request(
        &self,
        (cfg, slots): (&Compiled, &Slots),
        ex: &Exchange,
        head: &RequestHead,
        request_id: &str,
        start: Instant,
    ) {
        let tel = &cfg.telemetry;
        let done = Finished {
            duration: start.elapsed(),
            status: if ex.status == 0 {
                CLIENT_CLOSED
            } else {
                ex.status
            },
            route: ex.route.map(|r| cfg.route(r)),
            upstream: ex
                .upstream
                .as_ref()
                .filter(|u| u.addr.is_some())
                .and_then(|u| cfg.upstreams.get(u.id.0 as usize))
                .map(|u| u.name.as_str()),
            request_id,
        };
        if tel.metrics {
            self.record_metrics(slots, ex, head, &done);
        }
        if let Some(u) = &cfg.usage {
            self.record_usage(u, slots, ex, done.status);
        }
        let logged = tel
            .access_log
            .as_ref()
            .filter(|_| done.route.is_none_or(|r| r.access_log));
        let span = ex
            .trace
            .as_ref()
            .filter(|t| t.sampled && tel.tracing.otlp.is_some());
        if logged.is_none() && span.is_none() {
            return;
        }
        let wall = SystemTime::now() - done.duration;
        if let Some(settings) = logged {
            self.with_log(|log| {
                if log.sampled(settings.sample) {
                    let secret = &cfg.policies.secret_query;
                    push_log_line(log, settings.format, secret, ex, head, &done, wall);
                }
            });
        }
        if let Some(t) = span {
            let rec = span_record(t, ex, head, &done, wall);
            self.with_spans(|s| s.push(rec));
        }
    }

    /// The request in this worker's `[usage]` counts (UTC day, consumer, route, class).
    fn record_usage(
        &self,
        u: &crate::usage::UsageSettings,
        slots: &Slots,
        ex: &Exchange,
        status: u16,
    ) {
        use crate::usage::{UsageKey, Who};
        let key = UsageKey {
            day: (crate::civil::unix_now() / 86_400) as i64,
            class: crate::usage::status_class(status),
            route: ex
                .route
                .and_then(|r| slots.route_names.get(r.0 as usize).cloned()),
            who: ex.consumer.clone().map_or(Who::Anonymous, Who::Named),
        };
        self.usage.record(u, &self.shared.usage, key);
    }

    /// The request's counters and histograms in this core's metrics.
    fn record_metrics(&self, slots: &Slots, ex: &Exchange, head: &RequestHead, done: &Finished) {
        let mut m = self.metrics.borrow_mut();
        let route = ex
            .route
            .and_then(|r| slots.routes.get(r.0 as usize).copied());
        m.record_request(
            route,
            method_label(head.method) | protocol_flag(ex.protocol),
            done.status,
            done.duration,
            ex.bytes_in,
            ex.bytes_out,
        );
        if ex.auth_failure.is_some() || ex.rate_limited.is_some() {
            m.record_policy(route, ex.auth_failure, ex.rate_limited);
        }
        let Some(u) = &ex.upstream else { return };
        if let Some(&slot) = slots.upstreams.get(u.id.0 as usize) {
            for _ in 0..u.connect_errors {
                m.upstream_connect_error(slot);
            }
            if u.addr.is_some() {
                m.upstream_connection(slot, u.reused);
            }
            if let Some(d) = u.duration {
                m.record_upstream(slot, d);
            }
        }
    }

    /// Records a request rejected before its head could be parsed (400, 408, 414, 431 …).
    pub fn on_rejected(
        &self,
        cfg: &Compiled,
        ex: &Exchange,
        request_id: &str,
        peer: SocketAddr,
        start: Instant,
    ) {
        let tel = &cfg.telemetry;
        let duration = start.elapsed();
        if tel.metrics {
            self.metrics.borrow_mut().record_request(
                None,
                method_label(Method::Other),
                ex.status,
                duration,
                ex.bytes_in,
                ex.bytes_out,
            );
        }
        if let Some(settings) = &tel.access_log {
            self.with_log(|log| {
                if log.sampled(settings.sample) {
                    let rec = LogRecord {
                        time: SystemTime::now() - duration,
                        request_id,
                        trace_id: None,
                        client: peer.ip().to_canonical(),
                        method: b"-",
                        target: b"-",
                        version: "-",
                        route: None,
                        status: ex.status,
                        duration,
                        upstream_addr: None,
                        upstream_name: None,
                        upstream_duration: None,
                        attempts: 0,
                        bytes_in: ex.bytes_in,
                        bytes_out: ex.bytes_out.saturating_sub(ex.head_out),
                        user_agent: None,
                        referer: None,
                        consumer: None,
                        aborted: None,
                    };
                    log.push(&rec, format(settings.format));
                }
            });
        }
    }

    /// Runs `f` on this core's access-log buffer, creating it on first use (the control
    /// thread starts the writer before it publishes a config that enables the log).
    fn with_log(&self, f: impl FnOnce(&mut CoreLog)) {
        let mut log = self.log.borrow_mut();
        if log.is_none() {
            match self.shared.access_log.get() {
                Some(sink) => *log = Some(CoreLog::new(sink.clone())),
                None => return,
            }
        }
        if let Some(l) = log.as_mut() {
            f(l);
        }
    }

    fn with_spans(&self, f: impl FnOnce(&mut CoreSpans)) {
        let mut spans = self.spans.borrow_mut();
        if spans.is_none() {
            match self.shared.span_exporter.get() {
                Some(exp) => *spans = Some(CoreSpans::new(exp.clone())),
                None => return,
            }
        }
        if let Some(s) = spans.as_mut() {
            f(s);
        }
    }

    /// Hands buffered log lines and spans to their threads and counts what was dropped
    /// (the worker calls this every flush tick and at shutdown).
    pub fn flush(&self) {
        self.usage.hand_off(&self.shared.usage);
        let mut dropped_lines = 0;
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.flush();
            dropped_lines = log.take_dropped();
        }
        let mut dropped_spans = 0;
        if let Some(spans) = self.spans.borrow_mut().as_mut() {
            spans.flush();
            dropped_spans = spans.take_dropped();
        }
        let mut m = self.metrics.borrow_mut();
        if dropped_lines > 0 {
            m.add(CoreCounter::AccessLogDropped, dropped_lines);
        }
        if dropped_spans > 0 {
            m.add(CoreCounter::SpansDropped, dropped_spans);
        }
    }

    /// Adds one to a worker-local counter (connection-level events: refusals, slow clients).
    pub fn count(&self, c: CoreCounter) {
        self.metrics.borrow_mut().add(c, 1);
    }

    /// A copy of this core's metrics for the admin thread.
    pub fn snapshot(&self, open_connections: u64) -> CoreSnapshot {
        self.metrics
            .borrow()
            .snapshot(self.worker, open_connections)
    }
}

/// What every record of a finished request shares.
struct Finished<'a> {
    duration: std::time::Duration,
    /// Sent status, or 499 when the client left before any response.
    status: u16,
    route: Option<&'a crate::config::Route>,
    /// The upstream that served (a connection was made), by name.
    upstream: Option<&'a str>,
    request_id: &'a str,
}

/// One access-log line. API keys sent as query parameters never reach the log, whatever the
/// outcome (a copy is made only when the target carries one).
fn push_log_line(
    log: &mut CoreLog,
    fmt: AccessLogFormat,
    secret: &[Box<[u8]>],
    ex: &Exchange,
    head: &RequestHead,
    done: &Finished,
    wall: SystemTime,
) {
    let target = redact_target(head.target(), secret);
    let referer = head.header("referer");
    let referer_redacted = referer.and_then(|r| redact_target(r, secret));
    let trace_hex = ex.trace.as_ref().map(|t| t.trace_id_hex());
    let rec = LogRecord {
        time: wall,
        request_id: done.request_id,
        trace_id: trace_hex.as_ref().and_then(|h| std::str::from_utf8(h).ok()),
        client: ex.origin.client,
        method: head.method_bytes(),
        target: target.as_deref().unwrap_or(head.target()),
        version: match ex.protocol {
            crate::exchange::model::Protocol::Http2 => "HTTP/2.0",
            crate::exchange::model::Protocol::Http1 => version_str(head.version),
        },
        route: done.route.map(|r| r.name.as_str()),
        status: done.status,
        duration: done.duration,
        upstream_addr: ex.upstream.as_ref().and_then(|u| u.addr),
        upstream_name: done.upstream,
        upstream_duration: ex.upstream.as_ref().and_then(|u| u.duration),
        attempts: ex.upstream.as_ref().map_or(0, |u| u.attempts),
        bytes_in: ex.bytes_in,
        bytes_out: ex.bytes_out.saturating_sub(ex.head_out),
        user_agent: head.header("user-agent"),
        referer: referer_redacted.as_deref().or(referer),
        consumer: ex.consumer.as_deref(),
        aborted: ex.aborted.map(|side| match side {
            Side::Downstream => "client",
            Side::Upstream => "upstream",
            Side::Internal => "gateway",
        }),
    };
    log.push(&rec, format(fmt));
}

/// The server span of a sampled request.
/// Most bytes of a client's method kept in a span (`http.request.method_original`).
const MAX_SPAN_METHOD: usize = 64;
/// Most bytes of a request path kept in a span (`url.path`): spans wait in a queue while the
/// collector is slow, so what a client can put into one is bounded well below a head's size.
const MAX_SPAN_PATH: usize = 1024;

/// `bytes` as text (invalid UTF-8 replaced), cut to at most `max` bytes at a character
/// boundary.
fn bounded_text(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut s = text.into_owned();
    // A cut inside a multi-byte character shows as U+FFFD (3 bytes): trim back under `max`.
    while s.len() > max {
        s.pop();
    }
    s
}

fn span_record(
    t: &TraceContext,
    ex: &Exchange,
    head: &RequestHead,
    done: &Finished,
    wall: SystemTime,
) -> SpanRecord {
    let start_ns = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Span names and the method attribute take known methods only, as the metrics do: a
    // client's made-up methods would otherwise be a span name each (OpenTelemetry's HTTP
    // conventions: `_OTHER`, the name `HTTP {route}`, the raw method bounded beside it).
    let raw = head.method_bytes();
    let index = usize::from(crate::metrics::method_index(raw));
    let known = index < usize::from(crate::metrics::METHOD_OTHER);
    let method = crate::metrics::METHOD_LABELS[index];
    let route_name = done.route.map(|r| r.name.as_str());
    let verb = if known { method } else { "HTTP" };
    SpanRecord {
        trace_id: t.trace_id,
        span_id: t.span_id,
        parent_span_id: t.parent_span_id,
        name: match route_name {
            Some(r) => format!("{verb} {r}"),
            None => verb.to_string(),
        },
        start_unix_nanos: start_ns,
        end_unix_nanos: start_ns + done.duration.as_nanos() as u64,
        method: method.to_string(),
        method_original: (!known).then(|| bounded_text(raw, MAX_SPAN_METHOD)),
        path: bounded_text(head.path(), MAX_SPAN_PATH),
        route: route_name.map(str::to_string),
        status: done.status,
        upstream: ex
            .upstream
            .as_ref()
            .and_then(|u| u.addr)
            .map(|a| a.to_string()),
        client: ex.origin.client.to_string(),
        request_id: done.request_id.to_string(),
    }
}

fn format(f: AccessLogFormat) -> LogFormat {
    match f {
        AccessLogFormat::Json => LogFormat::Json,
        AccessLogFormat::Combined => LogFormat::Combined,
    }
}
