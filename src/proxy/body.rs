//! Request and response bodies: `100 Continue`, reading the client body (bounded, for echo),
//! discarding it, and streaming it either way with re-framing (Content-Length, chunked,
//! close-delimited). Fixed buffers only; memory does not grow with body size.

use std::time::Instant;

use crate::config::Route;
use crate::error::{ErrorKind, ProxyError};
use crate::http1::{self, BodyFraming, ChunkedDecoder, RequestHead, Version};
use crate::io::{read_more, write_all, write_range, IoFail};
use crate::metrics::CoreCounter;
use crate::upstream::{UpConn, UpstreamState};

use super::{Client, Req, STREAM_CHUNK};

/// Sends `100 Continue` if the client is waiting for it before sending a body.
pub(super) async fn maybe_continue(c: &mut Client, head: &RequestHead) -> Result<(), ProxyError> {
    let has_body = !matches!(head.body, BodyFraming::None | BodyFraming::Length(0));
    if head.expect_continue && has_body && head.version == Version::Http11 && c.pending() == 0 {
        let mut msg = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        let deadline = Instant::now() + c.timeouts.client_body;
        c.send(&mut msg, deadline)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::RequestTimeout))?;
    }
    Ok(())
}

/// Reads the next body piece from the client into `c.buf` (appending).
async fn read_client(c: &mut Client) -> Result<(), ProxyError> {
    if c.pending() == 0 {
        c.buf.clear();
        c.pos = 0;
    } else if c.pos > STREAM_CHUNK {
        c.compact();
    }
    // Bounded three ways: the gap between reads, the whole body (`client_body_total`) and the
    // average rate once past the grace period (`min_data_rate`, checked at each completion).
    let began = Instant::now();
    let deadline = (began + c.timeouts.client_body).min(c.body_deadline);
    let too_slow = || ProxyError::new(ErrorKind::RequestTimeout);
    match read_more(&mut c.stream, &mut c.buf, deadline, STREAM_CHUNK).await {
        Ok(n) => {
            let rule = c.timeouts.min_data_rate;
            if rule.ns_per_byte != 0 && !c.rx.record(&rule, n, began.elapsed()) {
                c.slow = Some(CoreCounter::SlowRequestBody);
                return Err(too_slow());
            }
            Ok(())
        }
        Err(IoFail::Timeout) => {
            c.slow = Some(CoreCounter::SlowRequestBody);
            Err(too_slow())
        }
        Err(_) => Err(ProxyError::new(ErrorKind::BadBody(
            "client closed during body",
        ))),
    }
}

