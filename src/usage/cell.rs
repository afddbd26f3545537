//! One counted cell: (UTC day, status class, route, who), and the day arithmetic.

use std::sync::Arc;

/// Who made the request, as counted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// No authenticated consumer.
    Anonymous,
    Named(Arc<str>),
    /// A consumer counted after the worker's map was full (see the module header).
    Other,
}

/// One counted cell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageKey {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// 1..=5 for 1xx..5xx.
    pub class: u8,
    /// The route's name; `None` for requests no route matched.
    pub route: Option<Arc<str>>,
    pub who: Who,
}

/// One worker's counts since its last hand-off.
pub type Counts = ahash::AHashMap<UsageKey, u64>;

/// The status class digit of `status` (1..=5; anything else counts as 5xx).
pub fn status_class(status: u16) -> u8 {
    match status / 100 {
        c @ 1..=5 => c as u8,
        _ => 5,
    }
}

/// `YYYY-MM-DD` of day number `day` (days since 1970-01-01).
pub fn day_label(day: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's day number (UTC).
pub fn today() -> i64 {
    (crate::civil::unix_now() / 86_400) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(status_class(200), 2);
        assert_eq!(status_class(499), 4);
        assert_eq!(status_class(101), 1);
        assert_eq!(status_class(0), 5);
        assert_eq!(status_class(999), 5);
    }

    #[test]
    fn day_labels() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(20_791), "2026-12-04");
    }
}
