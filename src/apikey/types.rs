//! The API-key vocabulary shared by the store, the keys file, the settings and the CLI: how key
//! hashes are computed and stored (`HashMode`) and why a presented key was refused (`KeyError`).

use std::fmt;

/// How key hashes are computed and stored (`api_keys.hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashMode {
    /// HMAC-SHA256 keyed with the server secret (the default): a leaked keys file alone does
    /// not let anyone check guesses offline.
    HmacSha256,
    /// Plain SHA-256 of the key: no secret to manage; the 256-bit random secret part of a key
    /// already makes offline guessing infeasible.
    Sha256,
}

impl HashMode {
    /// The name used in the config and as the prefix of a stored hash.
    pub fn name(self) -> &'static str {
        match self {
            HashMode::HmacSha256 => "hmac-sha256",
            HashMode::Sha256 => "sha256",
        }
    }

    /// Parses a config / hash-prefix name.
    pub fn parse(s: &str) -> Option<HashMode> {
        match s {
            "hmac-sha256" => Some(HashMode::HmacSha256),
            "sha256" => Some(HashMode::Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for HashMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a presented key was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not shaped like a ringway key (wrong length, prefix or alphabet).
    Malformed,
    /// Well-formed, but no key with this id and hash exists.
    Unknown,
    /// The key matched but was revoked.
    Revoked,
    /// The key matched but its `expires` time has passed.
    Expired,
}

impl KeyError {
    /// A snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyError::Malformed => "malformed",
            KeyError::Unknown => "unknown",
            KeyError::Revoked => "revoked",
            KeyError::Expired => "expired",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::Malformed => "malformed API key",
            KeyError::Unknown => "unknown API key",
            KeyError::Revoked => "revoked API key",
            KeyError::Expired => "expired API key",
        })
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_snake_case_and_distinct() {
        let all = [
            KeyError::Malformed,
            KeyError::Unknown,
            KeyError::Revoked,
            KeyError::Expired,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
            assert!(seen.insert(r));
        }
    }

    #[test]
    fn hash_mode_names_round_trip() {
        for m in [HashMode::HmacSha256, HashMode::Sha256] {
            assert_eq!(HashMode::parse(m.name()), Some(m));
        }
        assert_eq!(HashMode::parse("md5"), None);
    }
}
