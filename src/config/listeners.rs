//! Compiles `[[listeners]]`: addresses (unique), TLS termination (`tls = { ... }`, compiled by
//! `tls::config`, which reads the certificate files again on every reload) and the plain
//! listener's `redirect_https` / `https_port`, `h2c` and the `[listeners.http2]` limits.

use std::net::SocketAddr;
use std::path::Path;

use super::errors::{int_in, Diag};
use super::model::Listener;
use super::raw::{RawConfig, RawListener};

/// The listeners in file order; every problem is reported to `errs`.
pub(super) fn compile_listeners(raw: &RawConfig, file: &Path, errs: &mut Diag) -> Vec<Listener> {
    let mut out: Vec<Listener> = Vec::new();
    if raw.listeners.is_empty() {
        errs.at(
            0..0,
            "listeners",
            "at least one [[listeners]] entry with an address is required",
        );
    }
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let now = i64::try_from(crate::civil::unix_now()).unwrap_or(i64::MAX);
    for (i, l) in raw.listeners.iter().enumerate() {
        let field = format!("listeners[{i}].address");
        let name = l
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("listener{i}"));
        let tls = l.tls.as_ref().and_then(|t| {
            let cx = crate::tls::config::TlsContext {
                base_dir,
                listener: &format!("{name}@{}", l.address.get_ref()),
                now,
            };
            let at = format!("listeners[{i}].tls");
            let compiled = crate::tls::config::compile(t.get_ref(), &cx, &mut errs.under(&at));
            compiled.map(std::sync::Arc::new)
        });
        let redirect_https = redirect_https(l, i, errs);
        let h2c = h2c(l, i, errs);
        let http2 = std::sync::Arc::new(super::http2::compile(
            l.http2.as_ref().map(|h| h.get_ref()),
            &mut errs.under(&format!("listeners[{i}].http2")),
        ));
        let addr = match l.address.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                errs.at(
                    l.address.span(),
                    field,
                    format!(
                        "bad listener address {:?}: expected IP:PORT like \"0.0.0.0:8080\" or \"[::]:8080\"",
                        l.address.get_ref()
                    ),
                );
                continue;
            }
        };
        if let Some(prev) = out.iter().find(|p| p.addr == addr) {
            errs.at(
                l.address.span(),
                field,
                format!("address {addr} is already used by listener {:?}", prev.name),
            );
            continue;
        }
        out.push(Listener {
            name,
            addr,
            tls,
            redirect_https,
            h2c,
            http2,
        });
    }
    out
}

/// `h2c`: HTTP/2 with prior knowledge, for plain listeners only (TLS listeners negotiate
/// HTTP/2 through ALPN).
fn h2c(l: &RawListener, i: usize, errs: &mut Diag) -> bool {
    let Some(h) = &l.h2c else {
        return false;
    };
    if *h.get_ref() && l.tls.is_some() {
        errs.at(
            h.span(),
            format!("listeners[{i}].h2c"),
            "is for plain listeners; a TLS listener offers HTTP/2 through `tls.alpn`",
        );
        return false;
    }
    *h.get_ref()
}

/// `redirect_https` (+ `https_port`): the port to redirect to, for plain listeners only.
fn redirect_https(l: &RawListener, i: usize, errs: &mut Diag) -> Option<u16> {
    let on = l.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
    let port_field = format!("listeners[{i}].https_port");
    let port = int_in(errs, &l.https_port, &port_field, 443u16, 1..=65535, "");
    if let (Some(r), Some(_)) = (&l.redirect_https, &l.tls) {
        if on {
            errs.at(
                r.span(),
                format!("listeners[{i}].redirect_https"),
                "only a plain listener can redirect to HTTPS; this one has `tls`",
            );
            return None;
        }
    }
    if let (Some(p), false) = (&l.https_port, on) {
        errs.at(
            p.span(),
            port_field,
            "is only used with `redirect_https = true`",
        );
    }
    on.then_some(port)
}
