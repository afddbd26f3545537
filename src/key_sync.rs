//! The API-key sync of `[api_keys] store = "redis"`: two tasks on the "ringway-redis" thread
//! that keep `Runtime::api_keys` (the `KeyCache`) equal to the Redis key store and make every
//! worker use a new key set without a reload by anyone.
//!
//! - The subscriber holds a SUBSCRIBE connection on the store's channel; every message (each
//!   write publishes its version) and every (re)connect wakes the syncer; a closed
//!   subscription is reopened with a short backoff.
//! - The syncer runs `apikey::redis_store::sync_once` on each wake-up and at least every
//!   `POLL` (one `GET` of the version: a message lost in a reconnect costs at most `POLL`).
//!   When the version changed it re-reads all records, validates them into the cache, and
//!   recompiles the serving config (`control::recompile_current`, as the DNS refresh does;
//!   installed by `main` through `set_recompile`):
//!   the store stays inside `Compiled`, so the request path is unchanged - no extra atomic
//!   load, no lock - and one request still sees one key set from head to last byte.
//!   Then it writes the local snapshot.
//! - Redis unreachable: the cache and the serving store are left as they are (the last known
//!   key set); the transition is logged once each way.
//!
//! Bound: a change is visible on an instance within pub/sub delivery + 2 round trips + one
//! config compile (milliseconds), and at worst `POLL` + the same if the message was lost.
//! After an outage the subscription is retried at least every `MAX_BACKOFF` (1 s); when it
//! opens, the syncer takes a fresh client (no redial backoff) and checks the version at once.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::apikey::redis_store::{self, StoreKeys, SyncOutcome, SyncState};
use crate::apikey::{records, SyncSettings};
use crate::redis::{Client, RedisShared, Subscription};
use crate::shared::Shared;

/// Recompiles the serving config (`control::recompile_current`). Installed by `main` with
/// `set_recompile`, because `control` already depends on `redis_sync`, which starts this:
/// calling `control` from here would make a cycle.
pub type Recompile = fn(&Shared, &str) -> Result<u64, String>;

static RECOMPILE: std::sync::OnceLock<Recompile> = std::sync::OnceLock::new();

/// Installs how a synced key set reaches the workers (once, at start).
pub fn set_recompile(f: Recompile) {
    let _ = RECOMPILE.set(f);
}

/// Longest time between two version checks (the bound when a message is lost).
pub const POLL: Duration = Duration::from_secs(1);

/// Wait before reopening a failed subscription (doubles up to `MAX_BACKOFF`).
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the sync works against; a config change of either part restarts it.
#[derive(Clone)]
struct Target {
    redis: Arc<RedisShared>,
    sync: SyncSettings,
}

impl Target {
    fn of(shared: &Shared) -> Option<Target> {
        let cfg = shared.config.load();
        Some(Target {
            redis: cfg.redis.clone()?,
            sync: cfg.policies.key_sync.clone()?,
        })
    }

    fn same(&self, other: &Option<Target>) -> bool {
        other
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(&self.redis, &o.redis) && self.sync == o.sync)
    }
}

/// Wakes the syncer early (a message arrived or the subscription was (re)opened).
#[derive(Default)]
struct Wake {
    pending: Cell<bool>,
    /// The subscription was (re)opened: Redis answers on a fresh connection.
    reopened: Cell<bool>,
    event: event_listener::Event,
}

impl Wake {
    fn ring(&self) {
        self.pending.set(true);
        self.event.notify(usize::MAX);
    }

    /// Returns at the next ring, or after `POLL`.
    async fn wait(&self) {
        if self.pending.replace(false) {
            return;
        }
        let listener = self.event.listen();
        if self.pending.replace(false) {
            return;
        }
        // Dropping a listener on timeout is harmless (no I/O in flight).
        let _ = monoio::time::timeout(POLL, listener).await;
        self.pending.set(false);
    }
}

