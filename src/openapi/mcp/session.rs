//! MCP sessions (`Mcp-Session-Id`): issued on `initialize`, checked on every later request,
//! ended by DELETE or by idling out.
//!
//! One table per process, not per worker: an MCP client may send its next request on a new
//! connection, which `SO_REUSEPORT` can hand to any worker, and a per-worker table would then
//! answer 404 and make the client re-initialize forever. The table is behind a `Mutex` held
//! for a map lookup only (never across an await); MCP traffic is agent-paced, far from the
//! proxy's hot path. It is bounded twice. One client address (IPv6 grouped like the
//! connection cap) holds at most `MAX_PER_CLIENT` sessions: its next `initialize` ends its own
//! idlest session, so a client looping on `initialize` churns only its own sessions and
//! cannot push everyone else's out. The whole table holds `MAX_SESSIONS`: when full, expired
//! sessions go first, then the one idle longest (its client gets 404 and re-initializes, as
//! the spec provides).
//! It lives outside the config generation so a reload does not end sessions.
//!
//! Ids are 128 random bits from the OS (hex), unguessable; a session is valid only at the
//! endpoint that issued it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most live sessions in the process.
pub const MAX_SESSIONS: usize = 4096;
/// Most live sessions one client address holds.
pub const MAX_PER_CLIENT: usize = 64;
/// A session unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

struct Session {
    /// The endpoint that issued it (`McpServer::key`).
    endpoint: String,
    /// The protocol version negotiated on `initialize`.
    version: &'static str,
    /// The client address that opened it (`admission::group_key`).
    client: (u8, u128),
    last_seen: Instant,
}

#[derive(Default)]
struct Table {
    map: HashMap<String, Session>,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(Table::default()))
}

fn lock() -> std::sync::MutexGuard<'static, Table> {
    // A panic while holding the lock cannot leave the map half-updated in a way that
    // matters (each operation is one insert/remove), so a poisoned lock is used as is.
    table().lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a session at `endpoint` with the negotiated `version` for the client at `client`
/// (an `admission::group_key`); returns its id, or `None` when the OS random source failed.
pub fn create(
    endpoint: &str,
    version: &'static str,
    client: (u8, u128),
    now: Instant,
) -> Option<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).ok()?;
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut t = lock();
    let own = t.map.iter().filter(|(_, s)| s.client == client);
    if own.clone().count() >= MAX_PER_CLIENT {
        let idlest = own.min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
        if let Some(k) = idlest {
            t.map.remove(&k);
        }
    }
    if t.map.len() >= MAX_SESSIONS {
        t.map
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < IDLE);
    }
    if t.map.len() >= MAX_SESSIONS {
        let oldest = t
            .map
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            t.map.remove(&k);
        }
    }
    t.map.insert(
        id.clone(),
        Session {
            endpoint: endpoint.to_string(),
            version,
            client,
            last_seen: now,
        },
    );
    Some(id)
}

/// The negotiated version of a live session at `endpoint` (and marks it used), or `None`
/// when the id is unknown, expired or another endpoint's.
pub fn touch(endpoint: &str, id: &str, now: Instant) -> Option<&'static str> {
    let mut t = lock();
    let s = t.map.get_mut(id)?;
    if s.endpoint != endpoint {
        return None;
    }
    if now.saturating_duration_since(s.last_seen) >= IDLE {
        t.map.remove(id);
        return None;
    }
    s.last_seen = now;
    Some(s.version)
}

/// Ends a session; `false` when there was none (at this endpoint).
pub fn end(endpoint: &str, id: &str) -> bool {
    let mut t = lock();
    match t.map.get(id) {
        Some(s) if s.endpoint == endpoint => {
            t.map.remove(id);
            true
        }
        _ => false,
    }
}

/// Live sessions (expired ones not yet swept count too), for tests and metrics.
pub fn count() -> usize {
    lock().map.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is one per process: tests that fill it take turns.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn sessions_are_per_endpoint_expire_and_end() {
        let _turn = serial();
        let now = Instant::now();
        let id = create("t1 /mcp", "2025-06-18", (4, 1), now).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(touch("t1 /mcp", &id, now), Some("2025-06-18"));
        assert_eq!(touch("t1 /other", &id, now), None);
        assert!(!end("t1 /other", &id));
        assert_eq!(touch("t1 /mcp", &id, now + IDLE), None, "idled out");
        let id = create("t1 /mcp", "2025-06-18", (4, 1), now).unwrap();
        assert!(end("t1 /mcp", &id));
        assert_eq!(touch("t1 /mcp", &id, now), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let _turn = serial();
        let now = Instant::now();
        let first = create("t2 /mcp", "2025-06-18", (4, 2), now).unwrap();
        for i in 0..MAX_SESSIONS + 10 {
            // Many clients, each under its own cap.
            let client = (6, (1 << 64) | (i as u128 / 8));
            let at = now + Duration::from_millis(1 + i as u64);
            create("t2 /mcp", "2025-06-18", client, at).unwrap();
        }
        assert!(count() <= MAX_SESSIONS);
        assert_eq!(touch("t2 /mcp", &first, now), None, "the idlest went first");
    }

    #[test]
    fn one_client_churns_only_its_own_sessions() {
        let _turn = serial();
        let now = Instant::now();
        let other = create("t3 /mcp", "2025-06-18", (4, 3), now).unwrap();
        let flood = (6, 7 << 64);
        let first = create("t3 /mcp", "2025-06-18", flood, now).unwrap();
        let mut last = String::new();
        for i in 0..MAX_SESSIONS as u64 {
            let at = now + Duration::from_millis(1 + i);
            last = create("t3 /mcp", "2025-06-18", flood, at).unwrap();
        }
        let own = lock().map.values().filter(|s| s.client == flood).count();
        assert_eq!(own, MAX_PER_CLIENT);
        assert_eq!(touch("t3 /mcp", &first, now), None, "its idlest went first");
        assert!(touch("t3 /mcp", &last, now).is_some());
        assert!(
            touch("t3 /mcp", &other, now).is_some(),
            "another client's stays"
        );
    }
}
