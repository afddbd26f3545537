//! The policies' Redis-backed decisions, awaited by the guard when `pipeline::run` stopped at
//! a policy that cannot decide locally (`Ok(Some(i))`): a global rate limit in `exact` mode or
//! without a lease, a quota. One arm per kind; each owns its fail-open / fail-closed choice
//! when Redis does not answer. Without a `[redis]` table no policy ever stops here.

use super::pipeline::{self, Caller, Denial, Effects, Facts, Policy};
use crate::redis::Client;

/// Decides `policy` with Redis (`client` is None when the config has no `[redis]`, which
/// compile refuses for policies that need it). `Err` is the refusal, with its headers in `fx`.
pub async fn settle(
    client: Option<&Client>,
    policy: &Policy,
    f: &Facts<'_>,
    caller: &Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    match policy {
        Policy::Quota(q) => super::quota::settle(client, q, f, caller, fx).await,
        Policy::RateLimit(rl) => {
            let Some(g) = &rl.global else {
                return Ok(());
            };
            let ip = pipeline::ip_key(f);
            let key = pipeline::key_bytes(&rl.key, f, caller, &ip, &fx.upstream)?;
            let key = &*key;
            let lines = &mut fx.response_lines;
            let v = crate::ratelimit::global::settle(client, g, &rl.specs, key, lines).await;
            let now = crate::ratelimit::now_ns();
            pipeline::global_verdict(v, rl, key, now, fx)
        }
        _ => Ok(()),
    }
}
