//! Dates and times, read and written: UTC calendar arithmetic (H. Hinnant's civil-from-days
//! algorithms), the wall clock as Unix seconds/nanoseconds, and every timestamp format the
//! gateway writes or reads: RFC 3339 with milliseconds (process and JSON access logs), nginx
//! `$time_local` (combined access logs), RFC 3339 in whole seconds (the keys file, which is
//! also parsed here). No date crate needed; exact for the proleptic Gregorian calendar.
//!
//! Invariants: writers append to a caller's buffer and never allocate beyond it growing (except
//! `format_rfc3339`, used off the request path); out-of-range times clamp to
//! 1970-01-01 .. 9999-12-31 so a stamp always keeps its shape; nothing panics on input.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if month <= 2 { y + 1 } else { y }, month, day)
}

/// (year, month, day) of the proleptic Gregorian calendar to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, now (0 if the clock is before the epoch).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Time since the Unix epoch, now, to the clock's resolution (zero before the epoch).
pub fn unix_now_precise() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Nanoseconds since the Unix epoch for `t` (0 before the epoch, saturating far after).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// 9999-12-31T23:59:59Z: the last second a four-digit year can show.
const MAX_SECS: i64 = 253_402_300_799;

/// A UTC calendar time broken into fields (no time zone handling: logs are always UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

/// Breaks `t` into UTC fields, clamped to 1970-01-01 .. 9999-12-31 so the output keeps its shape.
pub fn civil_time(t: SystemTime) -> CivilTime {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= MAX_SECS as u64 => (d.as_secs() as i64, d.subsec_millis()),
        Ok(_) => (MAX_SECS, 999),
        Err(_) => (0, 0),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    CivilTime {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: (rem / 60) % 60,
        second: rem % 60,
        millis,
    }
}

/// Appends `n % 100` as two digits (`07`).
pub fn push_2(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

fn push_year(out: &mut Vec<u8>, y: i64) {
    // civil_time clamps to 1970..=9999, so four digits always fit.
    let y = y.clamp(0, 9999) as u32;
    push_2(out, y / 100);
    push_2(out, y % 100);
}

/// Appends RFC 3339 UTC with milliseconds: `2026-11-27T23:31:53.123Z`.
pub fn push_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let c = civil_time(t);
    push_year(out, c.year);
    out.push(b'-');
    push_2(out, c.month);
    out.push(b'-');
    push_2(out, c.day);
    out.push(b'T');
    push_2(out, c.hour);
    out.push(b':');
    push_2(out, c.minute);
    out.push(b':');
    push_2(out, c.second);
    out.push(b'.');
    out.push(b'0' + (c.millis / 100 % 10) as u8);
    push_2(out, c.millis % 100);
    out.push(b'Z');
}

/// Appends nginx `$time_local` in UTC: `27/Nov/2026:23:31:53 +0000`.
pub fn push_time_local(out: &mut Vec<u8>, t: SystemTime) {
    let c = civil_time(t);
    push_2(out, c.day);
    out.push(b'/');
    let m = (c.month.clamp(1, 12) - 1) as usize;
    out.extend_from_slice(MONTHS[m]);
    out.push(b'/');
    push_year(out, c.year);
    out.push(b':');
    push_2(out, c.hour);
    out.push(b':');
    push_2(out, c.minute);
    out.push(b':');
    push_2(out, c.second);
    out.extend_from_slice(b" +0000");
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

const EXPECTED: &str = "expected an RFC 3339 timestamp like \"2025-01-31T12:00:00Z\"";

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |n, &b| {
        n.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// Parses an RFC 3339 timestamp into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let b = s.as_bytes();
    let bad = || format!("invalid timestamp {s:?}: {EXPECTED}");
    if b.len() < 20 || b.len() > 64 {
        return Err(bad());
    }
    let sep_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !sep_ok {
        return Err(bad());
    }
    let field = |r: std::ops::Range<usize>| num(&b[r]).ok_or_else(bad);
    let (y, mo, d) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (h, mi, sec) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(bad());
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = num(&[*oh1, *oh2]).ok_or_else(bad)?;
            let om = num(&[*om1, *om2]).ok_or_else(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(bad()),
    };
    let y = i64::from(y);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return Err(bad());
    }
    // A leap second (:60) is read as the last second of the minute.
    if sec > 60 {
        return Err(bad());
    }
    let secs =
        days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59)) - offset;
    u64::try_from(secs).map_err(|_| format!("invalid timestamp {s:?}: before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    fn rfc(t: SystemTime) -> String {
        let mut v = Vec::new();
        push_rfc3339(&mut v, t);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn civil_dates_against_known_epochs() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(951_782_400 / 86_400), (2000, 2, 29));
        assert_eq!(civil_from_days(951_782_400 / 86_400 + 1), (2000, 3, 1));
        assert_eq!(civil_from_days(1_709_164_800 / 86_400), (2024, 2, 29));
        // 2100 is not a leap year: the day after Feb 28 is Mar 1.
        assert_eq!(civil_from_days(4_107_542_400 / 86_400), (2100, 3, 1));
        assert_eq!(civil_from_days(4_107_542_400 / 86_400 - 1), (2100, 2, 28));
        assert_eq!(civil_from_days(1_795_737_600 / 86_400), (2026, 11, 27));

        assert_eq!(rfc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc(at(951_782_400 + 86_399, 999)),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(rfc(at(4_107_542_400, 5)), "2100-03-01T00:00:00.005Z");
        assert_eq!(
            rfc(at(1_795_737_600 + 23 * 3600 + 31 * 60 + 53, 123)),
            "2026-11-27T23:31:53.123Z"
        );
        // Out of range clamps instead of producing a malformed stamp.
        assert_eq!(
            rfc(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn civil_dates_are_contiguous() {
        // Walk 1970..2400 day by day and check each date follows the previous one.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut prev = civil_from_days(0);
        for d in 1..(430 * 366) {
            let (y, m, day) = civil_from_days(d);
            let (py, pm, pd) = prev;
            let month_len = match pm {
                2 if leap(py) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expect = if pd < month_len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, day), expect, "day {d}");
            prev = (y, m, day);
        }
    }

    #[test]
    fn time_local_is_nginx_style() {
        let mut v = Vec::new();
        push_time_local(&mut v, at(1_795_737_600 + 23 * 3600 + 31 * 60 + 53, 123));
        assert_eq!(v, b"27/Nov/2026:23:31:53 +0000");
    }

    #[test]
    fn clock_conversions() {
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
        assert_eq!(unix_nanos(at(1, 2)), 1_002_000_000);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(unix_now() > 1_700_000_000);
    }

    #[test]
    fn known_values() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Ok(951_868_800));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Ok(1_709_210_096));
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56.789Z"), Ok(1_709_210_096));
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56+02:00"),
            Ok(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T11:34:56-01:00"),
            Ok(1_709_210_096)
        );
        assert_eq!(format_rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn round_trip_over_many_days() {
        let mut t = 0u64;
        while t < 5_000_000_000 {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t), "{t}");
            t += 7_919_993;
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+0200",
            "2024-01-01",
            "1969-12-31T23:59:59Z",
            "2024-01-01T00:00:00.Z",
            "２０２４-01-01T00:00:00Z",
            "+024-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }
}
