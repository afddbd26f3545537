//! The Redis side of a quota: one `take.lua` call per request, on the worker's own client.

use super::{period, QuotaSpec, Taken, Window, EXPIRE_GRACE_SECS};
use crate::redis::{self, Client, RedisError, RedisShared, Script};

static TAKE: Script = Script::new(include_str!("take.lua"));

/// The counter's key for `key` (client bytes: hashed) in window `w`:
/// `{prefix}:quota:{POLICYHASH.KEYHASH}:LABEL`.
pub fn counter_key(shared: &RedisShared, spec: &QuotaSpec, key: &[u8], w: &Window) -> String {
    let policy = redis::key_part(spec.policy.as_bytes());
    let item = format!("{}.{}", &policy[..12], redis::key_part(key));
    shared.key("quota", &item, &w.label)
}

/// Counts one request for `key` at unix second `now`. `Ok` carries the window too (for the
/// headers); `Err` is Redis failing, for the policy's `on_redis_error` to decide.
pub async fn take(
    client: &Client,
    shared: &RedisShared,
    spec: &QuotaSpec,
    key: &[u8],
    now: i64,
) -> Result<(Taken, Window), RedisError> {
    let Some(w) = period::window(spec.period, &spec.zone, now) else {
        return Err(RedisError::Protocol(
            "clock outside the calendar range".into(),
        ));
    };
    let k = counter_key(shared, spec, key, &w);
    let limit = spec.limit.to_string();
    let expire = (w.reset_unix + EXPIRE_GRACE_SECS).to_string();
    let v = client
        .eval(
            &TAKE,
            &[k.as_bytes()],
            &[limit.as_bytes(), expire.as_bytes()],
        )
        .await?;
    let parts = v
        .into_array()
        .ok_or_else(|| RedisError::Protocol("quota script: expected an array".into()))?;
    let (Some(admitted), Some(used)) = (
        parts.first().and_then(|x| x.as_int()),
        parts.get(1).and_then(|x| x.as_int()),
    ) else {
        return Err(RedisError::Protocol(
            "quota script: expected two integers".into(),
        ));
    };
    Ok((
        Taken {
            admitted: admitted == 1,
            used: u64::try_from(used).unwrap_or(0),
        },
        w,
    ))
}
