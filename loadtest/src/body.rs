//! HTTP/1.1 message body framing, shared by the client (responses) and the upstream
//! (requests): a streaming decoder that walks Content-Length, chunked (with extensions and
//! trailers) and close-delimited bodies and discards the payload, counting its bytes.
//!
//! Invariant: `decode` never needs the whole body in memory. It consumes a prefix of the bytes
//! it is given; when it consumes nothing and is not done, the caller must append more input
//! (keeping the unconsumed bytes in front) and call again.

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the peer closes the connection (responses only).
    UntilClose,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A chunk-size line was not hex digits (optionally with extensions) or overflowed.
    ChunkSize,
    /// Chunk data was not followed by CRLF.
    ChunkEnd,
    /// The trailer section was malformed.
    Trailers,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FramingError::ChunkSize => "bad chunk size",
            FramingError::ChunkEnd => "chunk data not followed by CRLF",
            FramingError::Trailers => "bad chunked trailers",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

/// Streaming body decoder; see the module header for the calling convention.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    payload: u64,
}

/// What one `decode` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of input consumed (framing and payload).
    pub consumed: usize,
    /// The body is complete; bytes after `consumed` belong to the next message.
    pub done: bool,
}

impl BodyDecoder {
    /// A decoder for a body with the given framing.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state, payload: 0 }
    }

    /// True once the whole body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True when the body ends only at connection close.
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// Payload bytes seen so far (without chunk framing).
    #[cfg(test)]
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Consumes as much of `input` as the framing allows.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, FramingError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => {
                    return Ok(Progress {
                        consumed: pos,
                        done: true,
                    })
                }
                State::UntilClose => {
                    self.payload += rest.len() as u64;
                    return Ok(Progress {
                        consumed: input.len(),
                        done: false,
                    });
                }
                State::Length(left) | State::ChunkData(left) => {
                    if rest.is_empty() {
                        return Ok(Progress {
                            consumed: pos,
                            done: false,
                        });
                    }
                    let take = left.min(rest.len() as u64);
                    // `take` <= rest.len(), so it fits in usize.
                    pos += take as usize;
                    self.payload += take;
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), n) => State::Length(n),
                        (_, 0) => State::ChunkEnd,
                        (_, n) => State::ChunkData(n),
                    };
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        pos += used;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        return Ok(Progress {
                            consumed: pos,
                            done: false,
                        })
                    }
                    Err(_) => return Err(FramingError::ChunkSize),
                },
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(FramingError::ChunkEnd);
                        }
                        return Ok(Progress {
                            consumed: pos,
                            done: false,
                        });
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(FramingError::ChunkEnd);
                    }
                    pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(rest, &mut headers) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            pos += used;
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) => {
                            return Ok(Progress {
                                consumed: pos,
                                done: false,
                            })
                        }
                        Err(_) => return Err(FramingError::Trailers),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes the way a socket reader would, keeping the
    /// unconsumed tail; returns (payload bytes, bytes left over after the body).
    fn feed(framing: Framing, input: &[u8], step: usize) -> Result<(u64, usize), FramingError> {
        let mut d = BodyDecoder::new(framing);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            let p = d.decode(&buf)?;
            buf.drain(..p.consumed);
            if p.done {
                return Ok((d.payload_bytes(), buf.len() + input.len() - fed));
            }
            if fed == input.len() {
                panic!("ran out of input; state {:?}", d.state);
            }
            let end = (fed + step).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
        }
    }

    #[test]
    fn content_length_any_split() {
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(feed(Framing::Length(5), b"hello", step), Ok((5, 0)));
            assert_eq!(
                feed(Framing::Length(5), b"helloNEXT", step).map(|r| r.0),
                Ok(5)
            );
        }
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
    }

    #[test]
    fn chunked_any_split() {
        let msg = b"5;ext=1\r\nhello\r\n0a\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let plain = b"3\r\nabc\r\n0\r\n\r\n";
        for step in [1, 2, 3, 5, 1000] {
            assert_eq!(feed(Framing::Chunked, msg, step), Ok((15, 0)));
            assert_eq!(feed(Framing::Chunked, plain, step), Ok((3, 0)));
        }
        let mut pipelined = plain.to_vec();
        pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut d = BodyDecoder::new(Framing::Chunked);
        let p = d.decode(&pipelined).unwrap();
        assert!(p.done);
        assert_eq!(p.consumed, plain.len());
    }

    #[test]
    fn chunked_errors() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(d.decode(b"zz\r\n"), Err(FramingError::ChunkSize));
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(
            d.decode(b"ffffffffffffffffff\r\n"),
            Err(FramingError::ChunkSize)
        );
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(d.decode(b"3\r\nabcXY"), Err(FramingError::ChunkEnd));
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(d.decode(b"3\r\nabcX"), Err(FramingError::ChunkEnd));
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(
            d.decode(b"0\r\nbad trailer\r\n\r\n"),
            Err(FramingError::Trailers)
        );
    }

    #[test]
    fn until_close_consumes_everything() {
        let mut d = BodyDecoder::new(Framing::UntilClose);
        let p = d.decode(b"abc").unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: 3,
                done: false
            }
        );
        assert!(d.until_close());
        assert_eq!(d.payload_bytes(), 3);
    }
}
