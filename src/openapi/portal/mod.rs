//! The developer portal: HTML pages generated from the imported document(s), served by the
//! route `[[openapi]] portal = { path = ... }` makes (`exchange::portal` answers its
//! requests). Self-contained: assets are embedded in the binary.
//!
//! - `html`: escaping and the page frame; `pages`: the index and the operation pages;
//!   `assets`: the embedded stylesheet and script; `keys`: self-service API keys (sign-in,
//!   sessions, list/create/rotate/revoke through the Redis key store).
//!
//! Every portal response carries `SECURITY_HEADERS`: a strict Content-Security-Policy (scripts
//! and styles only from the portal's own assets, no inline script, fetches only to the same
//! origin), `nosniff`, no framing, and a referrer only to the same origin (a browser then
//! sends the real `Origin` on the portal's own form POSTs, which `exchange::portal` checks).

use std::sync::Arc;

use super::model::{Api, Operation};

pub mod assets;
pub mod html;
pub mod keys;
pub mod pages;

/// Response header lines every portal page and asset carries.
pub const SECURITY_HEADERS: &[u8] = b"content-security-policy: default-src 'none'; \
script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
base-uri 'none'; frame-ancestors 'none'\r\n\
x-content-type-options: nosniff\r\n\
x-frame-options: DENY\r\n\
referrer-policy: same-origin\r\n";

/// One portal (one `[[openapi]]` block's `portal`), built once per config generation.
#[derive(Debug)]
pub struct Portal {
    /// The path the portal is served under (`/docs`), without a trailing slash.
    pub base: String,
    /// The APIs it documents.
    pub apis: Vec<Arc<Api>>,
    /// The gateway path prefix each API's operations are served under (parallel to `apis`).
    pub prefixes: Vec<String>,
    /// Self-service keys: how a consumer signs in (`None`: off, the default).
    pub keys: Option<SignIn>,
}

/// How a consumer signs in to the portal's self-service keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignIn {
    /// With one of their existing API keys (checked against the key store).
    ApiKey,
    /// With a JWT the named `jwt` policy accepts: its index in `Policies::list` (a
    /// `PolicyId`'s number; `openapi` sits below `policy` and does not name its types).
    Jwt(u32),
}

/// What a path under the portal's base names.
pub enum Target<'a> {
    Index,
    Operation {
        api: &'a Api,
        prefix: &'a str,
        op: &'a Operation,
    },
    Asset(&'static assets::Asset),
    /// `/keys` and below: the rest after `/keys` (`""`, `/sign-in`, `/create`, ...).
    Keys(&'a str),
    NotFound,
}

impl Portal {
    /// A portal without self-service keys.
    pub fn new(base: String, apis: Vec<Arc<Api>>, prefixes: Vec<String>) -> Portal {
        Portal {
            base,
            apis,
            prefixes,
            keys: None,
        }
    }

    /// What `path` (the normalized request path) names. Paths outside the base are
    /// `NotFound` (the route only sends paths under it).
    pub fn target<'a>(&'a self, path: &'a str) -> Target<'a> {
        let Some(rest) = path.strip_prefix(self.base.as_str()) else {
            return Target::NotFound;
        };
        match rest {
            "" | "/" | "/index.html" => return Target::Index,
            _ => {}
        }
        if let Some(id) = rest.strip_prefix("/op/") {
            let id = html::decode_segment(id);
            for (i, api) in self.apis.iter().enumerate() {
                if let Some(op) = api.operations.iter().find(|o| o.id == id) {
                    let prefix = self.prefixes.get(i).map_or("", String::as_str);
                    return Target::Operation { api, prefix, op };
                }
            }
            return Target::NotFound;
        }
        if let Some(name) = rest.strip_prefix("/assets/") {
            return assets::find(name).map_or(Target::NotFound, Target::Asset);
        }
        if let Some(sub) = rest.strip_prefix("/keys") {
            if sub.is_empty() || sub.starts_with('/') {
                return Target::Keys(sub);
            }
        }
        Target::NotFound
    }

    /// Every path the portal answers with something other than 404 (the index, each
    /// operation's page as the index links it, the assets, and the self-service pages when
    /// they are on). The config compiler checks that each of them reaches the portal's own
    /// route, so no other route can take a page, a sign-in form or a session cookie.
    /// The fixed pages come first; the operation pages (one per operation, so unbounded by
    /// the gateway) follow, and the second value is where they start.
    pub fn served_paths(&self) -> (Vec<String>, usize) {
        let b = &self.base;
        let mut out = vec![b.clone(), format!("{b}/"), format!("{b}/index.html")];
        for a in &assets::ASSETS {
            out.push(format!("{b}/assets/{}", a.name));
        }
        if self.keys.is_some() {
            out.push(format!("{b}/keys"));
            for sub in ["sign-in", "sign-out", "create", "rotate", "revoke"] {
                out.push(format!("{b}/keys/{sub}"));
            }
        }
        let fixed = out.len();
        for api in &self.apis {
            for op in &api.operations {
                out.push(format!("{b}/op/{}", html::segment(&op.id)));
            }
        }
        (out, fixed)
    }

    /// The page frame's settings.
    pub fn frame(&self) -> html::Frame<'_> {
        html::Frame {
            base: &self.base,
            site: self
                .apis
                .first()
                .map_or("API portal", |a| a.title.as_str())
                .trim(),
            keys: self.keys.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let p = pages::tests_support::portal();
        assert!(matches!(p.target("/docs"), Target::Index));
        assert!(matches!(p.target("/docs/"), Target::Index));
        assert!(
            matches!(p.target("/docs/op/listPets"), Target::Operation { op, .. } if op.id == "listPets")
        );
        assert!(matches!(p.target("/docs/op/nope"), Target::NotFound));
        assert!(matches!(
            p.target("/docs/assets/portal.css"),
            Target::Asset(_)
        ));
        assert!(matches!(p.target("/docs/assets/../x"), Target::NotFound));
        assert!(matches!(p.target("/docs/keys"), Target::Keys("")));
        assert!(matches!(
            p.target("/docs/keys/revoke"),
            Target::Keys("/revoke")
        ));
        assert!(matches!(p.target("/docs/keysx"), Target::NotFound));
        assert!(matches!(p.target("/docsx"), Target::NotFound));
        assert!(matches!(p.target("/other"), Target::NotFound));
    }
}
