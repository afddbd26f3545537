//! One pipelined connection to one Redis node. Callers append their encoded commands and a
//! reply slot in one synchronous step, so slots queue in exactly the order commands reach the
//! socket; a writer task sends whatever has queued in one write, and a reader task hands each
//! reply to the oldest slot. Many requests share the socket without waiting for each other.
//!
//! Bounds: at most `MAX_IN_FLIGHT` commands wait on a connection (the rest fail at once),
//! replies are capped by `resp::MAX_REPLY`. When either task fails, the socket is shut down,
//! every waiting slot gets `Unavailable`, and the connection reports itself broken so the
//! client dials again. A caller that stops waiting (its timeout) only drops its slot: the
//! reply is read and thrown away, so no read or write is ever cancelled mid-way.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use local_sync::{mpsc::unbounded, oneshot};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use super::error::RedisError;
use super::resp::Value;
use super::resp::{decode_reply, encode_command};
use super::settings::{RedisSettings, RedisTls};
use crate::tls::stream::TlsStream;

/// Commands that may wait on one connection at once.
const MAX_IN_FLIGHT: usize = 16 * 1024;

type Reply = Result<Value, RedisError>;

/// A handle to the connection (cheap to clone).
#[derive(Clone)]
pub(super) struct Conn {
    inner: Rc<Inner>,
}

struct Inner {
    tx: unbounded::Tx<Vec<u8>>,
    waiting: RefCell<VecDeque<oneshot::Sender<Reply>>>,
    broken: Cell<bool>,
    /// A duplicate of the socket's descriptor, owned here: `break_off` shuts the socket down
    /// through it even after both tasks have closed theirs. A bare descriptor number could by
    /// then name another socket (a client's connection accepted on a worker), which the
    /// shutdown would cut.
    sock: OwnedFd,
}

impl Inner {
    /// Marks the connection dead: the socket is shut down (waking the other task) and every
    /// waiting caller is told.
    fn break_off(&self, why: &str) {
        if !self.broken.replace(true) {
            super::sock::shutdown(&self.sock);
        }
        for w in self.waiting.borrow_mut().drain(..) {
            let _ = w.send(Err(RedisError::Unavailable(why.to_string())));
        }
    }
}

impl Conn {
    /// Dials `addr` (with TLS when the settings ask for it) and runs the setup commands (AUTH,
    /// SELECT) before anyone else's.
    pub(super) async fn open(addr: SocketAddr, s: &RedisSettings) -> Result<Conn, RedisError> {
        let connect_timeout = s.connect_timeout;
        let setup = setup_commands(s);
        let tcp = dial(addr, connect_timeout).await?;
        let sock = super::sock::dup(tcp.as_raw_fd())
            .map_err(|e| RedisError::Unavailable(format!("{addr}: {e}")))?;
        let (tx, rx) = unbounded::channel();
        let inner = Rc::new(Inner {
            tx,
            waiting: RefCell::new(VecDeque::new()),
            broken: Cell::new(false),
            sock,
        });
        match &s.tls {
            None => {
                let (rd, wr) = tcp.into_split();
                monoio::spawn(write_loop(inner.clone(), wr, rx));
                monoio::spawn(read_loop(inner.clone(), rd));
            }
            Some(tls) => {
                let stream = handshake(addr, tcp, tls, connect_timeout).await?;
                monoio::spawn(tls_loop(inner.clone(), stream, rx));
            }
        }
        let conn = Conn { inner };
        for cmd in &setup {
            let args: Vec<&[u8]> = cmd.iter().map(|a| &a[..]).collect();
            let rx = conn.submit(&[&args])?;
            for r in rx {
                match monoio::time::timeout(connect_timeout, r).await {
                    Ok(Ok(Ok(_))) => {}
                    Ok(Ok(Err(e))) => {
                        conn.inner.break_off("setup failed");
                        return Err(e);
                    }
                    _ => {
                        conn.inner.break_off("setup timed out");
                        return Err(RedisError::Unavailable(format!(
                            "{addr}: no reply to setup"
                        )));
                    }
                }
            }
        }
        Ok(conn)
    }

    pub(super) fn is_broken(&self) -> bool {
        self.inner.broken.get()
    }

    /// How many commands wait for replies.
    pub(super) fn in_flight(&self) -> usize {
        self.inner.waiting.borrow().len()
    }

    /// Queues `cmds` back to back (nothing else can come between them) and returns one reply
    /// receiver per command.
    pub(super) fn submit(
        &self,
        cmds: &[&[&[u8]]],
    ) -> Result<Vec<oneshot::Receiver<Reply>>, RedisError> {
        if self.inner.broken.get() {
            return Err(RedisError::Unavailable("connection closed".into()));
        }
        if self.in_flight() + cmds.len() > MAX_IN_FLIGHT {
            return Err(RedisError::Unavailable(
                "too many commands in flight".into(),
            ));
        }
        let mut bytes = Vec::new();
        for c in cmds {
            encode_command(&mut bytes, c);
        }
        if self.inner.tx.send(bytes).is_err() {
            self.inner.break_off("writer gone");
            return Err(RedisError::Unavailable("connection closed".into()));
        }
        let mut waiting = self.inner.waiting.borrow_mut();
        Ok(cmds
            .iter()
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                waiting.push_back(tx);
                rx
            })
            .collect())
    }

    /// Closes the connection (slots waiting get `Unavailable`).
    pub(super) fn close(&self, why: &str) {
        self.inner.break_off(why);
    }
}

