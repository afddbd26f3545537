//! A Lua script that Redis runs atomically. It is sent by its SHA-1 (`EVALSHA`); a node that
//! does not know it yet (`NOSCRIPT`, e.g. after a restart or a failover) gets the body once
//! (`EVAL`, which also caches it), so the common call carries 40 bytes, not the script.

use std::sync::OnceLock;

/// A script body and its SHA-1, computed on first use.
pub struct Script {
    body: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    pub const fn new(body: &'static str) -> Script {
        Script {
            body,
            sha: OnceLock::new(),
        }
    }

    pub fn body(&self) -> &'static str {
        self.body
    }

    /// The hex SHA-1 Redis knows the script by.
    pub fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            let d = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                self.body.as_bytes(),
            );
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha_matches_redis() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this digest.
        static S: super::Script = super::Script::new("return 1");
        assert_eq!(S.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
