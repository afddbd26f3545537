//! A receive buffer for owned-buffer (io_uring) reads: unconsumed bytes stay contiguous at
//! the front so heads and chunk-size lines can be parsed in place, and the buffer grows only
//! when a single head does not fit (up to `MAX_CAPACITY`). Bodies stream through it.

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

/// Starting capacity: one read of a typical response (and what wrk uses).
const INITIAL_CAPACITY: usize = 8 * 1024;
/// Largest head (or chunk-size line) accepted.
pub const MAX_CAPACITY: usize = 64 * 1024;

/// See the module header.
pub struct RecvBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBuf {
    /// An empty buffer of the initial capacity.
    pub fn new() -> Self {
        RecvBuf {
            buf: Vec::with_capacity(INITIAL_CAPACITY),
            pos: 0,
        }
    }

    /// Bytes received and not yet consumed.
    pub fn data(&self) -> &[u8] {
        // `pos <= buf.len()` always holds: `consume` clamps.
        &self.buf[self.pos..]
    }

    /// Marks `n` bytes (at most `data().len()`) as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Drops everything buffered (the connection was replaced).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        if self.buf.capacity() == 0 {
            self.buf.reserve(INITIAL_CAPACITY);
        }
    }

    /// Reads once from `stream`, appending after the unconsumed bytes. Returns the number of
    /// bytes read (0 at end of stream). Fails with `InvalidData` when the unconsumed bytes
    /// already fill `MAX_CAPACITY`, i.e. a head is too large.
    pub async fn fill(&mut self, stream: &mut TcpStream) -> std::io::Result<usize> {
        self.make_room()?;
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        res
    }

    /// Like `fill`, from a synchronous source (decrypted TLS plaintext): `read` gets the
    /// spare space (zeroed) and returns how much it wrote.
    pub fn fill_with(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        self.make_room()?;
        let len = self.buf.len();
        self.buf.resize(self.buf.capacity(), 0);
        let res = read(&mut self.buf[len..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n.min(self.buf.len() - len));
        res
    }

    fn make_room(&mut self) -> std::io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        let cap = self.buf.capacity();
        let spare = cap - self.buf.len();
        if spare < cap / 4 || spare == 0 {
            if cap >= MAX_CAPACITY {
                if spare == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "head larger than 64 KiB",
                    ));
                }
            } else {
                let target = (cap * 2).clamp(INITIAL_CAPACITY, MAX_CAPACITY);
                self.buf.reserve_exact(target - self.buf.len());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_and_compact() {
        let mut b = RecvBuf::new();
        b.buf.extend_from_slice(b"hello world");
        b.consume(6);
        assert_eq!(b.data(), b"world");
        b.make_room().unwrap();
        assert_eq!(b.data(), b"world");
        assert_eq!(b.pos, 0);
        b.consume(100);
        assert!(b.data().is_empty());
    }

    #[test]
    fn grows_to_the_limit_then_refuses() {
        let mut b = RecvBuf::new();
        loop {
            b.make_room().unwrap();
            let spare = b.buf.capacity() - b.buf.len();
            if b.buf.capacity() >= MAX_CAPACITY {
                b.buf.resize(b.buf.len() + spare, b'x');
                break;
            }
            b.buf.resize(b.buf.len() + spare, b'x');
        }
        assert!(b.make_room().is_err());
    }
}
