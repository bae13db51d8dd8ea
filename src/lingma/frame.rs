//! Content-Length framing of the Lingma wire protocol: each JSON-RPC message in a WebSocket
//! message is preceded by an LSP-style `Content-Length` header counting its bytes.
//!
//! Every JSON-RPC message travels as an LSP base-protocol frame: `Content-Length: N\r\n\r\n` followed
//! by exactly N bytes of UTF-8 JSON. On the WebSocket one frame is normally one text message, but a
//! reader must cope with several frames in one message and with a frame split across messages, so the
//! decoder keeps a byte buffer. This file is pure (no I/O) so that it can be unit-, property- and
//! fuzz-tested; both the client (`rpc.rs`) and the simulator use it.

use thiserror::Error;

/// Largest frame body accepted by default. Lingma answers are text; 64 MiB is far above anything real
/// and still bounds what a hostile peer can make us buffer.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// A header block longer than this without its terminating blank line is not a header.
const MAX_HEADER_LEN: usize = 8 * 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes do not start with a header block (for example a bare JSON message). Lingma logs
    /// `Unknown message header` for these.
    #[error("Unknown message header: {0:?}")]
    UnknownHeader(String),
    #[error("frame header has no Content-Length")]
    MissingLength,
    #[error("invalid Content-Length: {0:?}")]
    BadLength(String),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame header exceeds {MAX_HEADER_LEN} bytes")]
    HeaderTooLong,
}

/// Encodes one JSON body as a frame.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Encodes one JSON body as a frame in a `String` (a WebSocket text message needs UTF-8).
pub fn encode_str(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 32);
    out.push_str("Content-Length: ");
    out.push_str(&body.len().to_string());
    out.push_str("\r\n\r\n");
    out.push_str(body);
    out
}

/// Incremental decoder: feed it bytes with [`FrameDecoder::push`], take bodies with
/// [`FrameDecoder::next_frame`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out; compacted lazily so that many small frames in one message
    /// do not each shift the buffer.
    start: usize,
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Drops everything buffered. After an error the stream is out of sync; a reader that wants to
    /// go on (as the simulator does, logging the error) resets and waits for the next message.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Returns the next complete frame body, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let data = &self.buf[self.start..];
        if data.is_empty() {
            return Ok(None);
        }
        let Some(header_end) = find_header_end(data) else {
            // Reject early what can never become a header, so a bare JSON message fails at once
            // instead of waiting for bytes that never come.
            if !could_be_header_prefix(data) {
                return Err(FrameError::UnknownHeader(preview(data)));
            }
            if data.len() > MAX_HEADER_LEN {
                return Err(FrameError::HeaderTooLong);
            }
            return Ok(None);
        };
        let len = parse_header(&data[..header_end])?;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let body_start = header_end + 4;
        if data.len() < body_start + len {
            return Ok(None);
        }
        let body = data[body_start..body_start + len].to_vec();
        self.start += body_start + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }
}

fn find_header_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Header names are ASCII tokens: a buffer that starts with anything else (`{`, whitespace, binary)
/// is not the start of a frame.
fn could_be_header_prefix(data: &[u8]) -> bool {
    // Every complete line must be `Name: value`; the unfinished last line must be able to
    // become one.
    let mut rest = data;
    loop {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                let line = &rest[..end];
                match line.iter().position(|&b| b == b':') {
                    Some(colon) if colon > 0 && line[..colon].iter().all(|&b| is_token_byte(b)) => {
                    }
                    _ => return false,
                }
                rest = &rest[end + 2..];
            }
            None => {
                return match rest.iter().position(|&b| b == b':') {
                    Some(colon) => colon > 0 && rest[..colon].iter().all(|&b| is_token_byte(b)),
                    None => rest.iter().all(|&b| is_token_byte(b) || b == b'\r'),
                };
            }
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn parse_header(header: &[u8]) -> Result<usize, FrameError> {
    let text =
        std::str::from_utf8(header).map_err(|_| FrameError::UnknownHeader(preview(header)))?;
    let mut length = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FrameError::UnknownHeader(preview(line.as_bytes())));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(FrameError::UnknownHeader(preview(line.as_bytes())));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FrameError::BadLength(value.to_string()));
            }
            let n: usize = value
                .parse()
                .map_err(|_| FrameError::BadLength(value.to_string()))?;
            length = Some(n);
        }
    }
    length.ok_or(FrameError::MissingLength)
}

