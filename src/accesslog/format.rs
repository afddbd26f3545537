//! Line formatting for access logs: JSON lines and nginx "combined". Pure functions that append
//! to a caller-owned buffer; nothing allocates except the buffer growing. Every byte taken from
//! the request is escaped, so a JSON line is always valid JSON (invalid UTF-8 becomes U+FFFD)
//! and a combined line never contains a raw `"`, `\`, control or non-ASCII byte (nginx-style
//! `\xHH`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::record::LogRecord;
use crate::civil::{push_2, push_rfc3339, push_time_local};
use crate::http1::push_decimal;
use crate::json::string_into;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
/// Appends a duration in milliseconds with three decimals (microsecond resolution).
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_decimal(out, micros / 1000);
    out.push(b'.');
    let frac = (micros % 1000) as u32;
    out.push(b'0' + (frac / 100) as u8);
    push_2(out, frac % 100);
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(o));
            }
        }
        // IPv6 text form (zero compression) is fiddly; Display writes into the Vec without
        // allocating, and writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_socket_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => push_ip(out, IpAddr::V4(*v4.ip())),
        SocketAddr::V6(v6) => {
            out.push(b'[');
            push_ip(out, IpAddr::V6(*v6.ip()));
            out.push(b']');
        }
    }
    out.push(b':');
    push_decimal(out, u64::from(a.port()));
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string_into(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `s` the way nginx `escape=default` does: `"`, `\`, bytes below 0x20 and above 0x7e
/// become `\xHH`.
fn combined_escape(out: &mut Vec<u8>, s: &[u8]) {
    escape_bytes(out, s, false)
}

/// `combined_escape`, and with `space` a space becomes `\x20` too: for the fields the format
/// leaves unquoted (`$remote_user`), where a consumer named `a [01/Jan/2030:00:00:00 +0000]
/// x 200` would otherwise forge the fields a split on spaces reads after it.
fn escape_bytes(out: &mut Vec<u8>, s: &[u8], space: bool) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b) || (space && b == b' ') {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\x");
            out.push(HEX_UPPER[(b >> 4) as usize]);
            out.push(HEX_UPPER[(b & 0xf) as usize]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// `-` for a missing or empty value, as nginx does.
fn combined_opt(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) if !s.is_empty() => combined_escape(out, s),
        _ => out.push(b'-'),
    }
}

