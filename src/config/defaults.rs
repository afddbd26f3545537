//! A route's effective policy list: the `[[defaults]]` that cover it (in file order), then its
//! own policies; a name listed twice runs once, at its first position; CORS is split out (it
//! answers preflights before the loop). A default that covers only part of a route (see
//! `scope`) makes the route carry one list per subset of such defaults, chosen per request;
//! `unused_defaults` reports a default that no route can ever serve a request under.

use std::collections::HashMap;

use toml::Spanned;

use super::errors::Diag;
use super::raw::{RawConfig, RawDefaults};
use super::scope::{Coverage, GatedPolicies, Scope, MAX_GATED};
use crate::policy::pipeline::{Policies, Policy, PolicyId};
use crate::route::RouteSpec;

/// The scope of a `[[defaults]]` entry.
pub(super) fn default_scope(d: &RawDefaults) -> Scope {
    Scope::new(
        d.prefix.as_ref().map(|p| p.get_ref().as_str()),
        d.host.as_ref().map(|h| h.get_ref().as_str()),
        d.case_insensitive.unwrap_or(false),
    )
}

/// A route's effective policies: the list for requests no partial default covers, the CORS
/// policy, and the per-request lists when some defaults cover only part of the route.
pub(super) type RoutePolicies = (Vec<PolicyId>, Option<PolicyId>, Option<Box<GatedPolicies>>);

/// The route's effective policies: covering defaults in file order, then its own; a name
/// listed twice runs once (first position). CORS is split out (it runs before the loop).
/// A default that covers only part of the route (a catch-all under `prefix = "/api"`) is
/// checked per request: the route gets one list per subset of such defaults. `used[i]` is set
/// when default `i` can apply to this route.
#[allow(clippy::too_many_arguments)]
pub(super) fn route_policies(
    raw: &RawConfig,
    ps: &Policies,
    ids: &HashMap<String, PolicyId>,
    own: Option<&Vec<Spanned<String>>>,
    (spec, route_name): (&RouteSpec, &Spanned<String>),
    field: &str,
    used: &mut [bool],
    errs: &mut Diag,
) -> RoutePolicies {
    let mut coverage = Vec::with_capacity(raw.defaults.len());
    let mut partial: Vec<(usize, Scope)> = Vec::new();
    for (i, d) in raw.defaults.iter().enumerate() {
        let scope = default_scope(d);
        let c = scope.coverage(spec);
        if c != Coverage::Never {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
        }
        if c == Coverage::Maybe {
            partial.push((i, scope.for_route(spec)));
        }
        coverage.push(c);
    }
    if partial.len() > MAX_GATED {
        errs.at(
            route_name.span(),
            field,
            format!(
                "{} [[defaults]] entries cover only part of this route (at most {MAX_GATED}); \
                 narrow the route or the defaults",
                partial.len()
            ),
        );
        return (Vec::new(), None, None);
    }
    // mask bit j: partial default j covers the request.
    let list_for = |mask: usize| -> Vec<&Spanned<String>> {
        let mut names: Vec<&Spanned<String>> = Vec::new();
        let mut j = 0;
        for (d, c) in raw.defaults.iter().zip(&coverage) {
            let on = match c {
                Coverage::Always => true,
                Coverage::Never => false,
                Coverage::Maybe => {
                    j += 1;
                    mask & (1 << (j - 1)) != 0
                }
            };
            if on {
                names.extend(d.policies.iter());
            }
        }
        names.extend(own.into_iter().flatten());
        names
    };
    // Names are checked once, on the list holding all of them.
    let all = (1usize << partial.len()) - 1;
    let full = resolve(raw, ps, ids, &list_for(all), field, Some(errs));
    if partial.is_empty() {
        return (full.0, full.1, None);
    }
    let lists: Vec<(Vec<PolicyId>, Option<PolicyId>)> = (0..=all)
        .map(|mask| resolve(raw, ps, ids, &list_for(mask), field, None))
        .collect();
    let (base, base_cors) = lists[0].clone();
    let gated = GatedPolicies {
        scopes: partial.into_iter().map(|(_, s)| s).collect(),
        lists,
    };
    (base, base_cors, Some(Box::new(gated)))
}

