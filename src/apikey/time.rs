//! RFC 3339 timestamps for the keys file, as whole Unix seconds (no date crate needed).
//!
//! Written as `YYYY-MM-DDTHH:MM:SSZ` (UTC). Read: the same, with optional fractional seconds
//! (truncated) and any `±HH:MM` offset (converted to UTC). Years before 1970 are rejected.

pub use crate::civil::unix_now as now_unix;

use crate::civil::{civil_from_days, days_from_civil};

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
