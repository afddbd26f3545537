//! A connection in SUBSCRIBE mode, for the background thread (API-key invalidation). A reader
//! task decodes pushes and forwards each message's payload through a local channel, so
//! `next` can wait with a timeout without ever cancelling a read. When the connection ends,
//! `next` returns `Unavailable` and the owner subscribes again. With `[redis] tls` the
//! subscription is TLS too (the task only reads once SUBSCRIBE is written).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use local_sync::mpsc::bounded;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::error::RedisError;
use super::resp::Value;
use super::resp::{decode_reply, encode_command, Scan};
use super::shared::RedisShared;

/// Messages kept unread; beyond that the reader stops reading (Redis then drops a subscriber
/// that falls too far behind, and the owner subscribes again), so memory stays bounded.
const MAX_QUEUED: usize = 1024;

pub struct Subscription {
    rx: bounded::Rx<Vec<u8>>,
    /// A duplicate of the socket's descriptor (see `conn::Inner::sock`): the reader task may
    /// have closed its own already when this drops.
    sock: OwnedFd,
}

impl Subscription {
    /// Subscribes to `channel` on the first node (in a cluster, PUBLISH reaches every node).
    pub async fn open(
        shared: Arc<RedisShared>,
        channel: &[u8],
    ) -> Result<Subscription, RedisError> {
        let s = &shared.settings;
        let addr = s.nodes[0];
        let tcp = super::conn::dial(addr, s.connect_timeout).await?;
        let sock = super::sock::dup(tcp.as_raw_fd())
            .map_err(|e| RedisError::Unavailable(format!("{addr}: {e}")))?;
        let mut out = Vec::new();
        let setup = super::conn::setup_commands(s);
        for cmd in &setup {
            let args: Vec<&[u8]> = cmd.iter().map(|a| &a[..]).collect();
            encode_command(&mut out, &args);
        }
        encode_command(&mut out, &[b"SUBSCRIBE", channel]);
        let io_err = |e: std::io::Error| RedisError::Unavailable(format!("{addr}: {e}"));
        let (tx, rx) = bounded::channel(MAX_QUEUED);
        // The setup replies and the subscribe confirmation come first; the task skips them.
        let skip = setup.len() + 1;
        match &s.tls {
            None => {
                let mut tcp = tcp;
                let (res, _) = tcp.write_all(out).await;
                res.map_err(io_err)?;
                monoio::spawn(read_pushes(tcp, tx, skip));
            }
            Some(tls) => {
                let mut t = super::conn::handshake(addr, tcp, tls, s.connect_timeout).await?;
                let (res, _) = t.write_all(out).await;
                res.map_err(io_err)?;
                t.flush().await.map_err(io_err)?;
                monoio::spawn(read_pushes(t, tx, skip));
            }
        }
        Ok(Subscription { rx, sock })
    }
    /// The next message's payload, or `Ok(None)` if none came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, RedisError> {
        match monoio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => Err(RedisError::Unavailable("subscription closed".into())),
            Err(_) => Ok(None),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Wakes the reader task if it still runs; the socket itself closes when both the
        // task's stream and this duplicate are gone.
        super::sock::shutdown(&self.sock);
    }
}

async fn read_pushes<S: AsyncReadRent>(
    mut tcp: S,
    tx: bounded::Tx<Vec<u8>>,
    mut confirmations: usize,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    let mut scan = Scan::default();
    loop {
        let (res, c) = tcp.read(chunk).await;
        chunk = c;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut used = 0;
        loop {
            let (reply, n) = match decode_reply(&mut scan, &buf[used..]) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => return,
            };
            used += n;
            let Ok(v) = reply else { return };
            if confirmations > 0 {
                confirmations -= 1;
                continue;
            }
            if let Some(payload) = message_payload(v) {
                if tx.send(payload).await.is_err() {
                    return;
                }
            }
        }
        buf.drain(..used);
        if tx.is_closed() {
            return;
        }
    }
}

/// `["message", channel, payload]` → payload.
fn message_payload(v: Value) -> Option<Vec<u8>> {
    let mut parts = v.into_array()?;
    if parts.len() != 3 || parts[0].as_bytes()? != b"message" {
        return None;
    }
    match parts.pop()? {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}
