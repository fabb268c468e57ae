//! SIP message layer (RFC 3261 §7, §20, §25): parsing, framing, typed header access and
//! response construction. Ours rather than rsip/rsipstack/ezk: see README "Design notes".
//!
//! Contract used by the rest of the server (keep these signatures stable):
//! - [`parse_message`] parses one complete message (a UDP datagram or a frame cut by
//!   [`StreamFramer`]); every malformed input is an `Err(ParseError)`, never a panic.
//! - [`Request::validate`] applies the RFC 4475/5118 request checks that come before
//!   authentication and routing and tells which final response to send.
//! - [`Response::for_request`] builds a response per RFC 3261 §8.2.6.

mod framer;
mod lex;
mod parse;
mod replaces;
mod uri;
mod values;

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
/// shorter than Content-Length is an error (never silently truncated). Without
/// Content-Length (allowed on UDP only) the rest of the datagram is the body.
///
/// The decisions taken for the RFC 4475 corner cases are listed in `message/parse.rs`.
///
/// # Errors
/// Every malformed input: see [`ParseError`].
pub fn parse_message(buf: &[u8]) -> Result<Message, ParseError> {
    parse::parse(buf)
}

/// Compact header forms (RFC 3261 §7.3.3 and the RFCs that registered the later ones).
const COMPACT_FORMS: [(char, &str); 20] = [
    ('i', "call-id"),
    ('m', "contact"),
    ('e', "content-encoding"),
    ('l', "content-length"),
    ('c', "content-type"),
    ('f', "from"),
    ('s', "subject"),
    ('k', "supported"),
    ('t', "to"),
    ('v', "via"),
    ('o', "event"),
    ('r', "refer-to"),
    ('u', "allow-events"),
    ('b', "referred-by"),
    ('x', "session-expires"),
    ('y', "identity"),
    ('a', "accept-contact"),
    ('j', "reject-contact"),
    ('d', "request-disposition"),
    ('n', "identity-info"),
];

/// The lower-cased long name of a header name (compact forms expanded).
pub fn canonical_name(name: &str) -> String {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let c = c.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT_FORMS.iter().find(|(short, _)| *short == c) {
            return (*long).to_string();
        }
    }
    name.to_ascii_lowercase()
}

/// Whether two header names denote the same header (case and compact form ignored).
pub fn same_header(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || canonical_name(a) == canonical_name(b)
}

/// A fresh random tag for From/To (RFC 3261 §19.3: at least 32 bits of randomness).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh Via branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!(
        "z9hG4bK{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

