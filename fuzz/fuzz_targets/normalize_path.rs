//! Path normalizer on arbitrary bytes after a leading '/' (the parser only hands it paths of
//! origin-form targets). Invariants: the output starts with '/', has no "." or ".." segment,
//! and normalizing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http1::normalize_path;

fn has_dot_segment(p: &[u8]) -> bool {
    p.split(|&b| b == b'/')
        .skip(1)
        .any(|s| s == b"." || s == b"..")
}

fuzz_target!(|data: &[u8]| {
    let mut path = Vec::with_capacity(data.len() + 1);
    path.push(b'/');
    path.extend_from_slice(data);
    let Some(once) = normalize_path(&path) else {
        return;
    };
    assert!(
        once.starts_with(b"/"),
        "{:?}",
        String::from_utf8_lossy(&once)
    );
    assert!(
        !has_dot_segment(&once),
        "{:?}",
        String::from_utf8_lossy(&once)
    );
    let twice = normalize_path(&once).expect("normalized path rejected on second pass");
    assert_eq!(&*twice, &*once, "normalizing is not idempotent");
});
