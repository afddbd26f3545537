//! What a purge names: one resource (host + path + query, every variant), every resource
//! under a prefix, every object carrying a surrogate key, or everything. Also the two ways a
//! purge travels: the admin API's JSON body (`from_json`) and the Redis pub/sub message that
//! fans it out to the other instances (`to_message` / `from_message`, which carries the
//! sending instance's id so an instance ignores its own purges), and the outbox through which
//! the admin thread hands purges to the Redis thread.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::object::Object;

/// Longest URL, prefix or tag a purge accepts (bytes).
pub const MAX_ARG: usize = 8 * 1024;
/// Purges kept for the Redis thread while Redis is unreachable; older ones are dropped.
pub const MAX_OUTBOX: usize = 1024;

/// A purge request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    /// `host/path?query` exactly (every method, consumer and variant of it).
    Resource(Vec<u8>),
    /// Every resource starting with this (`host/path-prefix`).
    Prefix(Vec<u8>),
    /// Every object whose tag header listed this surrogate key.
    Tag(Vec<u8>),
    All,
}

impl Purge {
    /// Whether `obj` is one of those purged.
    pub fn matches(&self, obj: &Object) -> bool {
        match self {
            Purge::Resource(r) => &obj.resource[..] == r.as_slice(),
            Purge::Prefix(p) => obj.resource.starts_with(p),
            Purge::Tag(t) => obj.tags.iter().any(|x| &x[..] == t.as_slice()),
            Purge::All => true,
        }
    }

    /// The purge a CLI/API argument names: `kind` is `url`, `prefix`, `tag` or `all`.
    /// URLs and prefixes may carry an `http://` / `https://` scheme (dropped) and their host is
    /// compared lowercase, as keys store it.
    pub fn from_parts(kind: &str, arg: Option<&str>) -> Result<Purge, String> {
        let text = |what: &str| -> Result<&str, String> {
            let a = arg.ok_or_else(|| format!("\"{what}\" needs a string"))?;
            if a.is_empty() {
                return Err(format!("\"{what}\" must not be empty"));
            }
            if a.len() > MAX_ARG {
                return Err(format!("\"{what}\" is longer than {MAX_ARG} bytes"));
            }
            Ok(a)
        };
        match kind {
            "url" => Ok(Purge::Resource(resource(text("url")?))),
            "prefix" => Ok(Purge::Prefix(resource(text("prefix")?))),
            "tag" => Ok(Purge::Tag(text("tag")?.as_bytes().to_vec())),
            "all" => Ok(Purge::All),
            other => Err(format!(
                "unknown purge kind {other:?} (expected url, prefix, tag or all)"
            )),
        }
    }

    /// Parses the admin API body: exactly one of `{"url": "host/path?q"}`,
    /// `{"prefix": "host/path"}`, `{"tag": "product-42"}`, `{"all": true}`.
    pub fn from_json(body: &[u8]) -> Result<Purge, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let obj = v
            .as_object()
            .ok_or("expected a JSON object such as {\"url\": \"host/path\"}")?;
        if obj.len() != 1 {
            return Err("expected exactly one of \"url\", \"prefix\", \"tag\", \"all\"".into());
        }
        let Some((k, v)) = obj.iter().next() else {
            return Err("empty object".into());
        };
        match (k.as_str(), v) {
            ("all", serde_json::Value::Bool(true)) => Ok(Purge::All),
            ("all", _) => Err("\"all\" must be true".into()),
            (kind @ ("url" | "prefix" | "tag"), serde_json::Value::String(s)) => {
                Purge::from_parts(kind, Some(s))
            }
            ("url" | "prefix" | "tag", _) => Err(format!("\"{k}\" must be a string")),
            _ => Err(format!(
                "unknown member {k:?} (expected \"url\", \"prefix\", \"tag\" or \"all\")"
            )),
        }
    }

    /// For logs: `url "shop.test/p/1"` (the argument quoted and escaped).
    pub fn describe(&self) -> String {
        let q = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
        match self {
            Purge::Resource(r) => format!("url {}", q(r)),
            Purge::Prefix(p) => format!("prefix {}", q(p)),
            Purge::Tag(t) => format!("tag {}", q(t)),
            Purge::All => "all".into(),
        }
    }

    /// The pub/sub payload: `ringway-purge/1 <instance> <kind> <arg>`.
    pub fn to_message(&self, instance: u64) -> Vec<u8> {
        let (kind, arg): (&str, &[u8]) = match self {
            Purge::Resource(r) => ("url", r),
            Purge::Prefix(p) => ("prefix", p),
            Purge::Tag(t) => ("tag", t),
            Purge::All => ("all", b""),
        };
        let mut m = format!("{MESSAGE_TAG} {instance:016x} {kind} ").into_bytes();
        m.extend_from_slice(arg);
        m
    }

    /// A pub/sub payload back into (sending instance, purge); `None` if it is not one.
    pub fn from_message(m: &[u8]) -> Option<(u64, Purge)> {
        let rest = m.strip_prefix(MESSAGE_TAG.as_bytes())?.strip_prefix(b" ")?;
        let (inst, rest) = split_space(rest)?;
        let instance = u64::from_str_radix(std::str::from_utf8(inst).ok()?, 16).ok()?;
        let (kind, arg) = split_space(rest)?;
        if arg.len() > MAX_ARG {
            return None;
        }
        let p = match kind {
            b"url" if !arg.is_empty() => Purge::Resource(arg.to_vec()),
            b"prefix" if !arg.is_empty() => Purge::Prefix(arg.to_vec()),
            b"tag" if !arg.is_empty() => Purge::Tag(arg.to_vec()),
            b"all" => Purge::All,
            _ => return None,
        };
        Some((instance, p))
    }
}

