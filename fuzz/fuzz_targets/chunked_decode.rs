//! Chunked decoder on arbitrary bytes, fed whole and fed in two pieces (the first input byte
//! picks the split). Invariants: no panic; data ranges lie inside the consumed part of the
//! piece; the decoder consumes every byte it is given until it is done or failed; feeding in
//! pieces yields the same body, the same outcome and (unless it failed) the same consumed total
//! as one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::ChunkedDecoder;

#[derive(Debug, PartialEq)]
struct Outcome {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    failed: bool,
}

fn run(pieces: &[&[u8]]) -> Outcome {
    let mut dec = ChunkedDecoder::new();
    let mut out = Outcome {
        body: Vec::new(),
        consumed: 0,
        done: false,
        failed: false,
    };
    'pieces: for piece in pieces {
        let mut pos = 0;
        while pos < piece.len() {
            match dec.decode(&piece[pos..]) {
                Ok((n, range)) => {
                    assert!(range.start <= range.end && range.end <= n);
                    assert!(n <= piece.len() - pos);
                    out.body
                        .extend_from_slice(&piece[pos + range.start..pos + range.end]);
                    pos += n;
                    out.consumed += n;
                    if dec.is_done() {
                        break 'pieces;
                    }
                    // Not done: a non-empty input is always consumed at least in part.
                    assert!(n > 0, "decoder stalled on non-empty input");
                }
                Err(_) => {
                    // How much was consumed before the error depends on the pieces (the
                    // failing call reports none); only the failure and the body forwarded
                    // before it are compared.
                    out.failed = true;
                    out.consumed = 0;
                    // A failed decoder stays failed.
                    assert!(dec.decode(b"0\r\n\r\n").is_err());
                    break 'pieces;
                }
            }
        }
    }
    out.done = dec.is_done();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let whole = run(&[data]);
    let cut = if data.is_empty() {
        0
    } else {
        sel as usize % (data.len() + 1)
    };
    let (a, b) = data.split_at(cut);
    let split = run(&[a, b]);
    assert_eq!(whole, split);
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(whole, run(&bytewise));
    assert!(!(whole.done && whole.failed));
    assert!(whole.failed || whole.body.len() <= whole.consumed);
});
