//! `[[defaults]]` scopes: which requests a default covers, decided per route at compile time
//! where possible and per request where not.
//!
//! A default covers every request whose normalized path is under its `prefix` (segment-aware:
//! `/api` covers `/api`, `/api/` and `/api/x`, never `/apix`) and whose host matches its `host`
//! (exact, or `*.example.com`), whichever route serves it. Against one route a scope is
//! [`Coverage::Always`] (every request the route can serve is inside it), [`Coverage::Never`]
//! (none is) or [`Coverage::Maybe`] (the route is broader, e.g. a catch-all `prefix = "/"` under
//! a default for `/api`): then the route carries [`GatedPolicies`] and [`Scope::covers`] checks
//! each request (a byte-prefix compare, no allocation).
//!
//! Invariants: a prefix is stored with a leading `/` and without a trailing one ("" = every
//! path); hosts are lowercase. Comparisons ignore ASCII case when the default or the route is
//! case-insensitive, so a case-insensitive route never lets a differently-cased spelling of a
//! covered path slip past the default.

use crate::policy::pipeline::PolicyId;
use crate::route::{HostPattern, PathPattern, RouteSpec};

/// Most `[[defaults]]` that may partially cover one route (the route keeps one policy list per
/// subset, 2^n lists).
pub const MAX_GATED: usize = 6;

/// Which requests one `[[defaults]]` entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    prefix: Box<[u8]>,
    case_insensitive: bool,
    host: ScopeHost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ScopeHost {
    Any,
    Exact(Box<str>),
    /// `*.example.com` as ".example.com": one or more labels in front.
    Suffix(Box<str>),
}

/// How a scope relates to everything one route can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    Always,
    Never,
    Maybe,
}

impl Coverage {
    fn and(self, other: Coverage) -> Coverage {
        match (self, other) {
            (Coverage::Never, _) | (_, Coverage::Never) => Coverage::Never,
            (Coverage::Always, Coverage::Always) => Coverage::Always,
            _ => Coverage::Maybe,
        }
    }
}

/// `rest` is `base` or below it, segment-aware; "" is the root and holds everything.
fn under(path: &[u8], base: &[u8], ci: bool) -> bool {
    if base.is_empty() {
        return true;
    }
    let Some(head) = path.get(..base.len()) else {
        return false;
    };
    let same = if ci {
        head.eq_ignore_ascii_case(base)
    } else {
        head == base
    };
    same && matches!(path.get(base.len()), None | Some(b'/'))
}

