//! Traffic management settings compiled: an upstream's balancing algorithm (`balance`,
//! `hash_on`, with its Maglev table built here, once per compile) and a proxy route's weighted
//! `split` (with `sticky`) and `mirror`. The compiled types live in `model.rs`, the raw ones
//! in `raw.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use toml::Spanned;

use super::errors::Diag;
use super::model::{
    Balance, KeySource, Mirror, Split, Target, Upstream, UpstreamId, UpstreamProtocol,
};
use super::raw::{RawMirror, RawSplitArm};
use crate::resilience::maglev::{Maglev, MAX_TARGETS};

/// Builds a dotted field name under the table being compiled.
type Field<'a> = &'a dyn Fn(&str) -> String;

/// Largest split weight.
const MAX_SPLIT_WEIGHT: i64 = 1_000_000;
const DEFAULT_MIRROR_BODY: u64 = 64 * 1024;
const DEFAULT_MIRROR_IN_FLIGHT: u32 = 64;

/// An upstream's `balance` and `hash_on` (fields under `upstreams.NAME`).
pub fn balance(
    balance: &Option<Spanned<String>>,
    hash_on: &Option<Spanned<String>>,
    targets: &[Target],
    field: Field<'_>,
    errs: &mut Diag,
) -> Balance {
    let kind = balance
        .as_ref()
        .map_or("round_robin", |b| b.get_ref().as_str());
    let algo = match kind {
        "round_robin" => Balance::RoundRobin,
        "least_request" => Balance::LeastRequest,
        "hash" => match hash_on {
            None => {
                if let Some(b) = balance {
                    errs.at(
                        b.span(),
                        field("balance"),
                        "balance = \"hash\" needs `hash_on` (\"header:NAME\", \"cookie:NAME\", \
                         \"client_ip\" or \"path\")",
                    );
                }
                Balance::RoundRobin
            }
            Some(on) => match key_source(on.get_ref(), true) {
                Ok(src) => hashed(src, targets, on, field, errs),
                Err(m) => {
                    errs.at(on.span(), field("hash_on"), m);
                    Balance::RoundRobin
                }
            },
        },
        other => {
            if let Some(b) = balance {
                errs.at(
                    b.span(),
                    field("balance"),
                    format!(
                        "unknown balance {other:?}: expected \"round_robin\", \
                         \"least_request\" or \"hash\""
                    ),
                );
            }
            Balance::RoundRobin
        }
    };
    if let (Some(on), false) = (hash_on, kind == "hash") {
        errs.at(
            on.span(),
            field("hash_on"),
            "hash_on needs balance = \"hash\"",
        );
    }
    algo
}

/// `Balance::Hash` with the Maglev table of `targets` (identified by address).
fn hashed(
    on: KeySource,
    targets: &[Target],
    span: &Spanned<String>,
    field: Field<'_>,
    errs: &mut Diag,
) -> Balance {
    if targets.len() > MAX_TARGETS {
        errs.at(
            span.span(),
            field("hash_on"),
            format!("consistent hashing takes at most {MAX_TARGETS} targets"),
        );
        return Balance::RoundRobin;
    }
    let ids: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
    let weighted: Vec<(&[u8], u32)> = ids
        .iter()
        .zip(targets)
        .map(|(id, t)| (id.as_bytes(), t.weight))
        .collect();
    Balance::Hash {
        on,
        table: Arc::new(Maglev::build(&weighted)),
    }
}

/// `"header:NAME"`, `"cookie:NAME"`, and (with `any`) `"client_ip"` or `"path"`.
pub fn key_source(text: &str, any: bool) -> Result<KeySource, String> {
    let expected = if any {
        "expected \"header:NAME\", \"cookie:NAME\", \"client_ip\" or \"path\""
    } else {
        "expected \"header:NAME\" or \"cookie:NAME\""
    };
    if let Some(name) = text.strip_prefix("header:") {
        if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
            return Err(format!("{name:?} is not a valid header name ({expected})"));
        }
        return Ok(KeySource::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
            return Err(format!("{name:?} is not a valid cookie name ({expected})"));
        }
        return Ok(KeySource::Cookie(name.to_string()));
    }
    match text {
        "client_ip" if any => Ok(KeySource::ClientIp),
        "path" if any => Ok(KeySource::Path),
        _ => Err(format!("unknown key {text:?}: {expected}")),
    }
}

