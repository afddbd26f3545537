//! Request head parser on arbitrary bytes, with the default limits the gateway ships with.
//! Invariants: no panic; names are tokens and values hold no control byte but HTAB; a complete
//! head consumed no more than the input and the header limit; every span lies inside the
//! head's own buffer; the consumed prefix alone parses to the same head length (the parser
//! never looks past the end of the head).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::{is_valid_field, parse_request_head, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_request_head(data, &limits) {
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len());
            assert!(consumed <= limits.max_header_bytes);
            assert!(head.buf.len() <= consumed);
            // Every accessor indexes the owned buffer: these must not panic.
            let _ = (
                head.method_bytes(),
                head.path(),
                head.query(),
                head.target(),
            );
            // The byte classes the gateway relies on httparse for (scan_headers no longer
            // re-checks them): names are tokens, values hold no control byte but HTAB.
            for (name, value) in head.headers() {
                assert!(is_valid_field(name, value), "{name:?}: {value:?}");
            }
            assert!(head.headers.len() <= limits.max_headers);
            assert!(head.target().len() <= limits.max_uri_bytes);
            let mut host = String::new();
            let _ = head.host_for_routing(&mut host);
            match parse_request_head(&data[..consumed], &limits) {
                Ok(Some((again, n))) => {
                    assert_eq!(n, consumed);
                    assert_eq!(again.buf, head.buf);
                    assert_eq!(again.body, head.body);
                }
                other => panic!("consumed prefix does not re-parse: {other:?}"),
            }
        }
        Ok(None) => assert!(data.len() <= limits.max_header_bytes),
        Err(e) => {
            let _ = e.status();
        }
    }
});
