//! RESP2 on the wire, through the `redis-protocol` crate: commands are encoded as arrays of
//! bulk strings, replies decoded into [`Value`]. A reply larger than `MAX_REPLY` is refused
//! (the connection is then dropped), so a misbehaving server cannot grow a buffer unbounded.

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

use super::error::RedisError;

/// The largest reply a connection buffers (a full key-store HGETALL fits many times over).
pub const MAX_REPLY: usize = 64 << 20;

/// A decoded reply. Error replies are not values: they become `RedisError::Server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    /// A simple-string reply (`+OK`, `+QUEUED`, `+PONG`).
    Status(Vec<u8>),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bytes(b) | Value::Status(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) | Value::Status(b) => Some(b),
            _ => None,
        }
    }

    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Appends one command (`args[0]` is its name) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // The request path's commands (a script call with a few keys and arguments) fit on the
    // stack; longer ones (maintenance, tests) take a heap vector.
    const STACK: usize = 16;
    if args.len() <= STACK {
        let mut parts: [BorrowedFrame<'_>; STACK] = std::array::from_fn(|_| BorrowedFrame::Null);
        for (p, a) in parts.iter_mut().zip(args) {
            *p = BorrowedFrame::BulkString(a);
        }
        encode_parts(out, &parts[..args.len()]);
    } else {
        let parts: Vec<BorrowedFrame<'_>> =
            args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        encode_parts(out, &parts);
    }
}

fn encode_parts(out: &mut Vec<u8>, parts: &[BorrowedFrame<'_>]) {
    let frame = BorrowedFrame::Array(parts);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // The buffer was sized by the same frame's `encode_len`, so encoding cannot run short.
    if encode_borrowed(&mut out[start..], &frame, false).is_err() {
        out.truncate(start);
    }
}

/// A reply: a value, or the error reply Redis sent.
pub type Reply = Result<Value, RedisError>;

/// One reply from the front of `buf`: `Ok(None)` when more bytes are needed, else the reply
/// (an error reply as `Err(Server)`) and how many bytes it took.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, RedisError> {
    match decode(buf) {
        Ok(None) if buf.len() > MAX_REPLY => Err(RedisError::Protocol("reply too large".into())),
        Ok(None) => Ok(None),
        Ok(Some((frame, used))) => Ok(Some((into_value(frame), used))),
        Err(e) => Err(RedisError::Protocol(format!("bad reply: {e:?}"))),
    }
}

fn into_value(f: OwnedFrame) -> Result<Value, RedisError> {
    Ok(match f {
        OwnedFrame::SimpleString(s) => Value::Status(s),
        OwnedFrame::Error(e) => return Err(RedisError::Server(e)),
        OwnedFrame::Integer(i) => Value::Int(i),
        OwnedFrame::BulkString(b) => Value::Bytes(b),
        OwnedFrame::Null => Value::Nil,
        OwnedFrame::Array(items) => Value::Array(
            items
                .into_iter()
                // An error nested in an array (EXEC, scripts) stays an error of the whole.
                .map(into_value)
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_replies() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"v\r\n"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n");
        let reply = b"*2\r\n:5\r\n$2\r\nhi\r\n+OK\r\n";
        assert_eq!(decode_reply(&reply[..6]).unwrap(), None);
        let (v, used) = decode_reply(reply).unwrap().unwrap();
        assert_eq!(
            v.unwrap(),
            Value::Array(vec![Value::Int(5), Value::Bytes(b"hi".to_vec())])
        );
        assert_eq!(used, 16);
        let (err, _) = decode_reply(b"-NOSCRIPT no\r\n").unwrap().unwrap();
        assert!(matches!(err, Err(RedisError::Server(m)) if m.starts_with("NOSCRIPT")));
        assert!(decode_reply(b"?garbage\r\n").is_err());
    }
}