impl Headers {
    /// First value of a header, by long or compact name, case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }
    /// Every value of a header (each line; comma-separated values are not split).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name)
    }
    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let wanted = canonical_name(name);
        self.0
            .iter()
            .filter(move |h| canonical_name(&h.name) == wanted)
            .map(|h| h.value.as_str())
    }
    pub fn count(&self, name: &str) -> usize {
        self.values(name).count()
    }
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }
    /// Replace every line of `name` with one line (at the place of the first one).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let wanted = canonical_name(name);
        let header = Header {
            name: name.to_string(),
            value: value.into(),
        };
        match self
            .0
            .iter()
            .position(|h| canonical_name(&h.name) == wanted)
        {
            Some(first) => {
                self.0.retain(|h| canonical_name(&h.name) != wanted);
                let at = first.min(self.0.len());
                self.0.insert(at, header);
            }
            None => self.0.push(header),
        }
    }
    pub fn remove(&mut self, name: &str) {
        let wanted = canonical_name(name);
        self.0.retain(|h| canonical_name(&h.name) != wanted);
    }
    /// Comma-separated values of every line of a list header, trimmed, empties dropped.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.values(name)
            .flat_map(|v| v.split(','))
            .map(lex::trim_ws)
            .filter(|v| !v.is_empty())
            .collect()
    }
    /// All Via entries in order (comma-separated values split).
    ///
    /// # Errors
    /// `HeaderValue { name: "Via" }` when an entry is malformed.
    pub fn via(&self) -> Result<Vec<Via>, ParseError> {
        let mut all = Vec::new();
        for line in self.get_all("via") {
            all.extend(values::parse_via_list(line)?);
        }
        Ok(all)
    }
    /// # Errors
    /// `MissingHeader` without Via, `HeaderValue` when it is malformed.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let line = self
            .get("via")
            .ok_or(ParseError::MissingHeader { name: "Via" })?;
        values::parse_via_list(line)?
            .into_iter()
            .next()
            .ok_or(ParseError::HeaderValue { name: "Via" })
    }
    /// # Errors
    /// `MissingHeader` or `HeaderValue`.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        let v = self
            .get("from")
            .ok_or(ParseError::MissingHeader { name: "From" })?;
        values::parse_name_addr(v, "From")
    }
    /// # Errors
    /// `MissingHeader` or `HeaderValue`.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        let v = self
            .get("to")
            .ok_or(ParseError::MissingHeader { name: "To" })?;
        values::parse_name_addr(v, "To")
    }
    /// # Errors
    /// `MissingHeader` or `HeaderValue` (empty or containing white space).
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self
            .get("call-id")
            .ok_or(ParseError::MissingHeader { name: "Call-ID" })?;
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::HeaderValue { name: "Call-ID" });
        }
        Ok(v)
    }
    /// # Errors
    /// `MissingHeader` or `HeaderValue` (bad method, number over 2**32-1).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let v = self
            .get("cseq")
            .ok_or(ParseError::MissingHeader { name: "CSeq" })?;
        values::parse_cseq(v)
    }
    /// None when there is no Contact header.
    ///
    /// # Errors
    /// `HeaderValue { name: "Contact" }`: a malformed address, `*` mixed with addresses,
    /// or an `expires`/`q` parameter out of range.
    pub fn contacts(&self) -> Result<Option<Contacts>, ParseError> {
        let err = ParseError::HeaderValue { name: "Contact" };
        let lines: Vec<&str> = self.get_all("contact").collect();
        if lines.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for line in &lines {
            entries.extend(lex::split_outside_quotes(line, ',').ok_or(err.clone())?);
        }
        if entries.iter().any(|e| lex::trim_ws(e) == "*") {
            return if entries.len() == 1 {
                Ok(Some(Contacts::Star))
            } else {
                Err(err)
            };
        }
        let mut list = Vec::with_capacity(entries.len());
        for entry in entries {
            let addr = values::parse_name_addr(entry, "Contact")?;
            if let Some(expires) = addr.param("expires") {
                expires.and_then(lex::parse_digits_u32).ok_or(err.clone())?;
            }
            if let Some(q) = addr.param("q") {
                if !q.is_some_and(valid_qvalue) {
                    return Err(err);
                }
            }
            list.push(addr);
        }
        Ok(Some(Contacts::List(list)))
    }
    /// # Errors
    /// `HeaderValue { name: "Expires" }` when not a 32-bit decimal number.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.get("expires")
            .map(|v| lex::parse_digits_u32(v).ok_or(ParseError::HeaderValue { name: "Expires" }))
            .transpose()
    }
    /// # Errors
    /// `HeaderValue { name: "Max-Forwards" }` when not a number in 0..=255
    /// (RFC 3261 §20.22).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.get("max-forwards")
            .map(|v| {
                lex::parse_digits_u32(v)
                    .filter(|n| *n <= 255)
                    .ok_or(ParseError::HeaderValue {
                        name: "Max-Forwards",
                    })
            })
            .transpose()
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`
fn valid_qvalue(q: &str) -> bool {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || (int == "1" && frac.bytes().all(|b| b == b'0')))
}

/// RFC 1123 date as SIP requires it (`Sat, 13 Nov 2010 23:29:00 GMT`, RFC 3261 §20.17).
fn valid_sip_date(v: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = v.split_ascii_whitespace().collect();
    let [wkday, day, month, year, time, zone] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let time_ok = {
        let t: Vec<&str> = time.split(':').collect();
        t.len() == 3 && t.iter().all(|p| digits(p, 2))
    };
    wkday.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(day, 2)
        && MONTHS.contains(month)
        && digits(year, 4)
        && time_ok
        && *zone == "GMT"
}

fn rejection(status: u16, reason: &'static str) -> Rejection {
    Rejection {
        status,
        reason,
        headers: Vec::new(),
    }
}

/// Body types a UAS of ours can process in an INVITE.
const ACCEPTED_BODY_TYPES: [&str; 3] = [
    "application/sdp",
    "multipart/mixed",
    "multipart/alternative",
];

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .map(lex::trim_ws)
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl Request {
    /// The checks RFC 4475 and RFC 3261 §8.2.1-8.2.3 ask for before a request is processed,
    /// in the order RFC 3261 gives them:
    /// - 400 for problems left to this stage by the parser: URI headers in the
    ///   Request-URI (RFC 4475 escruri), a Date that is not RFC 1123 GMT (baddate), a
    ///   malformed Contact such as an unbracketed URI with `?` (regbadct), a REGISTER
    ///   whose To is not a SIP/SIPS address-of-record (unksm2, RFC 4475 §3.3.4);
    /// - 416 for a Request-URI scheme other than sip/sips (unkscm, novelsc, tel:);
    /// - 483 for Max-Forwards 0 on a request we would forward (zeromf), only when
    ///   `forwarding`; a malformed Max-Forwards is treated as absent (scalar02);
    /// - 420 + `Unsupported` for `Require` options not in `supported` (bext01), or for
    ///   `Proxy-Require` options when `forwarding`; ACK and CANCEL are exempt
    ///   (§8.2.2.3);
    /// - as a UAS (`!forwarding`) for INVITE: 415 + `Accept` for a body type we cannot
    ///   process (invut), 406 when `Accept` excludes SDP (sdp01).
    ///
    /// # Errors
    /// The final response to send instead of processing the request.
    pub fn validate(&self, supported: &[&str], forwarding: bool) -> Result<(), Rejection> {
        let is_sip = self.uri.scheme == "sip" || self.uri.scheme == "sips";
        if is_sip && !self.uri.headers.is_empty() {
            return Err(rejection(400, "Bad Request"));
        }
        if let Some(date) = self.headers.get("date") {
            if !valid_sip_date(date) {
                return Err(rejection(400, "Bad Request"));
            }
        }
        if self.headers.contacts().is_err()
            || self.headers.from().is_err()
            || self.headers.to().is_err()
        {
            return Err(rejection(400, "Bad Request"));
        }
        if self.method == Method::Register {
            let to_is_sip = self
                .headers
                .to()
                .is_ok_and(|to| to.uri.scheme == "sip" || to.uri.scheme == "sips");
            if !to_is_sip {
                return Err(rejection(400, "Bad Request"));
            }
        }
        if !is_sip {
            return Err(rejection(416, "Unsupported URI Scheme"));
        }
        if forwarding && matches!(self.headers.max_forwards(), Ok(Some(0))) {
            return Err(rejection(483, "Too Many Hops"));
        }
        if self.method != Method::Ack && self.method != Method::Cancel {
            // A proxy honours Proxy-Require (§16.3 step 6), a UAS honours Require
            // (§8.2.2.3); RFC 4475 bext01 expects the list for the role we act in.
            let header = if forwarding {
                "proxy-require"
            } else {
                "require"
            };
            let mut unsupported: Vec<&str> = self
                .headers
                .list(header)
                .into_iter()
                .filter(|opt| !supported.contains(opt))
                .collect();
            unsupported.dedup();
            if !unsupported.is_empty() {
                return Err(Rejection {
                    status: 420,
                    reason: "Bad Extension",
                    headers: vec![Header {
                        name: "Unsupported".to_string(),
                        value: unsupported.join(", "),
                    }],
                });
            }
        }
        if !forwarding && self.method == Method::Invite {
            if !self.body.is_empty() {
                let ctype = self.headers.get("content-type").map(media_type);
                let known = ctype
                    .as_deref()
                    .is_some_and(|t| ACCEPTED_BODY_TYPES.contains(&t));
                if !known {
                    return Err(Rejection {
                        status: 415,
                        reason: "Unsupported Media Type",
                        headers: vec![Header {
                            name: "Accept".to_string(),
                            value: "application/sdp".to_string(),
                        }],
                    });
                }
            }
            let accepts = self.headers.list("accept");
            let sdp_ok = accepts.is_empty()
                || accepts.iter().any(|a| {
                    matches!(
                        media_type(a).as_str(),
                        "application/sdp" | "application/*" | "*/*"
                    )
                });
            if !sdp_ok {
                return Err(rejection(406, "Not Acceptable"));
            }
        }
        Ok(())
    }
    /// Wire form with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, clean(&self.uri.raw));
        wire(&start, &self.headers, &self.body)
    }
}

/// Header text must not smuggle line breaks into the wire form.
fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Start line, headers, Content-Length (always last, with the spelling of the first one
/// given, so peers that stop reading headers at Content-Length — SIPp does — see all of
/// them), blank line, body.
fn wire(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(start.len() + 64 * headers.0.len() + 32);
    out.push_str(&clean(start));
    out.push_str("\r\n");
    let mut length_name: Option<&str> = None;
    for h in &headers.0 {
        if canonical_name(&h.name) == "content-length" {
            length_name.get_or_insert(&h.name);
            continue;
        }
        out.push_str(&clean(&h.name));
        out.push_str(": ");
        out.push_str(&clean(&h.value));
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "{}: {}\r\n",
        clean(length_name.unwrap_or("Content-Length")),
        body.len()
    ));
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

impl Response {
    /// RFC 3261 §8.2.6: copy Via (all, in order), From, To, Call-ID, CSeq; add a To-tag
    /// when the request's To has none and the status is above 100; `to_tag` is used then.
    pub fn for_request(req: &Request, status: u16, reason: &str, to_tag: &str) -> Response {
        let mut headers = Headers::default();
        for h in &req.headers.0 {
            if canonical_name(&h.name) == "via" {
                headers.push("Via", h.value.clone());
            }
        }
        if let Some(from) = req.headers.get("from") {
            headers.push("From", from);
        }
        if let Some(to) = req.headers.get("to") {
            let has_tag = req.headers.to().is_ok_and(|t| t.tag().is_some());
            if status > 100 && !has_tag {
                headers.push("To", format!("{to};tag={to_tag}"));
            } else {
                headers.push("To", to);
            }
        }
        if let Some(call_id) = req.headers.get("call-id") {
            headers.push("Call-ID", call_id);
        }
        if let Some(cseq) = req.headers.get("cseq") {
            headers.push("CSeq", cseq);
        }
        headers.push("Content-Length", "0");
        Response {
            status,
            reason: reason.to_string(),
            headers,
            body: Bytes::new(),
        }
    }
    /// Wire form with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}", self.status, self.reason);
        wire(&start, &self.headers, &self.body)
    }
}

impl Message {
    /// Wire form with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

impl Uri {
    /// # Errors
    /// [`ParseError::RequestUri`] when the text is not a URI.
    pub fn parse(text: &str) -> Result<Uri, ParseError> {
        uri::parse_uri(text)
    }
    /// URI parameter by name (case-insensitive); `Some(None)` for a flag like `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
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
        values::parse_name_addr(text, "name-addr")
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

