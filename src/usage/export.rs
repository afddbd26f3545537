//! `ringway usage`: reads the per-day counts back from Redis and prints them as CSV (RFC 4180
//! quoting, so hostile consumer names with commas, quotes or line breaks stay one field) or
//! JSON.

use super::cell::day_label;
use super::field::{self, Cell, DecodedWho};
use crate::redis::{Client, RedisError, RedisShared, Value};

/// Most days one export may span.
pub const MAX_DAYS: i64 = 3_660;

/// One exported total.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub date: String,
    pub cell: Cell,
    pub requests: u64,
}

/// `YYYY-MM-DD` → day number, refusing anything else (and impossible dates).
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let day = crate::civil::days_from_civil(i64::from(y), m, d);
    // Round-trip: refuses month 13, Feb 30 and the like.
    (day_label(day) == s).then_some(day)
}

/// Every row of days `from..=to`, sorted by date, consumer, route, class (for short ranges:
/// everything is in memory at once; `ringway usage` reads a day at a time).
pub async fn read(
    client: &Client,
    shared: &RedisShared,
    from: i64,
    to: i64,
) -> Result<Vec<Row>, RedisError> {
    let mut rows = Vec::new();
    for day in from..=to {
        rows.extend(read_day(client, shared, day).await?);
    }
    Ok(rows)
}

/// The rows of one day, sorted by consumer, route, class.
pub async fn read_day(
    client: &Client,
    shared: &RedisShared,
    day: i64,
) -> Result<Vec<Row>, RedisError> {
    let mut rows = Vec::new();
    let date = day_label(day);
    let key = shared.key("usage", &date, "counts");
    let v = client
        .cmd(Some(key.as_bytes()), &[b"HGETALL", key.as_bytes()])
        .await?;
    let items = v.into_array().unwrap_or_default();
    for pair in items.chunks(2) {
        let (Some(f), Some(n)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let (Some(cell), Some(requests)) = (f.as_bytes().and_then(field::decode), number(n)) else {
            continue;
        };
        rows.push(Row {
            date: date.clone(),
            cell,
            requests,
        });
    }
    rows.sort_by(|a, b| {
        (&a.cell.who, &a.cell.route, a.cell.class).cmp(&(&b.cell.who, &b.cell.route, b.cell.class))
    });
    Ok(rows)
}

/// A hash value: an integer as text.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(other.as_bytes()?).ok()?.parse().ok(),
    }
}

/// The consumer column: empty for anonymous requests, `(other)` past a worker's `max_keys`.
fn consumer_text(w: &DecodedWho) -> &str {
    match w {
        DecodedWho::Anonymous => "",
        DecodedWho::Other => "(other)",
        DecodedWho::Named(n) => n,
    }
}

/// One CSV field, quoted when it holds a comma, quote, CR or LF (quotes doubled).
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The CSV header line (CRLF line ends, as every row).
pub const CSV_HEADER: &str = "date,consumer,route,status_class,requests\r\n";

/// CSV with a header line: `date,consumer,route,status_class,requests` (CRLF line ends).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    csv_rows(rows, &mut out);
    out
}

/// Appends `rows` as CSV lines (no header).
pub fn csv_rows(rows: &[Row], out: &mut String) {
    for r in rows {
        out.push_str(&r.date);
        out.push(',');
        csv_field(out, consumer_text(&r.cell.who));
        out.push(',');
        csv_field(out, r.cell.route.as_deref().unwrap_or(""));
        out.push_str(&format!(",{}xx,{}\r\n", r.cell.class, r.requests));
    }
}

/// A JSON array of `{"date","consumer","route","status_class","requests"}` (consumer and route
/// `null` when absent; `(other)` as in CSV).
pub fn json(rows: &[Row]) -> String {
    let mut s = String::from("[");
    let mut first = true;
    json_objects(rows, &mut first, &mut s);
    s.push_str("]\n");
    s
}

/// Appends `rows` as members of a JSON array being written (`first`: none written yet; a
/// comma goes before every other one).
pub fn json_objects(rows: &[Row], first: &mut bool, out: &mut String) {
    for r in rows {
        let consumer = match &r.cell.who {
            DecodedWho::Anonymous => serde_json::Value::Null,
            w => consumer_text(w).into(),
        };
        let obj = serde_json::json!({
            "date": r.date,
            "consumer": consumer,
            "route": r.cell.route,
            "status_class": format!("{}xx", r.cell.class),
            "requests": r.requests,
        });
        if !std::mem::take(first) {
            out.push(',');
        }
        out.push_str(&obj.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(who: DecodedWho, route: Option<&str>, n: u64) -> Row {
        Row {
            date: "2026-12-04".into(),
            cell: Cell {
                class: 4,
                route: route.map(String::from),
                who,
            },
            requests: n,
        }
    }

    #[test]
    fn days_parse_strictly() {
        assert_eq!(parse_day("2026-12-04"), Some(20_791));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-1-01",
            "x026-12-04",
            "",
            "2026-12-04 ",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_quotes_hostile_names() {
        let rows = [
            row(DecodedWho::Named("a,b\"c\r\nd".into()), Some("r"), 3),
            row(DecodedWho::Anonymous, None, 1),
        ];
        let out = csv(&rows);
        assert_eq!(
            out,
            "date,consumer,route,status_class,requests\r\n\
             2026-12-04,\"a,b\"\"c\r\nd\",r,4xx,3\r\n\
             2026-12-04,,,4xx,1\r\n"
        );
    }

    #[test]
    fn json_escapes_and_nulls() {
        let out = json(&[row(DecodedWho::Anonymous, None, 2)]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v[0]["consumer"], serde_json::Value::Null);
        assert_eq!(v[0]["status_class"], "4xx");
        assert_eq!(v[0]["requests"], 2);
    }
}
