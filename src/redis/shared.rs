//! `RedisShared`: the process-wide Redis record (compiled settings, health) every thread's
//! client holds, the key naming scheme, `key_part` for client-derived key parts, and the
//! registry that hands back the same record while `[redis]` is unchanged (a reload keeps
//! connections, scripts and health counters).

use std::sync::{Arc, Mutex};

use super::health::RedisHealth;
use super::settings::RedisSettings;

/// Process-wide Redis state: the compiled settings and the health record. `Send + Sync`;
/// each thread's [`Client`] holds an `Arc` of it.
pub struct RedisShared {
    pub settings: RedisSettings,
    pub health: RedisHealth,
}

impl RedisShared {
    pub fn new(settings: RedisSettings) -> RedisShared {
        RedisShared {
            settings,
            health: RedisHealth::default(),
        }
    }

    /// A key `"{prefix}:{kind}:{{item}}:{rest}"`: everything about one `item` shares the hash
    /// tag, so it lives in one cluster slot and one script may touch all of it.
    pub fn key(&self, kind: &str, item: &str, rest: &str) -> String {
        format!("{}:{kind}:{{{item}}}:{rest}", self.settings.prefix)
    }

    /// A key or channel name outside any item: `"{prefix}:{name}"`.
    pub fn name(&self, name: &str) -> String {
        format!("{}:{name}", self.settings.prefix)
    }
}

/// 32 hex characters of SHA-256 of `bytes`: how client-derived values (consumer ids, IPs,
/// header values) appear in key names, so a hostile value can neither grow a key nor choose
/// its slot.
pub fn key_part(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut s = String::with_capacity(32);
    for b in &d.as_ref()[..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Shorthand for a shared handle.
pub type SharedRedis = Arc<RedisShared>;

/// Hands out one `Arc<RedisShared>` per distinct settings, so an unchanged `[redis]` keeps its
/// state across reloads. The lock is taken only while a config compiles.
#[derive(Default)]
pub struct RedisRegistry {
    current: Mutex<Option<Arc<RedisShared>>>,
}

impl RedisRegistry {
    pub fn get_or_create(&self, settings: RedisSettings) -> Arc<RedisShared> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match &*cur {
            Some(s) if s.settings == settings => s.clone(),
            _ => {
                let s = Arc::new(RedisShared::new(settings));
                *cur = Some(s.clone());
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_are_fixed_length_hex() {
        let k = key_part(&[0u8; 10_000]);
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key_part(b"a"), key_part(b"b"));
    }
}
