//! Bodies, wire-neutral: the request body read whole (bounded, for echo), discarded, or
//! streamed to the upstream in HTTP/1.1 framing; the upstream's response body decoded from its
//! framing and handed to the wire piece by piece.
//!
//! Fixed buffers only; memory does not grow with body size. A failure while the response body
//! streams names its side (`ClientAborted` / `UpstreamAborted`): the head is already out, so it
//! can only end the connection, and the log says who broke it.

use std::time::{Duration, Instant};

use crate::http1::{self, BodyFraming, ChunkedDecoder};
use crate::io::{read_more, write_all, IoFail};
use crate::upstream::UpConn;

use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::wire::Downstream;

/// Bytes we try to move per read while streaming bodies.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// Reads the whole request body into memory, bounded by the route limit (echo only).
pub async fn read_body_bounded<D: Downstream>(
    ex: &Exchange<'_>,
    down: &mut D,
    max_body: u64,
) -> Result<Vec<u8>, ProxyError> {
    let mut body = Vec::new();
    if matches!(ex.head.body, BodyFraming::None | BodyFraming::Length(0)) {
        return Ok(body);
    }
    down.continue_body(ex.head).await?;
    while !down.read_body(ex.head, &mut body).await? {
        if body.len() as u64 > max_body {
            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
        }
    }
    if body.len() as u64 > max_body {
        return Err(ProxyError::new(ErrorKind::BodyTooLarge));
    }
    Ok(body)
}

/// Consumes and drops the request body (static and redirect routes), bounded by the limit.
pub async fn discard_body<D: Downstream>(
    ex: &Exchange<'_>,
    down: &mut D,
    max_body: u64,
) -> Result<(), ProxyError> {
    read_body_bounded(ex, down, max_body).await.map(|_| ())
}

/// Streams the request body client → upstream, framed as the client framed it (a length
/// stays a length; anything else goes chunked). The client's trailers lose what `edits` (the
/// policies' header edits) and the gateway own (`upstream_head::upstream_trailers`).
pub async fn stream_request_body<D: Downstream>(
    ex: &mut Exchange<'_>,
    down: &mut D,
    up: &mut UpConn,
    timeout: Duration,
    max_body: u64,
    edits: Option<&crate::policy::transform::HeaderEdits>,
) -> Result<(), ProxyError> {
    let chunked = match ex.head.body {
        BodyFraming::None | BodyFraming::CloseDelimited | BodyFraming::Length(0) => return Ok(()),
        BodyFraming::Length(_) => false,
        BodyFraming::Chunked => true,
    };
    let mut data = Vec::with_capacity(STREAM_CHUNK);
    let mut framed = Vec::new();
    let mut total = 0u64;
    loop {
        data.clear();
        let done = down.read_body(ex.head, &mut data).await?;
        total += data.len() as u64;
        if total > max_body {
            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
        }
        let out = if chunked {
            framed.clear();
            if !data.is_empty() {
                http1::write_chunk_header(&mut framed, data.len());
                framed.extend_from_slice(&data);
                framed.extend_from_slice(b"\r\n");
            }
            if done {
                let mut trailers = Vec::new();
                if let Some(t) = down.request_trailers() {
                    super::upstream_head::upstream_trailers(t, edits, &mut trailers);
                }
                http1::write_last_chunk(&mut framed, &trailers);
            }
            &mut framed
        } else {
            &mut data
        };
        if !out.is_empty() {
            write_all(&mut up.stream, out, Instant::now() + timeout)
                .await
                .map_err(|e| {
                    ProxyError::new(match e {
                        IoFail::Timeout => ErrorKind::UpstreamTimeout,
                        _ => ErrorKind::UpstreamClosed,
                    })
                })?;
        }
        if done {
            return Ok(());
        }
    }
}

/// Reads more of the upstream body into `up.buf`; a failure is an upstream abort.
async fn read_upstream(up: &mut UpConn, idle: Duration) -> Result<usize, ProxyError> {
    read_more(
        &mut up.stream,
        &mut up.buf,
        Instant::now() + idle,
        STREAM_CHUNK,
    )
    .await
    .map_err(|_| ProxyError::new(ErrorKind::UpstreamAborted))
}

/// Streams the upstream body (`from` framing) to the wire, whose response is already started.
/// `Ok` means the upstream's body ended cleanly and the connection may be pooled; it holds the
/// upstream's raw trailer lines (empty without), for the caller to filter and end the
/// response with.
pub async fn stream_response_body<D: Downstream>(
    down: &mut D,
    up: &mut UpConn,
    from: BodyFraming,
    idle: Duration,
) -> Result<Vec<u8>, ProxyError> {
    match from {
        BodyFraming::None | BodyFraming::Length(0) => {}
        BodyFraming::Length(n) => {
            // First flight: the head with whatever body bytes already arrived.
            let take = (up.buf.len() as u64).min(n) as usize;
            if take > 0 {
                down.send_body(&mut up.buf, 0..take).await?;
            }
            down.flush().await?;
            up.buf.drain(..take);
            let mut left = n - take as u64;
            while left > 0 {
                up.buf.clear();
                read_upstream(up, idle).await?;
                let take = (up.buf.len() as u64).min(left) as usize;
                down.send_body(&mut up.buf, 0..take).await?;
                up.buf.drain(..take);
                left -= take as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                loop {
                    let (used, data) = dec
                        .decode(&up.buf)
                        .map_err(|_| ProxyError::new(ErrorKind::UpstreamAborted))?;
                    if !data.is_empty() {
                        down.send_body(&mut up.buf, data).await?;
                    }
                    up.buf.drain(..used);
                    if used == 0 || dec.is_done() {
                        break;
                    }
                }
                if dec.is_done() {
                    return Ok(dec.trailers().to_vec());
                }
                down.flush().await?;
                read_upstream(up, idle).await?;
            }
        }
        BodyFraming::CloseDelimited => loop {
            if !up.buf.is_empty() {
                let end = up.buf.len();
                down.send_body(&mut up.buf, 0..end).await?;
                up.buf.clear();
            }
            down.flush().await?;
            match read_more(
                &mut up.stream,
                &mut up.buf,
                Instant::now() + idle,
                STREAM_CHUNK,
            )
            .await
            {
                Ok(_) => {}
                // Close-delimited: the response says `close`, so the connection is never pooled.
                Err(IoFail::Closed) => break,
                Err(_) => return Err(ProxyError::new(ErrorKind::UpstreamAborted)),
            }
        },
    }
    Ok(Vec::new())
}
