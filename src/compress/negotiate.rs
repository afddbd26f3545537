//! Choosing a content coding from `Accept-Encoding` (RFC 9110 12.5.3), with q-values.
//!
//! Rules (all request bytes are untrusted; the work is linear and capped):
//! - Codings compare case-insensitively; `x-gzip` is `gzip` (RFC 9110 8.4.1.3).
//! - The offered coding with the highest q > 0 wins; ties go to the policy's order. A coding
//!   not named takes `*`'s q, or is unacceptable when there is no `*`.
//! - `identity` competes only when named: `identity;q=1, gzip;q=0.5` gets no compression.
//!   `identity;q=0` alone never forces a coding on a client that accepts none we offer (the
//!   gateway answers uncompressed rather than 406, as RFC 9110 allows).
//! - A malformed element (bad q such as `q=2`, `q=0.5555`, `q=abc`, a non-token coding) is
//!   ignored as if absent: never read as q=1.
//! - `Cache-Control: no-transform` in the request: identity (the client asked intermediaries
//!   to leave the content alone).
//! - No `Accept-Encoding` at all: identity (RFC 9110 allows any coding, but clients that do
//!   not say what they decode get bytes they can read).
//! - Only the first `MAX_BYTES` of the field lines and `MAX_ELEMENTS` elements are read; an
//!   element cut by the byte cap is dropped whole (a cut `gzip;q=0` must not read as `gzip`).

use crate::http1::RequestHead;

pub use super::policy::Coding;
use super::policy::CompressPolicy;

/// Bytes of `Accept-Encoding` read per request (all its field lines together). Real clients
/// send under 100.
const MAX_BYTES: usize = 1024;
/// Elements read per request.
const MAX_ELEMENTS: usize = 32;

/// The q-values (in thousandths) a request's `Accept-Encoding` gives, `None` = not named.
#[derive(Debug, Default, PartialEq, Eq)]
struct Weights {
    gzip: Option<u16>,
    br: Option<u16>,
    zstd: Option<u16>,
    identity: Option<u16>,
    star: Option<u16>,
}

impl Weights {
    fn of(&self, c: Coding) -> u16 {
        let named = match c {
            Coding::Gzip => self.gzip,
            Coding::Brotli => self.br,
            Coding::Zstd => self.zstd,
            Coding::Identity => self.identity,
        };
        named.or(self.star).unwrap_or(0)
    }
}

/// The coding this request gets on a route with `policy`: the acceptable one (q > 0) with the
/// highest q, ties broken by the policy's preference order; `Identity` when none is, or when
/// the client asked intermediaries not to transform the content (`Cache-Control:
/// no-transform`, RFC 9111 5.2.1.6).
pub fn negotiate(policy: &CompressPolicy, head: &RequestHead) -> Coding {
    let no_transform = head
        .headers()
        .any(|(n, v)| n.eq_ignore_ascii_case(b"cache-control") && has_token(v, b"no-transform"));
    if no_transform {
        return Coding::Identity;
    }
    let mut lines = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"accept-encoding"))
        .map(|(_, v)| v)
        .peekable();
    if lines.peek().is_none() {
        return Coding::Identity;
    }
    choose(policy, &weights(lines))
}

/// Whether a comma-separated field value has `token` as one of its elements (directive names
/// compare case-insensitively; `token=value` counts).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|el| {
        let name = el.split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(token)
    })
}

/// Parses the field lines into weights (first mention of a coding counts).
fn weights<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Weights {
    let mut w = Weights::default();
    let mut budget = MAX_BYTES;
    let mut elements = 0;
    for line in lines {
        if budget == 0 || elements >= MAX_ELEMENTS {
            break;
        }
        let cut = line.len() > budget;
        let line = &line[..line.len().min(budget)];
        budget -= line.len();
        let mut parts = line.split(|&b| b == b',').peekable();
        while let Some(el) = parts.next() {
            if cut && parts.peek().is_none() {
                break; // the element the cap cut: its q-value may be missing
            }
            let el = el.trim_ascii();
            if el.is_empty() {
                continue; // `a, , b` is allowed (RFC 9110 5.6.1)
            }
            elements += 1;
            if elements > MAX_ELEMENTS {
                break;
            }
            let Some((name, q)) = element(el) else {
                continue;
            };
            let slot = if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip")
            {
                &mut w.gzip
            } else if name.eq_ignore_ascii_case(b"br") {
                &mut w.br
            } else if name.eq_ignore_ascii_case(b"zstd") {
                &mut w.zstd
            } else if name.eq_ignore_ascii_case(b"identity") {
                &mut w.identity
            } else if name == b"*" {
                &mut w.star
            } else {
                continue;
            };
            slot.get_or_insert(q);
        }
    }
    w
}

/// `coding [; q=value] [; other params]` → (coding, q in thousandths); `None` if malformed.
fn element(el: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = el.split(|&b| b == b';');
    let name = parts.next()?.trim_ascii();
    if name.is_empty() || !name.iter().all(|&b| crate::http1::is_tchar(b)) {
        return None;
    }
    let mut q = 1000;
    for p in parts {
        let p = p.trim_ascii();
        let eq = p.iter().position(|&b| b == b'=')?;
        let (k, v) = (p[..eq].trim_ascii(), p[eq + 1..].trim_ascii());
        if k.eq_ignore_ascii_case(b"q") {
            q = qvalue(v)?;
        }
    }
    Some((name, q))
}

