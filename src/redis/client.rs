//! [`Client`]: one per thread. Routes each command to a node (the only node, or the slot's
//! master in a cluster), keeps `connections` pipelined connections per node, dials lazily
//! (one dial per node at a time; concurrent callers wait for it), and backs a failing node
//! off (100 ms doubling to 2 s) so calls fail fast while Redis is down and a dial is retried
//! automatically once the backoff has passed. Every wait is bounded by the configured
//! timeouts; every outcome updates `RedisShared::health`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use local_sync::oneshot;

use super::cluster::{redirect, Redirect, SlotMap};
use super::conn::Conn;
use super::error::RedisError;
use super::resp::Value;
use super::script::Script;
use super::shared::RedisShared;

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Redirects followed for one command before giving up.
const MAX_REDIRECTS: usize = 4;
/// Least time between two slot-map refreshes.
const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// A thread's Redis client. Cheap to clone (an `Rc`); `!Send`.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    shared: Arc<RedisShared>,
    nodes: RefCell<AHashMap<SocketAddr, Rc<Node>>>,
    slots: RefCell<Option<Rc<SlotMap>>>,
    refreshing: Cell<bool>,
    last_refresh: Cell<Option<Instant>>,
}

/// One node's connections and dialing state.
struct Node {
    addr: SocketAddr,
    conns: RefCell<Vec<Option<Conn>>>,
    next: Cell<usize>,
    dialing: Cell<bool>,
    dial_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    retry_at: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
    /// Why the last dial failed, repeated while backing off (so the log names the reason).
    last_error: RefCell<String>,
}

impl Client {
    pub fn new(shared: Arc<RedisShared>) -> Client {
        Client {
            inner: Rc::new(Inner {
                shared,
                nodes: RefCell::new(AHashMap::new()),
                slots: RefCell::new(None),
                refreshing: Cell::new(false),
                last_refresh: Cell::new(None),
            }),
        }
    }

    /// The process-wide record this client reports to.
    pub fn shared(&self) -> &Arc<RedisShared> {
        &self.inner.shared
    }

    /// Runs one command (`args[0]` is its name). In a cluster, `key` picks the node (`None`:
    /// the first seed node).
    pub async fn cmd(&self, key: Option<&[u8]>, args: &[&[u8]]) -> Result<Value, RedisError> {
        let start = Instant::now();
        let res = self.routed(key, args).await;
        self.finished(start, &res, "command");
        res
    }

    /// Records a call's outcome and how long the caller waited for it.
    fn finished(&self, start: Instant, res: &Result<Value, RedisError>, what: &str) {
        let h = &self.inner.shared.health;
        h.call_time.record(start.elapsed().as_micros() as u64);
        h.record(res, what);
    }

