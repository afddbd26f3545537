//! The `compress` policy: which codings a route offers (in preference order), the level of
//! each, the smallest body worth compressing, and the media types that are compressible.
//!
//! ```toml
//! [policies.gz]
//! compress = { codings = ["br", "zstd", "gzip"], gzip_level = 4, brotli_level = 5,
//!              zstd_level = 3, min_bytes = "1KiB", types = ["text/html", "application/*+json"] }
//! ```
//!
//! Every field is optional. Defaults, and why. Numbers from `cargo bench --bench compress`
//! (BENCH_SECS=0.2..0.5, fasttest profile, medians of 3 to 6 runs on the 2-core dev VM shared
//! with other builds, so +-20%): a pooled encoder per response on a 10 137-byte JSON listing,
//! ns per input byte / output ratio:
//!
//! ```text
//! gzip 1  2.6 / 0.237   gzip 4  5.5 / 0.187   gzip 5  6.1 / 0.186   gzip 6  7.1 / 0.184
//! gzip 9  7.5 / 0.184   br 1    8.3 / 0.215   br 4   10.8 / 0.181   br 5   16   / 0.167
//! br 11  ~1400 / 0.148  zstd 1  1.4 / 0.186   zstd 3  1.8 / 0.186
//! fixed cost per response (64-byte body): gzip ~5 us, br ~11 us, zstd ~1.2 us
//! quietest run (BENCH_SECS=0.4): gzip 4 3.6, gzip 5 3.9, gzip 6 5.0, br 4 8.5, zstd 3 1.2
//! same run with flate2's zlib-rs backend instead of miniz_oxide: gzip 4 3.2 / 0.193,
//! gzip 5 3.4 / 0.186, gzip 6 3.5 / 0.185 (pure Rust too; one feature in Cargo.toml)
//! ```
//!
//! - `gzip_level = 4`: within 2% of level 9's size for three quarters of level 6's CPU;
//!   level 1 is half the CPU but 27% more bytes. (nginx defaults to 1; deployments set 4-6.)
//! - `brotli_level = 4`: the cheapest brotli smaller than gzip 9; 5 saves another 8% for 50%
//!   more CPU (worth it where bandwidth costs more than CPU); 11 is for precompressed assets,
//!   never a live response.
//! - `zstd_level = 3`: zstd's own default; gzip 5's size for a third of gzip 4's CPU.
//! - `codings = ["zstd", "gzip", "br"]`: the order breaks ties in the client's q-values
//!   (browsers send every coding at q=1). zstd is the cheapest and as small as gzip; gzip 4
//!   costs half of brotli 4's CPU for 3% more bytes, so a gateway that pays per CPU-second
//!   prefers it. List `"br"` first to favour bytes over CPU.
//! - `min_bytes = 1024`: below about a kilobyte a response fits in one packet either way, and the
//!   coding's header and the CPU are pure cost (nginx: `gzip_min_length`, Envoy:
//!   `min_content_length`; we pick the commonly recommended 1 KiB over their 20/30-byte defaults).
//! - `types`: `DEFAULT_TYPES`, text formats and the structured-syntax suffixes `+json`/`+xml`;
//!   never `text/event-stream` (an event stream is flushed per event, so compressing it buys
//!   little and some clients and intermediaries buffer a compressed stream), never image, audio,
//!   video or archive formats (already compressed). `types` replaces the list; patterns are
//!   `type/subtype`, `type/*`, `type/*+suffix` and `*/*`, compared case-insensitively.

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::{int_in, Fail};
use crate::config::units::RawSize;

/// A content coding the gateway can produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Coding {
    #[default]
    Identity,
    Gzip,
    Brotli,
    Zstd,
}

impl Coding {
    /// The token in `Content-Encoding` (and the cache's secondary key).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The compressible media types when a policy lists none.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "text/xml",
    "text/csv",
    "text/markdown",
    "text/calendar",
    "text/vtt",
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/x-ndjson",
    "application/graphql-response+json",
    "application/*+json",
    "application/*+xml",
    "application/wasm",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/x-www-form-urlencoded",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

/// `compress = { ... }` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCompress {
    /// Codings offered, in the gateway's preference order for ties in the client's q-values:
    /// `"zstd"`, `"gzip"`, `"br"` (default all three in that order).
    #[schemars(with = "Option<Vec<String>>")]
    pub codings: Option<Spanned<Vec<Spanned<String>>>>,
    /// gzip level 1..=9 (default 4).
    #[schemars(with = "Option<i64>")]
    pub gzip_level: Option<Spanned<i64>>,
    /// brotli quality 0..=11 (default 4).
    #[schemars(with = "Option<i64>")]
    pub brotli_level: Option<Spanned<i64>>,
    /// zstd level 1..=19 (default 3).
    #[schemars(with = "Option<i64>")]
    pub zstd_level: Option<Spanned<i64>>,
    /// Responses with a known length below this are sent as they are (default 1024 bytes).
    /// A body of unknown length is always compressed.
    #[schemars(with = "Option<crate::config::units::RawSize>")]
    pub min_bytes: Option<Spanned<RawSize>>,
    /// Compressible media types (replaces the default list): `type/subtype`, `type/*`,
    /// `type/*+suffix` or `*/*`.
    #[schemars(with = "Option<Vec<String>>")]
    pub types: Option<Vec<Spanned<String>>>,
}