/// RFC 9110 12.4.2: `0[.ddd]` or `1[.000]`, in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], Some(&v[dot + 1..])),
        None => (v, None),
    };
    let whole = match int {
        b"0" => 0u16,
        b"1" => 1,
        _ => return None,
    };
    let mut thousandths = 0u16;
    if let Some(f) = frac {
        if f.len() > 3 || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..3 {
            thousandths = thousandths * 10 + f.get(i).map_or(0, |d| u16::from(d - b'0'));
        }
    }
    let q = whole * 1000 + thousandths;
    (q <= 1000).then_some(q)
}

fn choose(policy: &CompressPolicy, w: &Weights) -> Coding {
    let mut best = (Coding::Identity, 0u16);
    for &c in policy.codings.iter() {
        let q = w.of(c);
        if q > best.1 {
            best = (c, q);
        }
    }
    // The client named identity and prefers it to every coding we could send.
    if w.identity.is_some_and(|qi| qi > best.1) {
        return Coding::Identity;
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(policy: &CompressPolicy, ae: &str) -> Coding {
        choose(policy, &weights(std::iter::once(ae.as_bytes())))
    }

    fn all(order: &[Coding]) -> CompressPolicy {
        let mut p = CompressPolicy::default();
        p.codings = order.into();
        p
    }

    #[test]
    fn q_values_and_ties() {
        use Coding::*;
        let p = all(&[Zstd, Brotli, Gzip]);
        assert_eq!(pick(&p, "gzip, deflate, br, zstd"), Zstd);
        assert_eq!(pick(&p, "gzip, deflate, br"), Brotli);
        assert_eq!(pick(&p, "gzip;q=1.0, br;q=0.8"), Gzip);
        assert_eq!(pick(&p, "GZIP;Q=0.5 ,  BR ; q=0.4"), Gzip);
        assert_eq!(pick(&p, "br;q=0.001"), Brotli);
        assert_eq!(pick(&p, "br;q=0"), Identity);
        assert_eq!(pick(&p, "x-gzip"), Gzip);
        assert_eq!(pick(&p, "deflate"), Identity);
        assert_eq!(pick(&p, ""), Identity);
        assert_eq!(pick(&p, "identity"), Identity);
        assert_eq!(pick(&p, "*"), Zstd);
        assert_eq!(pick(&p, "*;q=0"), Identity);
        assert_eq!(pick(&p, "*;q=0.5, zstd;q=0, br;q=0"), Gzip);
        assert_eq!(pick(&p, "gzip;q=0, *"), Zstd);
        assert_eq!(pick(&p, "identity;q=0, gzip;q=0.1"), Gzip);
        assert_eq!(pick(&p, "identity;q=1, gzip;q=0.5"), Identity);
        assert_eq!(pick(&p, "identity;q=0.5, gzip;q=0.5"), Gzip);
        let gz_first = all(&[Gzip, Brotli]);
        assert_eq!(pick(&gz_first, "br, gzip, zstd"), Gzip);
        assert_eq!(pick(&gz_first, "zstd"), Identity);
    }

    #[test]
    fn malformed_is_ignored_not_trusted() {
        use Coding::*;
        let p = all(&[Zstd, Brotli, Gzip]);
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=0.5555",
            "gzip;q=abc",
            "gzip;q=",
            "gzip;q",
            "gzip;q=-1",
            "gzip;q=+1",
            "gzip;q=.5",
            "gz\u{1}ip",
            "gzip;q=0.5;q=x",
        ] {
            assert_eq!(pick(&p, bad), Identity, "{bad}");
        }
        assert_eq!(pick(&p, "gzip;q=0.5;level=9"), Gzip);
        assert_eq!(pick(&p, "gzip;q=1.000"), Gzip);
        assert_eq!(pick(&p, ",,, ,gzip,,"), Gzip);
        // First mention counts.
        assert_eq!(pick(&p, "gzip;q=0, gzip"), Identity);
    }

    #[test]
    fn bounded() {
        use Coding::*;
        let p = all(&[Gzip]);
        // Past the element cap nothing more is read.
        let mut many = "foo, ".repeat(MAX_ELEMENTS);
        many.push_str("gzip");
        assert_eq!(pick(&p, &many), Identity);
        // An element cut by the byte cap is dropped, not read without its q.
        let mut cut = " ".repeat(MAX_BYTES - 6);
        cut.push_str("gzip;q=0");
        assert_eq!(pick(&p, &cut), Identity);
        let huge = "x".repeat(1 << 20) + ", gzip";
        assert_eq!(pick(&p, &huge), Identity);
        // Several field lines share one budget.
        let w = weights(["br", "gzip;q=0.5"].iter().map(|s| s.as_bytes()));
        assert_eq!(w.gzip, Some(500));
        assert_eq!(w.br, Some(1000));
    }
}
