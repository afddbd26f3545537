//! Finished request spans and their OTLP/HTTP JSON encoding (`ExportTraceServiceRequest`).
//!
//! Written by hand (no serde on this path). Per the OTLP JSON mapping: ids are lowercase hex
//! strings (not base64), enums are integers, 64-bit integers are decimal strings. Every string
//! from the request goes through `json::escape_into`, so the output is always valid JSON.

use crate::http1::push_decimal;

use super::context::push_hex;
use crate::json::string_into;

/// OTLP `SPAN_KIND_SERVER`.
pub const SPAN_KIND_SERVER: u8 = 2;
/// OTLP `STATUS_CODE_UNSET`.
pub const STATUS_CODE_UNSET: u8 = 0;
/// OTLP `STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: u8 = 2;

/// One finished request span, as the worker hands it to the exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name, built by the caller (e.g. `"GET users"`: method + route name).
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// A known method (`GET` ... `PATCH`) or `_OTHER`; never client text beyond those.
    pub method: String,
    /// The method as the client sent it, when it is not a known one (bounded by the caller).
    pub method_original: Option<String>,
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    pub upstream: Option<String>,
    pub client: String,
    pub request_id: String,
}

/// Appends an `ExportTraceServiceRequest` JSON document holding `spans` under one resource
/// (`service.name` = `service_name`) and one scope (`ringway`, crate version) to `out`.
pub fn encode_otlp_json(spans: &[SpanRecord], service_name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    attr_str(out, "service.name", service_name);
    out.extend_from_slice(b"]},\"scopeSpans\":[{\"scope\":{\"name\":\"ringway\",\"version\":");
    string_into(out, env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"},\"spans\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_span(s, out);
    }
    out.extend_from_slice(b"]}]}]}");
}

fn encode_span(s: &SpanRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"traceId\":\"");
    push_hex(&s.trace_id, out);
    out.extend_from_slice(b"\",\"spanId\":\"");
    push_hex(&s.span_id, out);
    out.push(b'"');
    if let Some(p) = &s.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        push_hex(p, out);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"name\":");
    string_into(out, s.name.as_bytes());
    out.extend_from_slice(b",\"kind\":");
    push_decimal(out, u64::from(SPAN_KIND_SERVER));
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    push_decimal(out, s.start_unix_nanos);
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    push_decimal(out, s.end_unix_nanos);
    out.extend_from_slice(b"\",\"attributes\":[");
    attr_str(out, "http.request.method", &s.method);
    if let Some(m) = &s.method_original {
        out.push(b',');
        attr_str(out, "http.request.method_original", m);
    }
    out.push(b',');
    attr_str(out, "url.path", &s.path);
    if let Some(route) = &s.route {
        out.push(b',');
        attr_str(out, "http.route", route);
    }
    out.push(b',');
    attr_int(out, "http.response.status_code", u64::from(s.status));
    out.push(b',');
    attr_str(out, "client.address", &s.client);
    if let Some(up) = &s.upstream {
        out.push(b',');
        attr_str(out, "ringway.upstream", up);
    }
    out.push(b',');
    attr_str(out, "ringway.request_id", &s.request_id);
    out.extend_from_slice(b"],\"status\":{\"code\":");
    let code = if s.status >= 500 {
        STATUS_CODE_ERROR
    } else {
        STATUS_CODE_UNSET
    };
    push_decimal(out, u64::from(code));
    out.extend_from_slice(b"}}");
}

fn attr_str(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b"{\"key\":");
    string_into(out, key.as_bytes());
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    string_into(out, value.as_bytes());
    out.extend_from_slice(b"}}");
}

fn attr_int(out: &mut Vec<u8>, key: &str, value: u64) {
    out.extend_from_slice(b"{\"key\":");
    string_into(out, key.as_bytes());
    out.extend_from_slice(b",\"value\":{\"intValue\":\"");
    push_decimal(out, value);
    out.extend_from_slice(b"\"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn span(status: u16, parent: Option<[u8; 8]>) -> SpanRecord {
        SpanRecord {
            trace_id: [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36,
            ],
            span_id: [0, 0, 0, 0, 0, 0, 0, 0x2a],
            parent_span_id: parent,
            name: "GET users".into(),
            start_unix_nanos: 1_718_000_000_000_000_001,
            end_unix_nanos: u64::MAX,
            method: "GET".into(),
            method_original: None,
            path: "/users/\"7\"\n".into(),
            route: Some("users".into()),
            status,
            upstream: Some("10.0.0.1:8080".into()),
            client: "127.0.0.1:5555".into(),
            request_id: "req-1".into(),
        }
    }

    fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| &a["value"])
    }

    #[test]
    fn encodes_parseable_otlp_json() {
        let spans = [
            span(200, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])),
            span(503, None),
        ];
        let mut out = Vec::new();
        encode_otlp_json(&spans, "edge \"gw\"", &mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "edge \"gw\""
        );
        let ss = &rs["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "ringway");
        assert_eq!(ss["scope"]["version"], env!("CARGO_PKG_VERSION"));
        let list = ss["spans"].as_array().expect("spans array");
        assert_eq!(list.len(), 2);

        let a = &list[0];
        assert_eq!(a["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(a["spanId"], "000000000000002a");
        assert_eq!(a["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(a["name"], "GET users");
        assert_eq!(a["kind"], 2);
        assert_eq!(a["startTimeUnixNano"], "1718000000000000001");
        assert_eq!(a["endTimeUnixNano"], "18446744073709551615");
        assert_eq!(
            attr(a, "http.request.method").unwrap()["stringValue"],
            "GET"
        );
        assert_eq!(
            attr(a, "url.path").unwrap()["stringValue"],
            "/users/\"7\"\n"
        );
        assert_eq!(attr(a, "http.route").unwrap()["stringValue"], "users");
        assert_eq!(
            attr(a, "http.response.status_code").unwrap()["intValue"],
            "200"
        );
        assert_eq!(
            attr(a, "client.address").unwrap()["stringValue"],
            "127.0.0.1:5555"
        );
        assert_eq!(
            attr(a, "ringway.upstream").unwrap()["stringValue"],
            "10.0.0.1:8080"
        );
        assert_eq!(
            attr(a, "ringway.request_id").unwrap()["stringValue"],
            "req-1"
        );
        assert_eq!(a["status"]["code"], 0);

        let b = &list[1];
        assert!(b.get("parentSpanId").is_none());
        assert_eq!(b["status"]["code"], 2);
        assert_eq!(
            attr(b, "http.response.status_code").unwrap()["intValue"],
            "503"
        );
    }

    #[test]
    fn optional_attributes_are_omitted() {
        let mut s = span(404, None);
        s.route = None;
        s.upstream = None;
        let mut out = Vec::new();
        encode_otlp_json(&[s], "ringway", &mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let a = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(attr(a, "http.route").is_none());
        assert!(attr(a, "ringway.upstream").is_none());
        assert_eq!(a["status"]["code"], 0);
    }

    #[test]
    fn empty_batch_is_valid() {
        let mut out = Vec::new();
        encode_otlp_json(&[], "ringway", &mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .map(Vec::len),
            Some(0)
        );
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
