//! RESP2 replies from a Redis server (hostile: a compromised server or a tampered network path)
//! to `redis::decode_reply`, fed whole and as growing prefixes through one `Scan` (as a
//! connection reads them). Invariants: no panic or stack overflow; both feedings agree (the
//! same reply and length, or both an error, or both incomplete); a reply takes at most the
//! bytes given; every decoded value nests at most `MAX_DEPTH` arrays with elements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::redis::{decode_reply, Scan, Value, MAX_DEPTH};

/// How many arrays with elements nest in `v` (an empty array is a leaf, as `*0` is to `Scan`:
/// nothing below it to decode).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) if !items.is_empty() => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = decode_reply(&mut Scan::default(), data);
    let mut scan = Scan::default();
    let mut fed = Ok(None);
    // Prefixes in steps that keep the target fast on long inputs, then the whole.
    let step = (data.len() / 64).max(1);
    let mut ends: Vec<usize> = (1..data.len()).step_by(step).collect();
    ends.push(data.len());
    for end in ends {
        fed = decode_reply(&mut scan, &data[..end]);
        if !matches!(fed, Ok(None)) {
            break;
        }
    }
    match (&whole, &fed) {
        (Ok(Some((a, n))), Ok(Some((b, m)))) => {
            assert_eq!((a, n), (b, m));
            assert!(*n <= data.len());
            if let Ok(v) = a {
                assert!(depth(v) <= MAX_DEPTH);
            }
        }
        (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
        other => panic!("whole and fed disagree: {other:?}"),
    }
});
