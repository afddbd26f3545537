//! A filter's request callbacks for one request, on this worker's instance, and their
//! verdict for the pipeline (kept apart from `mod.rs`, which `pipeline` names).
//!
//! The request header map a filter sees: `:method`, `:path` (with the query), `:authority`,
//! `:scheme`, then the headers the upstream would get so far (the client's, minus hop-by-hop
//! fields and `host`, with the edits of the policies before this one). What it changes becomes
//! `fx.upstream` edits (per name: the old fields removed, the new ones added) and a changed
//! `:path` becomes `fx.path`; a local response becomes `Denial::Reply`; a failure becomes
//! `Denial::Failed` (500), already counted and logged.

use std::rc::Rc;

use super::host::HeaderMap;
use super::instance::{self, Failure, Instances, Pending};
use super::WasmPolicy;
use crate::http1::{self, BodyFraming};
use crate::policy::pipeline::{Caller, Denial, Effects, Facts, LocalReply};

/// Runs the filter's request callbacks. `generation`: the config generation the request runs
/// against (instances of older ones are dropped).
pub async fn settle(
    p: &WasmPolicy,
    f: &Facts<'_>,
    _caller: &mut Caller<'_>,
    fx: &mut Effects,
    instances: &Instances,
    generation: u64,
) -> Result<(), Denial> {
    let slot = instances.get(&p.filter, generation).map_err(failed)?;
    let map = request_map(f, fx);
    let end_of_stream = matches!(f.head.body, BodyFraming::None | BodyFraming::Length(0));
    let body = (p.body_bytes > 0 && !end_of_stream).then(|| {
        let n = f.body.len().min(p.body_bytes);
        (
            &f.body[..n],
            f.body_complete && f.body.len() <= p.body_bytes,
        )
    });
    let outcome = {
        let mut guard = slot.live.borrow_mut();
        let Some(live) = guard.as_mut() else {
            return Err(failed(Failure {
                reason: "start",
                detail: String::new(),
            }));
        };
        live.request(map, props(f), end_of_stream, body)
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            slot.failed(&e);
            return Err(failed(e));
        }
    };
    if let Some(local) = outcome.local {
        close(&slot, outcome.ctx);
        let mut fields = Vec::new();
        for (n, v) in &local.headers {
            http1::write_header(&mut fields, n, v);
        }
        fx.reply = Some(Box::new(LocalReply {
            status: local.status,
            fields,
            body: local.body,
        }));
        return Err(Denial::Reply);
    }
    // Only a filter that wrote to the map pays for the comparison (the map it started from is
    // built again rather than kept on every request).
    if outcome.dirty {
        if let Err(e) = apply(&request_map(f, fx), &outcome.headers, fx) {
            close(&slot, outcome.ctx);
            instance::report(&slot.filter, &e);
            return Err(failed(e));
        }
    }
    if slot.filter.response_hook {
        fx.wasm
            .get_or_insert_with(|| Rc::new(Pending::default()))
            .push(slot, outcome.ctx, outcome.headers, outcome.props);
    } else {
        close(&slot, outcome.ctx);
    }
    Ok(())
}

/// Finishes `ctx` on the slot's instance (the one that just opened it: no await between).
fn close(slot: &instance::Slot, ctx: i32) {
    instance::close_now(slot, ctx);
}

/// What `proxy_get_property` answers beyond the header map.
fn props(f: &Facts<'_>) -> super::host::Props {
    vec![
        ("source.address", f.client_ip_text.as_bytes().to_vec()),
        ("request.id", f.request_id.as_bytes().to_vec()),
        ("route_name", f.route.as_bytes().to_vec()),
    ]
}

fn failed(e: Failure) -> Denial {
    Denial::Failed {
        reason: e.reason,
        detail: "the route's filter failed",
    }
}

