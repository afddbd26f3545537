//! Gateway-made responses: the one place an error becomes a response (`error`, `problem`),
//! and local answers (static, redirect, echo, CORS preflight) with their whole body at hand.

use crate::core::Core;

use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::wire::{BodyLen, Downstream, Outcome, Response};

/// Renders `err` as problem+json: the field lines (content type, `Allow` for 405) into
/// `fields`, the body into `body`. Every error response any wire sends is built here.
pub fn problem(err: &ProxyError, request_id: &str, fields: &mut Vec<u8>, body: &mut Vec<u8>) {
    use crate::http1::{allow_header_value, push_decimal, reason_phrase, write_header};
    let info = err.info();
    body.extend_from_slice(b"{\"type\":\"about:blank\",\"title\":\"");
    body.extend_from_slice(reason_phrase(info.status).as_bytes());
    body.extend_from_slice(b"\",\"status\":");
    push_decimal(body, info.status as u64);
    body.extend_from_slice(b",\"code\":\"");
    body.extend_from_slice(info.code.as_bytes());
    body.extend_from_slice(b"\",\"detail\":\"");
    crate::json::escape_into(body, info.text.as_bytes());
    body.extend_from_slice(b"\",\"request_id\":\"");
    crate::json::escape_into(body, request_id.as_bytes());
    body.extend_from_slice(b"\"}\n");
    write_header(fields, b"content-type", b"application/problem+json");
    if let ErrorKind::MethodNotAllowed(bits) = err.kind {
        write_header(fields, b"allow", allow_header_value(bits).as_bytes());
    }
}

/// Answers the exchange with `err`. The connection stays open only if the error allows it
/// and the rest of the request body (if any) is already here and can be skipped.
pub async fn error<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    err: ProxyError,
) -> Outcome {
    if err.kind == ErrorKind::ClientAborted {
        // Nobody to answer: the status stays unset, which telemetry records as 499.
        return Outcome::Done(false);
    }
    let keep = !err.must_close() && !ex.close && !core.draining() && down.skip_body(ex.head);
    let mut fields = Vec::with_capacity(128);
    let mut body = Vec::with_capacity(192);
    let reply = match err.kind {
        ErrorKind::PolicyReply(_) => ex.facts.policy_reply.take(),
        _ => None,
    };
    let resp = if let Some(r) = &reply {
        // A policy's own answer goes out as it chose it (its status, fields and body).
        fields.extend_from_slice(&r.fields);
        body.extend_from_slice(&r.body);
        Response {
            status: r.status,
            fields: &fields,
            body: BodyLen::Length(body.len() as u64),
            keep,
        }
    } else if super::grpc::is_grpc(ex.head) {
        grpc_status(&err, ex, &mut fields, keep)
    } else {
        problem(&err, ex.rid.as_str(), &mut fields, &mut body);
        Response {
            status: err.status(),
            fields: &fields,
            body: BodyLen::Length(body.len() as u64),
            keep,
        }
    };
    let keep = down.start_response(ex, &resp);
    // The log and metrics keep the gateway's HTTP status (a gRPC client sees 200).
    ex.facts.status = err.status();
    down.queue_body(&body);
    match down.end_response().await {
        Ok(()) if keep => Outcome::Done(true),
        Ok(()) => {
            // Closing with request bytes possibly still on the way: let the client read the
            // response instead of a reset (not for a client that already stalled or left).
            let stalled = matches!(
                err.kind,
                ErrorKind::RequestTimeout | ErrorKind::ClientClosedBody
            );
            if !stalled {
                down.linger().await;
            }
            Outcome::Done(false)
        }
        Err(_) => Outcome::Done(false),
    }
}

/// An error for a gRPC client: "Trailers-Only", HTTP 200 with `grpc-status` and
/// `grpc-message` and no body (`exchange::grpc`). Over HTTP/2 the stream ends on its HEADERS
/// frame; over HTTP/1.1 (gRPC-Web) a zero length says the same.
fn grpc_status<'a>(
    err: &ProxyError,
    ex: &Exchange<'_>,
    fields: &'a mut Vec<u8>,
    keep: bool,
) -> Response<'a> {
    let info = err.info();
    let code = super::grpc::status_for(info.status);
    let content_type = super::grpc::answer_type(ex.head);
    super::grpc::write_status_fields(fields, content_type, code, info.text);
    let body = match ex.client.protocol {
        super::model::Protocol::Http2 => BodyLen::Bare,
        super::model::Protocol::Http1 => BodyLen::Length(0),
    };
    Response {
        status: 200,
        fields,
        body,
        keep,
    }
}

/// Answers with a response the gateway made itself: `fields` are its own field lines, `body`
/// its whole body (`None`: no body and no length, for 204/304).
pub async fn local<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    status: u16,
    fields: &[u8],
    body: Option<&[u8]>,
) -> Outcome {
    // A drain that started while this request ran still gets announced on its response.
    let resp = Response {
        status,
        fields,
        body: body
            .as_ref()
            .map_or(BodyLen::Bare, |b| BodyLen::Length(b.len() as u64)),
        keep: !ex.close && !core.draining(),
    };
    let keep = down.start_response(ex, &resp);
    ex.facts.status = status;
    if let Some(b) = body {
        down.queue_body(b);
    }
    match down.end_response().await {
        Ok(()) => Outcome::Done(keep),
        Err(_) => Outcome::Done(false),
    }
}
