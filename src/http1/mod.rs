//! Strict HTTP/1.1 wire handling: request/response head parsing (on top of `httparse`), the
//! validation rules that stop request smuggling, body framing, a zero-copy chunked decoder and
//! fresh head serialization.
//!
//! Invariants: nothing here allocates per header beyond the owned head copy, nothing panics on
//! input, and every rejection carries the status the client must see (400/413/414/431/501/505).
//! Parsed heads own a copy of their bytes so they can live across awaits while the connection's
//! read buffer moves on to the next pipelined request.
//!
//! Layout: this file only declares the modules and re-exports everything public, so callers only
//! ever name `http1::X`. `types` owns the shared vocabulary (spans, methods, versions, limits,
//! body framing, rejections), `request` and `response` parse heads, `head` holds the
//! header-section scanning both share, `target` knows request-target and authority syntax,
//! `chunked` decodes and frames chunked bodies, `serialize` writes fresh heads and knows what is
//! hop-by-hop, `path` normalizes request paths before routing, and `query` is the one reading of
//! query strings.

mod chunked;
pub mod cookie;
mod head;
mod path;
pub mod pct;
pub mod query;
mod recycle;
mod request;
mod response;
mod serialize;
mod target;
pub use target::strip_port;
mod types;
mod value;

pub use chunked::{
    forwardable_trailers, write_chunk_header, write_last_chunk, ChunkError, ChunkedDecoder,
    LAST_CHUNK,
};
pub use head::parse_content_length;
pub use path::{
    normalize_path, normalize_path_with, EscapedSlashes, PathOptions, PathParams, PathReject,
};
pub use request::{parse_request_head, same_field_loosely, Repeated, RequestHead};
pub use response::{parse_response_head, ResponseHead};
pub use serialize::{
    connection_names_fields, end_response_head, is_hop_by_hop, length_mask, listed,
    named_in_connection, push_decimal, reason_phrase, write_connection, write_header,
    write_response_head, write_status_line, Framing, HeadEnd,
};
pub use types::{
    allow_header_value, is_tchar, is_valid_field, trim_ows, BodyFraming, HeadError, HeaderSpan,
    Limits, Method, Span, Version,
};
pub use value::{is_safe_header_value, MAX_DERIVED_VALUE_LEN};

#[cfg(test)]
mod tests;