/// Runs until the process drains; call once on the Redis background runtime. Idle (one config
/// look per `POLL`) while the config has no `store = "redis"`.
pub async fn run(shared: Arc<Shared>) {
    while !shared.draining.load(Ordering::Relaxed) {
        match Target::of(&shared) {
            Some(t) => run_for(&shared, t).await,
            None => monoio::time::sleep(POLL).await,
        }
    }
}

/// Syncs against one target until the config names another one (or the process drains).
async fn run_for(shared: &Arc<Shared>, target: Target) {
    let keys = StoreKeys::new(&target.redis);
    let wake = Rc::new(Wake::default());
    let stop = Rc::new(Cell::new(false));
    monoio::spawn(subscribe(
        target.redis.clone(),
        keys.channel.clone(),
        wake.clone(),
        stop.clone(),
    ));
    let mut client = Client::new(target.redis.clone());
    let mut state = SyncState::default();
    let mut down = false;
    let mut pending_refresh = false;
    while !shared.draining.load(Ordering::Relaxed) && target.same(&Target::of(shared)) {
        if wake.reopened.replace(false) && down {
            // Redis is back: a fresh client skips the old one's redial backoff (up to 2 s).
            client.close();
            client = Client::new(target.redis.clone());
        }
        let cache = &shared.runtime.api_keys;
        match redis_store::sync_once(&client, &keys, &target.sync, cache, &mut state).await {
            Ok(outcome) => {
                if std::mem::take(&mut down) {
                    crate::log::info("api_keys: the key sync reaches Redis again");
                }
                if let SyncOutcome::Changed { keys, version } = outcome {
                    crate::log::info(&format!(
                        "api_keys: key store version {version} ({keys} keys) synced from Redis"
                    ));
                    pending_refresh = true;
                }
            }
            Err(e) if !down => {
                down = true;
                crate::log::warn(&format!(
                    "api_keys: cannot sync the key store from Redis ({e}); serving the last known keys until it is back"
                ));
            }
            Err(_) => {}
        }
        if pending_refresh {
            pending_refresh = !apply(shared, &target.sync);
        }
        wake.wait().await;
    }
    stop.set(true);
    client.close();
}

/// Publishes the cache's key set to the workers (a recompile of the serving config) and
/// writes the snapshot. False if the recompile failed (retried at the next wake-up).
fn apply(shared: &Shared, sync: &SyncSettings) -> bool {
    let Some(recompile) = RECOMPILE.get() else {
        crate::log::error(
            "api_keys: no way to apply synced keys (key_sync::set_recompile not called)",
        );
        return false;
    };
    if let Err(e) = recompile(shared, "API keys synced from Redis") {
        crate::log::error(&format!(
            "api_keys: the synced keys cannot be applied, the config does not compile any more ({e}); retrying"
        ));
        return false;
    }
    if let Some(set) = shared.runtime.api_keys.current() {
        // Blocking file I/O on the background thread, after the workers have the new set.
        if let Err(e) = records::write_snapshot(&sync.snapshot, &set.entries) {
            crate::log::warn(&format!(
                "api_keys: cannot write the key snapshot {}: {e}",
                sync.snapshot.display()
            ));
        }
    }
    true
}

/// Keeps a subscription on `channel` open and rings `wake` on every message and every
/// (re)open, until `stop`.
async fn subscribe(redis: Arc<RedisShared>, channel: String, wake: Rc<Wake>, stop: Rc<Cell<bool>>) {
    let mut backoff = BACKOFF;
    while !stop.get() {
        let mut sub = match Subscription::open(redis.clone(), channel.as_bytes()).await {
            Ok(s) => s,
            Err(_) => {
                // The syncer's own calls fail too and log the outage once.
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = BACKOFF;
        // Anything published while no subscription was open is caught by this check.
        wake.reopened.set(true);
        wake.ring();
        while !stop.get() {
            // `next` waits without cancelling a read; silence only re-checks `stop`.
            match sub.next(POLL).await {
                Ok(Some(_version)) => wake.ring(),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}
