//! One pipelined connection to one Redis node. A caller encodes its commands into the
//! connection's out-buffer and pushes their reply slots in one synchronous step, so slots queue
//! in exactly the order commands reach the socket; a reader task hands each reply to the
//! oldest slot, waking its caller directly. Many requests share the socket without waiting for
//! each other.
//!
//! Writing (plain TCP): when nothing is queued and no write is in flight, the caller sends its
//! command itself, with one non-blocking `send` inside that same synchronous step. The bytes
//! reach Redis at once, instead of after a hand-off to the writer task and the runtime's next
//! submission (which waits for every other ready task of the tick). Whatever the socket did not
//! take stays in the out-buffer for the writer task, which sends whatever has queued in one
//! write. After a caller's own send the connection stays corked until the writer task has run:
//! callers that come later in the same turn of the runtime queue, and their commands leave
//! together in one write. So under load a turn costs at most two writes, not one per command
//! (a send per command would also make Redis read and answer one command at a time). So a command is always either wholly queued or wholly sent when `submit` returns, and
//! a caller's future, dropped at any await, can never leave a half-written command behind.
//! TLS connections never write from the caller: one task owns the session (`tls_loop`).
//!
//! Bounds: at most `MAX_IN_FLIGHT` commands wait on a connection (the rest fail at once),
//! replies are capped by `resp::MAX_REPLY`. When either task fails, the socket is shut down,
//! every waiting slot gets `Unavailable`, and the connection reports itself broken so the
//! client dials again. A caller that stops waiting (its timeout, or its request dropped) only
//! drops its slot: the reply is read and thrown away, so no read or write is ever cancelled
//! mid-way.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use local_sync::oneshot;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;

use super::error::RedisError;
use super::resp::Value;
use super::resp::{decode_reply, encode_command, Scan};
use super::settings::{RedisSettings, RedisTls};
use crate::tls::stream::TlsStream;

/// Commands that may wait on one connection at once.
const MAX_IN_FLIGHT: usize = 16 * 1024;

/// A write buffer that grew past this (a burst) is given back after its write.
const KEEP_BUFFER: usize = 256 * 1024;

type Reply = Result<Value, RedisError>;

/// A handle to the connection (cheap to clone).
#[derive(Clone)]
pub(super) struct Conn {
    inner: Rc<Inner>,
}

struct Inner {
    /// Encoded commands not yet handed to the socket, in wire order.
    out: RefCell<Vec<u8>>,
    /// The writing task's waker while it waits for `out` to fill.
    writer: Cell<Option<Waker>>,
    /// The writer task has a write in flight: nobody else may write until it ends.
    writing: Cell<bool>,
    /// A caller sent directly and the writer task has not run since: callers queue.
    corked: Cell<bool>,
    /// Callers may send on the socket themselves (plain TCP; never TLS).
    direct: bool,
    waiting: RefCell<VecDeque<oneshot::Sender<Reply>>>,
    broken: Cell<bool>,
    /// A duplicate of the socket's descriptor, owned here: callers send through it, and
    /// `break_off` shuts the socket down through it even after both tasks have closed theirs.
    /// A bare descriptor number could by then name another socket (a client's connection
    /// accepted on a worker), which the shutdown would cut.
    sock: OwnedFd,
}