/// The request header map the filter starts from. `:path` is the normalized path the router
/// matched (never the raw target: a filter guarding `/admin` must see `/x/../admin` as that),
/// or the path an earlier filter set for the upstream.
fn request_map(f: &Facts<'_>, fx: &Effects) -> HeaderMap {
    let head = f.head;
    let path = match &fx.path {
        Some(p) => p.clone(),
        None => {
            let mut path = if f.path.is_empty() {
                b"/".to_vec()
            } else {
                f.path.to_vec()
            };
            if let Some(q) = head.query() {
                path.push(b'?');
                path.extend_from_slice(q);
            }
            path
        }
    };
    let mut map: HeaderMap = vec![
        (b":method".to_vec(), head.method_bytes().to_vec()),
        (b":path".to_vec(), path),
        (b":authority".to_vec(), head.host.get(&head.buf).to_vec()),
        (b":scheme".to_vec(), f.proto.as_bytes().to_vec()),
    ];
    let edits = (!fx.upstream.is_empty()).then_some(&fx.upstream);
    for (n, v) in head.headers() {
        if http1::is_hop_by_hop(n) || n.eq_ignore_ascii_case(b"host") {
            continue;
        }
        let name = match edits {
            Some(e) => match e.map_name(n) {
                Some(name) => name,
                None => continue,
            },
            None => n,
        };
        map.push((name.to_ascii_lowercase(), v.to_vec()));
    }
    if let Some(e) = edits {
        for (n, v) in &e.add {
            map.push((n.to_vec(), v.clone()));
        }
    }
    map
}

/// Turns the filter's changes to the map into upstream edits and a new path.
fn apply(before: &HeaderMap, after: &HeaderMap, fx: &mut Effects) -> Result<(), Failure> {
    let value_of =
        |m: &HeaderMap, name: &[u8]| m.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let new_path = value_of(after, b":path");
    if new_path != value_of(before, b":path") {
        let Some(p) = new_path.filter(|p| valid_path(p)) else {
            return Err(Failure {
                reason: "bad_path",
                detail: "the filter set a :path that is not an origin-form path".into(),
            });
        };
        fx.path = Some(p);
    }
    let values = |m: &HeaderMap, name: &[u8]| -> Vec<Vec<u8>> {
        m.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut seen: Vec<&[u8]> = Vec::new();
    for (name, _) in before.iter().chain(after) {
        if name.first() == Some(&b':') || seen.contains(&&name[..]) {
            continue;
        }
        seen.push(name);
        let now = values(after, name);
        if now == values(before, name) {
            continue;
        }
        fx.upstream.push_remove(name);
        for v in now {
            // Values the filter wrote were checked by the host; a client's value that fails
            // the derived-value rule (too long) is left out rather than written unchecked.
            if http1::is_safe_header_value(&v) {
                fx.upstream.push_add(name, v);
            }
        }
    }
    Ok(())
}

/// An origin-form path (and query): starts with `/`, no control characters, spaces or `#`.
fn valid_path(p: &[u8]) -> bool {
    p.first() == Some(&b'/') && p.iter().all(|&b| b > 0x20 && b != 0x7f && b != b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn only_changed_names_become_edits() {
        let before = map(&[(":path", "/a"), ("x-a", "1"), ("x-b", "2"), ("x-b", "3")]);
        let after = map(&[(":path", "/a"), ("x-a", "1"), ("x-b", "3"), ("x-c", "4")]);
        let mut fx = Effects::default();
        apply(&before, &after, &mut fx).unwrap();
        assert_eq!(fx.path, None);
        assert_eq!(fx.upstream.map_name(b"x-a"), Some(&b"x-a"[..]), "untouched");
        assert_eq!(fx.upstream.map_name(b"x-b"), None, "rewritten as a whole");
        let added: Vec<_> = fx
            .upstream
            .add
            .iter()
            .map(|(n, v)| (&n[..], &v[..]))
            .collect();
        assert_eq!(
            added,
            vec![(&b"x-b"[..], &b"3"[..]), (&b"x-c"[..], &b"4"[..])]
        );
    }

    #[test]
    fn a_new_path_is_checked() {
        let before = map(&[(":path", "/a")]);
        let mut fx = Effects::default();
        apply(&before, &map(&[(":path", "/b?c=d")]), &mut fx).unwrap();
        assert_eq!(fx.path.as_deref(), Some(&b"/b?c=d"[..]));
        for bad in ["/a b", "/a#frag", "relative", ""] {
            let mut fx = Effects::default();
            let r = apply(&before, &map(&[(":path", bad)]), &mut fx);
            assert_eq!(r.map_err(|e| e.reason), Err("bad_path"), "{bad:?}");
        }
    }
}
