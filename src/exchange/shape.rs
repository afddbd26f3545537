//! Shaping a proxied response on its way to the client: compression and the cache's recorder
//! sit between the forward phase and the wire as one `Downstream` (`Shaped`) that wraps the
//! wire's own. The forward phase runs unchanged on top of it, for HTTP/1.1 and HTTP/2
//! upstreams alike.
//!
//! Order on the way out: upstream body → encoder (when the response is compressed) → recorder
//! (so a stored variant is the compressed one, and a hit is never recompressed) → wire.
//!
//! While revalidating a stored response (`cache_phase::Revalidation`), an upstream 304, or a
//! 5xx within the object's stale-if-error bound, is not relayed: the stored response goes to
//! the client instead, at once. The upstream's body is not read (`wants_upstream_body`): a
//! 304 has none, and a failing upstream's error body is not worth waiting for, so that
//! connection is dropped.
//!
//! Only routes with a `cache` or `compress` policy pay for this layer; others use the wire
//! directly.

use std::ops::Range;
use std::sync::Arc;

use crate::cache::status::CacheStatus;
use crate::cache::Object;
use crate::compress::{Coding, CompressPolicy, Encoder};
use crate::http1::{RequestHead, ResponseHead};

use super::error::ProxyError;
use super::model::Exchange;
use super::stored::{start_stored, Recorder, Revalidation, StoredAnswer};
use super::wire::{BodyLen, Downstream, Response};

/// The wire `D`, with a proxied response's compression and recording in front of it.
pub struct Shaped<'d, D> {
    pub inner: &'d mut D,
    /// The route's compression and the coding this request negotiated.
    compress: Option<(&'d CompressPolicy, Coding)>,
    /// Set once the response head shows the response is compressed.
    encoder: Option<Encoder>,
    /// The response's fields get `Vary: Accept-Encoding`.
    vary: bool,
    /// Fills the cache with this response (a miss, or a revalidation that got a new one).
    pub record: Option<Recorder<'d>>,
    /// A revalidation's stored object, served on an upstream 304 or a stale-if-error 5xx.
    pub revalidating: Option<Revalidation>,
    /// The `Cache-Status` the response carries (cache routes).
    pub status: Option<CacheStatus>,
    /// What a stored answer needs (route edits, owned fields, keep-alive).
    pub answer: StoredAnswer<'d>,
    /// The upstream's response is dropped; the stored object went out instead.
    swallow: bool,
    /// The status the client got when the stored object answered instead of the upstream.
    pub served: Option<u16>,
    /// The client's conditional matched the answer being recorded: it got a 304, and the
    /// upstream's body only feeds the recorder.
    store_only: bool,
    out: Vec<u8>,
    fields: Vec<u8>,
}

