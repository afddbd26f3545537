//! Compiled observability settings: metrics on/off, the access log (format, target, sampling)
//! and trace context (propagation, response header, sampling, OTLP export). Validated here like
//! every other section, so a bad value names its file, line and field.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::compile::Errors;
use super::raw::{RawConfig, RawDuration};

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

fn ratio(errs: &mut Errors, v: &Option<Spanned<f64>>, field: &str) -> f64 {
    match v {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            errs.at(r.span(), field, "must be between 0.0 and 1.0");
            1.0
        }
    }
}

fn positive(
    errs: &mut Errors,
    v: &Option<Spanned<RawDuration>>,
    field: &str,
    d: Duration,
) -> Duration {
    match v {
        None => d,
        Some(x) if x.get_ref().0.is_zero() => {
            errs.at(x.span(), field, "must be greater than zero");
            d
        }
        Some(x) => x.get_ref().0,
    }
}

pub(super) fn compile_telemetry(raw: &RawConfig, errs: &mut Errors) -> Telemetry {
    let metrics = raw.metrics.enabled.unwrap_or(true);

    let a = &raw.access_log;
    let access_log = if a.enabled.unwrap_or(false) {
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
    } else {
        None
    };

    let t = &raw.tracing;
    let response_header = match &t.response_header {
        None => None,
        Some(h) => {
            let name = h.get_ref().to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
                errs.at(
                    h.span(),
                    "tracing.response_header",
                    format!("{:?} is not a valid header name", h.get_ref()),
                );
                None
            } else {
                Some(name.into())
            }
        }
    };
    let otlp = t.otlp.as_ref().map(|o| {
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
    });
    Telemetry {
        metrics,
        access_log,
        tracing: TracingSettings {
            propagate: t.propagate.unwrap_or(true),
            response_header,
            sample_ratio: ratio(errs, &t.sample_ratio, "tracing.sample_ratio"),
            otlp,
        },
    }
}
