//! RESP2 on the wire, through the `redis-protocol` crate: commands are encoded as arrays of
//! bulk strings, replies decoded into [`Value`]. A reply larger than `MAX_REPLY` is refused
//! (the connection is then dropped), so a misbehaving server cannot grow a buffer unbounded.
//!
//! Before a reply is decoded, [`Scan`] finds where it ends, resuming where the last read left
//! off: a reply that arrives in many reads is looked at once, not re-parsed from its start
//! after every read, and arrays nesting deeper than `MAX_DEPTH` are refused before the
//! (recursive) decoder sees them, so a hostile server cannot overflow a thread's stack.

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

/// How deep arrays with elements may nest in a reply (an empty array is a leaf: nothing below
/// it to decode). ringway's commands get at most three levels (a script's array of arrays);
/// anything deeper is a broken or hostile server.
pub const MAX_DEPTH: usize = 16;

/// The longest status, error or integer line, and the longest length line.
const MAX_LINE: usize = 64 * 1024;

/// Where the reply at the front of a buffer ends, found across reads (see the module header).
/// Keep one per stream; it starts over by itself after each complete reply.
#[derive(Debug, Default)]
pub struct Scan {
    /// Where the next element not yet scanned starts.
    pos: usize,
    /// Where the search for that element's line end resumes.
    line_from: usize,
    /// Elements still due in each open array, outermost first.
    due: [u64; MAX_DEPTH],
    depth: usize,
}

fn bad(why: &str) -> RedisError {
    RedisError::Protocol(format!("bad reply: {why}"))
}

impl Scan {
    /// The length of the complete reply at the front of `buf` (which only ever grew at its
    /// end since the last call), or `None` while bytes are missing.
    fn frame_len(&mut self, buf: &[u8]) -> Result<Option<usize>, RedisError> {
        loop {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Ok(None);
            };
            let from = self.line_from.max(start + 1);
            let Some(nl) = buf[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| from + i)
            else {
                if buf.len() - start > MAX_LINE {
                    return Err(bad("line too long"));
                }
                self.line_from = buf.len();
                return Ok(None);
            };
            if nl < start + 2 || buf[nl - 1] != b'\r' || nl - start > MAX_LINE {
                return Err(bad("malformed line"));
            }
            let line = &buf[start + 1..nl - 1];
            let after = nl + 1;
            let end = match kind {
                b'+' | b'-' => after,
                b':' => {
                    number(line)?;
                    after
                }
                b'$' => match number(line)? {
                    -1 => after,
                    n if n < 0 || n as u64 > MAX_REPLY as u64 => return Err(bad("bulk length")),
                    n => {
                        let end = after + n as usize + 2;
                        if buf.len() < end {
                            // The length line is read again next time (it is short).
                            self.line_from = start + 1;
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(bad("bulk string not terminated"));
                        }
                        end
                    }
                },
                b'*' => match number(line)? {
                    -1 | 0 => after,
                    // Every element takes at least three bytes.
                    n if n < 0 || n as u64 > (MAX_REPLY / 3) as u64 => {
                        return Err(bad("array length"))
                    }
                    n => {
                        if self.depth == MAX_DEPTH {
                            return Err(bad("arrays nested too deep"));
                        }
                        self.due[self.depth] = n as u64;
                        self.depth += 1;
                        self.pos = after;
                        self.line_from = 0;
                        continue;
                    }
                },
                _ => return Err(bad("unknown type")),
            };
            // One element ended at `end`: it closes every array it was the last element of.
            self.pos = end;
            self.line_from = 0;
            while self.depth > 0 {
                self.due[self.depth - 1] -= 1;
                if self.due[self.depth - 1] > 0 {
                    break;
                }
                self.depth -= 1;
            }
            if self.depth == 0 {
                *self = Scan::default();
                return Ok(Some(end));
            }
        }
    }
}

/// A RESP integer line (`-1`, `42`).
fn number(line: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(line)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not a number"))
}

