//! One HTTP/2 client connection: the h2 handshake with the listener's limits, then every
//! accepted stream runs as its own task through the same phases as an HTTP/1.1 request
//! (`exchange::pipeline`), on this worker, with this worker's upstream pools.
//!
//! The connection task also watches three things once a second: a drain (GOAWAY with the
//! last stream id, in-flight streams finish), the idle timeout (no open stream: GOAWAY), and
//! the flood guard (`h2flood::Guarded`: GOAWAY ENHANCE_YOUR_CALM and close). A graceful GOAWAY
//! waits for the client's PING acknowledgement before the connection closes; a client that
//! never sends it (or stalls mid-frame) is closed `GOAWAY_GRACE` after the GOAWAY, once no
//! stream is open, so silence cannot hold a connection (or a drain) forever.
//!
//! Invariants: a stream's task owns its exchange for one config generation (a reload never
//! touches a stream in flight); panics in a stream are caught at the stream boundary; the
//! connection ends only after its stream tasks are done or the drain deadline passes.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;

use crate::config::http2::Http2Settings;
use crate::core::Core;
use crate::exchange::error::{ErrorKind, ProxyError};
use crate::exchange::model::{ClientFacts, ExchangeFacts, Protocol};
use crate::exchange::{begin, pipeline, respond};
use crate::metrics::CoreCounter;
use crate::tls::poll::PollStream;

use super::request::to_head;
use super::stream::H2Stream;
use crate::h2flood::{Flood, Guarded};

/// How often the connection looks at the drain flag and its idle clock.
const TICK: Duration = Duration::from_secs(1);
/// How long after a graceful GOAWAY a connection with no open stream may stay: the client's
/// PING acknowledgement takes one round trip.
const GOAWAY_GRACE: Duration = Duration::from_secs(3);

/// Most bytes h2 buffers per stream for sending (the rest waits for window and socket).
const SEND_BUFFER: usize = 64 * 1024;

/// What woke the connection task.
// Moved once per event, never stored: boxing the accepted stream would allocate per stream.
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(Accepted),
    Flood(Flood),
    Tick,
}

type Accepted = Option<Result<(http::Request<RecvStream>, SendResponse<Bytes>), h2::Error>>;

/// Serves an HTTP/2 connection (after ALPN `h2`, or an h2c prior-knowledge preface) until it
/// closes.
pub async fn serve(core: Rc<Core>, io: PollStream, mut facts: ClientFacts, s: Arc<Http2Settings>) {
    facts.protocol = Protocol::Http2;
    let facts = Rc::new(facts);
    let key = core.conns.register(std::os::fd::AsRawFd::as_raw_fd(&io));
    // Never idle for the drain's purposes: this task sends its own GOAWAY.
    core.conns.set_idle(key, false);
    drive(&core, io, facts, &s).await;
    core.conns.unregister(key);
}

