//! WebSocket tunnels: after the upstream answered 101, relay bytes both ways until both
//! directions have closed.

use std::time::Instant;

use monoio::io::Splitable;

use crate::io::write_all;
use crate::upstream::UpConn;

use super::Client;

/// Relays bytes both ways after a 101 until both directions have closed.
pub(super) async fn tunnel(mut c: Client, up: UpConn) {
    let leftover: Vec<u8> = c.buf.split_off(c.pos);
    let mut ups = up.stream;
    if !leftover.is_empty() {
        let mut l = leftover;
        let far = Instant::now() + std::time::Duration::from_secs(30);
        if write_all(&mut ups, &mut l, far).await.is_err() {
            return;
        }
    }
    let (mut cr, mut cw) = c.stream.into_split();
    let (mut ur, mut uw) = ups.into_split();
    let a = copy_half(&mut cr, &mut uw);
    let b = copy_half(&mut ur, &mut cw);
    monoio::join!(a, b);
}

pub(super) async fn copy_half<R, W>(r: &mut R, w: &mut W)
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
