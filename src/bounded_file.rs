//! Reading the files a config names (the config itself, keys files and snapshots, certificates,
//! OpenAPI documents, JWT keys, WASM modules, the hosts file): regular files only, and never
//! more bytes than the caller's bound, whatever size the file claims.
//!
//! A FIFO, a device (`/dev/zero`) or a directory named by mistake must not hang `ringway
//! check` or a reload (a reload holds the control thread, and SIGTERM waits for it), nor fill
//! memory. The file is opened non-blocking (opening a FIFO for reading would otherwise wait for
//! a writer), checked to be a regular file on the open descriptor (no window between a check
//! and the open), then read through a bound of `max + 1` bytes.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The bytes of the regular file at `path`, at most `max` of them; a longer file, or anything
/// that is not a regular file, is an error whose text says so.
pub fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `read`, as UTF-8 text.
pub fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read(path, max)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Bound for a config file, the keys file and its snapshots.
pub const MAX_CONFIG_BYTES: u64 = 256 << 20;
/// Bound for a small referenced file: a PEM key or certificate, a JWK Set, a hosts file.
pub const MAX_SMALL_BYTES: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_only_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read(&f, 5).unwrap(), b"hello");
        let e = read(&f, 4).unwrap_err();
        assert!(e.to_string().contains("larger than 4 bytes"), "{e}");
        assert!(read(dir.path(), 100).is_err(), "a directory");
        // A FIFO with no writer: opening it would block; it is refused at once.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // A device claims no size and never ends.
        let e = read(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, [0xff, 0xfe]).unwrap();
        assert!(read_to_string(&bad, 10).is_err());
    }
}
