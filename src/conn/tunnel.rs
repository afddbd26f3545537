//! WebSocket tunnels: after the upstream answered 101, relay bytes both ways until both
//! directions have closed, or until no byte moved either way for `timeouts.tunnel_idle`.
//!
//! Idleness is tracked with one timestamp the two relay halves update after each read; one
//! watchdog timer per tunnel sleeps until that timestamp plus the idle limit (re-arming while
//! traffic flows). When it fires, both sockets are shut down so both peers see the close and
//! every pending read or write ends; nothing is cancelled mid-transfer.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::io::Splitable;

use monoio::net::TcpStream;

use crate::io::write_all;
use crate::upstream::UpConn;

/// Relays bytes both ways after a 101 until both directions have closed or the tunnel idled
/// out. `leftover` is what the client sent after its request head. Returns `true` when it was
/// closed for idleness.
pub async fn tunnel(client: TcpStream, leftover: Vec<u8>, up: UpConn, idle: Duration) -> bool {
    let mut ups = up.stream;
    if !leftover.is_empty() {
        let mut l = leftover;
        let far = Instant::now() + std::time::Duration::from_secs(30);
        if write_all(&mut ups, &mut l, far).await.is_err() {
            return false;
        }
    }
    let fds = [client.as_raw_fd(), ups.as_raw_fd()];
    let last = Cell::new(Instant::now());
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = ups.into_split();
    let a = copy_half(&mut cr, &mut uw, &last);
    let b = copy_half(&mut ur, &mut cw, &last);
    let relay = async { monoio::join!(a, b) };
    let relay = std::pin::pin!(relay);
    let watch = std::pin::pin!(idle_watch(&last, idle));
    let idled = monoio::select! {
        _ = relay => false,
        _ = watch => true,
    };
    if idled {
        for fd in fds {
            // SAFETY: both fds belong to the stream halves still alive in this frame (dropped
            // only when it returns); shutdown does not close them.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
    idled
}

/// Completes once no relay half has read anything for `idle`.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let due = last.get() + idle;
        if Instant::now() >= due {
            return;
        }
        monoio::time::sleep_until(due.into()).await;
    }
}

pub(super) async fn copy_half<R, W>(r: &mut R, w: &mut W, last: &Cell<Instant>)
where
    R: monoio::io::AsyncReadRent,
    W: monoio::io::AsyncWriteRent,
{
    use monoio::io::AsyncWriteRentExt as _;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                last.set(Instant::now());
                let (res, b) = w.write_all(buf).await;
                buf = b;
                if res.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}
