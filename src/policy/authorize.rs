//! The `authorize` policy's config: `RawAuthorize` (which consumers, groups, scopes and claims
//! may pass) and `compile`, which checks consumer names against `[consumers]` and builds the
//! pipeline's `Authorize`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::pipeline::Authorize;
use crate::config::errors::Fail;

/// `[policies.NAME.authorize]` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorize {
    #[schemars(with = "Option<Vec<String>>")]
    pub consumers: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub groups: Option<Vec<Spanned<String>>>,
    /// JWT scopes that must all be present.
    #[schemars(with = "Option<Vec<String>>")]
    pub scopes: Option<Vec<Spanned<String>>>,
    /// JWT claims that must equal these values.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub claims: Option<BTreeMap<String, Spanned<String>>>,
}

/// Compiles an `authorize` table. `is_consumer` says whether a name is defined under
/// `[consumers]`; an unknown one is reported to `fail` (fields relative to the table), and the
/// policy is still built so later errors surface too.
pub fn compile(
    raw: &RawAuthorize,
    is_consumer: &dyn Fn(&str) -> bool,
    fail: &mut Fail<'_>,
) -> Authorize {
    let list = |v: &Option<Vec<Spanned<String>>>| -> Vec<String> {
        v.iter().flatten().map(|s| s.get_ref().clone()).collect()
    };
    for (i, c) in raw.consumers.iter().flatten().enumerate() {
        if !is_consumer(c.get_ref()) {
            fail(
                c.span(),
                &format!("consumers[{i}]"),
                format!(
                    "unknown consumer {:?} (define it under [consumers])",
                    c.get_ref()
                ),
            );
        }
    }
    Authorize {
        consumers: list(&raw.consumers),
        groups: list(&raw.groups),
        scopes: list(&raw.scopes),
        claims: raw
            .claims
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
    }
}
