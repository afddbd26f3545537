//! Reading the files a config names (the config itself, keys files and snapshots, certificates,
//! OpenAPI documents, JWT keys, WASM modules, the hosts file): regular files only, and never
//! more bytes than the caller's bound, whatever size the file claims.
//!
//! A FIFO, a device (`/dev/zero`) or a directory named by mistake must not hang `ringway
//! check` or a reload (a reload holds the control thread, and SIGTERM waits for it), nor fill
//! memory. The file is opened non-blocking (opening a FIFO for reading would otherwise wait for
//! a writer), checked to be a regular file on the open descriptor (no window between a check
//! and the open), then read through a bound of `max + 1` bytes.
//!
//! A config load runs inside [`capture`], which keeps every file the load read ([`FileSet`]).
//! Re-compiling the serving generation (a host name's addresses changed) replays that set
//! instead of the disk, so a file edited since the last reload does not go live without one.
//! Files that are state rather than configuration (the API-key snapshot synced from Redis, the
//! hosts file, resolv.conf) are read with [`read_fresh`]: never kept, never replayed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files one config load read, by the path it named them with.
#[derive(Clone, Debug, Default)]
pub struct FileSet {
    files: HashMap<PathBuf, Arc<[u8]>>,
}

impl FileSet {
    /// How many files the load read.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The capture in progress on this thread: the set to replay, and what was read.
struct Capture {
    replay: Option<Arc<FileSet>>,
    read: FileSet,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Runs `load` with every [`read`] on this thread kept, and served from `replay` where it holds
/// the path; returns what `load` returned and the files it read. Not nested: an inner capture
/// would take the outer one's place until it ends.
pub fn capture<R>(replay: Option<Arc<FileSet>>, load: impl FnOnce() -> R) -> (R, FileSet) {
    let outer = CAPTURE.with(|c| {
        c.borrow_mut().replace(Capture {
            replay,
            read: FileSet::default(),
        })
    });
    let r = load();
    let done = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, done.map(|c| c.read).unwrap_or_default())
}

/// The bytes of the regular file at `path`, at most `max` of them; a longer file, or anything
/// that is not a regular file, is an error whose text says so. Inside [`capture`], the bytes
/// come from the replayed set when it holds `path`, and are kept either way.
pub fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let replayed = CAPTURE.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|c| c.replay.as_ref()?.files.get(path).cloned())
    });
    let bytes: Arc<[u8]> = match replayed {
        Some(b) if b.len() as u64 > max => return Err(too_large(max)),
        Some(b) => b,
        None => Arc::from(read_fresh(path, max)?),
    };
    CAPTURE.with(|c| {
        if let Some(c) = c.borrow_mut().as_mut() {
            c.read.files.insert(path.to_path_buf(), bytes.clone());
        }
    });
    Ok(bytes.to_vec())
}

fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {max} bytes"),
    )
}

/// `read` from the disk, always: for files that are state, not configuration.
pub fn read_fresh(path: &Path, max: u64) -> io::Result<Vec<u8>> {
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
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

/// `read`, as UTF-8 text.
pub fn read_to_string(path: &Path, max: u64) -> io::Result<String> {
    utf8(read(path, max)?)
}

/// `read_fresh`, as UTF-8 text.
pub fn read_fresh_to_string(path: &Path, max: u64) -> io::Result<String> {
    utf8(read_fresh(path, max)?)
}

fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Bound for a config file. Parsing TOML takes many times the text's size in memory (up to
/// ~80× for a file of empty arrays), so the bound is what a real config never nears (10 000
/// routes are ~2 MiB), not what memory could hold once.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Bound for the keys file, its snapshots and `keys import` sources (~300 000 keys).
pub const MAX_KEYS_FILE_BYTES: u64 = 64 << 20;
/// Bound for a WASM module.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;
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

    #[test]
    fn a_capture_keeps_what_it_read_and_a_replay_serves_it() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, fresh, new) = (
            dir.path().join("kept"),
            dir.path().join("fresh"),
            dir.path().join("new"),
        );
        std::fs::write(&kept, b"one").unwrap();
        std::fs::write(&fresh, b"state 1").unwrap();
        let (r, set) = capture(None, || {
            (read(&kept, 10).unwrap(), read_fresh(&fresh, 10).unwrap())
        });
        assert_eq!(r, (b"one".to_vec(), b"state 1".to_vec()));
        assert_eq!(set.len(), 1, "state read fresh is not kept");
        let set = Arc::new(set);

        std::fs::write(&kept, b"two").unwrap();
        std::fs::write(&fresh, b"state 2").unwrap();
        std::fs::write(&new, b"n").unwrap();
        let (r, again) = capture(Some(set.clone()), || {
            (
                read(&kept, 10).unwrap(),
                read_fresh(&fresh, 10).unwrap(),
                read(&new, 10).unwrap(),
                // The caller's bound holds for replayed bytes too.
                read(&kept, 2).is_err(),
            )
        });
        assert_eq!(
            r,
            (b"one".to_vec(), b"state 2".to_vec(), b"n".to_vec(), true)
        );
        assert_eq!(
            again.len(),
            2,
            "the replayed file and the one read from disk"
        );
        // Outside a capture every read is the disk's.
        assert_eq!(read(&kept, 10).unwrap(), b"two");
    }
}
