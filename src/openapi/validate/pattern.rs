//! The `pattern` keyword, run under a per-request budget so no request can pin a worker.
//!
//! A pattern is translated from ECMA 262 (as the schema crate reads it) and compiled once per
//! config generation. A pattern the linear `regex` engine can run (no look-around, no
//! back-reference) runs there: time linear in the string, never budgeted. Only a pattern that
//! needs the backtracking engine (`fancy-regex`) is bounded, three ways:
//! - a string longer than [`MAX_BACKTRACKING_INPUT`] bytes is not run at all (a look-ahead
//!   such as `(?=.*[A-Z])` unanchored is quadratic in the length, whatever the backtrack limit);
//! - each match stops after [`BACKTRACK_LIMIT`] backtracking steps;
//! - every match of one request is timed against one thread-local budget of
//!   [`REQUEST_BUDGET`]: once spent, the remaining backtracking checks of the request fail
//!   without running (5 000 short strings each hitting the backtrack limit cost the budget,
//!   not 5 000 limits).
//!
//! A check that could not be completed (too long, limit hit, budget spent, engine panic)
//! fails the keyword *and* marks the request unfinished ([`unfinished`]): the validator then
//! refuses the request even where the failure would have passed the schema (under `not`, in
//! an `anyOf` branch), so a budget spent never opens a way around a pattern.
//!
//! [`start_request`] resets the budget; the validator calls it once per request, before any
//! parameter or body check, on the worker thread that runs the whole check synchronously.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Duration, Instant};

use jsonschema::json::{Json, Node};
use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError};
use serde_json::{Map, Value};

/// Longest string (in bytes) a backtracking pattern is run on.
pub const MAX_BACKTRACKING_INPUT: usize = 2048;
/// `fancy-regex`'s budget of backtracking steps for one match.
pub const BACKTRACK_LIMIT: usize = 100_000;
/// Time all backtracking matches of one request may take together.
pub const REQUEST_BUDGET: Duration = Duration::from_millis(50);

/// How one pattern runs.
enum Engine {
    /// Linear time: the `regex` crate.
    Linear(regex::Regex),
    /// Look-around or back-references: `fancy-regex`, budgeted.
    Backtracking(fancy_regex::Regex),
}

/// The compiled `pattern` keyword.
pub(super) struct BudgetedPattern {
    engine: Engine,
}

/// Why a match gave no answer.
#[derive(Debug, PartialEq, Eq)]
enum Unfinished {
    TooLong,
    Limit,
    Budget,
}

impl Unfinished {
    fn message(&self) -> String {
        match self {
            Unfinished::TooLong => format!(
                "value is longer than the {MAX_BACKTRACKING_INPUT} bytes a look-around or \
                 back-reference pattern is checked on"
            ),
            Unfinished::Limit => "the pattern check did not finish within its step limit".into(),
            Unfinished::Budget => format!(
                "the request's pattern checks took more than their budget of {} ms",
                REQUEST_BUDGET.as_millis()
            ),
        }
    }
}

thread_local! {
    /// Time spent on backtracking matches by the request being checked on this thread.
    static SPENT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Some check of the request being checked could not be completed.
    static UNFINISHED: Cell<bool> = const { Cell::new(false) };
}

/// Resets the budget for a new request.
pub(super) fn start_request() {
    SPENT.with(|s| s.set(Duration::ZERO));
    UNFINISHED.with(|u| u.set(false));
}

/// Whether some pattern check of the current request could not be completed.
pub(super) fn unfinished() -> bool {
    UNFINISHED.with(Cell::get)
}

/// The message of the request-level refusal for an unfinished check.
pub(super) fn unfinished_message() -> String {
    format!(
        "a pattern check could not be completed within the gateway's bounds ({} ms per \
         request, {MAX_BACKTRACKING_INPUT} bytes per value for look-around patterns)",
        REQUEST_BUDGET.as_millis()
    )
}

/// Whether the ECMA 262 pattern `p` puts a quantifier right after another (`a{2}{2}`, `a**`,
/// `a+*`, `a*??`), which ECMA refuses ("nothing to repeat") but the Rust engine reads as a
/// repetition of the repetition. One `?` after a quantifier makes it lazy and is fine. `{`
/// that does not open `{n}`, `{n,}` or `{n,m}` is a literal (Annex B), as are characters
/// inside a class and escaped ones.
fn stacked_quantifier(p: &str) -> bool {
    let b = p.as_bytes();
    // 0: after an atom; 1: after a quantifier; 2: after a quantifier made lazy.
    let mut state = 0u8;
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            i += 2;
            state = 0;
            continue;
        }
        if in_class {
            in_class = c != b']';
            i += 1;
            continue;
        }
        let braces = (c == b'{').then(|| quantifier_braces(&b[i..])).flatten();
        let quantifier = matches!(c, b'*' | b'+' | b'?') || braces.is_some();
        if quantifier {
            match (state, c) {
                (1, b'?') => state = 2,
                (1 | 2, _) => return true,
                _ => state = 1,
            }
        } else {
            state = 0;
            in_class = c == b'[';
        }
        i += braces.unwrap_or(1);
    }
    false
}