    /// Runs `script` with `keys` and `args`, routed by `keys[0]`.
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let start = Instant::now();
        let n = keys.len().to_string();
        let mut full: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        full.push(b"EVALSHA");
        full.push(script.sha().as_bytes());
        full.push(n.as_bytes());
        full.extend_from_slice(keys);
        full.extend_from_slice(args);
        let key = keys.first().copied();
        let res = match self.routed(key, &full).await {
            Err(RedisError::Server(m)) if m.starts_with("NOSCRIPT") => {
                full[0] = b"EVAL";
                full[1] = script.body().as_bytes();
                self.routed(key, &full).await
            }
            other => other,
        };
        self.finished(start, &res, "script");
        res
    }

    /// Sends a command to every master (cluster) or the one node: for `SCRIPT FLUSH`-like
    /// maintenance and tests. Returns the first error.
    pub async fn on_every_node(&self, args: &[&[u8]]) -> Result<(), RedisError> {
        for addr in self.masters().await {
            self.on_node(addr, args).await?;
        }
        Ok(())
    }

    async fn masters(&self) -> Vec<SocketAddr> {
        if self.inner.shared.settings.cluster {
            if self.inner.slots.borrow().is_none() {
                self.refresh_slots().await;
            }
            if let Some(m) = &*self.inner.slots.borrow() {
                return m.nodes.clone();
            }
        }
        self.inner.shared.settings.nodes[..1].to_vec()
    }

    async fn routed(&self, key: Option<&[u8]>, args: &[&[u8]]) -> Result<Value, RedisError> {
        let mut addr = self.route(key);
        for _ in 0..MAX_REDIRECTS {
            match self.on_node(addr, args).await {
                Err(e) => match redirect(&e) {
                    Some(Redirect::Moved(to)) => {
                        self.inner
                            .shared
                            .health
                            .redirects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.schedule_refresh(false);
                        addr = to;
                    }
                    Some(Redirect::Ask(to)) => {
                        self.inner
                            .shared
                            .health
                            .redirects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return self.asking(to, args).await;
                    }
                    None => {
                        // A master that stopped answering may have been failed over: ask
                        // the cluster who serves its slots now.
                        if self.inner.shared.settings.cluster
                            && matches!(e, RedisError::Unavailable(_) | RedisError::Timeout)
                        {
                            self.schedule_refresh(true);
                        }
                        return Err(e);
                    }
                },
                ok => return ok,
            }
        }
        Err(RedisError::Protocol("too many cluster redirects".into()))
    }

    /// The node for `key`: the slot's master when the map knows it, else the first seed (a
    /// wrong guess costs one `MOVED`, which also refreshes the map).
    fn route(&self, key: Option<&[u8]>) -> SocketAddr {
        let s = &self.inner.shared.settings;
        if s.cluster {
            if let (Some(k), Some(map)) = (key, &*self.inner.slots.borrow()) {
                if let Some(a) = map.node_for(redis_protocol::redis_keyslot(k)) {
                    return a;
                }
            }
            if self.inner.slots.borrow().is_none() {
                self.schedule_refresh(true);
            }
        }
        s.nodes[0]
    }

    async fn on_node(&self, addr: SocketAddr, args: &[&[u8]]) -> Result<Value, RedisError> {
        let conn = self.conn(addr).await?;
        let rx = conn.submit_one(args)?;
        self.reply(Some(rx)).await
    }

    /// `ASKING` then the command, back to back on one connection to `addr`.
    async fn asking(&self, addr: SocketAddr, args: &[&[u8]]) -> Result<Value, RedisError> {
        let conn = self.conn(addr).await?;
        let mut rx = conn.submit(&[&[b"ASKING"], args])?;
        let cmd = rx.pop();
        self.reply(cmd).await
    }

    async fn reply(
        &self,
        rx: Option<oneshot::Receiver<Result<Value, RedisError>>>,
    ) -> Result<Value, RedisError> {
        let Some(rx) = rx else {
            return Err(RedisError::Protocol("no reply slot".into()));
        };
        match monoio::time::timeout(self.inner.shared.settings.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RedisError::Unavailable("connection closed".into())),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    fn node(&self, addr: SocketAddr) -> Rc<Node> {
        let n = self.inner.shared.settings.connections;
        self.inner
            .nodes
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| {
                Rc::new(Node {
                    addr,
                    conns: RefCell::new(vec![None; n]),
                    next: Cell::new(0),
                    dialing: Cell::new(false),
                    dial_waiters: RefCell::new(Vec::new()),
                    retry_at: Cell::new(None),
                    backoff: Cell::new(BACKOFF_FIRST),
                    last_error: RefCell::new(String::new()),
                })
            })
            .clone()
    }

    /// A live connection to `addr`, dialing if needed.
    async fn conn(&self, addr: SocketAddr) -> Result<Conn, RedisError> {
        let node = self.node(addr);
        let slot = node.next.get() % node.conns.borrow().len().max(1);
        node.next.set(slot + 1);
        loop {
            if let Some(c) = node.conns.borrow().get(slot).and_then(|c| c.clone()) {
                if !c.is_broken() {
                    return Ok(c);
                }
            }
            if let Some(at) = node.retry_at.get() {
                if Instant::now() < at {
                    let why = node.last_error.borrow();
                    return Err(RedisError::Unavailable(format!(
                        "{addr}: backing off after: {why}"
                    )));
                }
            }
            if node.dialing.get() {
                // Someone else is dialing this node: wait for the outcome, then look again.
                let (tx, rx) = oneshot::channel();
                node.dial_waiters.borrow_mut().push(tx);
                let wait = self.inner.shared.settings.connect_timeout;
                if monoio::time::timeout(wait, rx).await.is_err() {
                    return Err(RedisError::Unavailable(format!(
                        "{addr}: connect timed out"
                    )));
                }
                continue;
            }
            return self.dial(&node, slot).await;
        }
    }

    async fn dial(&self, node: &Node, slot: usize) -> Result<Conn, RedisError> {
        node.dialing.set(true);
        let s = &self.inner.shared.settings;
        let res = Conn::open(node.addr, s).await;
        node.dialing.set(false);
        match &res {
            Ok(c) => {
                node.retry_at.set(None);
                node.backoff.set(BACKOFF_FIRST);
                if let Some(cell) = node.conns.borrow_mut().get_mut(slot) {
                    *cell = Some(c.clone());
                }
            }
            Err(e) => {
                *node.last_error.borrow_mut() = e.to_string();
                let b = node.backoff.get();
                node.retry_at.set(Some(Instant::now() + b));
                node.backoff.set((b * 2).min(BACKOFF_MAX));
            }
        }
        for w in node.dial_waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
        res
    }

    /// Starts one background slot-map refresh unless one is running. `after_failure`: only if
    /// none ran within `REFRESH_EVERY` (a dead master must not turn every failed call into a
    /// refresh; a `MOVED` is proof the map is stale and always refreshes).
    fn schedule_refresh(&self, after_failure: bool) {
        let now = Instant::now();
        if let Some(last) = self.inner.last_refresh.get() {
            if after_failure && now.duration_since(last) < REFRESH_EVERY {
                return;
            }
        }
        if self.inner.refreshing.replace(true) {
            return;
        }
        self.inner.last_refresh.set(Some(now));
        let me = self.clone();
        monoio::spawn(async move {
            me.refresh_slots().await;
        });
    }

    /// Asks the known masters, then the seeds, for the slot map; keeps the first good answer.
    async fn refresh_slots(&self) {
        self.inner.refreshing.set(true);
        let mut candidates: Vec<SocketAddr> = self
            .inner
            .slots
            .borrow()
            .as_ref()
            .map(|m| m.nodes.clone())
            .unwrap_or_default();
        candidates.extend(self.inner.shared.settings.nodes.iter().copied());
        for addr in candidates {
            if let Ok(v) = self.on_node(addr, &[b"CLUSTER", b"SLOTS"]).await {
                if let Ok(map) = SlotMap::parse(v) {
                    *self.inner.slots.borrow_mut() = Some(Rc::new(map));
                    break;
                }
            }
        }
        self.inner.refreshing.set(false);
    }

    /// Closes every connection (a reload that changed `[redis]` drops the old client).
    pub fn close(&self) {
        for node in self.inner.nodes.borrow().values() {
            for c in node.conns.borrow().iter().flatten() {
                c.close("client closed");
            }
        }
    }
}
