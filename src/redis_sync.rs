//! The Redis background thread ("ringway-redis"): the one place that talks to Redis off the
//! request path. It runs its own monoio runtime and its own `redis::Client`, and ticks every
//! `TICK`: usage flushes, API-key sync, and whatever else must reach Redis without a request
//! waiting for it. After the workers have stopped, the control thread sets
//! `Shared::redis_stop`; the thread then runs one last tick (the final usage flush) and ends.
//! Without a `[redis]` table it only naps.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::redis::Client;
use crate::shared::Shared;

const TICK: Duration = Duration::from_millis(100);

/// Starts the thread; the handle goes to `Shared::redis_sync` so the control thread can wait
/// for the final tick.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    let s = shared.clone();
    let handle = std::thread::Builder::new()
        .name("ringway-redis".into())
        .spawn(move || crate::redis::block_on(run(s)))?;
    if let Ok(mut h) = shared.redis_sync.lock() {
        *h = Some(handle);
    }
    Ok(())
}

async fn run(shared: Arc<Shared>) {
    // Its own tasks: a subscription and a version poll (`[api_keys] store = "redis"`).
    monoio::spawn(crate::key_sync::run(shared.clone()));
    let mut client: Option<Client> = None;
    loop {
        let last = shared.redis_stop.load(Ordering::SeqCst);
        let cfg = shared.config.load_full();
        if let Some(rs) = &cfg.redis {
            let c = match &client {
                Some(c) if Arc::ptr_eq(c.shared(), rs) => c.clone(),
                _ => {
                    if let Some(old) = client.take() {
                        old.close();
                    }
                    let c = Client::new(rs.clone());
                    client = Some(c.clone());
                    c
                }
            };
            tick(&shared, &c, &cfg, last).await;
        }
        if last {
            return;
        }
        monoio::time::sleep(TICK).await;
    }
}

/// One round of background jobs (`last`: the process is stopping; flush everything).
async fn tick(shared: &Shared, client: &Client, cfg: &crate::config::Compiled, last: bool) {
    if let Some(u) = &cfg.usage {
        usage_job(shared, client, u, last).await;
    }
}

/// `[usage]`: the workers' counts into Redis about once a second; everything at the end.
async fn usage_job(shared: &Shared, client: &Client, u: &crate::usage::UsageSettings, last: bool) {
    use crate::usage::flush;
    let rs = client.shared();
    if !last {
        // A failure is retried on the next round with the same batch (never counted twice);
        // the client already logs and counts Redis going down.
        let _ = flush::flush_if_due(client, rs, &shared.usage, u).await;
        return;
    }
    let left = flush::flush_final(client, rs, &shared.usage, u, USAGE_FINAL_BUDGET).await;
    if left > 0 {
        crate::log::warn(&format!(
            "usage: {left} counted requests could not be written to Redis before exit and are lost"
        ));
    }
}

/// How long the final usage flush may retry (within `finish`'s wait).
const USAGE_FINAL_BUDGET: Duration = Duration::from_millis(2500);

/// Called by the control thread after the workers stopped: lets the thread run its last tick
/// and waits for it (at most `wait`).
pub fn finish(shared: &Shared, wait: Duration) {
    shared.redis_stop.store(true, Ordering::SeqCst);
    let handle = shared.redis_sync.lock().ok().and_then(|mut h| h.take());
    if let Some(h) = handle {
        let deadline = std::time::Instant::now() + wait;
        while !h.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}
