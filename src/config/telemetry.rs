//! Compiled observability settings: metrics on/off, the access log (format, target, sampling)
//! and trace context (propagation, response header, sampling, OTLP export). Validated here like
//! every other section, so a bad value names its file, line and field.

use std::path::{Path, PathBuf};
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
    /// Query parameter names (as configured, or `DEFAULT_REDACT_QUERY`) whose values are
    /// logged as `REDACTED`; the compiler adds every `api_key` query name to
    /// `Policies::secret_query` beside these.
    pub redact_query: Vec<Box<[u8]>>,
}

/// Credential-bearing query parameters redacted in access logs unless `redact_query` says
/// otherwise: OAuth 2.0 and OIDC tokens and client secrets, passwords, and the signatures and
/// credentials of S3 / GCS presigned URLs. Matched ignoring ASCII case.
pub const DEFAULT_REDACT_QUERY: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "password",
    "token",
    "secret",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

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
/// `dir`: the config file's directory, which a relative `access_log.path` is under (like every
/// other file the config names), whatever directory the gateway was started from.
pub(super) fn compile_telemetry(raw: &RawConfig, dir: &Path, errs: &mut Diag) -> Telemetry {
    Telemetry {
        metrics: raw.metrics.enabled.unwrap_or(true),
        access_log: access_log(&raw.access_log, dir, errs),
        tracing: tracing(&raw.tracing, errs),
    }
}

/// `[access_log]`: off unless `enabled = true`.
fn access_log(a: &RawAccessLog, dir: &Path, errs: &mut Diag) -> Option<AccessLogSettings> {
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
        Some(p) => Some(dir.join(p.get_ref())),
    };
    Some(AccessLogSettings {
        format,
        path,
        sample: ratio(errs, &a.sample, "access_log.sample"),
        redact_query: redact_query(a, errs),
    })
}

