//! Frame-rate budgets for one HTTP/2 connection. The peer → gateway byte stream is scanned
//! frame header by frame header (9 bytes each; payloads are skipped, never parsed), and the
//! frames that cost the gateway work without carrying a request are counted against token
//! buckets:
//! - RST_STREAM (Rapid Reset, CVE-2023-44487);
//! - PING and SETTINGS, each of which forces an answer. A PING that follows a DATA or HEADERS
//!   frame the gateway wrote is paid for by that frame, as a bandwidth probe would be;
//! - frames that carry nothing: empty DATA / HEADERS / CONTINUATION frames that end nothing,
//!   PRIORITY frames (RFC 9113 deprecates them; the h2 codec parses and drops each one) and
//!   frame types the codec does not know (it must ignore them);
//! - WINDOW_UPDATE frames beyond those the gateway's writes earn (one per KiB written, as a
//!   reader of the data would send them), on a bucket of the empty-frame rate.
//!
//! `Guarded` wraps the connection's stream: once a budget is spent it stops handing bytes to
//! the h2 codec and raises `tripped`. The HTTP/2 server (`http2::server`) guards every client
//! connection with its listener's budgets and answers a trip with GOAWAY(ENHANCE_YOUR_CALM).
//! The upstream pool (`upstream::h2`) guards its connections with `Guarded::upstream`: an
//! upstream is a peer too, and one that floods would pin the worker every route shares. There
//! the stream has no preface, RST_STREAM is free (a server refusing or cancelling streams is
//! ending work, not making it), and a trip closes the connection.
//!
//! Invariants: the scanner is O(1) per frame and allocation-free; a bucket holds at most one
//! second's worth of frames, so a burst larger than the per-second rate trips it.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Frames a second each budget allows (the `[listeners.http2]` settings that bound floods).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    pub resets: u32,
    pub pings: u32,
    pub settings: u32,
    /// Empty, PRIORITY and unknown frames; also the base of WINDOW_UPDATE's own bucket.
    pub empty_frames: u32,
}

impl Default for Budgets {
    /// The `[listeners.http2]` defaults.
    fn default() -> Budgets {
        Budgets {
            resets: 100,
            pings: 10,
            settings: 10,
            empty_frames: 100,
        }
    }
}

/// The client connection preface (RFC 9113 §3.4), which precedes the first frame.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which budget a peer spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    Resets,
    Pings,
    Settings,
    EmptyFrames,
    WindowUpdates,
}

impl Flood {
    pub fn as_str(self) -> &'static str {
        match self {
            Flood::Resets => "resets",
            Flood::Pings => "pings",
            Flood::Settings => "settings",
            Flood::EmptyFrames => "empty_frames",
            Flood::WindowUpdates => "window_updates",
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `rate` banked.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        Bucket {
            rate,
            tokens: rate,
            last: None,
        }
    }

    /// Takes one token; `false` once the bucket is empty.
    fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Finds the frame headers in one direction of a connection's byte stream, fed in pieces of
/// any size: skips a preface, then each 9-byte header's payload.
struct FrameWalk {
    /// Preface bytes still to skip.
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// A padded DATA frame's (flags, payload length), reported once its first payload byte
    /// (the pad length) arrives: its data length is what a flood of them is judged by.
    padded: Option<(u8, u64)>,
}

impl FrameWalk {
    fn new(preface: bool) -> FrameWalk {
        FrameWalk {
            preface_left: if preface { PREFACE.len() } else { 0 },
            header: [0; 9],
            have: 0,
            skip: 0,
            padded: None,
        }
    }

    /// The next complete frame header in `bytes` (which it advances past), as (type, flags,
    /// payload length); `None` once `bytes` is used up. For a DATA frame with the PADDED flag
    /// the length is that of its data alone (payload less the pad-length byte and the
    /// padding), known once the first payload byte is in: a frame of nothing but padding is
    /// as empty as a zero-length one.
    fn next(&mut self, bytes: &mut &[u8]) -> Option<(u8, u8, u64)> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            *bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            if let Some((flags, len)) = self.padded.take() {
                let pad = u64::from(bytes[0]);
                *bytes = &bytes[1..];
                self.skip -= 1;
                return Some((DATA, flags, len.saturating_sub(1 + pad)));
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip -= n as u64;
                *bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            *bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                let len = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
                self.skip = len;
                if h[3] == DATA && h[4] & FLAG_PADDED != 0 && len > 0 {
                    self.padded = Some((h[4], len));
                    continue;
                }
                return Some((h[3], h[4], len));
            }
        }
        None
    }
}

