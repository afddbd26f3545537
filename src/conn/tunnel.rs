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
use crate::tls::stream::Absorbed;
use crate::tls::transport::Transport;
use crate::upstream::UpConn;

/// Relays bytes both ways after a 101 until both directions have closed or the tunnel idled
/// out. `leftover` is what the client sent after its request head. Returns `true` when it was
/// closed for idleness.
pub async fn tunnel(client: Transport, leftover: Vec<u8>, up: UpConn, idle: Duration) -> bool {
    let mut ups = up.stream;
    if !leftover.is_empty() {
        let mut l = leftover;
        let far = Instant::now() + std::time::Duration::from_secs(30);
        if write_all(&mut ups, &mut l, far).await.is_err() {
            return false;
        }
    }
    match (client, ups) {
        (Transport::Plain(tcp), Transport::Plain(ups)) => tunnel_plain(tcp, ups, idle).await,
        (client, ups) => tunnel_tls(client, ups, idle).await,
    }
}

async fn tunnel_plain(client: TcpStream, ups: TcpStream, idle: Duration) -> bool {
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

/// The tunnel when either side speaks TLS. A TLS session cannot be split into two halves
/// that run concurrently, so one loop waits for either socket to become readable (a wait that
/// holds no buffer and is safe to drop), then moves what arrived. A TLS side that woke with
/// only records that carry no data (session tickets, key updates) goes back to waiting
/// instead of blocking the other direction. Writes apply backpressure as usual.
async fn tunnel_tls(mut client: Transport, mut ups: Transport, idle: Duration) -> bool {
    let (mut from_client, mut from_up) = (Vec::new(), Vec::new());
    let (mut client_open, mut up_open) = (true, true);
    let mut last = Instant::now();
    while client_open || up_open {
        let due = last + idle;
        let step = async {
            let client_ready = ready(&mut client, client_open);
            let up_ready = ready(&mut ups, up_open);
            monoio::select! {
                _ = client_ready => Side::Client,
                _ = up_ready => Side::Upstream,
                _ = monoio::time::sleep_until(due.into()) => Side::Idle,
            }
        };
        let side = step.await;
        let moved = match side {
            Side::Idle => return true,
            Side::Client if !has_data(&mut client) => continue,
            Side::Upstream if !has_data(&mut ups) => continue,
            Side::Client => relay_once(&mut client, &mut ups, &mut from_client, due).await,
            Side::Upstream => relay_once(&mut ups, &mut client, &mut from_up, due).await,
        };
        match (moved, side) {
            (Some(_), _) => last = Instant::now(),
            (None, Side::Client) => client_open = false,
            (None, _) => up_open = false,
        }
    }
    false
}

/// Completes when `s` has something to read (never, when that side has ended).
async fn ready(s: &mut Transport, open: bool) {
    if !open {
        std::future::pending::<()>().await;
    }
    if !s.has_buffered() {
        let _ = s.readable().await;
    }
}

/// After a wake-up: whether a read on `s` would return at once (data, an end or an error).
/// A TLS side first takes what arrived through rustls without waiting.
fn has_data(s: &mut Transport) -> bool {
    match s {
        Transport::Plain(_) => true,
        Transport::Tls(t) => matches!(t.absorb(), Absorbed::Plaintext | Absorbed::Ended),
    }
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Upstream,
    Idle,
}

/// Reads once from `r` (which is readable) and writes it all to `w`, both by `due`. `None`
/// when `r` ended (its end is passed on as a write shutdown) or either side failed.
async fn relay_once<R, W>(r: &mut R, w: &mut W, buf: &mut Vec<u8>, due: Instant) -> Option<usize>
where
    R: monoio::io::AsyncReadRent,
    W: monoio::io::AsyncWriteRent,
{
    use monoio::io::AsyncWriteRentExt as _;
    buf.clear();
    match crate::io::read_more(r, buf, due, 16 * 1024).await {
        Ok(n) => {
            let owned = std::mem::take(buf);
            let write = w.write_all(owned);
            match monoio::time::timeout_at(due.into(), write).await {
                Ok((Ok(_), b)) => {
                    *buf = b;
                    Some(n)
                }
                _ => None,
            }
        }
        Err(_) => {
            let _ = w.shutdown().await;
            None
        }
    }
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