/// The length of `{n}`, `{n,}` or `{n,m}` at the start of `b`, if it is one.
fn quantifier_braces(b: &[u8]) -> Option<usize> {
    let end = b.iter().position(|&c| c == b'}')?;
    let inner = &b[1..end];
    let (lo, hi) = match inner.iter().position(|&c| c == b',') {
        Some(k) => (&inner[..k], Some(&inner[k + 1..])),
        None => (inner, None),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    (!lo.is_empty() && digits(lo) && hi.is_none_or(digits)).then_some(end + 1)
}

/// Whether `p` (Rust regex syntax) uses what only a backtracking engine runs: look-around
/// (`(?=`, `(?!`, `(?<=`, `(?<!`) or a back-reference (`\1`..`\9`, `\k<name>`). Escaped
/// characters and character classes are skipped, so `\(?=` or `[(?=]` do not count.
fn needs_backtracking(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if !in_class && matches!(b.get(i + 1), Some(b'1'..=b'9' | b'k')) {
                    return true;
                }
                i += 2;
                continue;
            }
            b'[' => in_class = true,
            b']' => in_class = false,
            b'(' if !in_class => {
                let rest = &b[i + 1..];
                if [&b"?="[..], b"?!", b"?<=", b"?<!"]
                    .iter()
                    .any(|l| rest.starts_with(l))
                {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

impl BudgetedPattern {
    /// Compiles an ECMA 262 `pattern`; `Err` names why it cannot be used.
    pub(super) fn new(pattern: &str) -> Result<BudgetedPattern, String> {
        let translated = jsonschema_regex::to_rust_regex(pattern)
            .map_err(|()| "the pattern is not a valid ECMA 262 regular expression".to_string())?;
        if stacked_quantifier(pattern) {
            return Err(
                "the pattern is not a valid ECMA 262 regular expression (a quantifier \
                        follows another, as in `a{2}{2}` or `a**`: group the first)"
                    .to_string(),
            );
        }
        let linear_error = match regex::Regex::new(&translated) {
            Ok(re) => {
                return Ok(BudgetedPattern {
                    engine: Engine::Linear(re),
                })
            }
            Err(e) => e,
        };
        // Only what the linear engine cannot do at all goes to the backtracking one: a pattern
        // that failed for any other reason (a syntax error such as `a{2}{2}`, which ECMA 262
        // refuses too, or its size) is refused, not handed to an engine that reads it
        // differently and caps the values it checks.
        if !needs_backtracking(&translated) {
            return Err(format!("the pattern cannot be compiled: {linear_error}"));
        }
        fancy_regex::RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map(|re| BudgetedPattern {
                engine: Engine::Backtracking(re),
            })
            .map_err(|e| format!("the pattern cannot be compiled: {e}"))
    }

    /// Whether this pattern runs on the backtracking engine.
    #[cfg(test)]
    fn backtracks(&self) -> bool {
        matches!(self.engine, Engine::Backtracking(_))
    }

    /// `Ok(matched)`, or why there is no answer (the request is then marked unfinished).
    fn matches(&self, s: &str) -> Result<bool, Unfinished> {
        let out = match &self.engine {
            Engine::Linear(re) => {
                // The engine is not supposed to panic; if it does, the check is unfinished.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| re.is_match(s)))
                    .map_err(|_| Unfinished::Limit)
            }
            Engine::Backtracking(re) => backtracking(re, s),
        };
        if out.is_err() {
            UNFINISHED.with(|u| u.set(true));
        }
        out
    }

    fn check(&self, s: &str) -> Result<(), String> {
        match self.matches(s) {
            Ok(true) => Ok(()),
            Ok(false) => Err("value does not match the pattern".to_string()),
            Err(why) => Err(why.message()),
        }
    }
}

/// One budgeted backtracking match.
fn backtracking(re: &fancy_regex::Regex, s: &str) -> Result<bool, Unfinished> {
    if s.len() > MAX_BACKTRACKING_INPUT {
        return Err(Unfinished::TooLong);
    }
    let spent = SPENT.with(Cell::get);
    if spent >= REQUEST_BUDGET {
        return Err(Unfinished::Budget);
    }
    let started = Instant::now();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| re.is_match(s)));
    SPENT.with(|c| c.set(spent + started.elapsed()));
    match out {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(_)) | Err(_) => Err(Unfinished::Limit),
    }
}