fn preview(data: &[u8]) -> String {
    let cut = &data[..data.len().min(40)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_byte_length_not_chars() {
        let body = "{\"t\":\"通义\"}";
        let f = encode_str(body);
        assert!(f.starts_with(&format!("Content-Length: {}\r\n\r\n", body.len())));
        assert_eq!(body.len(), 14);
    }

    #[test]
    fn decodes_several_frames_in_one_push() {
        let mut d = FrameDecoder::default();
        let mut data = encode(b"{\"a\":1}");
        data.extend(encode(b"{\"b\":2}"));
        d.push(&data);
        assert_eq!(d.next_frame().unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"{\"b\":2}");
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn decodes_split_frames() {
        let mut d = FrameDecoder::default();
        let data = encode("{\"x\":\"数据\"}".as_bytes());
        for chunk in data.chunks(3) {
            assert!(d.pending() < data.len());
            d.push(chunk);
        }
        assert_eq!(
            d.next_frame().unwrap().unwrap(),
            "{\"x\":\"数据\"}".as_bytes()
        );
    }

    #[test]
    fn waits_for_partial_header() {
        let mut d = FrameDecoder::default();
        d.push(b"Content-Len");
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(b"gth: 2\r\n\r\n{}");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"{}");
    }

    #[test]
    fn rejects_bare_json() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"jsonrpc\":\"2.0\"}");
        assert!(matches!(d.next_frame(), Err(FrameError::UnknownHeader(_))));
    }

    #[test]
    fn accepts_extra_headers_and_case() {
        let mut d = FrameDecoder::default();
        d.push(b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"{}");
    }

    #[test]
    fn rejects_missing_and_bad_length() {
        let mut d = FrameDecoder::default();
        d.push(b"Content-Type: x\r\n\r\n{}");
        assert_eq!(d.next_frame(), Err(FrameError::MissingLength));
        let mut d = FrameDecoder::default();
        d.push(b"Content-Length: -1\r\n\r\n{}");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
    }

    #[test]
    fn rejects_signed_length_and_bad_second_line_at_once() {
        let mut d = FrameDecoder::default();
        d.push(b"Content-Length: +5\r\n\r\n{}");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
        let mut d = FrameDecoder::default();
        d.push(b"Content-Length: 2\r\n{\"jsonrpc\"");
        assert!(matches!(d.next_frame(), Err(FrameError::UnknownHeader(_))));
    }

    #[test]
    fn rejects_oversized() {
        let mut d = FrameDecoder::new(10);
        d.push(b"Content-Length: 11\r\n\r\n");
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn rejects_endless_header() {
        let mut d = FrameDecoder::default();
        d.push(b"X-Pad: ");
        d.push(&vec![b'a'; MAX_HEADER_LEN + 1]);
        assert_eq!(d.next_frame(), Err(FrameError::HeaderTooLong));
    }

    proptest! {
        #[test]
        fn round_trip_any_split(bodies in prop::collection::vec(".{0,64}", 1..8), cut in 1usize..17) {
            let mut wire = Vec::new();
            for b in &bodies {
                wire.extend(encode(b.as_bytes()));
            }
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(String::from_utf8(f).unwrap());
                }
            }
            prop_assert_eq!(got, bodies);
            prop_assert_eq!(d.pending(), 0);
        }

        #[test]
        fn never_panics_on_garbage(data in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut d = FrameDecoder::new(1024);
            d.push(&data);
            for _ in 0..8 {
                match d.next_frame() {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