async fn write_loop(
    inner: Rc<Inner>,
    mut wr: OwnedWriteHalf<TcpStream>,
    mut rx: unbounded::Rx<Vec<u8>>,
) {
    while let Some(mut batch) = rx.recv().await {
        // Everything queued meanwhile goes in the same write.
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        let (res, _) = wr.write_all(batch).await;
        if res.is_err() || inner.broken.get() {
            inner.break_off("write failed");
            return;
        }
    }
}

/// A TCP connection to `addr` within `timeout`.
pub(super) async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, RedisError> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(t)) => {
            let _ = t.set_nodelay(true);
            Ok(t)
        }
        Ok(Err(e)) => Err(RedisError::Unavailable(format!("{addr}: {e}"))),
        Err(_) => Err(RedisError::Unavailable(format!(
            "{addr}: connect timed out"
        ))),
    }
}

/// The TLS handshake with `addr`, its certificate verified for the configured name. A timeout
/// drops the half-made session with its socket.
pub(super) async fn handshake(
    addr: SocketAddr,
    tcp: TcpStream,
    tls: &RedisTls,
    timeout: Duration,
) -> Result<TlsStream, RedisError> {
    let session = rustls::ClientConnection::new(tls.client.clone(), tls.name.clone())
        .map_err(|e| RedisError::Unavailable(format!("{addr}: TLS: {e}")))?;
    let mut stream = TlsStream::new(tcp, session);
    match monoio::time::timeout(timeout, stream.handshake()).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(fail)) => {
            let why = crate::tls::upstream::failure_reason(fail, stream.take_error().as_ref());
            Err(RedisError::Unavailable(format!(
                "{addr}: TLS handshake failed: {why}"
            )))
        }
        Err(_) => Err(RedisError::Unavailable(format!(
            "{addr}: TLS handshake timed out"
        ))),
    }
}

/// One task for both directions of a TLS connection (a session cannot be split): write what
/// has queued, then read only while replies are owed, so no read is ever left waiting when
/// the task must write. A command queued during a read waits at most until the next reply.
async fn tls_loop(inner: Rc<Inner>, mut s: TlsStream, mut rx: unbounded::Rx<Vec<u8>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut batch = Vec::new();
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        if batch.is_empty() && inner.waiting.borrow().is_empty() {
            match rx.recv().await {
                Some(b) => batch = b,
                None => return inner.break_off("client closed"),
            }
        }
        if !batch.is_empty() {
            let (res, _) = s.write_all(batch).await;
            if res.is_err() || s.flush().await.is_err() {
                return inner.break_off("write failed");
            }
            continue;
        }
        if !read_and_deliver(&inner, &mut s, &mut chunk, &mut buf).await {
            return;
        }
    }
}

async fn read_loop(inner: Rc<Inner>, mut rd: OwnedReadHalf<TcpStream>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    while read_and_deliver(&inner, &mut rd, &mut chunk, &mut buf).await {}
}

/// One read, then every complete reply handed out; `false` once the connection is over.
async fn read_and_deliver<S: AsyncReadRent>(
    inner: &Inner,
    s: &mut S,
    chunk: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> bool {
    let (res, c) = s.read(std::mem::take(chunk)).await;
    *chunk = c;
    match res {
        Ok(0) | Err(_) => {
            inner.break_off("connection closed by Redis");
            false
        }
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            deliver(inner, buf).is_ok() && !inner.broken.get()
        }
    }
}

/// Hands every complete reply in `buf` to the oldest waiting slot; `Err` when the stream is
/// unusable (the connection has been broken off).
fn deliver(inner: &Inner, buf: &mut Vec<u8>) -> Result<(), ()> {
    let mut used = 0;
    loop {
        match decode_reply(&buf[used..]) {
            Ok(None) => break,
            Ok(Some((reply, n))) => {
                used += n;
                let slot = inner.waiting.borrow_mut().pop_front();
                match slot {
                    // A receiver that timed out is gone; its reply is dropped here.
                    Some(s) => {
                        let _ = s.send(reply);
                    }
                    None => {
                        inner.break_off("unexpected reply");
                        return Err(());
                    }
                }
            }
            Err(_) => {
                inner.break_off("bad reply");
                return Err(());
            }
        }
    }
    buf.drain(..used);
    Ok(())
}

/// `AUTH` and `SELECT`, run on every new connection before anything else.
pub(super) fn setup_commands(s: &RedisSettings) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if let Some(p) = &s.password {
        let mut auth = vec![b"AUTH".to_vec()];
        if let Some(u) = &s.username {
            auth.push(u.clone().into_bytes());
        }
        auth.push(p.clone().into_bytes());
        out.push(auth);
    }
    if s.db != 0 {
        out.push(vec![b"SELECT".to_vec(), s.db.to_string().into_bytes()]);
    }
    out
}
