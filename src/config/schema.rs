//! The JSON Schema of the config file, derived from the raw config types (`raw.rs` and the
//! policy, TLS and health blocks it embeds) with schemars: `ringway config schema` prints it,
//! and `deploy/ringway.schema.json` ships it for editors (Taplo, Even Better TOML), kept
//! current by `tests/config_schema.rs`.
//!
//! Raw fields are `toml::Spanned<T>` (for error positions); each carries a
//! `#[schemars(with = "T")]` so the schema describes the value, not the span wrapper.

use super::raw::RawConfig;

/// Where editors find the schema (a `#:schema` comment or an editor setting can point at it).
const SCHEMA_ID: &str = "https://github.com/ringway/ringway/blob/main/deploy/ringway.schema.json";

/// The schema as pretty-printed JSON, ending with a newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), "ringway configuration".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{e}"));
    text.push('\n');
    text
}
