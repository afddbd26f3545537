//! An upstream's health settings compiled: `[upstreams.NAME.health_check]` (active checks),
//! `[upstreams.NAME.outlier]` (passive ejection) and `panic_threshold`, into the resilience
//! layer's `ActiveCheck` / `OutlierPolicy`. Every error names the file, line and field.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::errors::{int_in, positive, Diag};
use super::units::RawDuration;
use crate::resilience::active::{self, ActiveCheck, CheckKind};
use crate::resilience::outlier::{self, HealthSettings as Health, OutlierPolicy, KINDS};

/// `[upstreams.NAME.health_check]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `"http"` (default) or `"tcp"`.
    #[serde(rename = "type")]
    #[schemars(with = "Option<String>")]
    pub kind: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// `"200-399"`, `"204"` or `204`.
    #[schemars(with = "Option<RawStatusRange>")]
    pub expect_status: Option<Spanned<RawStatusRange>>,
    #[schemars(with = "Option<RawDuration>")]
    pub interval: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<i64>")]
    pub healthy_threshold: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub unhealthy_threshold: Option<Spanned<i64>>,
}

/// A status or an inclusive range of statuses.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawStatusRange {
    Code(i64),
    Text(String),
}

/// `[upstreams.NAME.outlier]`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    #[schemars(with = "Option<i64>")]
    pub consecutive: Option<Spanned<i64>>,
    /// Subset of `["5xx", "gateway", "reset", "connect", "timeout"]` (`gateway`: 502, 503
    /// and 504 only; default: all but `gateway`, which `5xx` includes).
    #[schemars(with = "Option<Vec<String>>")]
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    #[schemars(with = "Option<RawDuration>")]
    pub base_ejection_time: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub max_ejection_time: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<i64>")]
    pub max_ejection_percent: Option<Spanned<i64>>,
}

/// Shortest probe interval: each probe is a thread and a connection.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// An upstream's raw health settings (fields of `RawUpstream`).
pub struct RawHealth<'a> {
    pub check: Option<&'a Spanned<RawHealthCheck>>,
    pub outlier: Option<&'a Spanned<RawOutlier>>,
    pub panic_threshold: &'a Option<Spanned<i64>>,
}

/// Compiles an upstream's health settings; `field(f)` names `upstreams.NAME.f`.
pub fn compile_health(
    u: RawHealth<'_>,
    h2: bool,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> Health {
    let check = u.check.map(|c| {
        let f = |s: &str| field(&format!("health_check.{s}"));
        Arc::new(active_check(c, h2, &f, errs))
    });
    let outlier = u.outlier.map(|o| {
        let f = |s: &str| field(&format!("outlier.{s}"));
        outlier_policy(o.get_ref(), &f, errs)
    });
    let panic_threshold = int_in(
        errs,
        u.panic_threshold,
        &field("panic_threshold"),
        outlier::DEFAULT_PANIC_THRESHOLD,
        0..=100,
        "a percentage ",
    );
    Health {
        check,
        outlier,
        panic_threshold,
    }
}

fn active_check(
    c: &Spanned<RawHealthCheck>,
    h2: bool,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> ActiveCheck {
    let raw = c.get_ref();
    let mut interval = positive(
        errs,
        &raw.interval,
        &field("interval"),
        active::DEFAULT_INTERVAL,
    );
    if let Some(i) = raw.interval.as_ref().filter(|_| interval < MIN_INTERVAL) {
        if !i.get_ref().0.is_zero() {
            errs.at(i.span(), field("interval"), "must be at least 10ms");
        }
        interval = MIN_INTERVAL;
    }
    let timeout = positive(
        errs,
        &raw.timeout,
        &field("timeout"),
        active::DEFAULT_TIMEOUT,
    );
    let threshold = |errs: &mut Diag, v: &Option<Spanned<i64>>, name: &str, default: u32| {
        int_in(errs, v, &field(name), default, 1..=100, "a threshold ")
    };
    let healthy_threshold = threshold(errs, &raw.healthy_threshold, "healthy_threshold", 2);
    let unhealthy_threshold = threshold(errs, &raw.unhealthy_threshold, "unhealthy_threshold", 2);
    let http = match &raw.kind {
        None => true,
        Some(k) => match k.get_ref().as_str() {
            "http" => true,
            "tcp" => false,
            other => {
                let m = format!("unknown check type {other:?}: expected \"http\" or \"tcp\"");
                errs.at(k.span(), field("type"), m);
                true
            }
        },
    };
    let kind = if http {
        if h2 {
            let span = raw.kind.as_ref().map_or(c.span(), |k| k.span());
            let m = "HTTP checks speak HTTP/1.1, which a protocol = \"http2\" upstream may not; \
                     use type = \"tcp\" (connect and TLS handshake)";
            errs.at(span, field("type"), m);
        }
        CheckKind::Http {
            path: check_path(raw, field, errs),
            host: raw.host.as_ref().and_then(|h| {
                header_safe(h.get_ref(), h.span(), &field("host"), errs)
                    .then(|| h.get_ref().clone())
            }),
            expect: raw
                .expect_status
                .as_ref()
                .map_or(active::DEFAULT_EXPECT, |e| {
                    status_range(e, &field("expect_status"), errs)
                }),
        }
    } else {
        for (name, set) in [
            ("path", raw.path.as_ref().map(|p| p.span())),
            ("host", raw.host.as_ref().map(|p| p.span())),
            (
                "expect_status",
                raw.expect_status.as_ref().map(|p| p.span()),
            ),
        ] {
            if let Some(span) = set {
                errs.at(span, field(name), "only applies to type = \"http\" checks");
            }
        }
        CheckKind::Tcp
    };
    ActiveCheck {
        kind,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    }
}

/// The probe path: absolute, and nothing that could split the request line.
fn check_path(raw: &RawHealthCheck, field: &dyn Fn(&str) -> String, errs: &mut Diag) -> String {
    let Some(p) = &raw.path else {
        return "/".into();
    };
    let path = p.get_ref();
    let ok = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        let m = format!("{path:?} must start with '/' and hold no spaces or control characters");
        errs.at(p.span(), field("path"), m);
        return "/".into();
    }
    path.clone()
}

/// Whether `v` can go in a header line as is (reported when not).
fn header_safe(v: &str, span: Range<usize>, field: &str, errs: &mut Diag) -> bool {
    let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        errs.at(span, field, format!("{v:?} is not a valid host"));
    }
    ok
}