/// A media type pattern, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TypePattern {
    /// `type/subtype`, the whole essence.
    Exact(Box<str>),
    /// `type/*` (`*/*`: an empty type matches every type).
    AnySubtype(Box<str>),
    /// `type/*+suffix`: stored as the type and `+suffix`.
    Suffix(Box<str>, Box<str>),
}

impl TypePattern {
    fn parse(s: &str) -> Option<TypePattern> {
        let s = s.trim().to_ascii_lowercase();
        let (ty, sub) = s.split_once('/')?;
        let token = |t: &str| !t.is_empty() && t.bytes().all(crate::http1::is_tchar);
        if s == "*/*" {
            return Some(TypePattern::AnySubtype("".into()));
        }
        if !token(ty) || ty == "*" {
            return None;
        }
        if sub == "*" {
            return Some(TypePattern::AnySubtype(ty.into()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            return (token(suffix) && !suffix.contains('*'))
                .then(|| TypePattern::Suffix(ty.into(), format!("+{suffix}").into()));
        }
        (token(sub) && !sub.contains('*')).then(|| TypePattern::Exact(s.as_str().into()))
    }

    /// `essence`: a lowercase `type/subtype` without parameters.
    fn matches(&self, essence: &str) -> bool {
        match self {
            TypePattern::Exact(e) => **e == *essence,
            TypePattern::AnySubtype(t) if t.is_empty() => true,
            TypePattern::AnySubtype(t) => essence
                .strip_prefix(&**t)
                .is_some_and(|rest| rest.starts_with('/')),
            TypePattern::Suffix(t, suffix) => essence
                .strip_prefix(&**t)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|sub| sub.len() > suffix.len() && sub.ends_with(&**suffix)),
        }
    }
}

/// A compiled `compress` policy (immutable, shared by all workers).
#[derive(Clone, Debug)]
pub struct CompressPolicy {
    /// Offered codings, most preferred first (never `Identity`, no duplicates).
    pub codings: Box<[Coding]>,
    pub gzip_level: u32,
    pub brotli_level: u32,
    pub zstd_level: i32,
    pub min_bytes: u64,
    types: Box<[TypePattern]>,
}

impl Default for CompressPolicy {
    fn default() -> CompressPolicy {
        CompressPolicy {
            codings: default_codings().into(),
            gzip_level: 4,
            brotli_level: 4,
            zstd_level: 3,
            min_bytes: 1024,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| TypePattern::parse(t))
                .collect(),
        }
    }
}

fn default_codings() -> Vec<Coding> {
    let mut v = Vec::with_capacity(3);
    if cfg!(feature = "zstd") {
        v.push(Coding::Zstd);
    }
    v.push(Coding::Gzip);
    v.push(Coding::Brotli);
    v
}

impl CompressPolicy {
    /// Whether a `Content-Type` value (parameters and case ignored) is compressible.
    pub fn compressible(&self, content_type: &[u8]) -> bool {
        let essence = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        // Longer than any real media type: not one of ours (and no allocation for junk).
        if essence.is_empty() || essence.len() > 255 {
            return false;
        }
        let Ok(essence) = std::str::from_utf8(essence) else {
            return false;
        };
        let lower = essence.to_ascii_lowercase();
        self.types.iter().any(|p| p.matches(&lower))
    }

    /// The rank of `coding` in the preference order (lower is preferred), if offered.
    pub fn rank(&self, coding: Coding) -> Option<usize> {
        self.codings.iter().position(|&c| c == coding)
    }
}