impl Via {
    /// # Errors
    /// [`ParseError::HeaderValue`] when malformed.
    pub fn parse(text: &str) -> Result<Via, ParseError> {
        values::parse_via(text)
    }
}

impl CSeq {
    /// # Errors
    /// [`ParseError::HeaderValue`] when malformed.
    pub fn parse(text: &str) -> Result<CSeq, ParseError> {
        values::parse_cseq(text)
    }
}

pub use framer::StreamFramer;
pub use replaces::Replaces;

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:12348@hotline.example.cn SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport\r\n\
Via: SIP/2.0/UDP proxy.example.cn;branch=z9hG4bKb2, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKc3\r\n\
Max-Forwards: 70\r\n\
t: <sip:12348@hotline.example.cn>\r\n\
f: \"Caller\" <sip:13800000000@example.cn>;tag=abc\r\n\
i: call-1@192.0.2.1\r\n\
CSeq: 7 INVITE\r\n\
m: <sip:13800000000@192.0.2.1:5060>;expires=60;q=0.5\r\n\
Subject: folded\r\n  across lines\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\nEXTRA";

    fn request(bytes: &[u8]) -> Request {
        match parse_message(bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn compact_forms_resolve_to_long_names() {
        let r = request(INVITE);
        assert_eq!(r.headers.get("Call-ID"), Some("call-1@192.0.2.1"));
        assert_eq!(r.headers.get("CONTENT-TYPE"), Some("application/sdp"));
        assert_eq!(r.headers.get("i"), r.headers.get("call-id"));
        assert_eq!(r.headers.count("via"), 2);
        assert_eq!(r.headers.get("subject"), Some("folded across lines"));
        assert_eq!(
            r.headers.from().map(|f| f.tag().map(str::to_string)),
            Ok(Some("abc".into()))
        );
        assert_eq!(r.headers.to().map(|t| t.tag().is_none()), Ok(true));
    }

    #[test]
    fn typed_getters() {
        let r = request(INVITE);
        let vias = r.headers.via().expect("vias");
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].rport, Some(None));
        assert_eq!(vias[2].host, "[2001:db8::1]");
        assert_eq!(vias[2].port, Some(5070));
        assert_eq!(
            r.headers.top_via().map(|v| v.branch),
            Ok(Some("z9hG4bKa1".into()))
        );
        assert_eq!(
            r.headers.cseq(),
            Ok(CSeq {
                seq: 7,
                method: Method::Invite
            })
        );
        assert_eq!(r.headers.max_forwards(), Ok(Some(70)));
        assert_eq!(r.headers.expires(), Ok(None));
        let Ok(Some(Contacts::List(contacts))) = r.headers.contacts() else {
            panic!("contacts");
        };
        assert_eq!(contacts[0].param("expires"), Some(Some("60")));
        assert_eq!(contacts[0].param("q"), Some(Some("0.5")));
        // Bytes beyond Content-Length are ignored.
        assert_eq!(&r.body[..], b"v=0\r");
    }

    #[test]
    fn star_contact_and_bad_q() {
        let mut h = Headers::default();
        h.push("Contact", "*");
        assert_eq!(h.contacts(), Ok(Some(Contacts::Star)));
        h.push("m", "<sip:a@b>");
        assert!(h.contacts().is_err());
        let mut h = Headers::default();
        h.push("Contact", "<sip:a@b>;q=1.5");
        assert!(h.contacts().is_err());
        let mut h = Headers::default();
        h.push("Contact", "<sip:a@b>;expires=99999999999");
        assert!(h.contacts().is_err());
    }

    #[test]
    fn set_and_remove_use_compact_equivalence() {
        let mut r = request(INVITE);
        r.headers
            .set("Via", "SIP/2.0/UDP only.example.cn;branch=z9hG4bKx");
        assert_eq!(r.headers.count("v"), 1);
        assert_eq!(r.headers.0[0].name, "Via");
        r.headers.remove("CONTACT");
        assert_eq!(r.headers.contacts(), Ok(None));
    }

    #[test]
    fn round_trip_is_a_fixed_point() {
        let r = request(INVITE);
        let wire = r.to_bytes();
        let again = request(&wire);
        assert_eq!(again, r);
        assert_eq!(again.to_bytes(), wire);
    }

    #[test]
    fn to_bytes_writes_correct_content_length() {
        let mut r = request(INVITE);
        r.body = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        r.headers.push("Content-Length", "999");
        let text = String::from_utf8(r.to_bytes()).expect("utf8");
        assert!(text.contains("l: 31\r\n"), "{text}");
        assert!(!text.contains("999"));
        r.headers.remove("content-length");
        let text = String::from_utf8(r.to_bytes()).expect("utf8");
        assert!(text.contains("Content-Length: 31\r\n\r\nv=0"));
    }

    #[test]
    fn to_bytes_cannot_inject_headers() {
        let mut r = request(INVITE);
        r.headers.push("X-Note", "a\r\nVia: evil");
        let back = request(&r.to_bytes());
        assert_eq!(back.headers.count("via"), 2);
    }

    #[test]
    fn response_for_request_copies_per_8_2_6() {
        let r = request(INVITE);
        let resp = Response::for_request(&r, 486, "Busy Here", "srv1");
        let vias: Vec<&str> = resp.headers.get_all("via").collect();
        assert_eq!(vias, r.headers.get_all("via").collect::<Vec<_>>());
        assert_eq!(
            resp.headers.to().map(|t| t.tag().map(str::to_string)),
            Ok(Some("srv1".into()))
        );
        assert_eq!(resp.headers.from(), r.headers.from());
        assert_eq!(resp.headers.call_id(), Ok("call-1@192.0.2.1"));
        assert_eq!(resp.headers.cseq(), r.headers.cseq());
        assert_eq!(resp.headers.get("content-length"), Some("0"));
        // 100 Trying gets no tag.
        let trying = Response::for_request(&r, 100, "Trying", "srv1");
        assert_eq!(trying.headers.to().map(|t| t.tag().is_none()), Ok(true));
        // An existing tag is kept.
        let mut tagged = r.clone();
        tagged
            .headers
            .set("To", "<sip:12348@hotline.example.cn>;tag=old");
        let ok = Response::for_request(&tagged, 200, "OK", "srv1");
        assert_eq!(
            ok.headers.to().map(|t| t.tag().map(str::to_string)),
            Ok(Some("old".into()))
        );
        // The response parses back.
        assert!(matches!(
            parse_message(&ok.to_bytes()),
            Ok(Message::Response(_))
        ));
    }

    #[test]
    fn parse_errors_are_typed() {
        let base = String::from_utf8(INVITE.to_vec()).expect("utf8");
        let cases: Vec<(String, ParseError)> = vec![
            (String::new(), ParseError::Empty),
            ("\r\n\r\n".into(), ParseError::Empty),
            (
                base.replace("SIP/2.0\r\nv:", "SIP/3.0\r\nv:"),
                ParseError::Version,
            ),
            (
                base.replace("CSeq: 7 INVITE", "CSeq: 7 BYE"),
                ParseError::CSeqMethodMismatch,
            ),
            (
                base.replace("i: call-1@192.0.2.1\r\n", ""),
                ParseError::MissingHeader { name: "Call-ID" },
            ),
            (
                base.replace("l: 4", "l: 4\r\nContent-Length: 4"),
                ParseError::DuplicateHeader {
                    name: "Content-Length",
                },
            ),
            (base.replace("l: 4", "l: -4"), ParseError::ContentLength),
            (
                base.replace("l: 4", "l: 18446744073709551615"),
                ParseError::ContentLength,
            ),
            (
                base.replace("l: 4", "l: 18446744073709551616"),
                ParseError::ContentLength,
            ),
            (base.replace("l: 4", "l: 40"), ParseError::TruncatedBody),
            (
                base.replace("sip:12348@hotline.example.cn SIP", "<sip:x@y> SIP"),
                ParseError::RequestUri,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_message(text.as_bytes()), Err(expected), "{text:?}");
        }
        let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert_eq!(parse_message(&big), Err(ParseError::TooLarge));
    }

    #[test]
    fn invalid_utf8_header_rejects_the_message() {
        let mut bytes = INVITE.to_vec();
        let at = bytes
            .windows(6)
            .position(|w| w == b"folded")
            .expect("present");
        bytes[at] = 0xff;
        assert_eq!(
            parse_message(&bytes),
            Err(ParseError::HeaderLine { line: 9 })
        );
    }

    #[test]
    fn no_content_length_on_udp_takes_the_rest() {
        let text = String::from_utf8(INVITE.to_vec())
            .expect("utf8")
            .replace("l: 4\r\n", "");
        let r = request(text.as_bytes());
        assert_eq!(&r.body[..], b"v=0\r\nEXTRA");
    }

    #[test]
    fn validate_outcomes() {
        let r = request(INVITE);
        assert_eq!(r.validate(&[], false), Ok(()));
        let mut tel = r.clone();
        tel.uri = Uri::parse("tel:+8653112348").expect("tel");
        assert_eq!(tel.validate(&[], false).map_err(|e| e.status), Err(416));
        let mut zero = r.clone();
        zero.headers.set("Max-Forwards", "0");
        assert_eq!(zero.validate(&[], false), Ok(()));
        assert_eq!(zero.validate(&[], true).map_err(|e| e.status), Err(483));
        let mut req = r.clone();
        req.headers.push("Require", "100rel, foo");
        assert_eq!(
            req.validate(&["100rel"], false)
                .map_err(|e| (e.status, e.headers)),
            Err((
                420,
                vec![Header {
                    name: "Unsupported".into(),
                    value: "foo".into()
                }]
            ))
        );
        let mut cancel = req.clone();
        cancel.method = Method::Cancel;
        assert_eq!(cancel.validate(&[], false), Ok(()));
    }

    #[test]
    fn every_compact_form_resolves() {
        let pairs = [
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("e", "Content-Encoding"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("f", "From"),
            ("s", "Subject"),
            ("k", "Supported"),
            ("t", "To"),
            ("v", "Via"),
            ("o", "Event"),
            ("r", "Refer-To"),
            ("u", "Allow-Events"),
            ("b", "Referred-By"),
            ("x", "Session-Expires"),
            ("y", "Identity"),
            ("a", "Accept-Contact"),
        ];
        for (short, long) in pairs {
            let mut h = Headers::default();
            h.push(&short.to_ascii_uppercase(), "value");
            assert_eq!(h.get(long), Some("value"), "{short}");
            assert_eq!(h.get(&long.to_ascii_lowercase()), Some("value"), "{short}");
            assert!(same_header(short, long));
        }
        // Unknown one-letter names stay themselves.
        let mut h = Headers::default();
        h.push("q", "1");
        assert_eq!(h.get("q"), Some("1"));
        assert_eq!(h.get("Call-ID"), None);
    }

    #[test]
    fn max_forwards_and_expires_reject_overflow_and_signs() {
        for bad in [
            "-1",
            "256",
            "4294967296",
            "18446744073709551616",
            "1 0",
            "",
            "+5",
        ] {
            let mut h = Headers::default();
            h.push("Max-Forwards", bad);
            assert!(h.max_forwards().is_err(), "{bad:?}");
        }
        for bad in ["-1", "4294967296", "1 0000 0000", "soon"] {
            let mut h = Headers::default();
            h.push("Expires", bad);
            assert!(h.expires().is_err(), "{bad:?}");
        }
        let mut h = Headers::default();
        h.push("Max-Forwards", "0070");
        h.push("Expires", "4294967295");
        assert_eq!(h.max_forwards(), Ok(Some(70)));
        assert_eq!(h.expires(), Ok(Some(u32::MAX)));
    }

    #[test]
    fn typed_values_display_and_reparse() {
        let via = Via::parse(
            "SIP / 2.0 / tls [2001:db8::1]:5061 ; branch=z9hG4bKx;rport;received=192.0.2.9;ttl=1",
        )
        .expect("via");
        let text = via.to_string();
        assert_eq!(
            text,
            "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;received=192.0.2.9;rport;ttl=1"
        );
        assert_eq!(Via::parse(&text), Ok(via));

        let addr =
            NameAddr::parse("\"Zhang \\\"San\\\"\" <sip:zs@example.cn;transport=tcp>;tag=9;q=0.7")
                .expect("addr");
        assert_eq!(addr.display_name.as_deref(), Some("Zhang \"San\""));
        assert_eq!(addr.uri.param("transport"), Some(Some("tcp")));
        assert_eq!(NameAddr::parse(&addr.to_string()), Ok(addr));

        let cseq = CSeq::parse("  42   ACK ").expect("cseq");
        assert_eq!(cseq.to_string(), "42 ACK");
        assert_eq!(
            CSeq::parse("42 ack").map(|c| c.method),
            Ok(Method::Extension("ack".into()))
        );
    }

    #[test]
    fn generated_tags_and_branches_are_distinct_and_well_formed() {
        let (a, b) = (new_tag(), new_tag());
        assert_ne!(a, b);
        let branch = new_branch();
        assert!(branch.starts_with("z9hG4bK"));
        let via = Via::parse(&format!("SIP/2.0/UDP h;branch={branch}")).expect("via");
        assert_eq!(via.branch, Some(branch));
    }

    #[test]
    fn leading_crlf_and_bare_lf_are_tolerated() {
        let text = String::from_utf8(INVITE.to_vec()).expect("utf8");
        let mut crlf = b"\r\n\r\n".to_vec();
        crlf.extend_from_slice(INVITE);
        assert_eq!(request(&crlf), request(INVITE));
        let lf = text.replace("\r\n", "\n");
        let r = request(lf.as_bytes());
        assert_eq!(r.headers.get("subject"), Some("folded across lines"));
        assert_eq!(&r.body[..], b"v=0\n");
    }

    #[test]
    fn header_section_without_end_is_rejected() {
        assert_eq!(
            parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h"),
            Err(ParseError::NoHeaderEnd)
        );
        assert_eq!(
            parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n  folded-first: x\r\n\r\n"),
            Err(ParseError::HeaderLine { line: 1 })
        );
        assert_eq!(
            parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n"),
            Err(ParseError::HeaderLine { line: 1 })
        );
    }
}