impl<'i, F: Json> Keyword<'i, F> for BudgetedPattern {
    fn validate(&self, instance: F::Node<'i>) -> Result<(), ValidationError<'i>> {
        match instance.as_string() {
            Some(s) => self.check(&s).map_err(ValidationError::custom),
            None => Ok(()),
        }
    }

    fn is_valid(&self, instance: F::Node<'i>) -> bool {
        instance
            .as_string()
            .is_none_or(|s: Cow<'_, str>| self.matches(&s) == Ok(true))
    }
}

/// The factory `schema::compile` registers for `pattern`.
#[allow(clippy::type_complexity)]
pub(super) fn factory<'a, F: Json>(
    _parent: &'a Map<String, Value>,
    value: &'a Value,
    _at: Location,
) -> Result<Box<dyn for<'i> Keyword<'i, F>>, ValidationError<'a>> {
    let Some(pattern) = value.as_str() else {
        return Err(ValidationError::schema("`pattern` must be a string"));
    };
    BudgetedPattern::new(pattern)
        .map(|p| Box::new(p) as Box<dyn for<'i> Keyword<'i, F>>)
        .map_err(ValidationError::schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_patterns_stay_linear_and_look_arounds_backtrack() {
        assert!(!BudgetedPattern::new("^[a-z]+$").unwrap().backtracks());
        assert!(!BudgetedPattern::new(r"^\d{3}$").unwrap().backtracks());
        assert!(BudgetedPattern::new("(?=.*[A-Z])").unwrap().backtracks());
        assert!(BudgetedPattern::new(r"^(a)\1$").unwrap().backtracks());
        assert!(BudgetedPattern::new("(").is_err());
        // What the linear engine refuses for another reason is refused, not handed to the
        // backtracking engine (which read `a{2}{2}` as `(a{2}){2}` and capped long values).
        let e = BudgetedPattern::new("^a{2}{2}$").map(|_| ()).unwrap_err();
        assert!(e.contains("a quantifier follows another"), "{e}");
        let e = BudgetedPattern::new("^(?:a{1000}){1000}x{5}(b)$")
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("cannot be compiled"), "{e}");
        for stacked in ["a**", "a+*", "a{2}{3}", "a*??", "(ab)?+"] {
            assert!(stacked_quantifier(stacked), "{stacked}");
        }
        for fine in [
            r"a*?b+?c??",
            "(a{2}){2}",
            r"a\{2}{2}",
            "[+*]{2}",
            "x{a}{2}",
            "a{2,}?",
        ] {
            assert!(!stacked_quantifier(fine), "{fine}");
        }
        assert!(!needs_backtracking(r"\(?=x\)[(?!]"));
        assert!(needs_backtracking(r"(?<!a)b"));
        assert!(needs_backtracking(r"(?<n>a)\k<n>"));
        assert!(!needs_backtracking(r"(?<n>a)b"));
        start_request();
        let p = BudgetedPattern::new(r"^\d+$").unwrap();
        assert_eq!(p.matches("123"), Ok(true));
        assert_eq!(p.matches("12a"), Ok(false));
        // ECMA `\d` is ASCII only, as the schema crate reads it.
        assert_eq!(p.matches("١٢"), Ok(false));
        assert!(!unfinished());
    }

    #[test]
    fn backtracking_is_bounded_per_value_and_per_request() {
        start_request();
        let look = BudgetedPattern::new("(?=.*[A-Z])(?=.*[0-9])").unwrap();
        assert_eq!(look.matches("abcD1"), Ok(true));
        assert_eq!(look.matches("abcd"), Ok(false));
        assert!(!unfinished());
        let long = "a".repeat(MAX_BACKTRACKING_INPUT + 1);
        assert_eq!(look.matches(&long), Err(Unfinished::TooLong));
        assert!(unfinished());

        start_request();
        assert!(!unfinished());
        let bad = BudgetedPattern::new("^(?:a|(?=a)a)*$").unwrap();
        let s = format!("{}b", "a".repeat(30));
        let started = Instant::now();
        let mut results = Vec::new();
        for _ in 0..5000 {
            results.push(bad.matches(&s));
        }
        assert!(results.iter().all(|r| r.is_err()), "{:?}", &results[..3]);
        assert!(results.contains(&Err(Unfinished::Budget)));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(unfinished());
    }
}