async fn drive(core: &Rc<Core>, io: PollStream, facts: Rc<ClientFacts>, s: &Http2Settings) {
    let io = Guarded::new(io, s.budgets());
    let tripped = io.tripped.clone();
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(s.max_concurrent_streams)
        .max_header_list_size(s.max_header_list_size)
        .max_frame_size(s.max_frame_size)
        .initial_window_size(s.stream_window)
        .initial_connection_window_size(s.connection_window)
        .max_send_buffer_size(SEND_BUFFER)
        .max_concurrent_reset_streams(s.max_concurrent_streams as usize)
        // h2's own Rapid Reset guard (streams reset before they were accepted) stays as a
        // backstop above the gateway's reset budget, which sees the frames first and decides.
        .max_pending_accept_reset_streams(2 * s.max_resets_per_second as usize + 20);
    let header_timeout = core.generation().cfg.timeouts.client_header;
    let mut conn = match monoio::time::timeout(header_timeout, b.handshake(io)).await {
        Ok(Ok(c)) => c,
        _ => return,
    };
    core.telemetry.count(CoreCounter::Http2Connections);
    let open = Rc::new(Cell::new(0usize));
    let mut quiet_since = Some(Instant::now());
    let mut goaway: Option<Instant> = None;
    // One tick for the connection's life, re-armed when it fires: a client that opens streams
    // more often than once a tick must still see the drain and idle checks.
    let tick = monoio::time::sleep(TICK);
    let mut tick = std::pin::pin!(tick);
    loop {
        match next_event(&mut conn, &tripped, tick.as_mut()).await {
            Event::Stream(Some(Ok((req, respond)))) => {
                quiet_since = None;
                open.set(open.get() + 1);
                let task = run_stream(core.clone(), facts.clone(), req, respond, open.clone());
                monoio::spawn(task);
            }
            Event::Stream(Some(Err(e))) => {
                if e.is_go_away() || e.reason().is_some() {
                    core.telemetry.count(CoreCounter::Http2ProtocolErrors);
                }
                break;
            }
            Event::Stream(None) => break,
            Event::Flood(f) => {
                core.telemetry.count(flood_counter(f));
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                let _ = monoio::time::timeout(TICK, poll_fn(|cx| conn.poll_closed(cx))).await;
                break;
            }
            Event::Tick => {
                tick.as_mut().reset((Instant::now() + TICK).into());
                if open.get() > 0 {
                    quiet_since = None;
                } else if quiet_since.is_none() {
                    quiet_since = Some(Instant::now());
                }
                let idle = quiet_since.is_some_and(|t| t.elapsed() >= s.idle_timeout);
                match goaway {
                    None if core.draining() || idle => {
                        goaway = Some(Instant::now());
                        conn.graceful_shutdown();
                    }
                    Some(at) if open.get() == 0 && at.elapsed() >= GOAWAY_GRACE => {
                        // The client never acknowledged: close without waiting longer.
                        conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                        let closed = poll_fn(|cx| conn.poll_closed(cx));
                        let _ = monoio::time::timeout(TICK, closed).await;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Polls the connection (which also moves every stream's frames) until a stream arrives, the
/// connection ends, a flood budget is spent, or a tick passes.
async fn next_event(
    conn: &mut h2::server::Connection<Guarded<PollStream>, Bytes>,
    tripped: &Rc<Cell<Option<Flood>>>,
    mut tick: std::pin::Pin<&mut monoio::time::Sleep>,
) -> Event {
    let what = poll_fn(|cx| {
        if let Some(f) = tripped.get() {
            return Poll::Ready(Err(Some(f)));
        }
        if let Poll::Ready(a) = conn.poll_accept(cx) {
            return Poll::Ready(Ok(a));
        }
        if let Some(f) = tripped.get() {
            return Poll::Ready(Err(Some(f)));
        }
        if tick.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(None));
        }
        Poll::Pending
    })
    .await;
    match what {
        Ok(a) => Event::Stream(a),
        Err(Some(f)) => Event::Flood(f),
        Err(None) => Event::Tick,
    }
}

fn flood_counter(f: Flood) -> CoreCounter {
    match f {
        Flood::Resets => CoreCounter::Http2FloodResets,
        Flood::Pings => CoreCounter::Http2FloodPings,
        Flood::Settings => CoreCounter::Http2FloodSettings,
        Flood::EmptyFrames => CoreCounter::Http2FloodEmptyFrames,
        Flood::WindowUpdates => CoreCounter::Http2FloodWindowUpdates,
    }
}

/// Counts a stream open for as long as it lives.
struct OpenStream(Rc<Cell<usize>>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// One stream's task: its exchange from head to last byte, panics caught.
async fn run_stream(
    core: Rc<Core>,
    facts: Rc<ClientFacts>,
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    open: Rc<Cell<usize>>,
) {
    let _open = OpenStream(open);
    let peer = facts.peer;
    let exchange = std::pin::pin!(exchange(&core, &facts, req, respond));
    if CatchUnwind(exchange).await.is_err() {
        crate::log::error(&format!(
            "worker {}: panic while serving an HTTP/2 stream from {peer}; stream reset",
            core.id
        ));
    }
}

/// Builds the exchange for one stream, runs the phases, records telemetry.
async fn exchange(
    core: &Core,
    facts: &ClientFacts,
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let start = Instant::now();
    let gen = core.generation();
    let (parts, body) = req.into_parts();
    let has_body = !body.is_end_stream();
    let mut down = H2Stream::new(body, respond, gen.cfg.timeouts.client_body);
    let head = match to_head(&parts, has_body, &gen.cfg.limits) {
        Ok(h) => h,
        Err(e) => {
            return reject(
                core,
                facts,
                &mut down,
                ProxyError::new(ErrorKind::BadHead(e)),
            )
        }
    };
    drop(parts);
    down.gather();
    let mut ex = begin::exchange(core, &gen, &head, facts, start, begin::Lent::fresh());
    // WebSocket over HTTP/2 (RFC 8441) is not offered, so no exchange ends in an upgrade.
    let _ = pipeline::run(core, &gen, &mut ex, &mut down).await;
    down.reset_unfinished();
    ex.facts.bytes_in = head.buf.len() as u64 + down.bytes_in;
    ex.facts.bytes_out = down.bytes_out;
    core.telemetry.on_request(
        (&gen.cfg, &gen.slots),
        &ex.facts,
        &head,
        ex.rid.as_str(),
        start,
    );
}

/// Answers a header block the HTTP/1.1 rules refuse (problem+json) and records it.
fn reject(core: &Core, facts: &ClientFacts, down: &mut H2Stream, err: ProxyError) {
    let start = Instant::now();
    let rid = core.ids.next_id();
    let (mut fields, mut body) = (Vec::with_capacity(64), Vec::with_capacity(192));
    respond::problem(&err, rid.as_str(), &mut fields, &mut body);
    let status = err.status();
    let facts_out = ExchangeFacts {
        status,
        bytes_out: body.len() as u64,
        protocol: Protocol::Http2,
        ..ExchangeFacts::default()
    };
    down.send_problem(status, &fields, rid.as_str(), body);
    core.telemetry.on_rejected(
        &core.generation().cfg,
        &facts_out,
        rid.as_str(),
        facts.peer,
        start,
    );
}

/// Catches a panic in the wrapped future (the stream task boundary). The future is pinned in
/// the stream's task, which is already on the heap: no second allocation per stream.
struct CatchUnwind<'a, F>(std::pin::Pin<&'a mut F>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, ()>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
