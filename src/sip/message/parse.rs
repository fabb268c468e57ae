//! Message parsing: start line, header section (with folding), body by Content-Length.
//!
//! Decisions (RFC 4475 cases in brackets):
//! - Header lines end in CRLF; a bare LF is also accepted as a line end (robustness), but
//!   a bare CR inside the header section is malformed.
//! - Header values must be UTF-8 (RFC 3261 `TEXT-UTF8`). A value with invalid UTF-8 makes
//!   the whole message malformed (`HeaderLine`), so no header ever silently vanishes.
//!   The body is raw bytes and may hold anything [mpart01].
//! - Leading CRLFs before the start line are skipped (RFC 3261 §7.5).
//! - A datagram whose header section ends at the end of the buffer without the empty line
//!   is accepted with an empty body (the RFC 5118 archive stores two messages that way);
//!   a declared non-zero Content-Length then fails with `TruncatedBody`.
//! - The structure of Via, From, To, CSeq and the Request-URI is checked here; other
//!   problems (URI headers in the Request-URI [escruri], Date [baddate], Contact
//!   [regbadct], scheme [unkscm]) surface in `Request::validate`.

use super::lex::{is_token, is_ws, parse_digits_u64, trim_ws};
use super::values::{parse_method, parse_name_addr, parse_via_list};
use super::{
    Header, Headers, MAX_MESSAGE_SIZE, Message, ParseError, Request, Response, Uri, canonical_name,
};
use bytes::Bytes;

/// Headers that may appear at most once (RFC 3261 §7.3.1: not comma-list headers).
const SINGLE_VALUED: [(&str, &str); 6] = [
    ("to", "To"),
    ("from", "From"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
    ("content-length", "Content-Length"),
    ("max-forwards", "Max-Forwards"),
];

const MANDATORY: [(&str, &str); 5] = [
    ("to", "To"),
    ("from", "From"),
    ("cseq", "CSeq"),
    ("call-id", "Call-ID"),
    ("via", "Via"),
];

/// Splits the header section into logical lines: returns the lines (folded ones joined)
/// and the offset where the body starts.
fn split_head(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), ParseError> {
    let mut physical: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or(&[]);
        if rest.is_empty() {
            // End of datagram without the empty line: see the module notes.
            if physical.is_empty() {
                return Err(ParseError::NoHeaderEnd);
            }
            return Ok((physical, pos));
        }
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            return Err(ParseError::NoHeaderEnd);
        };
        let line = rest.get(..lf).unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += lf + 1;
        if line.is_empty() {
            return Ok((physical, pos));
        }
        physical.push(line);
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = line.split_once(' ').ok_or(ParseError::StartLine)?;
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(ParseError::Version);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StartLine);
        }
        let status = code.parse::<u16>().map_err(|_| ParseError::StartLine)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::StartLine);
        }
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::StartLine);
        }
        return Ok(StartLine::Status(status, reason.to_string()));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, exactly one SP each
    // (RFC 4475 lwsstart, trws, lwsruri).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    let method = parse_method(method).ok_or(ParseError::StartLine)?;
    if !version
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        return Err(ParseError::StartLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::Version);
    }
    let uri = Uri::parse(uri)?;
    Ok(StartLine::Request(method, uri))
}

enum StartLine {
    Request(super::Method, Uri),
    Status(u16, String),
}

fn parse_header_line(line: &str, index: usize) -> Result<Header, ParseError> {
    let bad = ParseError::HeaderLine { line: index };
    let (name, value) = line.split_once(':').ok_or(bad.clone())?;
    // HCOLON = *( SP / HTAB ) ":" SWS
    let name = name.trim_end_matches(is_ws);
    if !is_token(name) {
        return Err(bad);
    }
    Ok(Header {
        name: name.to_string(),
        value: trim_ws(value).to_string(),
    })
}

pub(crate) fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let buf = buf.get(start..).ok_or(ParseError::Empty)?;
    let (lines, body_start) = split_head(buf)?;
    let mut lines = lines.into_iter();
    let first = lines.next().ok_or(ParseError::StartLine)?;
    let first = std::str::from_utf8(first).map_err(|_| ParseError::StartLine)?;
    if first.starts_with(is_ws) {
        return Err(ParseError::StartLine);
    }
    let start_line = parse_start_line(first)?;

    // Unfold: a line starting with SP/HTAB continues the previous header.
    let mut headers: Vec<Header> = Vec::new();
    let mut logical: Option<String> = None;
    let mut index = 0usize;
    for raw in lines {
        index += 1;
        let text = std::str::from_utf8(raw).map_err(|_| ParseError::HeaderLine { line: index })?;
        if text.contains('\r') {
            return Err(ParseError::HeaderLine { line: index });
        }
        if text.starts_with(is_ws) {
            let cont = logical
                .as_mut()
                .ok_or(ParseError::HeaderLine { line: index })?;
            let piece = trim_ws(text);
            if !piece.is_empty() {
                cont.push(' ');
                cont.push_str(piece);
            }
            continue;
        }
        if let Some(done) = logical.take() {
            headers.push(parse_header_line(&done, index - 1)?);
        }
        logical = Some(text.to_string());
    }
    if let Some(done) = logical.take() {
        headers.push(parse_header_line(&done, index)?);
    }
    let headers = Headers(headers);

    for (key, name) in SINGLE_VALUED {
        if headers
            .0
            .iter()
            .filter(|h| canonical_name(&h.name) == key)
            .count()
            > 1
        {
            return Err(ParseError::DuplicateHeader { name });
        }
    }
    for (key, name) in MANDATORY {
        if !headers.0.iter().any(|h| canonical_name(&h.name) == key) {
            return Err(ParseError::MissingHeader { name });
        }
    }
    // Structural checks of the headers every layer relies on.
    headers.call_id()?;
    let cseq = headers.cseq()?;
    for via in headers.get_all("via") {
        parse_via_list(via)?;
    }
    for (key, name) in [("from", "From"), ("to", "To")] {
        if let Some(v) = headers.get(key) {
            parse_name_addr(v, name)?;
        }
    }

    let available = buf.len().saturating_sub(body_start);
    let body_len = match headers.get("content-length") {
        Some(v) => {
            let declared = parse_digits_u64(v).ok_or(ParseError::ContentLength)?;
            let declared = usize::try_from(declared).map_err(|_| ParseError::ContentLength)?;
            if declared > MAX_MESSAGE_SIZE {
                return Err(ParseError::ContentLength);
            }
            if declared > available {
                return Err(ParseError::TruncatedBody);
            }
            declared
        }
        None => available,
    };
    let body = buf
        .get(body_start..body_start + body_len)
        .ok_or(ParseError::TruncatedBody)?;
    let body = Bytes::copy_from_slice(body);

    Ok(match start_line {
        StartLine::Request(method, uri) => {
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        }
        StartLine::Status(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}