/// Walks frame headers in both directions of one connection: what the peer sends is charged
/// against the budgets, what the gateway sends pays for the answers a peer owes it.
pub struct FrameScanner {
    inbound: FrameWalk,
    outbound: FrameWalk,
    /// RST_STREAM frames are charged (a client's; an upstream's are not).
    charge_resets: bool,
    resets: Bucket,
    pings: Bucket,
    settings: Bucket,
    empty: Bucket,
    window_updates: Bucket,
    /// WINDOW_UPDATE frames the bytes written so far pay for (`sent`), at most `MAX_CREDIT`.
    credit: f64,
    /// PINGs the DATA and HEADERS frames written so far pay for, at most `MAX_PING_CREDIT`: a
    /// peer estimating bandwidth (gRPC's BDP probe, one PING per burst of data received, as
    /// often as once a round trip) is not a flood.
    ping_credit: u32,
}

/// Bytes written that earn one WINDOW_UPDATE frame.
const BYTES_PER_WINDOW_UPDATE: f64 = 1024.0;
/// The most WINDOW_UPDATE frames banked from writes.
const MAX_CREDIT: f64 = 1_000_000.0;
/// The most PINGs banked from frames written.
const MAX_PING_CREDIT: u32 = 16;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;

impl FrameScanner {
    /// A scanner for a client connection (the client sends the preface).
    pub fn new(b: Budgets) -> FrameScanner {
        FrameScanner {
            inbound: FrameWalk::new(true),
            outbound: FrameWalk::new(false),
            charge_resets: true,
            resets: Bucket::new(b.resets),
            pings: Bucket::new(b.pings),
            settings: Bucket::new(b.settings),
            empty: Bucket::new(b.empty_frames),
            window_updates: Bucket::new(b.empty_frames),
            credit: 0.0,
            ping_credit: 0,
        }
    }

    /// A scanner for a connection to an upstream (the gateway sends the preface): resets
    /// free, the default budgets otherwise.
    pub fn upstream() -> FrameScanner {
        FrameScanner {
            inbound: FrameWalk::new(false),
            outbound: FrameWalk::new(true),
            charge_resets: false,
            ..FrameScanner::new(Budgets::default())
        }
    }

    /// The gateway wrote `bytes` to the peer: the WINDOW_UPDATEs a reader of them sends, and
    /// a PING per DATA or HEADERS frame among them, are paid for.
    pub fn sent(&mut self, mut bytes: &[u8]) {
        self.credit = (self.credit + bytes.len() as f64 / BYTES_PER_WINDOW_UPDATE).min(MAX_CREDIT);
        while let Some((kind, _, _)) = self.outbound.next(&mut bytes) {
            if kind == DATA || kind == HEADERS {
                self.ping_credit = (self.ping_credit + 1).min(MAX_PING_CREDIT);
            }
        }
    }

    /// Scans the next bytes of the stream; the first budget they overspend, if any.
    pub fn scan(&mut self, mut bytes: &[u8]) -> Option<Flood> {
        while let Some((kind, flags, len)) = self.inbound.next(&mut bytes) {
            if let Some(f) = self.charge(kind, flags, len) {
                return Some(f);
            }
        }
        None
    }

    fn charge(&mut self, kind: u8, flags: u8, len: u64) -> Option<Flood> {
        let (bucket, flood) = match kind {
            RST_STREAM if !self.charge_resets => return None,
            RST_STREAM => (&mut self.resets, Flood::Resets),
            PING if flags & FLAG_ACK == 0 && self.ping_credit > 0 => {
                self.ping_credit -= 1;
                return None;
            }
            PING if flags & FLAG_ACK == 0 => (&mut self.pings, Flood::Pings),
            SETTINGS if flags & FLAG_ACK == 0 => (&mut self.settings, Flood::Settings),
            DATA if len == 0 && flags & FLAG_END_STREAM == 0 => {
                (&mut self.empty, Flood::EmptyFrames)
            }
            HEADERS | CONTINUATION
                if len == 0 && flags & (FLAG_END_STREAM | FLAG_END_HEADERS) == 0 =>
            {
                (&mut self.empty, Flood::EmptyFrames)
            }
            // Dropped after parsing, so a stream of them is pure work (CVE-2019-9513's
            // resource loop; browsers send a handful at most).
            PRIORITY => (&mut self.empty, Flood::EmptyFrames),
            WINDOW_UPDATE if self.credit >= 1.0 => {
                self.credit -= 1.0;
                return None;
            }
            WINDOW_UPDATE => (&mut self.window_updates, Flood::WindowUpdates),
            k if k > CONTINUATION => (&mut self.empty, Flood::EmptyFrames),
            _ => return None,
        };
        (!bucket.take(Instant::now())).then_some(flood)
    }
}

