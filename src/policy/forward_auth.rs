//! `forward_auth`: asks an HTTP authorization service about each request (the idea of nginx's
//! `auth_request`, Traefik's ForwardAuth, Envoy's `ext_authz`). A 2xx allows the request and
//! may copy response headers onto the upstream request; any other answer goes to the client
//! as it is. (Seam: the lane that owns this module fills it in.)

use serde::Deserialize;

use crate::config::errors::Fail;

/// `[policies.NAME.forward_auth]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    /// The `[[upstreams]]` entry of the authorization service.
    #[schemars(with = "Option<String>")]
    pub upstream: Option<toml::Spanned<String>>,
}

/// The compiled policy.
#[derive(Debug)]
pub struct ForwardAuth {
    /// Index of the service's upstream in the generation.
    pub upstream: u32,
    /// Request body bytes sent along (0: none).
    pub body_bytes: usize,
}

/// Compiles the policy; `upstreams` maps upstream names to ids. Errors go to `errs`.
pub fn compile(
    raw: &RawForwardAuth,
    span: std::ops::Range<usize>,
    upstreams: &dyn Fn(&str) -> Option<u32>,
    fail: &mut Fail<'_>,
) -> Option<ForwardAuth> {
    let Some(up) = &raw.upstream else {
        fail(
            span,
            "upstream",
            "the service's upstream is required".into(),
        );
        return None;
    };
    let name = up.get_ref();
    match upstreams(name) {
        Some(upstream) => Some(ForwardAuth {
            upstream,
            body_bytes: 0,
        }),
        None => {
            fail(up.span(), "upstream", format!("no upstream named {name:?}"));
            None
        }
    }
}