/// One reply from the front of `buf`: `Ok(None)` when more bytes are needed, else the reply
/// (an error reply as `Err(Server)`) and how many bytes it took. `scan` carries what earlier
/// calls learnt about the same front of the stream (see [`Scan`]).
pub fn decode_reply(scan: &mut Scan, buf: &[u8]) -> Result<Option<(Reply, usize)>, RedisError> {
    let Some(len) = scan.frame_len(buf)? else {
        if buf.len() > MAX_REPLY {
            return Err(RedisError::Protocol("reply too large".into()));
        }
        return Ok(None);
    };
    match decode(&buf[..len]) {
        Ok(Some((frame, used))) if used == len => Ok(Some((into_value(frame), len))),
        Ok(_) => Err(bad("framing")),
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
        let mut scan = Scan::default();
        // Fed a byte at a time, the reply is found once it is whole, and not before.
        for i in 0..16 {
            assert_eq!(decode_reply(&mut scan, &reply[..i]).unwrap(), None, "{i}");
        }
        let (v, used) = decode_reply(&mut scan, reply).unwrap().unwrap();
        assert_eq!(
            v.unwrap(),
            Value::Array(vec![Value::Int(5), Value::Bytes(b"hi".to_vec())])
        );
        assert_eq!(used, 16);
        let (ok, used) = decode_reply(&mut scan, &reply[16..]).unwrap().unwrap();
        assert_eq!((ok.unwrap(), used), (Value::Status(b"OK".to_vec()), 5));
        let one = |bytes: &[u8]| decode_reply(&mut Scan::default(), bytes);
        let (err, _) = one(b"-NOSCRIPT no\r\n").unwrap().unwrap();
        assert!(matches!(err, Err(RedisError::Server(m)) if m.starts_with("NOSCRIPT")));
        assert!(one(b"?garbage\r\n").is_err());
        assert_eq!(one(b"*-1\r\n").unwrap().unwrap().0.unwrap(), Value::Nil);
        assert_eq!(one(b"$-1\r\n").unwrap().unwrap().0.unwrap(), Value::Nil);
        for bad in [
            &b"$-5\r\n"[..],
            b"$999999999999\r\n",
            b"*999999999999\r\n",
            b"$2\r\nhiXX",
            b":12a\r\n",
            b"+no cr\n",
        ] {
            assert!(one(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A hostile server's deeply nested reply is refused before the recursive decoder (which
    /// would overflow the stack) sees it; nesting ringway's replies use still decodes.
    #[test]
    fn deep_nesting_is_refused() {
        let nested = |depth: usize| {
            let mut r = b"*1\r\n".repeat(depth);
            r.extend_from_slice(b":1\r\n");
            r
        };
        let ok = nested(MAX_DEPTH);
        let (v, used) = decode_reply(&mut Scan::default(), &ok).unwrap().unwrap();
        assert!(v.is_ok());
        assert_eq!(used, ok.len());
        assert!(decode_reply(&mut Scan::default(), &nested(MAX_DEPTH + 1)).is_err());
        // An empty array at the deepest level is a leaf (the fuzz target's first find, which
        // was the target counting it as a level).
        let mut leaf = b"*1\r\n".repeat(MAX_DEPTH);
        leaf.extend_from_slice(b"*0\r\n");
        assert!(decode_reply(&mut Scan::default(), &leaf).unwrap().is_some());
        assert!(decode_reply(&mut Scan::default(), &nested(100_000)).is_err());
    }

    /// A large reply fed in small reads is scanned once: each call resumes where the last
    /// stopped (the position only moves forward over whole elements).
    #[test]
    fn a_reply_in_many_reads_resumes_its_scan() {
        let mut reply = b"*1000\r\n".to_vec();
        for i in 0..1000 {
            let item = format!("item-{i}");
            reply.extend_from_slice(format!("${}\r\n{item}\r\n", item.len()).as_bytes());
        }
        let mut scan = Scan::default();
        let mut last = 0;
        for end in (1..reply.len()).step_by(7) {
            assert_eq!(decode_reply(&mut scan, &reply[..end]).unwrap(), None);
            assert!(scan.pos >= last && scan.pos <= end);
            last = scan.pos;
        }
        let (v, used) = decode_reply(&mut scan, &reply).unwrap().unwrap();
        assert_eq!(v.unwrap().into_array().unwrap().len(), 1000);
        assert_eq!(used, reply.len());
    }
}
