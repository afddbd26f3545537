//! Upstream response head parser on arbitrary bytes. The first byte picks the request method
//! (HEAD changes body framing) and the rest is the response. Invariants as for requests: no
//! panic, token names and control-free values, consumed within bounds, spans inside the owned
//! buffer, the consumed prefix re-parses to the same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{is_valid_field, parse_response_head, BodyFraming, Method};

const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let method = Method::ALL[sel as usize % Method::ALL.len()];
    match parse_response_head(data, MAX_HEADER_BYTES, MAX_HEADERS, method) {
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len());
            assert!(consumed <= MAX_HEADER_BYTES);
            assert!(head.buf.len() <= consumed);
            assert!(head.headers.len() <= MAX_HEADERS);
            assert!((100..=599).contains(&head.status));
            let _ = head.reason.get(&head.buf);
            // The byte classes the gateway relies on httparse for (scan_headers no longer
            // re-checks them): names are tokens, values hold no control byte but HTAB.
            for (name, value) in head.headers() {
                assert!(is_valid_field(name, value), "{name:?}: {value:?}");
            }
            if method == Method::Head || matches!(head.status, 100..=199 | 204 | 304) {
                assert_eq!(head.body, BodyFraming::None);
            }
            if head.body == BodyFraming::CloseDelimited {
                assert!(head.close);
            }
            match parse_response_head(&data[..consumed], MAX_HEADER_BYTES, MAX_HEADERS, method) {
                Ok(Some((again, n))) => {
                    assert_eq!(n, consumed);
                    assert_eq!(again.buf, head.buf);
                    assert_eq!(again.status, head.status);
                    assert_eq!(again.body, head.body);
                }
                other => panic!("consumed prefix does not re-parse: {other:?}"),
            }
        }
        Ok(None) => assert!(data.len() <= MAX_HEADER_BYTES),
        Err(e) => {
            let _ = e.status();
        }
    }
});