fn suffix_match(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

impl Scope {
    /// A scope from a default's `prefix` and `host` (either may be absent).
    pub fn new(prefix: Option<&str>, host: Option<&str>, case_insensitive: bool) -> Scope {
        let p = prefix.unwrap_or("").trim_end_matches('/');
        let mut bytes = Vec::with_capacity(p.len() + 1);
        if !p.is_empty() && !p.starts_with('/') {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(p.as_bytes());
        let host = match host.map(|h| h.trim().to_ascii_lowercase()) {
            None => ScopeHost::Any,
            Some(h) if h.is_empty() || h == "*" => ScopeHost::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(sfx) => ScopeHost::Suffix(sfx.into()),
                None => ScopeHost::Exact(h.into()),
            },
        };
        Scope {
            prefix: bytes.into(),
            case_insensitive,
            host,
        }
    }

    /// Does this scope cover a request with this normalized path and (lowercase) host?
    #[inline]
    pub fn covers(&self, path: &[u8], host: &str) -> bool {
        under(path, &self.prefix, self.case_insensitive)
            && match &self.host {
                ScopeHost::Any => true,
                ScopeHost::Exact(h) => **h == *host,
                ScopeHost::Suffix(s) => suffix_match(host, s),
            }
    }

    /// Whether this scope covers all, none or some of the requests `route` can serve.
    pub fn coverage(&self, route: &RouteSpec) -> Coverage {
        self.path_coverage(route).and(self.host_coverage(route))
    }

    /// The scope as the route checks it per request (case-insensitive if either is).
    pub fn for_route(&self, route: &RouteSpec) -> Scope {
        let mut s = self.clone();
        s.case_insensitive |= route.case_insensitive;
        s
    }

    fn path_coverage(&self, route: &RouteSpec) -> Coverage {
        let ci = self.case_insensitive || route.case_insensitive;
        let p = &self.prefix[..];
        let (literal, exact) = match &route.path {
            PathPattern::Exact(x) => (x.as_str(), true),
            PathPattern::Prefix(x) => (x.trim_end_matches('/'), false),
            PathPattern::Template(t) => match t.find("/{") {
                Some(i) => (&t[..i], false),
                None => (t.as_str(), true),
            },
        };
        let literal = literal.as_bytes();
        if under(literal, p, ci) {
            Coverage::Always
        } else if !exact && under(p, literal, ci) {
            Coverage::Maybe
        } else {
            Coverage::Never
        }
    }

    fn host_coverage(&self, route: &RouteSpec) -> Coverage {
        if self.host == ScopeHost::Any {
            return Coverage::Always;
        }
        let (mut always, mut never) = (true, true);
        let any = [HostPattern::Any];
        let hosts = if route.hosts.is_empty() {
            &any[..]
        } else {
            &route.hosts[..]
        };
        for h in hosts {
            let c = match h {
                HostPattern::Any => Coverage::Maybe,
                HostPattern::Exact(h) => {
                    let h = h.to_ascii_lowercase();
                    if self.covers_host_exactly(&h) {
                        Coverage::Always
                    } else {
                        Coverage::Never
                    }
                }
                HostPattern::Wildcard(s) => {
                    let s = s.strip_prefix('*').unwrap_or(s).to_ascii_lowercase();
                    let s = if s.starts_with('.') {
                        s
                    } else {
                        format!(".{s}")
                    };
                    match &self.host {
                        ScopeHost::Any => Coverage::Always,
                        ScopeHost::Exact(h) if suffix_match(h, &s) => Coverage::Maybe,
                        ScopeHost::Exact(_) => Coverage::Never,
                        ScopeHost::Suffix(sfx) if s.ends_with(&**sfx) => Coverage::Always,
                        ScopeHost::Suffix(sfx) if sfx.ends_with(s.as_str()) => Coverage::Maybe,
                        ScopeHost::Suffix(_) => Coverage::Never,
                    }
                }
            };
            always &= c == Coverage::Always;
            never &= c == Coverage::Never;
        }
        match (always, never) {
            (true, _) => Coverage::Always,
            (_, true) => Coverage::Never,
            _ => Coverage::Maybe,
        }
    }

    fn covers_host_exactly(&self, h: &str) -> bool {
        match &self.host {
            ScopeHost::Any => true,
            ScopeHost::Exact(x) => **x == *h,
            ScopeHost::Suffix(s) => suffix_match(h, s),
        }
    }

    /// `prefix` and `host` as written back for `check` output, e.g. `/api` or `/api@*.ex.com`.
    pub fn describe(&self) -> String {
        let mut s = if self.prefix.is_empty() {
            "/".to_string()
        } else {
            String::from_utf8_lossy(&self.prefix).into_owned()
        };
        match &self.host {
            ScopeHost::Any => {}
            ScopeHost::Exact(h) => {
                s.push('@');
                s.push_str(h);
            }
            ScopeHost::Suffix(x) => {
                s.push_str("@*");
                s.push_str(x);
            }
        }
        if self.case_insensitive {
            s.push_str(" any case");
        }
        s
    }
}

/// A route's policy lists when some `[[defaults]]` cover only part of it: one list per subset
/// of `scopes`, indexed by the bit mask of the scopes that cover the request.
#[derive(Debug)]
pub struct GatedPolicies {
    pub scopes: Vec<Scope>,
    /// `lists[mask]`: (policies in run order, CORS policy).
    pub lists: Vec<(Vec<PolicyId>, Option<PolicyId>)>,
}

impl GatedPolicies {
    /// The policies (and CORS policy) for a request with this normalized path and host.
    #[inline]
    pub fn select(&self, path: &[u8], host: &str) -> (&[PolicyId], Option<PolicyId>) {
        let mut mask = 0usize;
        for (i, s) in self.scopes.iter().enumerate() {
            if s.covers(path, host) {
                mask |= 1 << i;
            }
        }
        match self.lists.get(mask) {
            Some((ids, cors)) => (ids, *cors),
            None => (&[], None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteId;

    fn spec(path: PathPattern, hosts: Vec<HostPattern>, ci: bool) -> RouteSpec {
        RouteSpec {
            id: RouteId(0),
            hosts,
            path,
            methods: 0,
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
            case_insensitive: ci,
        }
    }

    #[test]
    fn path_coverage_is_segment_aware() {
        use Coverage::*;
        let api = Scope::new(Some("/api/"), None, false);
        let cases = [
            (PathPattern::Prefix("/".into()), false, Maybe),
            (PathPattern::Prefix("/api".into()), false, Always),
            (PathPattern::Prefix("/api/v1/".into()), false, Always),
            (PathPattern::Prefix("/apix".into()), false, Never),
            (PathPattern::Exact("/api".into()), false, Always),
            (PathPattern::Exact("/apix".into()), false, Never),
            (PathPattern::Exact("/".into()), false, Never),
            (PathPattern::Template("/{t}/admin".into()), false, Maybe),
            (PathPattern::Template("/api/{id}".into()), false, Always),
            (PathPattern::Template("/ap/{id}".into()), false, Never),
            (PathPattern::Prefix("/API".into()), false, Never),
            (PathPattern::Prefix("/API".into()), true, Always),
        ];
        for (p, ci, want) in cases {
            assert_eq!(api.coverage(&spec(p.clone(), vec![], ci)), want, "{p:?}");
        }
        assert!(api.covers(b"/api", "h"));
        assert!(api.covers(b"/api/x", "h"));
        assert!(!api.covers(b"/apix", "h"));
        assert!(!api.covers(b"/API/x", "h"));
        assert!(Scope::new(Some("/api"), None, true).covers(b"/API/x", "h"));
        assert!(Scope::new(None, None, false).covers(b"/anything", "h"));
    }

    #[test]
    fn host_coverage() {
        use Coverage::*;
        let exact = Scope::new(None, Some("API.example.com"), false);
        let wild = Scope::new(None, Some("*.example.com"), false);
        let any = PathPattern::Prefix("/".into());
        let h = |s: &str| HostPattern::Exact(s.into());
        let w = |s: &str| HostPattern::Wildcard(s.into());
        assert_eq!(exact.coverage(&spec(any.clone(), vec![], false)), Maybe);
        assert_eq!(
            exact.coverage(&spec(any.clone(), vec![h("api.example.com")], false)),
            Always
        );
        assert_eq!(
            exact.coverage(&spec(any.clone(), vec![h("other.org")], false)),
            Never
        );
        assert_eq!(
            exact.coverage(&spec(any.clone(), vec![w("*.example.com")], false)),
            Maybe
        );
        assert_eq!(
            wild.coverage(&spec(any.clone(), vec![w("*.a.example.com")], false)),
            Always
        );
        assert_eq!(
            wild.coverage(&spec(
                any.clone(),
                vec![h("x.example.com"), h("b.org")],
                false
            )),
            Maybe
        );
        assert_eq!(
            wild.coverage(&spec(any.clone(), vec![h("example.com")], false)),
            Never
        );
        assert!(exact.covers(b"/", "api.example.com"));
        assert!(!exact.covers(b"/", "x.example.com"));
        assert!(wild.covers(b"/", "x.example.com"));
        assert!(!wild.covers(b"/", "example.com"));
    }
}
