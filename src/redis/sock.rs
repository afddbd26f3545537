//! The one safe way to reach a Redis connection's socket from outside its tasks (a caller's
//! direct send, a shutdown): through an owned duplicate of its descriptor, never a bare number
//! the process may have reused since.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// An owned duplicate of a connection's descriptor `fd` (which the caller's stream holds open).
pub(super) fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: `fd` belongs to a stream the caller holds for the duration of this call.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Shuts a connection down in both directions, waking whichever task still reads or writes it.
pub(super) fn shutdown(sock: &OwnedFd) {
    // SAFETY: `sock` is an open descriptor owned by the caller; shutdown does not free it.
    unsafe {
        libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR);
    }
}

/// Sends as much of `buf` as the socket takes now, without waiting (`io::send_now`).
pub(super) fn send_now(sock: &OwnedFd, buf: &[u8]) -> std::io::Result<usize> {
    crate::io::send_now(sock.as_raw_fd(), buf)
}
