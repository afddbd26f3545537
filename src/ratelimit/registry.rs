//! `LimiterRegistry`: carries limiters (and their counters) from one config generation to the
//! next.
//!
//! Owner: the config compiler on the control thread; never touched on the request path, so a
//! `Mutex` is fine. Invariant: one entry per identity; an entry is reused only if its spec and
//! `max_keys` are unchanged, otherwise it is replaced by a fresh limiter (old generations keep
//! their own `Arc` until they drain).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::limiter::Limiter;
use super::spec::LimitSpec;

/// Limiters by stable identity (e.g. `"route=api;key=consumer;100/1m+0"`).
#[derive(Debug, Default)]
pub struct LimiterRegistry {
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
}

impl LimiterRegistry {
    /// An empty registry.
    pub fn new() -> LimiterRegistry {
        LimiterRegistry::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Limiter>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts),
        // so a poisoned lock is still usable.
        self.limiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limiter for `identity`: the existing one if its spec and `max_keys` are unchanged,
    /// else a new one (which replaces it for later calls).
    pub fn get_or_create(&self, identity: &str, spec: LimitSpec, max_keys: usize) -> Arc<Limiter> {
        let mut map = self.map();
        if let Some(l) = map.get(identity) {
            if l.spec() == spec && l.max_keys() == max_keys {
                return Arc::clone(l);
            }
        }
        let l = Arc::new(Limiter::new(spec, max_keys));
        map.insert(identity.to_owned(), Arc::clone(&l));
        l
    }

    /// Drops every limiter whose identity is not in `live` (call after a successful compile).
    pub fn retain<S: AsRef<str>>(&self, live: &[S]) {
        let live: HashSet<&str> = live.iter().map(AsRef::as_ref).collect();
        self.map().retain(|id, _| live.contains(id.as_str()));
    }

    /// Number of limiters held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True if no limiter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SPEC: LimitSpec = LimitSpec {
        requests: 100,
        period: Duration::from_secs(60),
        burst: 0,
    };

    #[test]
    fn unchanged_identity_and_spec_keep_the_same_limiter_and_its_state() {
        let reg = LimiterRegistry::new();
        let a = reg.get_or_create("route=api;key=consumer;100/1m+0", SPEC, 1_000);
        for _ in 0..100 {
            assert!(a.check(b"alice", 0).is_allowed());
        }
        let b = reg.get_or_create("route=api;key=consumer;100/1m+0", SPEC, 1_000);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            !b.check(b"alice", 0).is_allowed(),
            "state survived the reload"
        );
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn changed_spec_or_capacity_gets_a_new_limiter() {
        let reg = LimiterRegistry::new();
        let a = reg.get_or_create("id", SPEC, 1_000);
        let burst = LimitSpec { burst: 5, ..SPEC };
        let b = reg.get_or_create("id", burst, 1_000);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.spec(), burst);
        let c = reg.get_or_create("id", burst, 2_000);
        assert!(!Arc::ptr_eq(&b, &c));
        assert!(Arc::ptr_eq(&c, &reg.get_or_create("id", burst, 2_000)));
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn retain_drops_unused_identities() {
        let reg = LimiterRegistry::new();
        reg.get_or_create("a", SPEC, 10);
        reg.get_or_create("b", SPEC, 10);
        reg.get_or_create("c", SPEC, 10);
        reg.retain(&["a", "c"]);
        assert_eq!(reg.len(), 2);
        reg.retain(&[String::from("c")]);
        assert_eq!(reg.len(), 1);
        reg.retain::<&str>(&[]);
        assert!(reg.is_empty());
    }

    #[test]
    fn registry_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<LimiterRegistry>();
        check::<Limiter>();
    }
}
