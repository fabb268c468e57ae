//! Stream framing for TCP/TLS (RFC 3261 §18.3).

use super::ParseError;
use super::canonical_name;
use super::lex::{parse_digits_u64, trim_ws};
use bytes::{Buf, Bytes, BytesMut};

/// Cuts a TCP byte stream into messages by Content-Length (RFC 3261 §18.3), skipping
/// CRLF keep-alives between messages (RFC 5626 §3.5.1).
///
/// Memory is bounded by the caller's pushes plus `max_message`: once the buffered bytes
/// exceed `max_message` without a complete frame, `next_frame` fails and the connection
/// must be closed.
#[derive(Debug)]
pub struct StreamFramer {
    max_message: usize,
    buf: BytesMut,
    /// How far the search for the end of the header section has got, so that a message
    /// arriving in many small pushes is not rescanned from the start every time.
    scanned: usize,
    /// Size of the frame being received once its header section has been read, so that a
    /// body trickling in byte by byte does not make us re-read the headers each time.
    frame_len: Option<usize>,
    /// Line feeds skipped in front of the next start line, so that a CRLFCRLF ping split
    /// over two reads is still seen.
    skipped_line_feeds: usize,
    /// RFC 5626 §4.4.1 pings (CRLFCRLF) seen and not yet taken by the caller.
    pings: usize,
}

impl StreamFramer {
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            max_message,
            buf: BytesMut::new(),
            scanned: 0,
            frame_len: None,
            skipped_line_feeds: 0,
            pings: 0,
        }
    }
    /// How many keep-alive pings (CRLFCRLF between messages, RFC 5626 §4.4.1) arrived
    /// since the last call; the caller answers each with a CRLF pong. A single CRLF
    /// between messages (RFC 3261 §7.5) is skipped without a pong.
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// Bytes buffered and not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A missing or bad Content-Length in stream mode, or a frame over the limit: the
    /// stream cannot be resynchronised and the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, ParseError> {
        if let Some(total) = self.frame_len {
            return Ok(self.take(total));
        }
        // Keep-alive CRLFs (and stray line ends) before a start line are skipped.
        let leading = self
            .buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(self.buf.len());
        if leading > 0 {
            let line_feeds = self
                .buf
                .get(..leading)
                .unwrap_or_default()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.skipped_line_feeds += line_feeds;
            self.pings += self.skipped_line_feeds / 2;
            self.skipped_line_feeds %= 2;
            self.buf.advance(leading);
            self.scanned = 0;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let from = self.scanned.saturating_sub(3);
        let limit = self.buf.len().min(self.max_message);
        let window = self.buf.get(from..limit).unwrap_or(&[]);
        let Some(rel) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > self.max_message {
                return Err(ParseError::TooLarge);
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let head_end = from + rel + 4;
        let head = self.buf.get(..head_end).unwrap_or(&[]);
        let body_len = content_length(head)?;
        let total = head_end
            .checked_add(body_len)
            .ok_or(ParseError::ContentLength)?;
        if total > self.max_message {
            return Err(ParseError::TooLarge);
        }
        self.frame_len = Some(total);
        Ok(self.take(total))
    }

    /// The frame of `total` bytes once it is all buffered.
    fn take(&mut self, total: usize) -> Option<Bytes> {
        if self.buf.len() < total {
            return None;
        }
        self.scanned = 0;
        self.frame_len = None;
        self.skipped_line_feeds = 0;
        Some(self.buf.split_to(total).freeze())
    }
}

/// The Content-Length of a header section; mandatory in stream mode. Several values are
/// an unrecoverable framing error (RFC 4475 §3.3.9 mcl01).
fn content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found: Option<u64> = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = std::str::from_utf8(line.get(..colon).unwrap_or(&[])).unwrap_or("");
        if canonical_name(trim_ws(name)) != "content-length" {
            continue;
        }
        let mut value = line.get(colon + 1..).unwrap_or(&[]).to_vec();
        // A folded value continues on lines starting with white space.
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                value.push(b' ');
                value.extend_from_slice(next.strip_suffix(b"\r").unwrap_or(next));
                lines.next();
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(&value).map_err(|_| ParseError::ContentLength)?;
        let n = parse_digits_u64(trim_ws(text)).ok_or(ParseError::ContentLength)?;
        if found.is_some() {
            return Err(ParseError::DuplicateHeader {
                name: "Content-Length",
            });
        }
        found = Some(n);
    }
    let n = found.ok_or(ParseError::MissingHeader {
        name: "Content-Length",
    })?;
    usize::try_from(n).map_err(|_| ParseError::ContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn split_across_many_pushes() {
        let mut f = StreamFramer::new(65_535);
        for chunk in MSG.chunks(3) {
            assert_eq!(f.next_frame(), Ok(None));
            f.push(chunk);
        }
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn body_trickling_in_byte_by_byte_is_framed_once_complete() {
        let mut f = StreamFramer::new(65_535);
        let head_len = MSG.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        f.push(&MSG[..head_len]);
        assert_eq!(f.next_frame(), Ok(None));
        for byte in &MSG[head_len..] {
            assert_eq!(f.next_frame(), Ok(None));
            f.push(std::slice::from_ref(byte));
        }
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn several_messages_and_keepalives_in_one_push() {
        let mut f = StreamFramer::new(65_535);
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(MSG);
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(MSG);
        data.extend_from_slice(&MSG[..10]);
        f.push(&data);
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.pending(), 10);
    }

    #[test]
    fn a_crlf_between_messages_is_skipped_and_a_double_crlf_is_a_ping() {
        let mut f = StreamFramer::new(65_535);
        // RFC 4475 dblreq: one extra CRLF after a message is not a ping.
        let mut data = MSG.to_vec();
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(MSG);
        f.push(&data);
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.take_pings(), 0);
        // RFC 5626 keep-alive pings, one of them split over two reads.
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.take_pings(), 1);
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.take_pings(), 1);
        assert_eq!(f.take_pings(), 0);
        f.push(MSG);
        assert_eq!(f.next_frame(), Ok(Some(Bytes::from_static(MSG))));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn missing_content_length_is_fatal_in_stream_mode() {
        let mut f = StreamFramer::new(65_535);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        assert_eq!(
            f.next_frame(),
            Err(ParseError::MissingHeader {
                name: "Content-Length"
            })
        );
    }

    #[test]
    fn conflicting_content_lengths_are_fatal() {
        let mut f = StreamFramer::new(65_535);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n");
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn over_limit_header_and_body_rejected() {
        let mut f = StreamFramer::new(100);
        f.push(&[b'A'; 101]);
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));

        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert!(f.next_frame().is_err());

        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 90\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));
    }

    #[test]
    fn folded_content_length_is_read() {
        let mut f = StreamFramer::new(1000);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nokNEXT");
        assert_eq!(f.next_frame().map(|o| o.map(|b| b.len())), Ok(Some(50)));
    }
}