/// `"200-399"`, `"204"` or `204`: statuses 100..=599, low ≤ high.
fn status_range(r: &Spanned<RawStatusRange>, field: &str, errs: &mut Diag) -> (u16, u16) {
    let parsed = match r.get_ref() {
        RawStatusRange::Code(c) => u16::try_from(*c).ok().map(|c| (c, c)),
        RawStatusRange::Text(t) => match t.split_once('-') {
            Some((lo, hi)) => lo.trim().parse().ok().zip(hi.trim().parse().ok()),
            None => t.trim().parse().ok().map(|c| (c, c)),
        },
    };
    match parsed {
        Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => (lo, hi),
        _ => {
            let m = "expected a status or a range of statuses like \"200-399\" (100 to 599, \
                     low to high)";
            errs.at(r.span(), field, m);
            active::DEFAULT_EXPECT
        }
    }
}

fn outlier_policy(
    o: &RawOutlier,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> OutlierPolicy {
    let consecutive = int_in(
        errs,
        &o.consecutive,
        &field("consecutive"),
        outlier::DEFAULT_CONSECUTIVE,
        1..=1000,
        "",
    );
    let on = match &o.on {
        None => outlier::DEFAULT_ON,
        Some(list) => on_mask(list, field, errs),
    };
    let base = positive(
        errs,
        &o.base_ejection_time,
        &field("base_ejection_time"),
        outlier::DEFAULT_BASE_EJECTION,
    );
    let max = positive(
        errs,
        &o.max_ejection_time,
        &field("max_ejection_time"),
        outlier::DEFAULT_MAX_EJECTION.max(base),
    );
    if let Some(m) = o.max_ejection_time.as_ref().filter(|_| max < base) {
        errs.at(
            m.span(),
            field("max_ejection_time"),
            "must not be shorter than base_ejection_time",
        );
    }
    let max_ejection_percent = int_in(
        errs,
        &o.max_ejection_percent,
        &field("max_ejection_percent"),
        outlier::DEFAULT_MAX_PERCENT,
        0..=100,
        "a percentage ",
    );
    OutlierPolicy {
        consecutive,
        on,
        base_ejection_time: base,
        max_ejection_time: max.max(base),
        max_ejection_percent,
    }
}

/// `on = [...]` as a bit mask over `KINDS`.
fn on_mask(
    list: &Spanned<Vec<Spanned<String>>>,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> u8 {
    if list.get_ref().is_empty() {
        errs.at(
            list.span(),
            field("on"),
            "needs at least one of \"5xx\", \"gateway\", \"reset\", \"connect\", \"timeout\"",
        );
        return outlier::DEFAULT_ON;
    }
    let mut mask = 0u8;
    for (i, k) in list.get_ref().iter().enumerate() {
        match KINDS.iter().position(|(name, _)| name == k.get_ref()) {
            Some(bit) => mask |= 1 << bit,
            None => errs.at(
                k.span(),
                field(&format!("on[{i}]")),
                format!(
                    "unknown failure kind {:?}: expected \"5xx\", \"gateway\", \"reset\", \"connect\" or \"timeout\"",
                    k.get_ref()
                ),
            ),
        }
    }
    mask
}