/// `access_log.redact_query`: names a query could carry a secret under. A name must be
/// non-empty and hold no character that would end it inside a query (`&`, `=`, `#`), nor a
/// space or control character (it could never match).
fn redact_query(a: &RawAccessLog, errs: &mut Diag) -> Vec<Box<[u8]>> {
    let Some(list) = &a.redact_query else {
        return DEFAULT_REDACT_QUERY
            .iter()
            .map(|n| n.as_bytes().into())
            .collect();
    };
    let mut names: Vec<Box<[u8]>> = Vec::with_capacity(list.len());
    for n in list {
        let name = n.get_ref();
        if name.is_empty()
            || name
                .bytes()
                .any(|b| matches!(b, b'&' | b'=' | b'#' | b' ') || b.is_ascii_control())
        {
            errs.at(
                n.span(),
                "access_log.redact_query",
                format!(
                    "{name:?} is not a query parameter name (empty, or holds '&', '=', '#', \
                     a space or a control character)"
                ),
            );
            continue;
        }
        if !names.iter().any(|m| **m == *name.as_bytes()) {
            names.push(name.as_bytes().into());
        }
    }
    names
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::config::compile::{compile, parse};

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    fn telemetry(extra: &str) -> Result<Telemetry, Vec<String>> {
        let src = format!("{BASE}{extra}");
        let file = Path::new("test.toml");
        let raw = parse(&src, file).map_err(|e| vec![e[0].to_string()])?;
        compile(raw, &src, file, 1)
            .map(|c| c.telemetry)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults() {
        let t = telemetry("").unwrap();
        assert!(t.metrics);
        assert_eq!(t.access_log, None);
        assert_eq!(
            t.tracing,
            TracingSettings {
                propagate: true,
                response_header: None,
                sample_ratio: 1.0,
                otlp: None,
            }
        );
    }

    #[test]
    fn values() {
        let t = telemetry(
            "[metrics]\nenabled = false\n\
             [access_log]\nenabled = true\nformat = \"combined\"\npath = \"/var/log/a.log\"\nsample = 0.25\n\
             [tracing]\npropagate = false\nresponse_header = \"X-Trace-Id\"\nsample_ratio = 0.5\n\
             [tracing.otlp]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nservice_name = \"gw\"\n\
             batch_size = 64\nflush_interval = \"250ms\"\ntimeout = \"3s\"\n",
        )
        .unwrap();
        assert!(!t.metrics);
        assert_eq!(
            t.access_log,
            Some(AccessLogSettings {
                format: AccessLogFormat::Combined,
                path: Some(PathBuf::from("/var/log/a.log")),
                sample: 0.25,
                redact_query: DEFAULT_REDACT_QUERY
                    .iter()
                    .map(|n| n.as_bytes().into())
                    .collect(),
            })
        );
        // A configured list replaces the built-in one (deduplicated); `[]` turns it off.
        let names = |extra: &str| -> Vec<String> {
            let t = telemetry(&format!("[access_log]\nenabled = true\n{extra}")).unwrap();
            let a = t.access_log.unwrap();
            a.redact_query
                .iter()
                .map(|n| String::from_utf8(n.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(
            names("redact_query = [\"code\", \"State\", \"code\"]\n"),
            ["code", "State"]
        );
        assert!(names("redact_query = []\n").is_empty());
        assert!(!t.tracing.propagate);
        assert_eq!(t.tracing.response_header.as_deref(), Some("x-trace-id"));
        assert_eq!(t.tracing.sample_ratio, 0.5);
        assert_eq!(
            t.tracing.otlp,
            Some(OtlpSettings {
                endpoint: "http://127.0.0.1:4318/v1/traces".into(),
                service_name: "gw".into(),
                batch_size: 64,
                flush_interval: Duration::from_millis(250),
                timeout: Duration::from_secs(3),
            })
        );
        // "-" is stdout; a disabled access log ignores its other settings.
        let t = telemetry("[access_log]\nenabled = true\npath = \"-\"\n").unwrap();
        assert_eq!(t.access_log.unwrap().path, None);
        let t = telemetry("[access_log]\nformat = \"nonsense\"\n").unwrap();
        assert_eq!(t.access_log, None);
    }

    #[test]
    fn errors_name_line_and_field() {
        let one = |extra: &str| {
            let e = telemetry(extra).unwrap_err();
            assert_eq!(e.len(), 1, "{e:?}");
            e[0].clone()
        };
        assert_eq!(
            one("[access_log]\nenabled = true\nformat = \"xml\"\n"),
            "test.toml:5:10: access_log.format: unknown format \"xml\": use \"json\" or \"combined\""
        );
        assert_eq!(
            one("[access_log]\nenabled = true\npath = \"\"\n"),
            "test.toml:5:8: access_log.path: must not be empty (use \"-\" for stdout)"
        );
        assert_eq!(
            one("[access_log]\nenabled = true\nsample = 1.5\n"),
            "test.toml:5:10: access_log.sample: must be between 0.0 and 1.0"
        );
        assert_eq!(
            one("[access_log]\nenabled = true\nredact_query = [\"ok\", \"a=b\"]\n"),
            "test.toml:5:23: access_log.redact_query: \"a=b\" is not a query parameter name \
             (empty, or holds '&', '=', '#', a space or a control character)"
        );
        assert_eq!(
            one("[tracing]\nresponse_header = \"x trace\"\n"),
            "test.toml:4:19: tracing.response_header: \"x trace\" is not a valid header name"
        );
        assert_eq!(
            one("[tracing]\nsample_ratio = -0.1\n"),
            "test.toml:4:16: tracing.sample_ratio: must be between 0.0 and 1.0"
        );
        let otlp = "[tracing.otlp]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n";
        assert_eq!(
            one(&format!("{otlp}batch_size = 0\n")),
            "test.toml:5:14: tracing.otlp.batch_size: must be between 1 and 65536"
        );
        assert_eq!(
            one(&format!("{otlp}flush_interval = \"0s\"\n")),
            "test.toml:5:18: tracing.otlp.flush_interval: must be greater than zero"
        );
        assert_eq!(
            one(&format!("{otlp}service_name = \"\"\n")),
            "test.toml:5:16: tracing.otlp.service_name: must not be empty"
        );
        let e = one("[tracing.otlp]\nendpoint = \"ftp://x\"\n");
        assert!(
            e.starts_with("test.toml:4:12: tracing.otlp.endpoint: "),
            "{e}"
        );
    }
}