/// Compiles `compress = { ... }`; fields in `fail` are relative to the table.
pub fn compile(raw: &RawCompress, fail: &mut Fail<'_>) -> Option<CompressPolicy> {
    let mut failed = false;
    let mut fail = |span: std::ops::Range<usize>, field: &str, msg: String| {
        failed = true;
        fail(span, field, msg);
    };
    let mut p = CompressPolicy::default();
    if let Some(list) = &raw.codings {
        let mut codings = Vec::new();
        for (i, c) in list.get_ref().iter().enumerate() {
            let field = format!("codings[{i}]");
            let coding = match c.get_ref().to_ascii_lowercase().as_str() {
                "gzip" | "x-gzip" => Coding::Gzip,
                "br" | "brotli" => Coding::Brotli,
                "zstd" if cfg!(feature = "zstd") => Coding::Zstd,
                "zstd" => {
                    fail(
                        c.span(),
                        &field,
                        "\"zstd\" needs a ringway built with the `zstd` cargo feature".into(),
                    );
                    continue;
                }
                other => {
                    fail(
                        c.span(),
                        &field,
                        format!("unknown coding {other:?} (use \"zstd\", \"br\", \"gzip\")"),
                    );
                    continue;
                }
            };
            if codings.contains(&coding) {
                fail(
                    c.span(),
                    &field,
                    format!("{:?} is listed twice", c.get_ref()),
                );
                continue;
            }
            codings.push(coding);
        }
        if list.get_ref().is_empty() {
            fail(
                list.span(),
                "codings",
                "must list at least one coding (remove the policy to compress nothing)".into(),
            );
        }
        p.codings = codings.into();
    }
    p.gzip_level = int_in(&mut fail, &raw.gzip_level, "gzip_level", 4, 1..=9, "");
    p.brotli_level = int_in(&mut fail, &raw.brotli_level, "brotli_level", 4, 0..=11, "");
    // 20..=22 ("ultra") need windows of 8 MiB and more per response.
    p.zstd_level = int_in(&mut fail, &raw.zstd_level, "zstd_level", 3, 1..=19, "");
    if let Some(m) = &raw.min_bytes {
        p.min_bytes = m.get_ref().0;
    }
    if let Some(types) = &raw.types {
        let mut list = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            match TypePattern::parse(t.get_ref()) {
                Some(pat) => list.push(pat),
                None => fail(
                    t.span(),
                    &format!("types[{i}]"),
                    format!(
                        "{:?} is not a media type pattern (type/subtype, type/*, \
                         type/*+suffix or */*)",
                        t.get_ref()
                    ),
                ),
            }
        }
        p.types = list.into();
    }
    (!failed).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_str(src: &str) -> Result<CompressPolicy, Vec<(String, String)>> {
        let raw: RawCompress = toml::from_str(src).expect("toml");
        let mut errs = Vec::new();
        let mut sink =
            |_: std::ops::Range<usize>, f: &str, m: String| errs.push((f.to_string(), m));
        let p = compile(&raw, &mut sink);
        p.ok_or(errs)
    }

    #[test]
    fn defaults() {
        let p = compile_str("").unwrap();
        assert_eq!((p.gzip_level, p.brotli_level, p.zstd_level), (4, 4, 3));
        assert_eq!(p.min_bytes, 1024);
        assert_eq!(p.codings.last(), Some(&Coding::Brotli));
        for t in [
            "text/html; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
            "image/svg+xml",
            "application/vnd.api+json ; x=y",
        ] {
            assert!(p.compressible(t.as_bytes()), "{t}");
        }
        for t in [
            "text/event-stream",
            "image/png",
            "application/octet-stream",
            "",
            "application/+json",
            "application/zip",
            "text",
        ] {
            assert!(!p.compressible(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn custom_types_replace_the_list() {
        let p = compile_str(r#"types = ["text/*", "application/*+cbor"]"#).unwrap();
        assert!(p.compressible(b"text/event-stream"));
        assert!(p.compressible(b"application/foo+cbor"));
        assert!(!p.compressible(b"application/json"));
        let all = compile_str(r#"types = ["*/*"]"#).unwrap();
        assert!(all.compressible(b"image/png"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = compile_str(
            r#"codings = ["gzip", "deflate", "gzip"]
gzip_level = 10
brotli_level = -1
zstd_level = 22
types = ["json", "*/json", "text/*+"]"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "codings[1]",
                "codings[2]",
                "gzip_level",
                "brotli_level",
                "zstd_level",
                "types[0]",
                "types[1]",
                "types[2]"
            ]
        );
        assert!(e[0].1.contains("unknown coding \"deflate\""), "{e:?}");
        assert!(e[2].1.contains("between 1 and 9"), "{e:?}");
        let e = compile_str("codings = []").unwrap_err();
        assert_eq!(e[0].0, "codings");
    }

    #[test]
    fn sizes_and_levels() {
        let p = compile_str(
            r#"min_bytes = "2KiB"
gzip_level = 9
brotli_level = 0
zstd_level = 19"#,
        )
        .unwrap();
        assert_eq!(p.min_bytes, 2048);
        assert_eq!((p.gzip_level, p.brotli_level, p.zstd_level), (9, 0, 19));
        assert_eq!(compile_str("min_bytes = 0").unwrap().min_bytes, 0);
    }

    #[test]
    fn order_is_kept() {
        let p = compile_str(r#"codings = ["GZIP", "br"]"#).unwrap();
        assert_eq!(&*p.codings, &[Coding::Gzip, Coding::Brotli]);
        assert_eq!(p.rank(Coding::Brotli), Some(1));
        assert_eq!(p.rank(Coding::Zstd), None);
    }
}
