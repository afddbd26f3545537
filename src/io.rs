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
    match crate::deadline::within(deadline, read_some(s, buf, grow_to)).await {
        Err(_) => Err(IoFail::Timeout),
        Ok(res) => res,
    }
}

/// `read_more` without a deadline, for callers that bound the wait themselves (and drop the
/// connection if they give up: a dropped read loses `buf`).
pub async fn read_some<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut Vec<u8>,
    grow_to: usize,
) -> Result<usize, IoFail> {
    if buf.capacity() - buf.len() < MIN_READ {
        let want = (buf.capacity() * 2).clamp(MIN_READ * 2, grow_to.max(MIN_READ * 2));
        buf.reserve(want.saturating_sub(buf.len()).max(MIN_READ));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let (res, slice) = s.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    match res {
        Ok(0) => Err(IoFail::Closed),
        Ok(n) => Ok(n),
        Err(e) => Err(IoFail::Error(e)),
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
    match crate::deadline::within(deadline, fut).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ()).map_err(IoFail::Error)
        }
    }
}

/// Writes all of `buf` without a deadline, for callers that bound the wait themselves (a
/// dropped write loses `buf`: it comes back empty).
pub async fn write_untimed<S: AsyncWriteRentExt>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), IoFail> {
    let owned = std::mem::take(buf);
    let (res, owned) = s.write_all(owned).await;
    *buf = owned;
    res.map(|_| ()).map_err(IoFail::Error)
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

/// Outcome of waiting on an idle keep-alive connection.
pub enum IdleWake {
    /// Bytes were read into the buffer.
    Data,
    /// Nothing arrived within the grace period; the read was cancelled and the buffer released.
    /// The caller parks the connection in a buffer-less readiness wait.
    Quiet,
}

/// Waits briefly for the next request on an idle connection.
///
/// For up to `grace` a read with `buf` is posted (the fast path for busy keep-alive clients:
/// one operation per request). If nothing arrived by then, the read is cancelled through
/// `canceller` (no bytes are lost: a read that completed anyway is returned) and `buf` is
/// released, so a quiet connection holds no read buffer.
pub async fn idle_wait(
    s: &mut monoio::net::TcpStream,
    buf: &mut Vec<u8>,
    canceller: &mut monoio::io::Canceller,
    grace: std::time::Duration,
    deadline: Instant,
) -> Result<IdleWake, IoFail> {
    let now = crate::deadline_clock::now();
    if now >= deadline {
        return Err(IoFail::Timeout);
    }
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(MIN_READ);
    }
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let grace_end = (now + grace).min(deadline);
    let (res, slice) =
        read_until_cancelled(s, owned.slice_mut(len..cap), canceller, grace_end).await;
    *buf = slice.into_inner();
    match res {
        Ok(0) => Err(IoFail::Closed),
        Ok(_) => Ok(IdleWake::Data),
        // Cancelled before anything arrived (monoio reports ECANCELED, as the kernel does).
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
            if Instant::now() >= deadline {
                return Err(IoFail::Timeout);
            }
            *buf = Vec::new();
            Ok(IdleWake::Quiet)
        }
        Err(e) => Err(IoFail::Error(e)),
    }
}

/// A read posted until about `until` (up to one worker tick later), then cancelled through
/// `canceller`. A read that completed anyway is returned with its bytes; one cancelled in time
/// fails with ECANCELED and nothing was consumed, so the stream stays usable (unlike a dropped
/// read).
pub async fn read_until_cancelled<T: IoBufMut>(
    s: &mut monoio::net::TcpStream,
    buf: T,
    canceller: &mut monoio::io::Canceller,
    until: Instant,
) -> monoio::BufResult<usize, T> {
    use monoio::io::CancelableAsyncReadRent;
    let read = s.cancelable_read(buf, canceller.handle());
    let mut read = std::pin::pin!(read);
    let early = monoio::select! {
        r = &mut read => Some(r),
        // The end of an idle grace needs no precision: the tick ends it, with no timer.
        _ = crate::deadline::coarse(until) => None,
    };
    match early {
        Some(r) => r,
        None => {
            *canceller = std::mem::take(canceller).cancel();
            read.await
        }
    }
}

/// What an idle socket holds, from one non-blocking `recv(MSG_PEEK)` of a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peeked {
    /// EOF or a socket error (reset): the peer is gone.
    Gone,
    /// Bytes are waiting to be read.
    Data,
    /// Nothing to read, and still open.
    Empty,
}

/// Looks at `fd` without consuming anything: one non-blocking `recv(MSG_PEEK)`. Only for
/// sockets with no read in flight, so it never races the runtime.
pub fn peek(fd: std::os::fd::RawFd) -> Peeked {
    let mut b = [0u8; 1];
    // SAFETY: recv into a 1-byte stack buffer on a live socket fd the caller owns; MSG_PEEK
    // leaves any data queued and MSG_DONTWAIT keeps the call non-blocking.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Gone,
        1.. => Peeked::Data,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peeked::Empty,
            _ => Peeked::Gone,
        },
    }
}

/// Makes closing `fd` abortive: the kernel sends a reset and drops unsent data instead of
/// keeping it queued (and the socket alive) for a peer that may never read it. For connections
/// closed as abusive (refused at accept, too slow to read).
pub fn reset_on_close(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by the caller; setsockopt only reads `linger`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Sends as much of `buf` as the socket takes now, without waiting: the bytes sent, or
/// `WouldBlock` when it takes none. Never raises SIGPIPE (a peer that has gone is an error).
/// Only for sockets with no write in flight, so it never races the runtime.
pub fn send_now(fd: std::os::fd::RawFd, buf: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `fd` is an open socket the caller owns; `buf` is valid for reads of
        // `buf.len()` bytes for the duration of the call, which does not keep the pointer.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Appends at most `max` bytes the socket holds now to `dst`, without waiting: the bytes
/// read (`0` at EOF), or `WouldBlock` when none are there. Only for sockets with no read in
/// flight, so it never races the runtime.
pub fn recv_now(fd: std::os::fd::RawFd, dst: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    dst.reserve(max);
    loop {
        let spare = dst.spare_capacity_mut();
        // SAFETY: recv writes at most `max` (<= the spare capacity) bytes into the vector's
        // spare capacity, on an open socket the caller owns.
        let n = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                max.min(spare.len()),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            // SAFETY: recv initialized `n` bytes past the current length.
            unsafe { dst.set_len(dst.len() + n as usize) };
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
