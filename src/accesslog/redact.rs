//! Redaction of secrets in request data the gateway writes out (access-log `path` and
//! `referer`, in every format, for every outcome).
//!
//! Rule: the value of every query parameter whose name is one some `api_key` policy reads a key
//! from, or one `access_log.redact_query` lists (`Policies::secret_query`, collected at compile
//! time), becomes `REDACTED`; the name stays
//! so operators can see a key was sent. Names match as `http1::query::scrub_covers_any_case`
//! says: percent-decoded, `+` read either way, ASCII case ignored: wider than the policy's own
//! match, so a near miss is hidden too.
//! Credential headers (Authorization, X-Api-Key, Cookie) are never logged at all.
//!
//! Cost: one scan of the query, no allocation, unless a configured name is present with a
//! non-empty value; only then is a redacted copy built.

use crate::http1::query;

/// What a secret value is replaced with.
pub const REDACTED: &[u8] = b"REDACTED";

/// `target` (`path?query`, or a whole URL) with the secret parameters' values replaced, or
/// `None` when it carries none (log `target` as is).
pub fn redact_target(target: &[u8], names: &[Box<[u8]>]) -> Option<Vec<u8>> {
    if names.is_empty() {
        return None;
    }
    let q = target.iter().position(|&b| b == b'?')? + 1;
    let query = &target[q..];
    if !query::pairs(query).any(|(name, value)| !value.is_empty() && is_secret(name, names)) {
        return None;
    }
    let mut out = Vec::with_capacity(target.len() + REDACTED.len());
    out.extend_from_slice(&target[..q]);
    for (i, pair) in query.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        // Empty elements are copied too: the log shows the target as sent.
        match query::split_pair(pair) {
            (name, value) if !value.is_empty() && is_secret(name, names) => {
                out.extend_from_slice(&pair[..=name.len()]);
                out.extend_from_slice(REDACTED);
            }
            _ => out.extend_from_slice(pair),
        }
    }
    Some(out)
}

fn is_secret(encoded: &[u8], names: &[Box<[u8]>]) -> bool {
    names
        .iter()
        .any(|n| query::scrub_covers_any_case(encoded, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Box<[u8]>> {
        list.iter().map(|s| s.as_bytes().into()).collect()
    }

    fn redact(target: &str, list: &[&str]) -> Option<String> {
        redact_target(target.as_bytes(), &names(list))
            .map(|v| String::from_utf8(v).unwrap_or_default())
    }

    #[test]
    fn secret_values_are_replaced_and_names_kept() {
        let n = ["api_key", "token"];
        assert_eq!(
            redact("/a?x=1&api_key=rwk_secret&y=2", &n).as_deref(),
            Some("/a?x=1&api_key=REDACTED&y=2")
        );
        assert_eq!(
            redact("/a?token=t1&api_key=k&token=t2", &n).as_deref(),
            Some("/a?token=REDACTED&api_key=REDACTED&token=REDACTED")
        );
        assert_eq!(
            redact("http://h/a?API%5Fkey=k#f", &n).as_deref(),
            Some("http://h/a?API%5Fkey=REDACTED")
        );
        assert_eq!(
            redact("/a?x=1&&api_key=k&", &n).as_deref(),
            Some("/a?x=1&&api_key=REDACTED&")
        );
    }

    #[test]
    fn nothing_to_redact_is_none() {
        let n = ["api_key"];
        assert_eq!(redact("/a", &n), None);
        assert_eq!(redact("/a?x=1", &n), None);
        assert_eq!(redact("/a?api_key=&api_key", &n), None);
        assert_eq!(redact("/a?xapi_key=1&api_keyx=2", &n), None);
        assert_eq!(redact("/a?api_key=1", &[]), None);
    }
}
