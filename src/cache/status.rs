//! The `Cache-Status` response field (RFC 9211): this cache's entry says whether the response
//! was a hit, why it went forward, the upstream's status on that path, the remaining TTL,
//! and whether it was stored or collapsed into another request.
//!
//! SEAM (lane semantics completes this): the signatures are the contract.

/// Why a request went to the upstream (`fwd=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// The cache was not consulted (`detail` says why).
    Bypass,
    /// Nothing stored under the key.
    UriMiss,
    /// Something stored under the key, but not for this request's `Vary` values.
    VaryMiss,
    /// The request's own directives (`no-cache`, `max-age=0`) required going forward.
    Request,
    /// A stored response was stale and was revalidated.
    Stale,
}

/// One response's `Cache-Status` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub hit: bool,
    pub fwd: Option<Fwd>,
    /// The upstream's status when it was asked.
    pub fwd_status: Option<u16>,
    /// Freshness left in seconds (negative when served stale).
    pub ttl: Option<i64>,
    pub stored: bool,
    /// The answer came from another request's fetch (coalesced).
    pub collapsed: bool,
    pub detail: Option<&'static str>,
}

/// The cache's name in `Cache-Status`.
pub const NAME: &str = "ringway";

/// Writes `cache-status: ringway; ...\r\n`.
pub fn write(out: &mut Vec<u8>, s: &CacheStatus) {
    let mut v = String::from(NAME);
    if s.hit {
        v.push_str("; hit");
    }
    if let Some(f) = s.fwd {
        v.push_str(match f {
            Fwd::Bypass => "; fwd=bypass",
            Fwd::UriMiss => "; fwd=uri-miss",
            Fwd::VaryMiss => "; fwd=vary-miss",
            Fwd::Request => "; fwd=request",
            Fwd::Stale => "; fwd=stale",
        });
    }
    if let Some(st) = s.fwd_status {
        v.push_str(&format!("; fwd-status={st}"));
    }
    if let Some(t) = s.ttl {
        v.push_str(&format!("; ttl={t}"));
    }
    if s.stored {
        v.push_str("; stored");
    }
    if s.collapsed {
        v.push_str("; collapsed");
    }
    if let Some(d) = s.detail {
        v.push_str("; detail=");
        v.push_str(d);
    }
    crate::http1::write_header(out, b"cache-status", v.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &CacheStatus) -> String {
        let mut out = Vec::new();
        write(&mut out, s);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn renders_rfc_9211_parameters_in_order() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(42),
            ..CacheStatus::default()
        };
        assert_eq!(text(&hit), "cache-status: ringway; hit; ttl=42\r\n");
        let sie = CacheStatus {
            hit: true,
            fwd: Some(Fwd::Stale),
            fwd_status: Some(503),
            ttl: Some(-3),
            detail: Some("stale-if-error"),
            ..CacheStatus::default()
        };
        assert_eq!(
            text(&sie),
            "cache-status: ringway; hit; fwd=stale; fwd-status=503; ttl=-3; detail=stale-if-error\r\n"
        );
        let miss = CacheStatus {
            fwd: Some(Fwd::UriMiss),
            fwd_status: Some(200),
            stored: true,
            ..CacheStatus::default()
        };
        assert_eq!(
            text(&miss),
            "cache-status: ringway; fwd=uri-miss; fwd-status=200; stored\r\n"
        );
    }
}
