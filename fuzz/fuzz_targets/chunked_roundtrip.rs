//! Encode-then-decode: arbitrary chunks framed with `write_chunk_header` + CRLF and closed
//! with `LAST_CHUNK` must decode back to the same bytes, whatever the read boundaries (given
//! as arbitrary piece lengths). A lone header of any size must announce exactly that many
//! data bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringway::http1::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};

#[derive(Arbitrary, Debug)]
struct Input {
    chunks: Vec<Vec<u8>>,
    pieces: Vec<u8>,
    header_len: usize,
    header_data: u16,
}

fuzz_target!(|input: Input| {
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for c in input.chunks.iter().filter(|c| !c.is_empty()) {
        write_chunk_header(&mut wire, c.len());
        wire.extend_from_slice(c);
        wire.extend_from_slice(b"\r\n");
        want.extend_from_slice(c);
    }
    wire.extend_from_slice(LAST_CHUNK);

    let mut dec = ChunkedDecoder::new();
    let mut got = Vec::new();
    let mut pos = 0;
    let mut sizes = input.pieces.iter().map(|&p| p as usize + 1).cycle();
    while pos < wire.len() && !dec.is_done() {
        let len = if input.pieces.is_empty() {
            wire.len() - pos
        } else {
            sizes.next().unwrap_or(1).min(wire.len() - pos)
        };
        let piece = &wire[pos..pos + len];
        let mut off = 0;
        while off < piece.len() && !dec.is_done() {
            let (n, r) = dec
                .decode(&piece[off..])
                .expect("valid chunked body rejected");
            assert!(n > 0);
            got.extend_from_slice(&piece[off + r.start..off + r.end]);
            off += n;
        }
        pos += off;
    }
    assert!(dec.is_done());
    assert_eq!(pos, wire.len());
    assert_eq!(got, want);

    // A single header of any size (16 hex digits fit every usize) announces exactly that size.
    let mut head = Vec::new();
    write_chunk_header(&mut head, input.header_len);
    let mut dec = ChunkedDecoder::new();
    let (n, r) = dec.decode(&head).expect("chunk header rejected");
    assert_eq!(n, head.len());
    assert!(r.is_empty());
    let data = vec![b'x'; input.header_data as usize];
    let mut seen = 0usize;
    let mut off = 0;
    while off < data.len() && !dec.is_done() {
        match dec.decode(&data[off..]) {
            Ok((n, r)) => {
                seen += r.len();
                off += n;
                if n == 0 {
                    break;
                }
            }
            // Past the announced size, 'x' is not the CRLF that must follow.
            Err(_) => break,
        }
    }
    assert_eq!(seen, input.header_len.min(data.len()));
});
