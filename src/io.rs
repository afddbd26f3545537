//! Socket reads and writes with deadlines, over monoio's owned-buffer API.
//!
//! A timed-out operation loses its buffer (monoio keeps it until the kernel completes the
//! cancelled op), so every timeout here means "close this connection": callers never reuse a
//! stream after `IoFail::Timeout`.

use std::time::Instant;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

#[derive(Debug)]
pub enum IoFail {
    Timeout,
    /// Orderly EOF from the peer.
    Closed,
    Error(std::io::Error),
}

/// Smallest free space we ask the kernel to fill.
const MIN_READ: usize = 4096;

/// Appends at least one byte read from `s` to `buf` (growing it by up to `grow_to` capacity).
/// Returns the number of bytes read.
pub async fn read_more<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    grow_to: usize,
) -> Result<usize, IoFail> {
    if buf.capacity() - buf.len() < MIN_READ {
        let want = (buf.capacity() * 2).clamp(MIN_READ * 2, grow_to.max(MIN_READ * 2));
        buf.reserve(want.saturating_sub(buf.len()).max(MIN_READ));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let fut = s.read(owned.slice_mut(len..cap));
    match monoio::time::timeout_at(deadline.into(), fut).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => Err(IoFail::Closed),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFail::Error(e)),
            }
        }
    }
}

/// Writes `buf[range]` fully; gives the buffer back (empty on timeout).
pub async fn write_range<S: AsyncWriteRentExt>(
    s: &mut S,
    buf: &mut Vec<u8>,
    start: usize,
    end: usize,
    deadline: Instant,
) -> Result<(), IoFail> {
    if start >= end {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    let fut = s.write_all(owned.slice(start..end));
    match monoio::time::timeout_at(deadline.into(), fut).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ()).map_err(IoFail::Error)
        }
    }
}

/// Writes all of `buf`.
pub async fn write_all<S: AsyncWriteRentExt>(
    s: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), IoFail> {
    let end = buf.len();
    write_range(s, buf, 0, end, deadline).await
}

/// Keeps the compiler honest that `IoBuf` is used for slicing above.
#[allow(dead_code)]
fn _assert_iobuf<T: IoBuf>() {}
