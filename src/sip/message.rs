//! SIP message layer (RFC 3261 §7, §20, §25): parsing, framing, typed header access and
//! response construction. Ours rather than rsip/rsipstack/ezk: see README "Design notes".
//!
//! Contract used by the rest of the server (keep these signatures stable):
//! - [`parse_message`] parses one complete message (a UDP datagram or a frame cut by
//!   [`StreamFramer`]); every malformed input is an `Err(ParseError)`, never a panic.
//! - [`Request::validate`] applies the RFC 4475/5118 request checks that come before
//!   authentication and routing and tells which final response to send.
//! - [`Response::for_request`] builds a response per RFC 3261 §8.2.6.

use bytes::Bytes;
use std::fmt;

/// Why a message could not be parsed. Carries no payload text: the byte offset is enough
/// to find the problem and keeps attacker-controlled text out of logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    #[error("start line is malformed")]
    StartLine,
    #[error("SIP version is not SIP/2.0")]
    Version,
    #[error("request-URI is malformed")]
    RequestUri,
    #[error("header line {line} is malformed")]
    HeaderLine { line: usize },
    #[error("header {name} has a malformed value")]
    HeaderValue { name: &'static str },
    #[error("mandatory header {name} is missing")]
    MissingHeader { name: &'static str },
    #[error("header {name} appears more than once where only one is allowed")]
    DuplicateHeader { name: &'static str },
    #[error("no blank line ends the headers")]
    NoHeaderEnd,
    #[error("Content-Length is malformed or too large")]
    ContentLength,
    #[error("body is shorter than Content-Length")]
    TruncatedBody,
    #[error("message exceeds the size limit")]
    TooLarge,
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token; compared case-sensitively as RFC 3261 §7.1 requires.
    Extension(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line as received. `name` keeps the spelling seen on the wire; lookups are
/// case-insensitive and treat compact forms (RFC 3261 §7.3.3: i, m, e, l, c, f, s, k, t, v,
/// plus o, r, u, b, x, y, a from later RFCs) as their long names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

/// A SIP or SIPS URI (or another scheme kept verbatim so the core can answer 416).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Lower-cased scheme: "sip", "sips", "tel", ...
    pub scheme: String,
    /// User part, still escaped as on the wire; None when absent.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters in order (`;transport=tcp;lr`); values None for flags.
    pub params: Vec<(String, Option<String>)>,
    pub headers: Vec<(String, String)>,
    /// The URI exactly as received, for schemes we do not parse and for re-serialising.
    pub raw: String,
}

/// `name-addr` / `addr-spec` with header parameters (From, To, Contact, Refer-To ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display_name: Option<String>,
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=...;expires=...;q=0.5`).
    pub params: Vec<(String, Option<String>)>,
}

/// Contact header value: either `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    Star,
    List(Vec<NameAddr>),
}

/// One Via entry (RFC 3261 §20.42) with the parameters the stack needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// "UDP", "TCP", "TLS", "WS", "WSS", upper-cased.
    pub transport: String,
    /// sent-by host as written (IPv6 with brackets).
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub received: Option<String>,
    /// `Some(None)` for a bare `;rport` (RFC 3581), `Some(Some(p))` once filled in.
    pub rport: Option<Option<u16>>,
    pub params: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// What the server must answer to a request that parsed but may not be processed
/// (RFC 4475 §3.1.2 / §3.3, RFC 3261 §8.2): the status, reason and extra headers
/// (e.g. `Unsupported` for 420).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<Header>,
}

/// Largest message accepted over UDP (a datagram cannot be larger) and the default TCP
/// frame limit. Bigger TCP frames are an error, and the connection is closed.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// Parse one complete message. A UDP datagram must contain exactly one message; bytes
/// after the body as declared by Content-Length are ignored (RFC 3261 §18.3) and a body
/// shorter than Content-Length is an error (never silently truncated).
///
/// # Errors
/// Every malformed input: see [`ParseError`].
pub fn parse_message(buf: &[u8]) -> Result<Message, ParseError> {
    todo!("{}", buf.len())
}

impl Headers {
    /// First value of a header, by long or compact name, case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        todo!("{name}")
    }
    /// Every value of a header (each line; comma-separated values are not split).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let _ = name;
        std::iter::empty::<&str>()
    }
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }
    /// Replace every line of `name` with one line.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        todo!("{name}{}", value.into())
    }
    pub fn remove(&mut self, name: &str) {
        todo!("{name}")
    }
    /// All Via entries in order (comma-separated values split).
    pub fn via(&self) -> Result<Vec<Via>, ParseError> {
        todo!()
    }
    pub fn top_via(&self) -> Result<Via, ParseError> {
        todo!()
    }
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        todo!()
    }
    pub fn call_id(&self) -> Result<&str, ParseError> {
        todo!()
    }
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        todo!()
    }
    /// None when there is no Contact header.
    pub fn contacts(&self) -> Result<Option<Contacts>, ParseError> {
        todo!()
    }
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        todo!()
    }
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        todo!()
    }
}

impl Request {
    /// The checks RFC 4475 and RFC 3261 §8.2.1-8.2.3 ask for before a request is processed:
    /// URI scheme (416), `Require` with an option not in `supported` (420 + Unsupported),
    /// Max-Forwards 0 on a request we would forward (483, only when `forwarding`), and so on.
    ///
    /// # Errors
    /// The final response to send instead of processing the request.
    pub fn validate(&self, supported: &[&str], forwarding: bool) -> Result<(), Rejection> {
        todo!("{supported:?}{forwarding}")
    }
    /// Wire form with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
}

impl Response {
    /// RFC 3261 §8.2.6: copy Via (all, in order), From, To, Call-ID, CSeq; add a To-tag
    /// when the request's To has none and the status is above 100; `to_tag` is used then.
    pub fn for_request(req: &Request, status: u16, reason: &str, to_tag: &str) -> Response {
        todo!("{req:?}{status}{reason}{to_tag}")
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
}

impl Uri {
    /// # Errors
    /// [`ParseError::RequestUri`] when the text is not a URI.
    pub fn parse(text: &str) -> Result<Uri, ParseError> {
        todo!("{text}")
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl NameAddr {
    /// # Errors
    /// [`ParseError::HeaderValue`] when malformed.
    pub fn parse(text: &str) -> Result<NameAddr, ParseError> {
        todo!("{text}")
    }
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
}

/// Cuts a TCP byte stream into messages by Content-Length (RFC 3261 §18.3), skipping
/// CRLF keep-alives between messages (RFC 5626 §3.5.1).
#[derive(Debug)]
pub struct StreamFramer {
    max_message: usize,
    buf: Vec<u8>,
}

impl StreamFramer {
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            max_message,
            buf: Vec::new(),
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A missing or bad Content-Length in stream mode, or a frame over the limit: the
    /// stream cannot be resynchronised and the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, ParseError> {
        todo!("{}", self.max_message)
    }
}
