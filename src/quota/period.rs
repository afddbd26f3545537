//! Calendar periods for quotas: which day or month a moment falls in, in a configured time
//! zone, and when that period ends. Pure math over `jiff` (bundled tz database), so every
//! instance with a correct clock agrees on the boundary, DST transitions included: a day in
//! Europe/Berlin is 23 or 25 hours long on the switch days, and the period still ends at the
//! next local midnight.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// How long a quota period lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// The period a moment falls in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The period's first local date: `2026-12-04` (day) or `2026-12` (month). Goes into the
    /// Redis key, so the count starts afresh exactly when the label changes.
    pub label: String,
    /// Unix seconds of the period's end (the next period's start) in the zone.
    pub reset_unix: i64,
    /// The end as RFC 3339 with the zone's offset (`2026-12-05T00:00:00+01:00`).
    pub reset_text: String,
}

/// The window holding unix second `now` in `tz`. `None` only for moments outside jiff's range
/// (year ±9999), which a real clock never reaches.
pub fn window(period: Period, tz: &TimeZone, now: i64) -> Option<Window> {
    let zdt = Timestamp::from_second(now)
        .ok()?
        .to_zoned_datetime(tz.clone());
    let date = zdt.date();
    let (start, end): (Date, Date) = match period {
        Period::Day => (date, date.tomorrow().ok()?),
        Period::Month => (date.first_of_month(), date.last_of_month().tomorrow().ok()?),
    };
    // Midnight may not exist (a DST gap at 00:00): the compatible rule takes the first moment
    // after the gap, which is when the new local day starts.
    let reset = end.to_zoned_datetime(tz.clone()).ok()?;
    let label = match period {
        Period::Day => start.strftime("%Y-%m-%d").to_string(),
        Period::Month => start.strftime("%Y-%m").to_string(),
    };
    Some(Window {
        label,
        reset_unix: reset.timestamp().as_second(),
        reset_text: reset.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    })
}

/// Looks a zone up by IANA name (`Europe/Berlin`, `UTC`) in the bundled database.
pub fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_second()
    }

    fn w(p: Period, zone_name: &str, now: &str) -> Window {
        window(p, &zone(zone_name).expect("zone"), at(now)).expect("window")
    }

    #[test]
    fn a_day_in_berlin_ends_at_local_midnight() {
        // 23:30 UTC on Dec 4 is already Dec 5 in Berlin (UTC+1).
        let x = w(Period::Day, "Europe/Berlin", "2026-12-04T23:30:00Z");
        assert_eq!(x.label, "2026-12-05");
        assert_eq!(x.reset_unix, at("2026-12-05T23:00:00Z"));
        assert_eq!(x.reset_text, "2026-12-06T00:00:00+01:00");
        let y = w(Period::Day, "Europe/Berlin", "2026-12-04T22:59:59Z");
        assert_eq!(y.label, "2026-12-04");
        assert_eq!(y.reset_unix, at("2026-12-04T23:00:00Z"));
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        // Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
        let spring = w(Period::Day, "Europe/Berlin", "2026-03-29T12:00:00Z");
        assert_eq!(spring.label, "2026-03-29");
        assert_eq!(spring.reset_unix - at("2026-03-28T23:00:00Z"), 23 * 3600);
        assert_eq!(spring.reset_text, "2026-03-30T00:00:00+02:00");
        let fall = w(Period::Day, "Europe/Berlin", "2026-10-25T12:00:00Z");
        assert_eq!(fall.reset_unix - at("2026-10-24T22:00:00Z"), 25 * 3600);
    }

    #[test]
    fn months_end_at_the_first_of_the_next_month() {
        let x = w(Period::Month, "UTC", "2026-12-31T23:59:59Z");
        assert_eq!(x.label, "2026-12");
        assert_eq!(x.reset_text, "2027-01-01T00:00:00+00:00");
        let feb = w(Period::Month, "America/New_York", "2028-02-29T12:00:00Z");
        assert_eq!(feb.label, "2028-02");
        assert_eq!(feb.reset_text, "2028-03-01T00:00:00-05:00");
        let tokyo = w(Period::Month, "Asia/Tokyo", "2026-11-30T15:00:00Z");
        assert_eq!(tokyo.label, "2026-12");
    }

    #[test]
    fn a_zone_whose_midnight_does_not_exist_resets_after_the_gap() {
        // America/Santiago moved clocks from 24:00 to 01:00 on 2026-09-06 (spring forward at
        // midnight): the new day starts at 01:00 local.
        let x = w(Period::Day, "America/Santiago", "2026-09-05T12:00:00Z");
        assert_eq!(x.label, "2026-09-05");
        assert!(
            x.reset_text.starts_with("2026-09-06T01:00:00"),
            "{}",
            x.reset_text
        );
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(zone("Mars/Olympus").is_none());
        assert!(zone("UTC").is_some());
    }
}
