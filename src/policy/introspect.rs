//! `introspect`: checks opaque bearer tokens with an OAuth2 introspection endpoint (RFC 7662),
//! optionally found through OIDC discovery. (Seam: the lane that owns this module fills it in.)

use serde::Deserialize;

use crate::config::errors::Fail;

/// `[policies.NAME.introspect]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospect {
    /// The `[[upstreams]]` entry of the identity provider.
    #[schemars(with = "Option<String>")]
    pub upstream: Option<toml::Spanned<String>>,
}

/// The compiled policy.
#[derive(Debug)]
pub struct Introspect {
    /// Index of the service's upstream in the generation.
    pub upstream: u32,
}

/// Compiles the policy; `upstreams` maps upstream names to ids. Errors go to `errs`.
pub fn compile(
    raw: &RawIntrospect,
    span: std::ops::Range<usize>,
    upstreams: &dyn Fn(&str) -> Option<u32>,
    fail: &mut Fail<'_>,
) -> Option<Introspect> {
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
        Some(upstream) => Some(Introspect { upstream }),
        None => {
            fail(up.span(), "upstream", format!("no upstream named {name:?}"));
            None
        }
    }
}
