//! Frame-rate budgets for one HTTP/2 connection: the client → gateway byte stream is scanned
//! frame header by frame header (9 bytes each; payloads are skipped, never parsed) and the
//! frames that cost the gateway work without carrying a request are counted against token
//! buckets: RST_STREAM (Rapid Reset, CVE-2023-44487), PING and SETTINGS (each forces an
//! answer), and frames that carry nothing: empty DATA / HEADERS / CONTINUATION frames that do
//! not end anything, PRIORITY frames (RFC 9113 deprecates them; the h2 codec parses and drops
//! each one) and frame types the codec does not know (it must ignore them). WINDOW_UPDATE frames
//! are earned by what the gateway sends (one per KiB written, as a client reading the data
//! would send them), beyond a base budget of the empty-frame rate.
//!
//! `Guarded` wraps the connection's stream: once a budget is spent it stops handing bytes to
//! the h2 codec and raises `tripped`, and the server answers GOAWAY(ENHANCE_YOUR_CALM).
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

use crate::config::http2::Http2Settings;

/// The client connection preface (RFC 9113 §3.4), which precedes the first frame.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which budget a client spent.
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

/// Walks frame headers in the inbound byte stream and charges the budgets.
pub struct FrameScanner {
    /// Preface bytes still to skip.
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    resets: Bucket,
    pings: Bucket,
    settings: Bucket,
    empty: Bucket,
    window_updates: Bucket,
    /// WINDOW_UPDATE frames the bytes written so far pay for (`sent`), at most `MAX_CREDIT`.
    credit: f64,
}

/// Bytes written that earn one WINDOW_UPDATE frame.
const BYTES_PER_WINDOW_UPDATE: f64 = 1024.0;
/// The most WINDOW_UPDATE frames banked from writes.
const MAX_CREDIT: f64 = 1_000_000.0;

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

impl FrameScanner {
    pub fn new(s: &Http2Settings) -> FrameScanner {
        FrameScanner {
            preface_left: PREFACE.len(),
            header: [0; 9],
            have: 0,
            skip: 0,
            resets: Bucket::new(s.max_resets_per_second),
            pings: Bucket::new(s.max_pings_per_second),
            settings: Bucket::new(s.max_settings_per_second),
            empty: Bucket::new(s.max_empty_frames_per_second),
            window_updates: Bucket::new(s.max_empty_frames_per_second),
            credit: 0.0,
        }
    }

    /// The gateway wrote `n` bytes to the client: the WINDOW_UPDATEs a reader of them sends
    /// are paid for.
    pub fn sent(&mut self, n: usize) {
        self.credit = (self.credit + n as f64 / BYTES_PER_WINDOW_UPDATE).min(MAX_CREDIT);
    }

    /// Scans the next bytes of the stream; the first budget they overspend, if any.
    pub fn scan(&mut self, mut bytes: &[u8]) -> Option<Flood> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.header;
                let len = u64::from(h[0]) << 16 | u64::from(h[1]) << 8 | u64::from(h[2]);
                self.skip = len;
                if let Some(f) = self.charge(h[3], h[4], len) {
                    return Some(f);
                }
            }
        }
        None
    }

    fn charge(&mut self, kind: u8, flags: u8, len: u64) -> Option<Flood> {
        let (bucket, flood) = match kind {
            RST_STREAM => (&mut self.resets, Flood::Resets),
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
    pub fn new(inner: S, s: &Http2Settings) -> Guarded<S> {
        Guarded {
            inner,
            scanner: FrameScanner::new(s),
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
            this.scanner.sent(n);
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
        if let Poll::Ready(Ok(n)) = r {
            this.scanner.sent(n);
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

    fn settings(pings: u32) -> Http2Settings {
        Http2Settings {
            max_pings_per_second: pings,
            ..Http2Settings::default()
        }
    }

    #[test]
    fn a_ping_flood_trips_after_one_seconds_worth() {
        let mut s = FrameScanner::new(&settings(10));
        assert_eq!(s.scan(PREFACE), None);
        let ping = frame(PING, 0, &[0; 8]);
        let tripped = (0..100).position(|_| s.scan(&ping).is_some());
        assert_eq!(tripped, Some(10));
    }

    #[test]
    fn acks_and_frames_split_across_reads_are_counted_right() {
        let mut s = FrameScanner::new(&settings(2));
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
        let mut s = FrameScanner::new(&Http2Settings {
            max_empty_frames_per_second: 1,
            ..Http2Settings::default()
        });
        s.scan(PREFACE);
        for _ in 0..10 {
            assert_eq!(s.scan(&frame(DATA, FLAG_END_STREAM, &[])), None);
        }
        assert_eq!(s.scan(&frame(DATA, 0, &[])), None);
        assert_eq!(s.scan(&frame(DATA, 0, &[])), Some(Flood::EmptyFrames));
    }
}
