//! Config diagnostics: `ConfigError` (one problem, positioned at file:line:col and named by its
//! dotted field), `Diag` (collects them while a file compiles), the position helpers
//! (`line_col`, `field_at`) and the checked readers every section shares (`positive`,
//! `int_in`, `header_name`), so one rule yields one message wherever it applies.
//!
//! Layer 1 (vocabulary): blocks (policy, jwt, apikey, ratelimit) may use it. A block's compile
//! function reports through a `Fail` sink with fields relative to its own table; the config
//! dispatcher (`Diag::under`) prefixes them with where that table sits in the file.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::units::RawDuration;

/// A config problem, positioned in the source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub col: usize,
    /// Dotted field path, e.g. `routes[2].proxy.upstream`.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `field` in `file` (whose text is `src`), positioned at byte `offset`.
    pub fn at(
        file: &Path,
        src: &str,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = line_col(src, offset);
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.field,
                self.message
            )
        }
    }
}

/// Collects errors with positions resolved against the source text of one file.
pub struct Diag<'a> {
    file: &'a Path,
    src: &'a str,
    /// Every error so far, in the order found.
    pub list: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    /// An empty collector for `file`, whose text is `src`.
    pub fn new(file: &'a Path, src: &'a str) -> Diag<'a> {
        Diag {
            file,
            src,
            list: Vec::new(),
        }
    }

    /// Records `message` about `field`, positioned at the start of `span`.
    pub fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let e = ConfigError::at(self.file, self.src, span.start, field, message);
        self.list.push(e);
    }

    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A `Fail` sink for a block's compile function: a relative field `f` is reported as
    /// `{prefix}.{f}`, the empty field as `{prefix}` (the table itself).
    pub fn under<'s>(
        &'s mut self,
        prefix: &'s str,
    ) -> impl FnMut(Range<usize>, &str, String) + use<'a, 's> {
        move |span, f: &str, m| {
            if f.is_empty() {
                self.at(span, prefix, m)
            } else {
                self.at(span, format!("{prefix}.{f}"), m)
            }
        }
    }
}

/// Where a block's compile function reports a problem: (span in the file, field relative to
/// the block's table — empty for the table itself, message).
pub type Fail<'a> = dyn FnMut(Range<usize>, &str, String) + 'a;

/// Anything the checked readers can report to: a `Diag` (absolute fields) or a block's `Fail`
/// sink (relative fields).
pub trait Report {
    fn report(&mut self, span: Range<usize>, field: &str, message: String);
}

impl Report for Diag<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        self.at(span, field, message)
    }
}

impl<F: FnMut(Range<usize>, &str, String) + ?Sized> Report for F {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        self(span, field, message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The line holding byte `offset`: its start offset and text (without the newline).
fn line_at(src: &str, offset: usize) -> (usize, &str) {
    let offset = src.floor_char_boundary(offset.min(src.len()));
    let line_start = src[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = src[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(src.len());
    (line_start, &src[line_start..line_end])
}

/// The key of a `key = value` line (quotes trimmed), or `None` when the line has no `=`.
fn key_of(line: &str) -> Option<&str> {
    line.split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
}

/// Best-effort dotted field path (`routes.proxy.upstream`) for a byte offset, from the nearest
/// table header above it and the key on its line. Used for errors serde reports by position.
pub fn field_at(src: &str, offset: usize) -> String {
    let (line_start, line) = line_at(src, offset);
    let mut section = String::new();
    for l in src[..line_start].lines().rev() {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            break;
        }
    }
    let t = line.trim();
    if t.starts_with('[') {
        return t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
    }
    let key = key_of(t).unwrap_or(t).to_string();
    match (section.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

/// `field_at` for a file that is one array of tables (`[[keys]]`): `keys[i].field`, counting
/// the `[[array]]` headers above the offset.
pub fn array_field_at(src: &str, offset: usize, array: &str) -> String {
    let (line_start, line) = line_at(src, offset);
    let header = format!("[[{array}]]");
    let is_header = |l: &str| {
        let t: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        t.starts_with(&header)
    };
    let headers = src[..line_start].lines().filter(|l| is_header(l)).count();
    if is_header(line) {
        return format!("{array}[{headers}]");
    }
    let key = key_of(line).unwrap_or("");
    match (headers, key.is_empty()) {
        (0, true) => array.into(),
        (0, false) => key.into(),
        (n, true) => format!("{array}[{}]", n - 1),
        (n, false) => format!("{array}[{}].{key}", n - 1),
    }
}

/// A duration that must not be zero, or `default` when absent; zero is an error at the value
/// ("must be greater than zero") and `default` stands in.
pub fn positive(
    r: &mut (impl Report + ?Sized),
    v: &Option<Spanned<RawDuration>>,
    field: &str,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(d) if d.get_ref().0.is_zero() => {
            r.report(d.span(), field, "must be greater than zero".into());
            default
        }
        Some(d) => d.get_ref().0,
    }
}

/// An integer within `range`, or `default` when absent; out of range (or not representable)
/// is an error at the value naming `field` ("{noun}must be between A and B"), and `default`
/// stands in so compilation can report further errors.
pub fn int_in<T>(
    r: &mut (impl Report + ?Sized),
    v: &Option<Spanned<i64>>,
    field: &str,
    default: T,
    range: RangeInclusive<T>,
    noun: &str,
) -> T
where
    T: Copy + PartialOrd + fmt::Display + TryFrom<i64>,
{
    match v {
        None => default,
        Some(s) => match T::try_from(*s.get_ref()) {
            Ok(x) if range.contains(&x) => x,
            _ => {
                r.report(
                    s.span(),
                    field,
                    format!(
                        "{noun}must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        },
    }
}

/// Whether `name` (a route's, an operation's) can be printed in logs, metrics and `ringway
/// check`'s listing as it is: no control character (tab included), no C1 control and no
/// bidirectional override, which could forge or hide a line on an operator's terminal; at
/// most 4096 bytes.
pub fn printable_name(name: &str) -> bool {
    !name.contains('\t') && crate::http1::is_safe_header_value(name.as_bytes())
}

/// A valid HTTP field name (RFC 9110 token), lowercased; anything else is an error at the
/// value ("... is not a valid header name").
pub fn header_name(
    r: &mut (impl Report + ?Sized),
    s: &Spanned<String>,
    field: &str,
) -> Option<String> {
    let name = s.get_ref();
    if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
        r.report(
            s.span(),
            field,
            format!("{name:?} is not a valid header name"),
        );
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 99), (2, 2));
    }

    #[test]
    fn field_at_names_section_and_key() {
        let src = "[server]\nworkers = x\n[[routes]]\nname = 1\n";
        assert_eq!(field_at(src, src.find("x").unwrap()), "server.workers");
        assert_eq!(field_at(src, src.find("[[routes").unwrap()), "routes");
        let keys = "[[keys]]\nid = 1\n[[keys]]\nhash = 2\n";
        assert_eq!(
            array_field_at(keys, keys.find("2").unwrap(), "keys"),
            "keys[1].hash"
        );
        assert_eq!(array_field_at(keys, 0, "keys"), "keys[0]");
    }

    #[test]
    fn under_prefixes_relative_fields() {
        let p = Path::new("t.toml");
        let mut d = Diag::new(p, "a\nb");
        {
            let mut sink = d.under("policies.x.cors");
            sink(2..3, "max_age", "m".into());
            sink(0..1, "", "n".into());
        }
        assert_eq!(
            d.list[0].to_string(),
            "t.toml:2:1: policies.x.cors.max_age: m"
        );
        assert_eq!(d.list[1].field, "policies.x.cors");
    }
}
