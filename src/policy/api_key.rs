//! The `api_key` policy's config: `RawApiKeyPolicy` (where a request carries its key) and
//! `compile`, which turns it into the pipeline's `ApiKeyCheck`. The key store itself
//! (`[api_keys]`, the keys file, hashing) belongs to `apikey`; this module only decides where
//! the pipeline looks for a key and which header names the consumer upstream.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::pipeline::{ApiKeyCheck, KeySource};
use crate::config::errors::{header_name, Fail};

/// `[policies.NAME.api_key]` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyPolicy {
    /// Headers searched in order (default `authorization` (Bearer) then `x-api-key`).
    #[schemars(with = "Option<Vec<String>>")]
    pub headers: Option<Vec<Spanned<String>>>,
    /// Query parameter searched after the headers (removed before forwarding).
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
    /// Header that carries the consumer name upstream (default `x-consumer`).
    #[schemars(with = "Option<String>")]
    pub consumer_header: Option<Spanned<String>>,
}

/// Compiles an `api_key` table (at `table_span`). `has_store` says whether the config has an
/// `[api_keys]` section; without one the policy could never accept a key, so it is an error.
/// Problems go to `fail` with fields relative to the table; any problem returns `None`.
pub fn compile(
    raw: &RawApiKeyPolicy,
    table_span: Range<usize>,
    has_store: bool,
    fail: &mut Fail<'_>,
) -> Option<ApiKeyCheck> {
    if !has_store {
        fail(
            table_span,
            "",
            "an api_key policy needs an [api_keys] section naming the keys file".into(),
        );
        return None;
    }
    let mut sources = Vec::new();
    match &raw.headers {
        None => {
            sources.push(KeySource::Bearer);
            sources.push(KeySource::Header("x-api-key".into()));
        }
        Some(hs) => {
            for (i, h) in hs.iter().enumerate() {
                let name = header_name(fail, h, &format!("headers[{i}]"))?;
                sources.push(if name == "authorization" {
                    KeySource::Bearer
                } else {
                    KeySource::Header(name)
                });
            }
        }
    }
    if let Some(q) = &raw.query {
        if q.get_ref().is_empty() {
            fail(q.span(), "query", "must not be empty".into());
            return None;
        }
        sources.push(KeySource::Query(q.get_ref().as_bytes().to_vec()));
    }
    let consumer_header = match &raw.consumer_header {
        None => "x-consumer".to_string(),
        Some(h) => header_name(fail, h, "consumer_header")?,
    };
    Some(ApiKeyCheck {
        sources,
        consumer_header: consumer_header.into_bytes().into(),
    })
}