/// The upstream named by `name`, or an error at it listing the defined ones.
pub fn upstream_id(
    name: &Spanned<String>,
    ids: &HashMap<String, UpstreamId>,
    field: &str,
    errs: &mut Diag,
) -> Option<UpstreamId> {
    if let Some(id) = ids.get(name.get_ref()) {
        return Some(*id);
    }
    let mut known: Vec<_> = ids.keys().cloned().collect();
    known.sort();
    let known = if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    };
    errs.at(
        name.span(),
        field,
        format!("unknown upstream {:?} (defined: {known})", name.get_ref()),
    );
    None
}

/// `proxy.split` with `proxy.sticky`; `None` without a split (a `sticky` alone is an error).
pub fn split(
    arms: &Option<Spanned<Vec<RawSplitArm>>>,
    sticky: &Option<Spanned<String>>,
    ids: &HashMap<String, UpstreamId>,
    field: Field<'_>,
    errs: &mut Diag,
) -> Option<Box<Split>> {
    let Some(arms) = arms else {
        if let Some(s) = sticky {
            errs.at(s.span(), field("proxy.sticky"), "sticky needs `split`");
        }
        return None;
    };
    if arms.get_ref().is_empty() {
        errs.at(
            arms.span(),
            field("proxy.split"),
            "split needs at least one upstream",
        );
        return None;
    }
    let mut out = Vec::new();
    for (i, a) in arms.get_ref().iter().enumerate() {
        let f = field(&format!("proxy.split[{i}].upstream"));
        let id = upstream_id(&a.upstream, ids, &f, errs);
        let w = *a.weight.get_ref();
        if !(0..=MAX_SPLIT_WEIGHT).contains(&w) {
            errs.at(
                a.weight.span(),
                field(&format!("proxy.split[{i}].weight")),
                format!("weight must be between 0 and {MAX_SPLIT_WEIGHT}"),
            );
            continue;
        }
        if let Some(id) = id {
            if out.iter().any(|(o, _)| *o == id) {
                errs.at(a.upstream.span(), f, "upstream listed twice in split");
            }
            out.push((id, w as u32));
        }
    }
    let total: u64 = out.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 && out.len() == arms.get_ref().len() {
        errs.at(
            arms.span(),
            field("proxy.split"),
            "the split's weights are all 0: at least one must be positive",
        );
    }
    let sticky = sticky
        .as_ref()
        .and_then(|s| match key_source(s.get_ref(), false) {
            Ok(k) => Some(k),
            Err(m) => {
                errs.at(s.span(), field("proxy.sticky"), m);
                None
            }
        });
    Some(Box::new(Split {
        arms: out,
        total,
        sticky,
    }))
}

/// `proxy.mirror`: a known HTTP/1.1 upstream, a percentage and the body and in-flight bounds.
pub fn mirror(
    raw: &Option<Spanned<RawMirror>>,
    ids: &HashMap<String, UpstreamId>,
    upstreams: &[Upstream],
    field: Field<'_>,
    errs: &mut Diag,
) -> Option<Box<Mirror>> {
    let m = raw.as_ref()?.get_ref();
    let id = upstream_id(&m.upstream, ids, &field("proxy.mirror.upstream"), errs)?;
    if upstreams
        .get(id.0 as usize)
        .is_some_and(|u| u.protocol == UpstreamProtocol::Http2)
    {
        errs.at(
            m.upstream.span(),
            field("proxy.mirror.upstream"),
            "mirroring to a protocol = \"http2\" upstream is not supported",
        );
    }
    let percent = m.percent.as_ref().map_or(100.0, |p| *p.get_ref());
    if !(0.0..=100.0).contains(&percent) {
        if let Some(p) = &m.percent {
            errs.at(
                p.span(),
                field("proxy.mirror.percent"),
                "percent must be between 0 and 100",
            );
        }
    }
    let max_in_flight = super::errors::int_in(
        errs,
        &m.max_in_flight,
        &field("proxy.mirror.max_in_flight"),
        DEFAULT_MIRROR_IN_FLIGHT,
        1..=100_000,
        "",
    );
    Some(Box::new(Mirror {
        upstream: id,
        per_million: (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
        max_body: m
            .max_body
            .as_ref()
            .map_or(DEFAULT_MIRROR_BODY, |b| b.get_ref().0),
        max_in_flight,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources() {
        assert_eq!(
            key_source("header:X-User", true),
            Ok(KeySource::Header("x-user".into()))
        );
        assert_eq!(
            key_source("cookie:sid", false),
            Ok(KeySource::Cookie("sid".into()))
        );
        assert_eq!(key_source("client_ip", true), Ok(KeySource::ClientIp));
        assert_eq!(key_source("path", true), Ok(KeySource::Path));
        assert!(key_source("path", false).is_err());
        assert!(key_source("header:", true).is_err());
        assert!(key_source("cookie:a b", true).is_err());
        assert!(key_source("ip", true).is_err());
    }
}