const MESSAGE_TAG: &str = "ringway-purge/1";

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// `host/path?q` as keys hold it: no scheme, no port, host lowercase (so a URL copied from a
/// browser or a log, `https://Api.Example.com:8443/p`, names what the store keeps).
fn resource(s: &str) -> Vec<u8> {
    let lower = |n: usize| s.get(..n).map(str::to_ascii_lowercase);
    let s = if lower(7).as_deref() == Some("http://") {
        &s[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &s[8..]
    } else {
        s
    };
    let host_end = s.find('/').unwrap_or(s.len());
    let host = crate::http1::strip_port(&s.as_bytes()[..host_end]);
    let mut out = host.to_ascii_lowercase();
    out.extend_from_slice(&s.as_bytes()[host_end..]);
    out
}

/// Purges the admin API made, waiting for the Redis thread to publish them; plus this
/// instance's id (random per process), which the messages carry.
pub struct Outbox {
    pub instance: u64,
    queue: Mutex<VecDeque<Purge>>,
    /// Rung on every push (the publisher waits on it, on any thread).
    pub event: event_listener::Event,
}

impl Default for Outbox {
    fn default() -> Outbox {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // No entropy source: the time and pid still differ between instances.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            b = (t ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
        }
        Outbox {
            instance: u64::from_le_bytes(b),
            queue: Mutex::new(VecDeque::new()),
            event: event_listener::Event::new(),
        }
    }
}

impl Outbox {
    /// Queues `p` for publishing (the oldest is dropped past [`MAX_OUTBOX`]).
    pub fn push(&self, p: Purge) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_OUTBOX {
            q.pop_front();
        }
        q.push_back(p);
        drop(q);
        self.event.notify(usize::MAX);
    }

    /// Takes every queued purge.
    pub fn take(&self) -> Vec<Purge> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    /// Puts back purges that could not be published (in front, keeping the bound).
    pub fn put_back(&self, ps: Vec<Purge>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for p in ps.into_iter().rev() {
            if q.len() >= MAX_OUTBOX {
                break;
            }
            q.push_front(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_name_one_purge() {
        assert_eq!(
            Purge::from_json(br#"{"url":"HTTPS://Shop.Test/p/1?x=1"}"#),
            Ok(Purge::Resource(b"shop.test/p/1?x=1".to_vec()))
        );
        assert_eq!(
            Purge::from_json(br#"{"prefix":"shop.test/p/"}"#),
            Ok(Purge::Prefix(b"shop.test/p/".to_vec()))
        );
        // The port is not part of what keys hold; an IPv6 host keeps its brackets.
        for (url, want) in [
            ("https://Shop.Test:8443/p/1", &b"shop.test/p/1"[..]),
            ("shop.test:80", b"shop.test"),
            ("http://[::1]:8080/x?a=1", b"[::1]/x?a=1"),
        ] {
            assert_eq!(
                Purge::from_parts("url", Some(url)),
                Ok(Purge::Resource(want.to_vec())),
                "{url}"
            );
        }
        assert_eq!(
            Purge::from_json(br#"{"tag":"product-42"}"#),
            Ok(Purge::Tag(b"product-42".to_vec()))
        );
        assert_eq!(Purge::from_json(br#"{"all":true}"#), Ok(Purge::All));
        for bad in [
            &b"{"[..],
            b"[]",
            b"{}",
            br#"{"all":false}"#,
            br#"{"url":""}"#,
            br#"{"url":1}"#,
            br#"{"url":"a","tag":"b"}"#,
            br#"{"path":"a"}"#,
        ] {
            assert!(
                Purge::from_json(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{{\"tag\":\"{}\"}}", "x".repeat(MAX_ARG + 1));
        assert!(Purge::from_json(long.as_bytes()).is_err());
    }

    #[test]
    fn messages_round_trip_and_junk_is_ignored() {
        for p in [
            Purge::Resource(b"h/p?q=a b".to_vec()),
            Purge::Prefix(b"h/".to_vec()),
            Purge::Tag(b"t".to_vec()),
            Purge::All,
        ] {
            let m = p.to_message(0xabc);
            assert_eq!(Purge::from_message(&m), Some((0xabc, p)));
        }
        assert_eq!(Purge::from_message(b"hello"), None);
        assert_eq!(Purge::from_message(b"ringway-purge/1 zz url x"), None);
        assert_eq!(Purge::from_message(b"ringway-purge/1 01 url "), None);
        assert_eq!(Purge::from_message(b"ringway-purge/1 01 drop x"), None);
    }

    #[test]
    fn the_outbox_is_bounded() {
        let o = Outbox::default();
        for _ in 0..MAX_OUTBOX + 10 {
            o.push(Purge::All);
        }
        let all = o.take();
        assert_eq!(all.len(), MAX_OUTBOX);
        o.put_back(all);
        assert_eq!(o.take().len(), MAX_OUTBOX);
    }
}