impl Inner {
    /// Marks the connection dead: the socket is shut down (waking the reading task), the
    /// writing task is woken to end, and every waiting caller is told.
    fn break_off(&self, why: &str) {
        if !self.broken.replace(true) {
            super::sock::shutdown(&self.sock);
        }
        self.wake_writer();
        for w in self.waiting.borrow_mut().drain(..) {
            let _ = w.send(Err(RedisError::Unavailable(why.to_string())));
        }
    }

    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Resolves once `out` holds bytes to write, a caller's direct send corked the connection,
    /// or the connection is broken.
    async fn work(&self) {
        std::future::poll_fn(|cx| {
            if self.broken.get() || self.corked.get() || !self.out.borrow().is_empty() {
                Poll::Ready(())
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Moves what has queued into `batch` (an empty buffer), leaving `out` empty.
    fn take_out(&self, batch: &mut Vec<u8>) {
        batch.clear();
        std::mem::swap(&mut *self.out.borrow_mut(), batch);
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
        let inner = Rc::new(Inner {
            out: RefCell::new(Vec::with_capacity(4096)),
            writer: Cell::new(None),
            writing: Cell::new(false),
            corked: Cell::new(false),
            direct: s.tls.is_none(),
            waiting: RefCell::new(VecDeque::new()),
            broken: Cell::new(false),
            sock,
        });
        match &s.tls {
            None => {
                let (rd, wr) = tcp.into_split();
                monoio::spawn(write_loop(inner.clone(), wr));
                monoio::spawn(read_loop(inner.clone(), rd));
            }
            Some(tls) => {
                let stream = handshake(addr, tcp, tls, connect_timeout).await?;
                monoio::spawn(tls_loop(inner.clone(), stream));
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
                        // A refused AUTH or SELECT makes the node unusable, and the reason
                        // (WRONGPASS, NOAUTH, a bad database) is what an operator needs to read.
                        let name = String::from_utf8_lossy(args[0]).into_owned();
                        let why = format!("{addr}: {name} refused: {e}");
                        conn.inner.break_off(&why);
                        return Err(RedisError::Unavailable(why));
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
        self.admit(cmds.len())?;
        let rxs = {
            let mut waiting = self.inner.waiting.borrow_mut();
            cmds.iter()
                .map(|_| {
                    let (tx, rx) = oneshot::channel();
                    waiting.push_back(tx);
                    rx
                })
                .collect()
        };
        self.write(cmds)?;
        Ok(rxs)
    }

    /// [`Conn::submit`] for one command (the request path's case: no vector of receivers).
    pub(super) fn submit_one(&self, cmd: &[&[u8]]) -> Result<oneshot::Receiver<Reply>, RedisError> {
        self.admit(1)?;
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.borrow_mut().push_back(tx);
        self.write(&[cmd])?;
        Ok(rx)
    }

    /// Whether `n` more commands may be queued now.
    fn admit(&self, n: usize) -> Result<(), RedisError> {
        if self.inner.broken.get() {
            return Err(RedisError::Unavailable("connection closed".into()));
        }
        if self.in_flight() + n > MAX_IN_FLIGHT {
            return Err(RedisError::Unavailable(
                "too many commands in flight".into(),
            ));
        }
        Ok(())
    }

    /// Encodes `cmds` behind whatever has queued; on an idle plain-TCP connection, sends them
    /// from here. Synchronous on purpose, and called right after the slots were pushed: when
    /// it returns, the commands are wholly on the wire or wholly queued, in slot order,
    /// whatever happens to the caller afterwards.
    fn write(&self, cmds: &[&[&[u8]]]) -> Result<(), RedisError> {
        let inner = &*self.inner;
        let mut out = inner.out.borrow_mut();
        let idle = out.is_empty() && !inner.writing.get() && !inner.corked.get();
        for c in cmds {
            encode_command(&mut out, c);
        }
        if inner.direct && idle {
            // Nothing queued, nothing in flight: these bytes are next on the wire.
            match super::sock::send_now(&inner.sock, &out) {
                Ok(n) => {
                    // The socket may have taken only part of it: the writer task sends the
                    // rest, in order, before anything queued after it.
                    drop(out.drain(..n));
                    // Later callers of this turn queue behind, for one write together.
                    inner.corked.set(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    out.clear();
                    drop(out);
                    inner.break_off("write failed");
                    return Err(RedisError::Unavailable("connection closed".into()));
                }
            }
        }
        let more = !out.is_empty() || inner.corked.get();
        drop(out);
        if more {
            inner.wake_writer();
        }
        Ok(())
    }

    /// Closes the connection (slots waiting get `Unavailable`).
    pub(super) fn close(&self, why: &str) {
        self.inner.break_off(why);
    }
}

/// Sends what callers could not send themselves: everything queued meanwhile goes in one
/// write. While that write is in flight (`writing`), callers only queue.
async fn write_loop(inner: Rc<Inner>, mut wr: OwnedWriteHalf<TcpStream>) {
    let mut batch: Vec<u8> = Vec::with_capacity(4096);
    loop {
        inner.work().await;
        if inner.broken.get() {
            return;
        }
        inner.corked.set(false);
        if inner.out.borrow().is_empty() {
            continue;
        }
        inner.take_out(&mut batch);
        inner.writing.set(true);
        let (res, b) = wr.write_all(batch).await;
        inner.writing.set(false);
        batch = b;
        if res.is_err() || inner.broken.get() {
            inner.break_off("write failed");
            return;
        }
        if batch.capacity() > KEEP_BUFFER {
            batch = Vec::with_capacity(4096);
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

/// One task for both directions of a TLS connection (a session cannot be split, so callers
/// never write to it themselves): write what has queued, then read only while replies are
/// owed, so no read is ever left waiting when the task must write. A command queued during a
/// read waits at most until the next reply.
async fn tls_loop(inner: Rc<Inner>, mut s: TlsStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut scan = Scan::default();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut batch: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if inner.broken.get() {
            return;
        }
        if inner.out.borrow().is_empty() && inner.waiting.borrow().is_empty() {
            inner.work().await;
            continue;
        }
        inner.take_out(&mut batch);
        if !batch.is_empty() {
            let (res, b) = s.write_all(batch).await;
            batch = b;
            if res.is_err() || s.flush().await.is_err() {
                return inner.break_off("write failed");
            }
            if batch.capacity() > KEEP_BUFFER {
                batch = Vec::with_capacity(4096);
            }
            continue;
        }
        if !read_and_deliver(&inner, &mut s, &mut chunk, &mut buf, &mut scan).await {
            return;
        }
    }
}

async fn read_loop(inner: Rc<Inner>, mut rd: OwnedReadHalf<TcpStream>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut scan = Scan::default();
    while read_and_deliver(&inner, &mut rd, &mut chunk, &mut buf, &mut scan).await {}
}

/// One read, then every complete reply handed out; `false` once the connection is over.
async fn read_and_deliver<S: AsyncReadRent>(
    inner: &Inner,
    s: &mut S,
    chunk: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    scan: &mut Scan,
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
            deliver(inner, buf, scan).is_ok() && !inner.broken.get()
        }
    }
}

/// Hands every complete reply in `buf` to the oldest waiting slot; `Err` when the stream is
/// unusable (the connection has been broken off).
fn deliver(inner: &Inner, buf: &mut Vec<u8>, scan: &mut Scan) -> Result<(), ()> {
    let mut used = 0;
    loop {
        match decode_reply(scan, &buf[used..]) {
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
            Err(e) => {
                inner.break_off(&e.to_string());
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
