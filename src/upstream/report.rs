//! Upstream health as the admin API shows it: the rows the `/metrics` health families render
//! (`health_rows`) and the JSON of `GET /upstreams` and of `/stats`'s `upstream_health`
//! section (`health_json`): each upstream's targets with their active-check state, last probe,
//! ejection state and counts, and whether the upstream is in panic mode.
//!
//! Read on the admin thread from the shared atomics; never on the request path.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Compiled, Upstream};
use crate::json::string_into;
use crate::metrics::HealthRow;
use crate::resilience::active::{CheckKind, ProbeResult};
use crate::resilience::outlier::{in_panic, mono_ms, KINDS};

/// One metrics row per target of every upstream in `cfg`.
pub fn health_rows(cfg: &Compiled) -> Vec<HealthRow<'_>> {
    let now_ms = mono_ms(Instant::now());
    let mut rows = Vec::new();
    for u in &cfg.upstreams {
        for t in &u.targets {
            rows.push(HealthRow {
                upstream: &u.name,
                target: t.addr.to_string(),
                health: &t.health,
                checked: u.health.check.is_some(),
                now_ms,
            });
        }
    }
    rows
}

/// `{"upstreams":[...]}` (see the module header) appended to `out`.
pub fn health_json(cfg: &Compiled, out: &mut Vec<u8>) {
    let now_ms = mono_ms(Instant::now());
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    out.extend_from_slice(b"{\"upstreams\":[");
    for (i, u) in cfg.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        upstream_json(u, now_ms, unix_ms, out);
    }
    out.extend_from_slice(b"]}");
}

fn upstream_json(u: &Upstream, now_ms: u64, unix_ms: u64, out: &mut Vec<u8>) {
    let checked = u.health.check.is_some();
    let usable = u
        .targets
        .iter()
        .filter(|t| t.health.usable(checked, now_ms))
        .count();
    let configured = checked || u.health.outlier.is_some();
    let panic = configured && in_panic(usable, u.targets.len(), u.health.panic_threshold);
    out.extend_from_slice(b"{\"name\":");
    string_into(out, u.name.as_bytes());
    out.extend_from_slice(b",\"health_check\":");
    match &u.health.check {
        None => out.extend_from_slice(b"null"),
        Some(c) => {
            let kind = match &c.kind {
                CheckKind::Http { path, .. } => format!("http {path}"),
                CheckKind::Tcp => "tcp".into(),
            };
            string_into(out, kind.as_bytes());
        }
    }
    let outlier = if u.health.outlier.is_some() {
        "true"
    } else {
        "false"
    };
    push(
        out,
        &format!(
            ",\"outlier\":{outlier},\"panic_threshold\":{},",
            u.health.panic_threshold
        ),
    );
    push(
        out,
        &format!("\"usable_targets\":{usable},\"panic\":{panic},\"targets\":["),
    );
    for (i, t) in u.targets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let h = &t.health;
        out.extend_from_slice(b"{\"address\":");
        string_into(out, t.addr.to_string().as_bytes());
        out.extend_from_slice(b",\"name\":");
        string_into(out, t.label.as_bytes());
        let active = match (checked, h.active.is_down()) {
            (false, _) => "unchecked",
            (true, false) => "healthy",
            (true, true) => "unhealthy",
        };
        let until = h.outlier.ejected_until();
        let left = until.saturating_sub(now_ms);
        push(
            out,
            &format!(
                ",\"healthy\":{},\"active\":\"{active}\",\"ejected\":{},\"ejected_for_ms\":{left},",
                h.usable(checked, now_ms),
                left > 0
            ),
        );
        let until_unix = if left > 0 { unix_ms + left } else { 0 };
        push(
            out,
            &format!("\"ejected_until_unix_ms\":{until_unix},\"ejections\":{{"),
        );
        for (j, ((reason, _), n)) in KINDS
            .iter()
            .zip(h.outlier.ejections_by_reason())
            .enumerate()
        {
            let comma = if j > 0 { "," } else { "" };
            push(out, &format!("{comma}\"{reason}\":{n}"));
        }
        let (passed, failed) = h.active.probe_counts();
        push(
            out,
            &format!(
                "}},\"ejection_multiplier\":{},\"consecutive_failures\":{},\
                 \"probes_passed\":{passed},\"probes_failed\":{failed},\"last_probe\":",
                h.outlier.ejections(),
                h.outlier.consecutive()
            ),
        );
        match h.active.last() {
            None => out.extend_from_slice(b"null"),
            Some((r, at)) => {
                let status = match r {
                    ProbeResult::Status(s) => s.to_string(),
                    _ => "null".into(),
                };
                push(
                    out,
                    &format!(
                        "{{\"result\":\"{}\",\"status\":{status},\"at_unix_ms\":{at}}}",
                        r.label()
                    ),
                );
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}
