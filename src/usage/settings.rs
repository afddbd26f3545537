//! `[usage]`: its raw table and `compile` (the table's presence turns metering on; it needs
//! `[redis]`, checked by the config's compile).

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;

/// Default most distinct entries one worker holds between hand-offs.
const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default days a day's counts stay in Redis.
const DEFAULT_RETENTION_DAYS: u64 = 400;

/// `[usage]` as written; the table's presence turns metering on (it needs `[redis]`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Most distinct (consumer, route, class) entries a worker holds between flushes.
    #[schemars(with = "Option<i64>")]
    pub max_keys: Option<Spanned<i64>>,
    /// Days a day's counts are kept in Redis (default 400).
    #[schemars(with = "Option<i64>")]
    pub retention_days: Option<Spanned<i64>>,
}

/// Compiled `[usage]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSettings {
    pub max_keys: usize,
    pub retention_days: u64,
}

/// Compiles `[usage]`; fields in `fail` are relative to the table.
pub fn compile(raw: &RawUsage, fail: &mut Fail<'_>) -> Option<UsageSettings> {
    let max_keys = match &raw.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (1..=10_000_000).contains(&n) => n,
            _ => {
                fail(
                    m.span(),
                    "max_keys",
                    "must be between 1 and 10000000".into(),
                );
                return None;
            }
        },
    };
    let retention_days = match &raw.retention_days {
        None => DEFAULT_RETENTION_DAYS,
        Some(d) => match u64::try_from(*d.get_ref()) {
            Ok(n) if (1..=36_500).contains(&n) => n,
            _ => {
                fail(
                    d.span(),
                    "retention_days",
                    "must be between 1 and 36500".into(),
                );
                return None;
            }
        },
    };
    Some(UsageSettings {
        max_keys,
        retention_days,
    })
}