/// Appends one JSON line (ending in `\n`) describing `r`.
pub fn format_json(r: &LogRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    push_rfc3339(out, r.time);
    out.extend_from_slice(b"\",\"request_id\":");
    string_into(out, r.request_id.as_bytes());
    out.extend_from_slice(b",\"trace_id\":");
    json_opt_str(out, r.trace_id.map(str::as_bytes));
    out.extend_from_slice(b",\"client\":\"");
    push_ip(out, r.client);
    out.extend_from_slice(b"\",\"method\":");
    string_into(out, r.method);
    out.extend_from_slice(b",\"path\":");
    string_into(out, r.target);
    out.extend_from_slice(b",\"protocol\":");
    string_into(out, r.version.as_bytes());
    out.extend_from_slice(b",\"route\":");
    json_opt_str(out, r.route.map(str::as_bytes));
    out.extend_from_slice(b",\"status\":");
    push_decimal(out, u64::from(r.status));
    out.extend_from_slice(b",\"duration_ms\":");
    push_millis(out, r.duration);
    out.extend_from_slice(b",\"upstream\":");
    match r.upstream_addr {
        Some(a) => {
            out.push(b'"');
            push_socket_addr(out, a);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if let Some(name) = r.upstream_name {
        out.extend_from_slice(b",\"upstream_name\":");
        string_into(out, name.as_bytes());
    }
    out.extend_from_slice(b",\"upstream_ms\":");
    match r.upstream_duration {
        Some(d) => push_millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attempts\":");
    push_decimal(out, u64::from(r.attempts));
    out.extend_from_slice(b",\"bytes_in\":");
    push_decimal(out, r.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    push_decimal(out, r.bytes_out);
    out.extend_from_slice(b",\"user_agent\":");
    json_opt_str(out, r.user_agent);
    out.extend_from_slice(b",\"referer\":");
    json_opt_str(out, r.referer);
    out.extend_from_slice(b",\"consumer\":");
    json_opt_str(out, r.consumer.map(str::as_bytes));
    if let Some(side) = r.aborted {
        out.extend_from_slice(b",\"aborted\":\"");
        out.extend_from_slice(side.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// Appends one nginx "combined" line (ending in `\n`):
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`, with `$remote_user` = consumer, time in UTC and
/// `$body_bytes_sent` = `bytes_out`.
pub fn format_combined(r: &LogRecord, out: &mut Vec<u8>) {
    push_ip(out, r.client);
    out.extend_from_slice(b" - ");
    match r.consumer.map(str::as_bytes) {
        Some(c) if !c.is_empty() => escape_bytes(out, c, true),
        _ => out.push(b'-'),
    }
    out.extend_from_slice(b" [");
    push_time_local(out, r.time);
    out.extend_from_slice(b"] \"");
    combined_escape(out, r.method);
    out.push(b' ');
    combined_escape(out, r.target);
    out.push(b' ');
    combined_escape(out, r.version.as_bytes());
    out.extend_from_slice(b"\" ");
    push_decimal(out, u64::from(r.status));
    out.push(b' ');
    push_decimal(out, r.bytes_out);
    out.extend_from_slice(b" \"");
    combined_opt(out, r.referer);
    out.extend_from_slice(b"\" \"");
    combined_opt(out, r.user_agent);
    out.extend_from_slice(b"\"\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
    }

    fn record<'a>(target: &'a [u8]) -> LogRecord<'a> {
        LogRecord {
            time: at(1_795_737_600 + 23 * 3600 + 31 * 60 + 53, 123),
            request_id: "rid-1",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            client: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            method: b"GET",
            target,
            version: "HTTP/1.1",
            route: Some("users"),
            status: 200,
            duration: Duration::from_micros(12_345),
            upstream_addr: Some(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 8080))),
            upstream_name: Some("users-v2"),
            upstream_duration: Some(Duration::from_micros(10_007)),
            attempts: 1,
            bytes_in: 321,
            bytes_out: 4567,
            user_agent: Some(b"curl/8.5.0"),
            referer: None,
            consumer: Some("acme"),
            aborted: None,
        }
    }

    #[test]
    fn json_line_has_exact_fields_and_survives_nasty_bytes() {
        let nasty: &[u8] = b"/a\"b\\c?q=\x01\x1f\x7f\n\t\xff\xfe\xc3(\xe2\x82\xac";
        let mut r = record(nasty);
        r.client = IpAddr::V6(Ipv6Addr::LOCALHOST);
        r.user_agent = Some(b"ua\"\x00\xc0");
        let mut out = Vec::new();
        format_json(&r, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 19, "18 fields plus upstream_name");
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["time"], "2026-11-27T23:31:53.123Z");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["client"], "::1");
        assert_eq!(v["method"], "GET");
        assert_eq!(
            v["path"],
            "/a\"b\\c?q=\u{1}\u{1f}\u{7f}\n\t\u{fffd}\u{fffd}\u{fffd}(\u{20ac}"
        );
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["route"], "users");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"].as_f64(), Some(12.345));
        assert_eq!(v["upstream"], "10.0.0.2:8080");
        assert_eq!(v["upstream_ms"].as_f64(), Some(10.007));
        assert_eq!(v["upstream_name"], "users-v2");
        assert_eq!(v["bytes_in"], 321);
        assert_eq!(v["bytes_out"], 4567);
        assert_eq!(v["user_agent"], "ua\"\u{0}\u{fffd}");
        assert!(v["referer"].is_null());
        assert_eq!(v["consumer"], "acme");
        // Controls are written as \u00XX, never raw.
        assert!(!out[..out.len() - 1].iter().any(|&b| b < 0x20));
        assert!(out.windows(6).any(|w| w == b"\\u007f"));
    }

    #[test]
    fn json_line_nulls_and_exact_text() {
        let mut r = record(b"/");
        r.trace_id = None;
        r.route = None;
        r.upstream_addr = Some("[2001:db8::1]:443".parse().expect("addr"));
        r.upstream_duration = None;
        r.upstream_name = None;
        r.user_agent = None;
        r.consumer = None;
        r.duration = Duration::from_nanos(999);
        let mut out = Vec::new();
        format_json(&r, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf8"),
            "{\"time\":\"2026-11-27T23:31:53.123Z\",\"request_id\":\"rid-1\",\"trace_id\":null,\
             \"client\":\"203.0.113.7\",\"method\":\"GET\",\"path\":\"/\",\"protocol\":\"HTTP/1.1\",\
             \"route\":null,\"status\":200,\"duration_ms\":0.000,\"upstream\":\"[2001:db8::1]:443\",\
             \"upstream_ms\":null,\"attempts\":1,\"bytes_in\":321,\"bytes_out\":4567,\"user_agent\":null,\
             \"referer\":null,\"consumer\":null}\n"
        );
        serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON");
    }

    #[test]
    fn combined_line_exact() {
        let mut r = record(b"/search?q=a b");
        r.referer = Some(b"https://example.com/");
        let mut out = Vec::new();
        format_combined(&r, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf8"),
            "203.0.113.7 - acme [27/Nov/2026:23:31:53 +0000] \"GET /search?q=a b HTTP/1.1\" \
             200 4567 \"https://example.com/\" \"curl/8.5.0\"\n"
        );

        let mut r = record(b"/x\"y\\z\x01\xff");
        r.consumer = None;
        r.user_agent = None;
        r.time = at(951_782_400, 0);
        r.status = 404;
        r.bytes_out = 0;
        out.clear();
        format_combined(&r, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf8"),
            "203.0.113.7 - - [29/Feb/2000:00:00:00 +0000] \"GET /x\\x22y\\x5Cz\\x01\\xFF HTTP/1.1\" \
             404 0 \"-\" \"-\"\n"
        );
    }
}
