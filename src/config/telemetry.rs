//! Compiled observability settings: metrics on/off, the access log (format, target, sampling)
//! and trace context (propagation, response header, sampling, OTLP export). Validated here like
//! every other section, so a bad value names its file, line and field.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::errors::{header_name, positive, Diag};
use super::raw::{RawAccessLog, RawConfig, RawOtlp, RawTracing};

/// Everything the request path needs to know about telemetry for one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// Record request metrics in the workers' core-local counters.
    pub metrics: bool,
    pub access_log: Option<AccessLogSettings>,
    pub tracing: TracingSettings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    Json,
    Combined,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccessLogSettings {
    pub format: AccessLogFormat,
    /// `None` = stdout.
    pub path: Option<PathBuf>,
    /// Fraction of requests logged.
    pub sample: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TracingSettings {
    /// Continue or start a W3C trace per request and send `traceparent` upstream.
    pub propagate: bool,
    /// Lowercase name of the response header that carries the trace id.
    pub response_header: Option<std::sync::Arc<str>>,
    /// Fraction of new traces marked sampled.
    pub sample_ratio: f64,
    pub otlp: Option<OtlpSettings>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub service_name: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
}

fn ratio(errs: &mut Diag, v: &Option<Spanned<f64>>, field: &str) -> f64 {
    match v {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            errs.at(r.span(), field, "must be between 0.0 and 1.0");
            1.0
        }
    }
}

/// `[metrics]`, `[access_log]` and `[tracing]`.
pub(super) fn compile_telemetry(raw: &RawConfig, errs: &mut Diag) -> Telemetry {
    Telemetry {
        metrics: raw.metrics.enabled.unwrap_or(true),
        access_log: access_log(&raw.access_log, errs),
        tracing: tracing(&raw.tracing, errs),
    }
}

/// `[access_log]`: off unless `enabled = true`.
fn access_log(a: &RawAccessLog, errs: &mut Diag) -> Option<AccessLogSettings> {
    if !a.enabled.unwrap_or(false) {
        return None;
    }
    let format = match &a.format {
        None => AccessLogFormat::Json,
        Some(f) => match f.get_ref().as_str() {
            "json" => AccessLogFormat::Json,
            "combined" => AccessLogFormat::Combined,
            other => {
                errs.at(
                    f.span(),
                    "access_log.format",
                    format!("unknown format {other:?}: use \"json\" or \"combined\""),
                );
                AccessLogFormat::Json
            }
        },
    };
    let path = match &a.path {
        None => None,
        Some(p) if p.get_ref() == "-" => None,
        Some(p) if p.get_ref().is_empty() => {
            errs.at(
                p.span(),
                "access_log.path",
                "must not be empty (use \"-\" for stdout)",
            );
            None
        }
        Some(p) => Some(PathBuf::from(p.get_ref())),
    };
    Some(AccessLogSettings {
        format,
        path,
        sample: ratio(errs, &a.sample, "access_log.sample"),
    })
}

/// `[tracing]`, with `[tracing.otlp]` when present.
fn tracing(t: &RawTracing, errs: &mut Diag) -> TracingSettings {
    let response_header = t
        .response_header
        .as_ref()
        .and_then(|h| header_name(errs, h, "tracing.response_header"))
        .map(Into::into);
    let otlp = t.otlp.as_ref().map(|o| otlp(o, errs));
    TracingSettings {
        propagate: t.propagate.unwrap_or(true),
        response_header,
        sample_ratio: ratio(errs, &t.sample_ratio, "tracing.sample_ratio"),
        otlp,
    }
}

/// `[tracing.otlp]`: a valid endpoint, batch size 1..=65536, non-zero intervals.
fn otlp(o: &RawOtlp, errs: &mut Diag) -> OtlpSettings {
    if let Err(m) = crate::trace::parse_endpoint(o.endpoint.get_ref()) {
        errs.at(o.endpoint.span(), "tracing.otlp.endpoint", m);
    }
    let batch_size = match &o.batch_size {
        None => 512,
        Some(b) => match usize::try_from(*b.get_ref()) {
            Ok(n) if (1..=65_536).contains(&n) => n,
            _ => {
                errs.at(
                    b.span(),
                    "tracing.otlp.batch_size",
                    "must be between 1 and 65536",
                );
                512
            }
        },
    };
    let service_name = match &o.service_name {
        None => "ringway".to_string(),
        Some(s) if s.get_ref().is_empty() => {
            errs.at(s.span(), "tracing.otlp.service_name", "must not be empty");
            "ringway".to_string()
        }
        Some(s) => s.get_ref().clone(),
    };
    OtlpSettings {
        endpoint: o.endpoint.get_ref().clone(),
        service_name,
        batch_size,
        flush_interval: positive(
            errs,
            &o.flush_interval,
            "tracing.otlp.flush_interval",
            Duration::from_secs(1),
        ),
        timeout: positive(
            errs,
            &o.timeout,
            "tracing.otlp.timeout",
            Duration::from_secs(2),
        ),
    }
}