/// Policy names to ids (first occurrence wins, CORS split out); errors only when `errs` given.
fn resolve(
    raw: &RawConfig,
    ps: &Policies,
    ids: &HashMap<String, PolicyId>,
    names: &[&Spanned<String>],
    field: &str,
    mut errs: Option<&mut Diag>,
) -> (Vec<PolicyId>, Option<PolicyId>) {
    let mut out: Vec<PolicyId> = Vec::new();
    let mut cors = None;
    // Headers an authenticating policy earlier in the list asserts, and which one.
    let mut asserted: Vec<(&[u8], &str)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let Some(&id) = ids.get(n.get_ref()) else {
            if raw.policies.keys().any(|k| k.get_ref() == n.get_ref()) {
                continue; // defined but failed to compile: already reported
            }
            if let Some(errs) = errs.as_deref_mut() {
                errs.at(
                    n.span(),
                    format!("{field}.policies[{i}]"),
                    format!("unknown policy {:?}", n.get_ref()),
                );
            }
            continue;
        };
        if out.contains(&id) || cors == Some(id) {
            continue;
        }
        match ps.list.get(id.0 as usize).map(|p| &p.policy) {
            Some(Policy::Cors(_)) => {
                if cors.is_some() {
                    if let Some(errs) = errs.as_deref_mut() {
                        errs.at(
                            n.span(),
                            format!("{field}.policies[{i}]"),
                            "a route can have only one cors policy",
                        );
                    }
                }
                cors = Some(id);
            }
            Some(p) => {
                out.push(id);
                if let (Some(errs), Policy::Transform(t)) = (errs.as_deref_mut(), p) {
                    joins_asserted(t, &asserted, (n, &format!("{field}.policies[{i}]")), errs);
                }
                let name = n.get_ref().as_str();
                asserted.extend(p.asserted_request_headers().into_iter().map(|h| (h, name)));
            }
            None => out.push(id),
        }
    }
    (out, cors)
}

/// A transform after an authenticating policy must not rename a client's field onto a header
/// that policy asserts, nor add one beside it: the upstream would get the client's value next
/// to the gateway's (the policy dropped only the copies sent under that name).
fn joins_asserted(
    t: &crate::policy::transform::Transform,
    asserted: &[(&[u8], &str)],
    (n, at): (&Spanned<String>, &str),
    errs: &mut Diag,
) {
    for (header, op) in t.request_joins() {
        let Some((_, by)) = asserted
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(header))
        else {
            continue;
        };
        let header = String::from_utf8_lossy(header);
        errs.at(
            n.span(),
            at.to_string(),
            format!(
                "transform {:?} {op}s request header {header:?}, which policy {by:?} earlier on \
                 this route asserts: the upstream would get a client's value beside the \
                 gateway's; put the transform before {by:?}, use `set`, or choose another name",
                n.get_ref()
            ),
        );
    }
}

/// Reports every `[[defaults]]` entry that no route can ever serve a request under.
pub(super) fn unused_defaults(raw: &RawConfig, used: &[bool], errs: &mut Diag) {
    for (i, (d, &u)) in raw.defaults.iter().zip(used).enumerate() {
        if u {
            continue;
        }
        let (span, f) = match (&d.prefix, &d.host) {
            (Some(p), _) => (p.span(), "prefix"),
            (None, Some(h)) => (h.span(), "host"),
            (None, None) => (d.policies.first().map_or(0..0, |p| p.span()), "policies"),
        };
        errs.at(
            span,
            format!("defaults[{i}].{f}"),
            format!(
                "this [[defaults]] entry ({}) can never apply: no route serves a request under it",
                default_scope(d).describe()
            ),
        );
    }
}