/// A connection stream whose inbound bytes pass the `FrameScanner` on their way to h2.
pub struct Guarded<S> {
    inner: S,
    scanner: FrameScanner,
    /// Set once a budget is spent; the server reads it and answers GOAWAY.
    pub tripped: Rc<Cell<Option<Flood>>>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, b: Budgets) -> Guarded<S> {
        Guarded {
            inner,
            scanner: FrameScanner::new(b),
            tripped: Rc::new(Cell::new(None)),
        }
    }

    /// Guards a connection to an upstream (`FrameScanner::upstream`).
    pub fn upstream(inner: S) -> Guarded<S> {
        Guarded {
            inner,
            scanner: FrameScanner::upstream(),
            tripped: Rc::new(Cell::new(None)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped.get().is_some() {
            // Nothing more reaches the codec; the server task is woken to answer GOAWAY.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(f) = this.scanner.scan(&buf.filled()[before..]) {
                    buf.set_filled(before);
                    this.tripped.set(Some(f));
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.scanner.sent(&buf[..n.min(buf.len())]);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                let take = n.min(b.len());
                this.scanner.sent(&b[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn settings(pings: u32) -> Budgets {
        Budgets {
            pings,
            ..Budgets::default()
        }
    }

    #[test]
    fn a_ping_flood_trips_after_one_seconds_worth() {
        let mut s = FrameScanner::new(settings(10));
        assert_eq!(s.scan(PREFACE), None);
        let ping = frame(PING, 0, &[0; 8]);
        let tripped = (0..100).position(|_| s.scan(&ping).is_some());
        assert_eq!(tripped, Some(10));
    }

    #[test]
    fn acks_and_frames_split_across_reads_are_counted_right() {
        let mut s = FrameScanner::new(settings(2));
        let mut bytes = PREFACE.to_vec();
        for _ in 0..50 {
            bytes.extend(frame(PING, FLAG_ACK, &[0; 8]));
            bytes.extend(frame(DATA, 0, &[7; 100]));
        }
        bytes.extend(frame(PING, 0, &[0; 8]));
        bytes.extend(frame(PING, 0, &[0; 8]));
        // One byte at a time: headers split anywhere still parse.
        assert!(bytes
            .iter()
            .all(|b| s.scan(std::slice::from_ref(b)).is_none()));
        assert_eq!(s.scan(&frame(PING, 0, &[0; 8])), Some(Flood::Pings));
    }

    #[test]
    fn empty_frames_that_end_something_are_free() {
        let mut s = FrameScanner::new(Budgets {
            empty_frames: 1,
            ..Budgets::default()
        });
        s.scan(PREFACE);
        for _ in 0..10 {
            assert_eq!(s.scan(&frame(DATA, FLAG_END_STREAM, &[])), None);
        }
        assert_eq!(s.scan(&frame(DATA, 0, &[])), None);
        assert_eq!(s.scan(&frame(DATA, 0, &[])), Some(Flood::EmptyFrames));
    }

    #[test]
    fn data_frames_of_padding_alone_are_empty_frames() {
        let mut s = FrameScanner::new(Budgets {
            empty_frames: 2,
            ..Budgets::default()
        });
        s.scan(PREFACE);
        // Padded frames that carry data are free, fed whole or a byte at a time.
        for _ in 0..10 {
            let f = frame(DATA, FLAG_PADDED, &[3, b'x', 0, 0, 0]);
            assert!(f.iter().all(|b| s.scan(std::slice::from_ref(b)).is_none()));
            assert_eq!(s.scan(&frame(DATA, FLAG_PADDED, &[0, b'y'])), None);
        }
        // A pad-length byte and padding, no data: charged like an empty frame.
        let empty = frame(DATA, FLAG_PADDED, &[4, 0, 0, 0, 0]);
        assert_eq!(s.scan(&empty), None);
        assert_eq!(s.scan(&frame(DATA, FLAG_PADDED, &[0])), None);
        assert_eq!(s.scan(&empty), Some(Flood::EmptyFrames));
    }

    #[test]
    fn an_upstreams_stream_has_no_preface_and_its_resets_are_free() {
        let mut s = FrameScanner::upstream();
        // The first bytes are a frame: read as a preface they would hide a flood's start.
        for _ in 0..1000 {
            assert_eq!(s.scan(&frame(RST_STREAM, 0, &[0, 0, 0, 8])), None);
        }
        let ping = frame(PING, 0, &[0; 8]);
        let tripped = (0..100).position(|_| s.scan(&ping).is_some());
        assert_eq!(tripped, Some(10), "the default PING budget");
    }

    #[test]
    fn pings_answering_the_gateways_frames_are_free_and_pongs_earn_nothing() {
        let mut s = FrameScanner::new(settings(2));
        assert_eq!(s.scan(PREFACE), None);
        let ping = frame(PING, 0, &[0; 8]);
        // A probe after each DATA frame written, 100 times: paid for, whatever the rate.
        for _ in 0..100 {
            let mut out = frame(DATA, 0, &[1; 300]);
            out.extend(frame(PING, FLAG_ACK, &[0; 8]));
            // Written in two pieces that cut a frame header.
            s.sent(&out[..4]);
            s.sent(&out[4..]);
            assert_eq!(s.scan(&ping), None);
        }
        // Only PING ACKs written: the answers to a flood pay for nothing.
        for _ in 0..50 {
            s.sent(&frame(PING, FLAG_ACK, &[0; 8]));
        }
        let tripped = (0..10).position(|_| s.scan(&ping).is_some());
        assert_eq!(tripped, Some(2), "the budget of 2 a second, then the trip");
    }
}
