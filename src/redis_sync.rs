//! The Redis background thread ("ringway-redis"): the one place that talks to Redis off the
//! request path. It runs its own monoio runtime and its own `redis::Client`, and ticks every
//! `TICK`: usage flushes, API-key sync, and whatever else must reach Redis without a request
//! waiting for it. After the workers have stopped, the control thread sets
//! `Shared::redis_stop`; the thread then runs one last tick (the final usage flush) and ends.
//! Without a `[redis]` table it only naps.
//!
//! Cache purge fan-out (`purge_fanout`): purges made through this instance's admin API
//! (`Shared::cache_purges`) are PUBLISHed on `{prefix}:cache:purge` as soon as they are queued,
//! and a SUBSCRIBE on the same channel applies every other instance's purges to the local store
//! (messages carry the sender's instance id; an instance skips its own). Delivery is pub/sub's:
//! an instance that is disconnected when a purge is published misses it (its entries then live
//! until their TTL); purges queued while Redis is down are kept (bounded) and published when it
//! is back.

use std::cell::Cell;
use std::rc::Rc;
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
    monoio::spawn(purge_fanout(shared.clone()));
    let mut client: Option<Client> = None;
    // The last generation that metered, and metering a reload switched off (see `Retired`).
    let mut metered: Option<Arc<crate::config::Compiled>> = None;
    let mut retired: Option<Retired> = None;
    loop {
        let last = shared.redis_stop.load(Ordering::SeqCst);
        let cfg = shared.config.load_full();
        if cfg.usage.is_some() && cfg.redis.is_some() {
            metered = Some(cfg.clone());
            if let Some(r) = retired.take() {
                r.client.close();
            }
        } else if let Some(m) = metered.take() {
            retired = Retired::new(m);
        }
        if let Some(r) = &retired {
            if r.flush(&shared, last).await {
                r.client.close();
                retired = None;
            }
        }
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

/// How often the purge fan-out looks at the config when idle, and the subscription's poll.
const PURGE_POLL: Duration = Duration::from_secs(1);
/// Wait before retrying a failed PUBLISH or SUBSCRIBE.
const PURGE_RETRY: Duration = Duration::from_millis(200);

/// Publishes this instance's purges and applies the others' while `[redis]` is configured.
async fn purge_fanout(shared: Arc<Shared>) {
    while !shared.redis_stop.load(Ordering::Relaxed) {
        let redis = shared.config.load().redis.clone();
        match redis {
            Some(rs) => purge_for(&shared, rs).await,
            None => {
                // Nowhere to publish: a purge made before `[redis]` existed stays local.
                drop(shared.cache_purges.take());
                monoio::time::sleep(PURGE_POLL).await;
            }
        }
    }
}

/// The fan-out against one `[redis]` record, until the config names another one.
async fn purge_for(shared: &Arc<Shared>, rs: Arc<crate::redis::RedisShared>) {
    let channel = rs.name("cache:purge");
    let stop = Rc::new(Cell::new(false));
    monoio::spawn(purge_subscriber(
        shared.clone(),
        rs.clone(),
        channel.clone(),
        stop.clone(),
    ));
    let client = Client::new(rs.clone());
    let outbox = &shared.cache_purges;
    let same = || {
        shared
            .config
            .load()
            .redis
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &rs))
    };
    let mut failing = false;
    while !shared.redis_stop.load(Ordering::Relaxed) && same() {
        // Listen before taking, so a purge queued in between still wakes us.
        let listener = outbox.event.listen();
        let mut batch = outbox.take();
        let mut sent = 0;
        for p in &batch {
            let msg = p.to_message(outbox.instance);
            let res = client
                .cmd(None, &[b"PUBLISH", channel.as_bytes(), &msg])
                .await;
            if let Err(e) = res {
                if !std::mem::replace(&mut failing, true) {
                    crate::log::warn(&format!(
                        "cache: cannot publish purges to Redis ({e}); retrying (other instances keep their entries until then)"
                    ));
                }
                break;
            }
            sent += 1;
        }
        if sent < batch.len() {
            outbox.put_back(batch.split_off(sent));
            monoio::time::sleep(PURGE_RETRY).await;
            continue;
        }
        if sent > 0 && std::mem::take(&mut failing) {
            crate::log::info("cache: purges reach Redis again");
        }
        let _ = monoio::time::timeout(PURGE_POLL, listener).await;
    }
    stop.set(true);
    client.close();
}

/// Keeps a subscription on the purge channel and applies other instances' purges.
async fn purge_subscriber(
    shared: Arc<Shared>,
    rs: Arc<crate::redis::RedisShared>,
    channel: String,
    stop: Rc<Cell<bool>>,
) {
    use crate::cache::purge::Purge;
    while !stop.get() {
        let mut sub = match crate::redis::Subscription::open(rs.clone(), channel.as_bytes()).await {
            Ok(s) => s,
            Err(_) => {
                // The publisher's calls (and the other Redis users) log the outage.
                monoio::time::sleep(PURGE_RETRY).await;
                continue;
            }
        };
        while !stop.get() {
            match sub.next(PURGE_POLL).await {
                Ok(Some(m)) => match Purge::from_message(&m) {
                    Some((from, _)) if from == shared.cache_purges.instance => {}
                    Some((from, p)) => {
                        let n = shared.runtime.cache.purge(&p);
                        crate::log::info(&format!(
                            "cache: purge {} from instance {from:016x} via Redis: {n} objects dropped",
                            p.describe()
                        ));
                    }
                    None => {
                        crate::log::warn("cache: ignored a malformed message on the purge channel")
                    }
                },
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// `[usage]` after a reload removed it (or its `[redis]`): the counts workers took while
/// metering was on, and hand in over the next ticks, still go to the Redis and under the
/// settings they were taken with, until nothing is left (or metering comes back and its
/// flusher takes over). Without this they would wait in the hub, unflushed and unreported.
struct Retired {
    cfg: Arc<crate::config::Compiled>,
    client: Client,
    since: std::time::Instant,
}

/// How long a retired flusher keeps going after it found nothing left: the workers' last
/// hand-offs (every telemetry flush tick) arrive within this.
const RETIRE_AFTER: Duration = Duration::from_secs(3);

impl Retired {
    fn new(cfg: Arc<crate::config::Compiled>) -> Option<Retired> {
        let client = Client::new(cfg.redis.clone()?);
        Some(Retired {
            cfg,
            client,
            since: std::time::Instant::now(),
        })
    }

    /// One round; `true` once it is done (everything confirmed, or the process is stopping).
    async fn flush(&self, shared: &Shared, last: bool) -> bool {
        let Some(u) = &self.cfg.usage else {
            return true;
        };
        if last {
            usage_job(shared, &self.client, u, true).await;
            return true;
        }
        let rs = self.client.shared();
        let _ = crate::usage::flush::flush_once(&self.client, rs, &shared.usage, u).await;
        let left = shared
            .usage
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |s| s.unflushed());
        left == 0 && self.since.elapsed() >= RETIRE_AFTER
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