/// Reads the whole request body into memory, bounded by the route limit (echo only).
pub(super) async fn read_body_bounded(
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
) -> Result<Vec<u8>, ProxyError> {
    let mut body = Vec::new();
    maybe_continue(c, req.head).await?;
    match req.head.body {
        BodyFraming::None | BodyFraming::CloseDelimited => {}
        BodyFraming::Length(n) => {
            let mut left = n;
            while left > 0 {
                if c.pending() == 0 {
                    read_client(c).await?;
                }
                let take = (c.pending() as u64).min(left) as usize;
                body.extend_from_slice(&c.buf[c.pos..c.pos + take]);
                c.pos += take;
                c.ex.bytes_in += take as u64;
                left -= take as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            while !dec.is_done() {
                let (used, data) = dec
                    .decode(&c.buf[c.pos..])
                    .map_err(|e| ProxyError::new(ErrorKind::BadBody(e.0)))?;
                body.extend_from_slice(&c.buf[c.pos + data.start..c.pos + data.end]);
                c.pos += used;
                c.ex.bytes_in += used as u64;
                if body.len() as u64 > route.max_body {
                    return Err(ProxyError::new(ErrorKind::BodyTooLarge));
                }
                if used == 0 && !dec.is_done() {
                    read_client(c).await?;
                }
            }
        }
    }
    Ok(body)
}

/// Consumes and drops the request body (static and redirect routes), bounded by the limit.
pub(super) async fn discard_body(
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
) -> Result<(), ProxyError> {
    if matches!(req.head.body, BodyFraming::None | BodyFraming::Length(0)) {
        return Ok(());
    }
    read_body_bounded(c, req, route).await.map(|_| ())
}

/// Streams the request body (beyond what was sent with the head) client → upstream.
pub(super) async fn stream_request_body(
    c: &mut Client,
    req: &Req<'_>,
    route: &Route,
    up: &mut UpConn,
    us: &UpstreamState,
) -> Result<(), ProxyError> {
    let up_err = |e: IoFail| {
        ProxyError::new(match e {
            IoFail::Timeout => ErrorKind::UpstreamTimeout,
            _ => ErrorKind::UpstreamClosed,
        })
    };
    match req.head.body {
        BodyFraming::None | BodyFraming::CloseDelimited | BodyFraming::Length(0) => Ok(()),
        BodyFraming::Length(n) => {
            let mut left = n;
            while left > 0 {
                if c.pending() == 0 {
                    read_client(c).await?;
                }
                let take = (c.pending() as u64).min(left) as usize;
                let deadline = Instant::now() + us.response_timeout;
                write_range(&mut up.stream, &mut c.buf, c.pos, c.pos + take, deadline)
                    .await
                    .map_err(up_err)?;
                c.pos += take;
                c.ex.bytes_in += take as u64;
                left -= take as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::with_capacity(STREAM_CHUNK + 32);
            let mut total = 0u64;
            while !dec.is_done() {
                out.clear();
                loop {
                    let (used, data) = dec
                        .decode(&c.buf[c.pos..])
                        .map_err(|e| ProxyError::new(ErrorKind::BadBody(e.0)))?;
                    if !data.is_empty() {
                        total += data.len() as u64;
                        if total > route.max_body {
                            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
                        }
                        http1::write_chunk_header(&mut out, data.len());
                        out.extend_from_slice(&c.buf[c.pos + data.start..c.pos + data.end]);
                        out.extend_from_slice(b"\r\n");
                    }
                    c.pos += used;
                    c.ex.bytes_in += used as u64;
                    if used == 0 || dec.is_done() {
                        break;
                    }
                }
                if dec.is_done() {
                    out.extend_from_slice(http1::LAST_CHUNK);
                }
                let deadline = Instant::now() + us.response_timeout;
                write_all(&mut up.stream, &mut out, deadline)
                    .await
                    .map_err(up_err)?;
                if !dec.is_done() {
                    read_client(c).await?;
                }
            }
            Ok(())
        }
    }
}

/// Streams the upstream body to the client, re-framing as needed. `out` holds the client
/// response head, which goes out together with the first body bytes.
pub(super) async fn stream_response_body(
    c: &mut Client,
    up: &mut UpConn,
    from: BodyFraming,
    to: BodyFraming,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    let client_timeout = c.timeouts.client_body;
    let idle = c.timeouts.upstream_idle;
    let chunked_out = to == BodyFraming::Chunked;
    match from {
        BodyFraming::None | BodyFraming::Length(0) => {
            c.send(out, Instant::now() + client_timeout)
                .await
                .map_err(|_| ())?;
            Ok(())
        }
        BodyFraming::Length(n) => {
            let mut left = n;
            // First flight: head + whatever body bytes already arrived.
            let take = (up.buf.len() as u64).min(left) as usize;
            out.extend_from_slice(&up.buf[..take]);
            up.buf.drain(..take);
            left -= take as u64;
            c.send(out, Instant::now() + client_timeout)
                .await
                .map_err(|_| ())?;
            while left > 0 {
                up.buf.clear();
                read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                .map_err(|_| ())?;
                let take = (up.buf.len() as u64).min(left) as usize;
                c.send_range(&mut up.buf, 0, take, Instant::now() + client_timeout)
                    .await
                    .map_err(|_| ())?;
                up.buf.drain(..take);
                left -= take as u64;
            }
            Ok(())
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                loop {
                    let (used, data) = dec.decode(&up.buf).map_err(|_| ())?;
                    if !data.is_empty() {
                        if chunked_out {
                            http1::write_chunk_header(out, data.len());
                        }
                        out.extend_from_slice(&up.buf[data.clone()]);
                        if chunked_out {
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    up.buf.drain(..used);
                    if used == 0 || dec.is_done() {
                        break;
                    }
                }
                if dec.is_done() && chunked_out {
                    out.extend_from_slice(http1::LAST_CHUNK);
                }
                if !out.is_empty() {
                    c.send(out, Instant::now() + client_timeout)
                        .await
                        .map_err(|_| ())?;
                    out.clear();
                }
                if dec.is_done() {
                    return Ok(());
                }
                read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                .map_err(|_| ())?;
            }
        }
        BodyFraming::CloseDelimited => {
            loop {
                if !up.buf.is_empty() {
                    if chunked_out {
                        http1::write_chunk_header(out, up.buf.len());
                    }
                    out.extend_from_slice(&up.buf);
                    if chunked_out {
                        out.extend_from_slice(b"\r\n");
                    }
                    up.buf.clear();
                }
                if !out.is_empty() {
                    c.send(out, Instant::now() + client_timeout)
                        .await
                        .map_err(|_| ())?;
                    out.clear();
                }
                match read_more(
                    &mut up.stream,
                    &mut up.buf,
                    Instant::now() + idle,
                    STREAM_CHUNK,
                )
                .await
                {
                    Ok(_) => {}
                    Err(IoFail::Closed) => break,
                    Err(_) => return Err(()),
                }
            }
            if chunked_out {
                out.extend_from_slice(http1::LAST_CHUNK);
                c.send(out, Instant::now() + client_timeout)
                    .await
                    .map_err(|_| ())?;
            }
            // Close-delimited: resp.close is set, so the connection is never pooled.
            Ok(())
        }
    }
}
