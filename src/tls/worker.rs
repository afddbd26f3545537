//! Each worker's view of listener TLS: its own bounded session caches (which outlive config
//! reloads) and server configs rebuilt only when a reload brings new settings. Touched only
//! by its worker thread: no lock.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;

use super::settings::ListenerTls;

/// One worker's TLS server configs, one slot per TLS listener address. Touched only by its
/// worker thread (no lock); the session caches outlive config reloads.
#[derive(Default)]
pub struct WorkerTls {
    slots: RefCell<Vec<Slot>>,
}

struct Slot {
    addr: SocketAddr,
    settings: Arc<ListenerTls>,
    config: Arc<rustls::ServerConfig>,
    cache: Option<Arc<ServerSessionMemoryCache>>,
}

impl WorkerTls {
    /// The server config for a handshake on listener `addr` under `settings` (the current
    /// generation's). Built once per worker per generation.
    pub fn server_config(
        &self,
        addr: SocketAddr,
        settings: &Arc<ListenerTls>,
    ) -> Arc<rustls::ServerConfig> {
        let mut slots = self.slots.borrow_mut();
        let i = match slots.iter().position(|s| s.addr == addr) {
            Some(i) if Arc::ptr_eq(&slots[i].settings, settings) => {
                return slots[i].config.clone();
            }
            Some(i) => i,
            None => {
                slots.push(Slot {
                    addr,
                    settings: settings.clone(),
                    config: settings.server.clone(),
                    cache: None,
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[i];
        // Sessions resume with the client certificate they were made with, unverified: a
        // cache made under other client-certificate trust is dropped, not carried over.
        let keep = slot.cache.as_ref().filter(|_| {
            slot.settings.session_cache == settings.session_cache
                && slot.settings.client_trust == settings.client_trust
        });
        let cache = match (keep, settings.session_cache) {
            (Some(c), _) => Some(c.clone()),
            (None, 0) => None,
            (None, n) => Some(ServerSessionMemoryCache::new(n)),
        };
        let mut cfg = (*settings.server).clone();
        cfg.session_storage = match &cache {
            Some(c) => c.clone(),
            None => Arc::new(rustls::server::NoServerSessionStorage {}),
        };
        slot.settings = settings.clone();
        slot.cache = cache;
        slot.config = Arc::new(cfg);
        slot.config.clone()
    }
}