impl<'d, D: Downstream> Shaped<'d, D> {
    pub fn new(
        inner: &'d mut D,
        compress: Option<(&'d CompressPolicy, Coding)>,
        answer: StoredAnswer<'d>,
    ) -> Shaped<'d, D> {
        Shaped {
            inner,
            compress,
            encoder: None,
            vary: false,
            record: None,
            revalidating: None,
            status: None,
            answer,
            swallow: false,
            served: None,
            store_only: false,
            out: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// The coding a compressed response gets (`None`: sent as the upstream sent it).
    pub fn coding(&self) -> Option<Coding> {
        self.encoder.as_ref().map(Encoder::coding)
    }

    /// Hands encoded (or plain) body bytes to the recorder.
    fn record(&mut self, bytes: &[u8]) {
        if let Some(r) = &mut self.record {
            r.body(bytes);
        }
    }
}

/// The stored object a revalidation answers with, when the upstream's answer allows it.
fn answer_from_store(rv: &Revalidation, resp: &ResponseHead) -> Option<(Arc<Object>, u16)> {
    if resp.status == 304 {
        return Some((rv.refreshed(resp), 304));
    }
    if resp.status >= 500 && rv.may_serve_on_error() {
        return Some((rv.object.clone(), resp.status));
    }
    None
}

impl<D: Downstream> Downstream for Shaped<'_, D> {
    fn buffered_body(&self, head: &RequestHead, max: usize) -> Option<&[u8]> {
        self.inner.buffered_body(head, max)
    }

    async fn peek_body(
        &mut self,
        head: &RequestHead,
        max: usize,
    ) -> Result<(&[u8], bool), ProxyError> {
        self.inner.peek_body(head, max).await
    }

    fn consume_body(&mut self, n: usize) {
        self.inner.consume_body(n)
    }

    async fn continue_body(&mut self, head: &RequestHead) -> Result<(), ProxyError> {
        self.inner.continue_body(head).await
    }

    async fn read_body(
        &mut self,
        head: &RequestHead,
        out: &mut Vec<u8>,
    ) -> Result<bool, ProxyError> {
        self.inner.read_body(head, out).await
    }

    fn skip_body(&mut self, head: &RequestHead) -> bool {
        self.inner.skip_body(head)
    }

    fn upstream_head(&mut self, ex: &Exchange<'_>, resp: &ResponseHead) {
        if let Some(rv) = &self.revalidating {
            if let Some((obj, upstream_status)) = answer_from_store(rv, resp) {
                self.swallow = true;
                let mut cs = self.status.unwrap_or_default();
                cs.fwd_status = Some(upstream_status);
                if upstream_status != 304 {
                    cs.hit = true;
                    cs.ttl = Some(obj.ttl(std::time::Instant::now()));
                    cs.detail = Some("stale-if-error");
                    crate::cache::stats::record(crate::cache::stats::Outcome::Stale);
                } else {
                    crate::cache::stats::record(crate::cache::stats::Outcome::Revalidated);
                }
                self.status = Some(cs);
                self.revalidating = self.revalidating.take().map(|rv| rv.serving(obj));
                self.record = None;
                return;
            }
        }
        if let Some((policy, coding)) = self.compress {
            // A 304 varies as its 200 would, which it does not describe (no type, no length).
            self.vary = crate::compress::varies(policy, resp)
                || (resp.status >= 200 && crate::compress::encoded_upstream(resp))
                || resp.status == 304;
            if coding != Coding::Identity && crate::compress::applies(policy, coding, resp) {
                // A known length sizes the coding's window to the body.
                let len = match resp.body {
                    crate::http1::BodyFraming::Length(n) => Some(n),
                    _ => None,
                };
                self.encoder = Some(Encoder::sized(policy, coding, len));
            }
        }
        if let Some(r) = &mut self.record {
            let coding = self.encoder.as_ref().map(Encoder::coding);
            let stored = r.head(ex, resp, coding, self.vary);
            let cs = self.status.get_or_insert_with(CacheStatus::default);
            cs.fwd_status = Some(resp.status);
            match stored {
                Ok(()) => {
                    cs.stored = true;
                    // The cache strips the client's conditionals upstream (it wants the whole
                    // answer to store), so it answers them itself.
                    self.store_only = r.client_not_modified(ex.head);
                }
                Err(why) => {
                    cs.detail = Some(why);
                    self.record = None;
                }
            }
        } else if let Some(cs) = &mut self.status {
            cs.fwd_status = Some(resp.status);
        }
    }

    fn start_response(&mut self, ex: &Exchange<'_>, resp: &Response<'_>) -> bool {
        if self.swallow {
            let obj = match &self.revalidating {
                Some(rv) => rv.object.clone(),
                None => return false,
            };
            let cs = self.status.unwrap_or_default();
            let (keep, status) = start_stored(ex, self.inner, &obj, &cs, &self.answer);
            self.served = Some(status);
            return keep;
        }
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        if self.store_only {
            let mut live = Vec::with_capacity(resp.fields.len() + 64);
            match &self.encoder {
                Some(enc) => crate::compress::rewrite_fields(enc.coding(), resp.fields, &mut live),
                None => live.extend_from_slice(resp.fields),
            }
            if self.vary {
                crate::compress::add_vary(&std::mem::take(&mut live), &mut live);
            }
            crate::cache::conditional::not_modified_lines(&live, &mut fields);
            if let Some(cs) = &self.status {
                crate::cache::status::write(&mut fields, cs);
            }
            let r = Response {
                status: 304,
                fields: &fields,
                body: BodyLen::Bare,
                keep: resp.keep,
            };
            let keep = self.inner.start_response(ex, &r);
            self.served = Some(304);
            self.fields = fields;
            return keep;
        }
        let mut body = resp.body;
        match &self.encoder {
            Some(enc) => {
                crate::compress::rewrite_fields(enc.coding(), resp.fields, &mut fields);
                if body != BodyLen::Bare {
                    body = BodyLen::Unknown;
                }
            }
            None if resp.status == 304
                && matches!(self.compress, Some((_, c)) if c != Coding::Identity) =>
            {
                crate::compress::not_modified_fields(resp.fields, &mut fields)
            }
            None => fields.extend_from_slice(resp.fields),
        }
        if body == BodyLen::Bare {
            // Nothing to encode (HEAD, 304): the head says what the body would be.
            self.encoder = None;
            self.record = None;
        }
        if self.vary {
            let plain = std::mem::take(&mut fields);
            crate::compress::add_vary(&plain, &mut fields);
        }
        if let Some(cs) = &self.status {
            crate::cache::status::write(&mut fields, cs);
        }
        let r = Response {
            status: resp.status,
            fields: &fields,
            body,
            keep: resp.keep,
        };
        let keep = self.inner.start_response(ex, &r);
        self.fields = fields;
        keep
    }

    async fn send_body(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
    ) -> Result<(), ProxyError> {
        if self.swallow {
            return Ok(());
        }
        match &mut self.encoder {
            Some(enc) => {
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                enc.write(&buf[range], &mut out);
                self.record(&out);
                let n = out.len();
                let sent = if n > 0 && !self.store_only {
                    self.inner.send_body(&mut out, 0..n).await
                } else {
                    Ok(())
                };
                self.out = out;
                sent
            }
            None => {
                self.record(&buf[range.clone()]);
                if self.store_only {
                    return Ok(());
                }
                self.inner.send_body(buf, range).await
            }
        }
    }

    fn queue_body(&mut self, bytes: &[u8]) {
        if self.swallow {
            return;
        }
        match &mut self.encoder {
            Some(enc) => {
                let mut out = std::mem::take(&mut self.out);
                out.clear();
                enc.write(bytes, &mut out);
                self.record(&out);
                if !self.store_only {
                    self.inner.queue_body(&out);
                }
                self.out = out;
            }
            None => {
                self.record(bytes);
                if !self.store_only {
                    self.inner.queue_body(bytes);
                }
            }
        }
    }

    fn request_trailers(&self) -> Option<&[u8]> {
        self.inner.request_trailers()
    }

    fn queue_trailers(&mut self, fields: &[u8]) {
        if self.swallow || self.store_only {
            return;
        }
        if self.encoder.is_none() {
            return self.inner.queue_trailers(fields);
        }
        let mut kept = Vec::with_capacity(fields.len());
        crate::compress::rewrite_trailers(fields, &mut kept);
        if !kept.is_empty() {
            self.inner.queue_trailers(&kept)
        }
    }

    fn duplex(&self) -> bool {
        self.inner.duplex()
    }

    fn wants_upstream_body(&self) -> bool {
        !self.swallow
    }

    fn retract(&mut self) -> bool {
        // A stored answer (or a 304 to the client's conditional) is the client's whatever the
        // upstream does next.
        if self.swallow || self.store_only || !self.inner.retract() {
            return false;
        }
        self.record = None;
        self.encoder = None;
        true
    }

    async fn flush(&mut self) -> Result<(), ProxyError> {
        if self.swallow {
            return Ok(());
        }
        if self.store_only {
            // Only the 304's head is the client's; the body's bytes go to the recorder.
            return self.inner.flush().await;
        }
        // The forward phase flushes when the upstream has nothing more for now (once per
        // upstream read at most): what the encoder holds goes out too, so a slowly streamed
        // response reaches the client as it comes (as Envoy's compressor flushes per frame),
        // at a few bytes of coding overhead per flush.
        if let Some(enc) = &mut self.encoder {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            enc.flush(&mut out);
            self.record(&out);
            let n = out.len();
            if n == 0 {
                // Nothing new to say (the whole body is in and `finish` comes next): the head
                // waits for the body, so a small compressed answer leaves in one write, head
                // and all, instead of a head-only packet first.
                self.out = out;
                return Ok(());
            }
            let sent = self.inner.send_body(&mut out, 0..n).await;
            self.out = out;
            sent?;
        }
        self.inner.flush().await
    }

    async fn end_response(&mut self) -> Result<(), ProxyError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if !self.swallow {
            if let Some(enc) = &mut self.encoder {
                enc.finish(&mut out);
                self.record(&out);
            }
        }
        // The whole body has passed the recorder: store it before the last write to the
        // client, so a request that follows this answer at once finds it (and a client that
        // leaves during that write does not undo a complete upstream answer).
        if let Some(r) = self.record.take() {
            r.finish();
        }
        let n = out.len();
        if n > 0 && !self.store_only {
            let sent = self.inner.send_body(&mut out, 0..n).await;
            self.out = out;
            sent?;
        } else {
            self.out = out;
        }
        self.inner.end_response().await
    }

    async fn client_gone(&mut self) {
        self.inner.client_gone().await
    }

    async fn linger(&mut self) {
        self.inner.linger().await
    }
}
