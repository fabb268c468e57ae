//! SIP dialogs (RFC 3261 §12): the state two user agents share after an INVITE is answered,
//! and the construction of in-dialog requests from it.
//!
//! A [`Dialog`] is plain data plus request builders; it never reads the clock and never
//! draws randomness itself: fresh Via branches come from a [`BranchSource`] the caller
//! owns (seeded by the shell, deterministic in tests).
//!
//! [`DialogSet`] routes incoming requests to the dialog they belong to by
//! (Call-ID, local tag, remote tag), and says 481 for in-dialog requests that match none.

use crate::sip::message::{
    CSeq, Contacts, Header, Headers, Method, NameAddr, ParseError, Request, Response, Uri,
};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// RFC 3261 §8.1.1.7: every branch we generate starts with this cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Max-Forwards for requests we originate (RFC 3261 §8.1.1.6).
pub const DEFAULT_MAX_FORWARDS: u32 = 70;

/// Why a dialog could not be built from the messages at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("a header needed for the dialog is malformed or missing")]
    Header(#[from] ParseError),
    #[error("the message has no usable Contact (remote target)")]
    MissingContact,
    #[error("the response has no To tag")]
    MissingRemoteTag,
    #[error("the request has no From tag")]
    MissingFromTag,
    #[error("a Record-Route entry is malformed")]
    RecordRoute,
}

/// Dialog identifier (RFC 3261 §12): Call-ID plus the local and remote tags, as seen from
/// this side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// Whether the dialog was established over SIPS (RFC 3261 §12.1.1): then every request in it
/// must go over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    Sips,
}

/// The sent-by part of the Via we put on requests we originate: `SIP/2.0/<transport>
/// <host>[:<port>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaSentBy {
    /// "UDP", "TCP", "TLS", "WS", "WSS".
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
}

impl ViaSentBy {
    /// A Via header value with this sent-by, the given branch and `rport` (RFC 3581).
    pub fn header_value(&self, branch: &Branch) -> String {
        match self.port {
            Some(port) => format!(
                "SIP/2.0/{} {}:{};branch={};rport",
                self.transport, self.host, port, branch.0
            ),
            None => format!(
                "SIP/2.0/{} {};branch={};rport",
                self.transport, self.host, branch.0
            ),
        }
    }
}

/// A Via branch parameter (RFC 3261 §8.1.1.7), always starting with [`BRANCH_COOKIE`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Branch(String);

impl Branch {
    /// A branch made of the magic cookie and `unique` in hex.
    pub fn from_unique(unique: u64) -> Branch {
        Branch(format!("{BRANCH_COOKIE}{unique:016x}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Source of fresh branches, tags and Call-IDs. Seeded by the caller: the shell seeds from
/// the OS, tests from a constant, so the core never touches global randomness.
#[derive(Debug, Clone)]
pub struct BranchSource {
    rng: StdRng,
}

impl BranchSource {
    pub fn from_seed(seed: u64) -> BranchSource {
        BranchSource {
            rng: StdRng::seed_from_u64(seed),
        }
    }
    pub fn branch(&mut self) -> Branch {
        Branch::from_unique(self.rng.random())
    }
    /// A From/To tag (RFC 3261 §19.3: at least 32 bits of randomness; we use 64).
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }
    /// A Call-ID local part; the caller appends `@host` if it wants one.
    pub fn call_id(&mut self) -> String {
        format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        )
    }
}

/// A remote CSeq that is lower than the last one seen (RFC 3261 §12.2.2): answer 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("in-dialog request CSeq {received} is lower than the last seen {last}")]
pub struct OutOfOrderCSeq {
    pub received: u32,
    pub last: u32,
}

/// Dialog state (RFC 3261 §12.1, §12.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    /// Our From (UAC) or To (UAS), with our tag.
    local_uri: NameAddr,
    /// Their From (UAS) or To (UAC), with their tag.
    remote_uri: NameAddr,
    /// Where in-dialog requests go: the peer's Contact.
    remote_target: Uri,
    /// Route set in the order requests must traverse it.
    route_set: Vec<NameAddr>,
    /// Last CSeq we used; the next request uses one more.
    local_cseq: u32,
    /// Highest CSeq seen from the peer; None until the peer sends a request.
    remote_cseq: Option<u32>,
    security: Security,
    /// Our Contact, put on target-refresh requests.
    local_contact: NameAddr,
    via: ViaSentBy,
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` (RFC 3261 §12.1.1). `local_tag` is
    /// the To tag of our responses and `local_contact` our Contact. The Via sent-by for our
    /// own requests uses the transport the INVITE came over and the contact's host and port.
    ///
    /// # Errors
    /// Missing or malformed From/To/Call-ID/CSeq/Contact/Record-Route, or a From without tag.
    pub fn from_uas(
        invite: &Request,
        local_tag: &str,
        local_contact: &NameAddr,
    ) -> Result<Dialog, DialogError> {
        let headers = &invite.headers;
        let call_id = headers.call_id()?.to_string();
        let remote_uri = headers.from()?;
        let remote_tag = remote_uri
            .tag()
            .ok_or(DialogError::MissingFromTag)?
            .to_string();
        let mut local_uri = headers.to()?;
        set_tag(&mut local_uri, local_tag);
        let remote_target = first_contact(headers)?;
        let route_set = record_routes(headers)?;
        let cseq = headers.cseq()?;
        let transport = headers.top_via()?.transport;
        let security = if invite.uri.scheme == "sips" {
            Security::Sips
        } else {
            Security::Plain
        };
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            local_cseq: 0,
            remote_cseq: Some(cseq.seq),
            security,
            via: ViaSentBy {
                transport,
                host: local_contact.uri.host.clone(),
                port: local_contact.uri.port,
            },
            local_contact: local_contact.clone(),
        })
    }

    /// The dialog a UAC creates from a 2xx (or a tagged 1xx) to its `invite` (RFC 3261
    /// §12.1.2): the route set is the response's Record-Route reversed.
    ///
    /// # Errors
    /// Missing or malformed headers, a response without To tag or without Contact.
    pub fn from_uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let call_id = invite.headers.call_id()?.to_string();
        let local_uri = invite.headers.from()?;
        let local_tag = local_uri
            .tag()
            .ok_or(DialogError::MissingFromTag)?
            .to_string();
        let remote_uri = response.headers.to()?;
        let remote_tag = remote_uri
            .tag()
            .ok_or(DialogError::MissingRemoteTag)?
            .to_string();
        let remote_target = first_contact(&response.headers)?;
        let mut route_set = record_routes(&response.headers)?;
        route_set.reverse();
        let cseq = invite.headers.cseq()?;
        let top_via = invite.headers.top_via()?;
        let local_contact = match invite.headers.contacts()? {
            Some(Contacts::List(list)) => list.into_iter().next(),
            _ => None,
        }
        .ok_or(DialogError::MissingContact)?;
        let security = if invite.uri.scheme == "sips" {
            Security::Sips
        } else {
            Security::Plain
        };
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            local_cseq: cseq.seq,
            remote_cseq: None,
            security,
            via: ViaSentBy {
                transport: top_via.transport,
                host: top_via.host,
                port: top_via.port,
            },
            local_contact,
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }
    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }
    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }
    pub fn security(&self) -> Security {
        self.security
    }
    pub fn local_contact(&self) -> &NameAddr {
        &self.local_contact
    }
    /// Override the Via sent-by used on our requests (the shell knows its listening socket).
    pub fn set_via_sent_by(&mut self, via: ViaSentBy) {
        self.via = via;
    }

    /// Whether `request` carries this dialog's Call-ID and tags (To tag = ours, From tag =
    /// theirs).
    pub fn matches_request(&self, request: &Request) -> bool {
        request_dialog_id(request).is_some_and(|id| id == self.id)
    }

    /// RFC 3261 §12.2.2: check the CSeq of an in-dialog request from the peer and remember
    /// it. ACK and CANCEL carry the CSeq of the INVITE they belong to and are not checked.
    ///
    /// # Errors
    /// A CSeq lower than the last one seen: the request must get a 500.
    pub fn accept_remote_cseq(&mut self, cseq: &CSeq) -> Result<(), OutOfOrderCSeq> {
        if matches!(cseq.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_cseq
            && cseq.seq < last
        {
            return Err(OutOfOrderCSeq {
                received: cseq.seq,
                last,
            });
        }
        self.remote_cseq = Some(cseq.seq);
        Ok(())
    }

    /// Target refresh (RFC 3261 §12.2.1.2 / §12.2.2): a re-INVITE or its 2xx may carry a new
    /// Contact; a message without one leaves the target alone.
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Ok(target) = first_contact(headers) {
            self.remote_target = target;
        }
    }

    /// The next local CSeq number (incremented on every call).
    pub fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        self.local_cseq
    }

    /// An in-dialog request (RFC 3261 §12.2.1.1): Request-URI and Route from the remote target
    /// and route set (loose or strict routing), From/To/Call-ID from the dialog, a Via with
    /// `branch`, Max-Forwards 70, the next CSeq, our Contact on target-refresh and
    /// subscription methods, then `extra` headers and `body`.
    pub fn build_request(
        &mut self,
        method: Method,
        extra: Vec<Header>,
        body: Bytes,
        branch: &Branch,
    ) -> Request {
        let seq = self.next_cseq();
        self.build_with_cseq(method, seq, extra, body, branch)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (RFC 3261 §13.2.2.4): its own
    /// transaction (fresh branch), the INVITE's CSeq number, the route set of the dialog; `sdp`
    /// when the offer was in the 2xx.
    pub fn build_ack_for_2xx(
        &self,
        invite_cseq: u32,
        sdp: Option<Bytes>,
        branch: &Branch,
    ) -> Request {
        let mut extra = Vec::new();
        if sdp.is_some() {
            extra.push(header("Content-Type", "application/sdp"));
        }
        self.build_with_cseq(
            Method::Ack,
            invite_cseq,
            extra,
            sdp.unwrap_or_default(),
            branch,
        )
    }

    fn build_with_cseq(
        &self,
        method: Method,
        seq: u32,
        extra: Vec<Header>,
        body: Bytes,
        branch: &Branch,
    ) -> Request {
        let (uri, routes) = self.request_uri_and_routes();
        let mut headers = Headers::default();
        headers.push("Via", self.via.header_value(branch));
        headers.push("Max-Forwards", DEFAULT_MAX_FORWARDS.to_string());
        for route in routes {
            headers.push("Route", route);
        }
        headers.push("From", format_name_addr(&self.local_uri));
        headers.push("To", format_name_addr(&self.remote_uri));
        headers.push("Call-ID", self.id.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        if carries_contact(&method) {
            headers.push("Contact", format_name_addr(&self.local_contact));
        }
        for h in extra {
            headers.0.push(h);
        }
        Request {
            method,
            uri,
            headers,
            body,
        }
    }

    /// RFC 3261 §12.2.1.1: with an empty route set or a loose-routing first hop (`lr`) the
    /// Request-URI is the remote target and Route is the route set; with a strict router the
    /// Request-URI is the first route (without URI headers) and the remote target goes last.
    fn request_uri_and_routes(&self) -> (Uri, Vec<String>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if uri_has_lr(&first.uri) => (
                self.remote_target.clone(),
                self.route_set.iter().map(format_name_addr).collect(),
            ),
            Some(first) => {
                let mut routes: Vec<String> = self
                    .route_set
                    .iter()
                    .skip(1)
                    .map(format_name_addr)
                    .collect();
                routes.push(format!("<{}>", self.remote_target.raw));
                (strip_uri_headers(&first.uri), routes)
            }
        }
    }
}

/// Build a CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq
/// number, Route and top Via (same branch, so it matches the INVITE's server transaction).
///
/// # Errors
/// When the INVITE lacks the headers to copy.
pub fn build_cancel(invite: &Request) -> Result<Request, ParseError> {
    let h = &invite.headers;
    let mut headers = Headers::default();
    let top_via = h
        .get("Via")
        .ok_or(ParseError::MissingHeader { name: "Via" })?;
    // Only the top Via: a comma-joined line keeps only its first value.
    let top_via = split_header_list(top_via)
        .into_iter()
        .next()
        .ok_or(ParseError::MissingHeader { name: "Via" })?;
    headers.push("Via", top_via);
    headers.push("Max-Forwards", DEFAULT_MAX_FORWARDS.to_string());
    for route in h.get_all("Route") {
        headers.push("Route", route.to_string());
    }
    headers.push(
        "From",
        h.get("From")
            .ok_or(ParseError::MissingHeader { name: "From" })?,
    );
    headers.push(
        "To",
        h.get("To")
            .ok_or(ParseError::MissingHeader { name: "To" })?,
    );
    headers.push("Call-ID", h.call_id()?.to_string());
    headers.push("CSeq", format!("{} CANCEL", h.cseq()?.seq));
    Ok(Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    })
}

/// The dialog id an incoming request would belong to, from this side's view: To tag is
/// local, From tag is remote. None when either tag or the Call-ID is missing.
pub fn request_dialog_id(request: &Request) -> Option<DialogId> {
    let call_id = request.headers.call_id().ok()?.to_string();
    let local_tag = request.headers.to().ok()?.tag()?.to_string();
    let remote_tag = request.headers.from().ok()?.tag()?.to_string();
    Some(DialogId {
        call_id,
        local_tag,
        remote_tag,
    })
}

/// Where an incoming request belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// An in-dialog request for a known dialog.
    Dialog(DialogId),
    /// An in-dialog request (To tag present) for no known dialog: answer with this status
    /// (481, RFC 3261 §12.2.2).
    NoDialog(u16),
    /// An ACK for no known dialog: discard silently (an ACK is never answered).
    StrayAck,
    /// No To tag: a dialog-creating or out-of-dialog request (or a CANCEL), for the
    /// transaction layer / B2BUA to handle.
    OutOfDialog,
}

/// Dialogs by id, holding whatever the owner routes to (a leg id, typically).
#[derive(Debug, Clone)]
pub struct DialogSet<T> {
    dialogs: HashMap<DialogId, T>,
}

impl<T> Default for DialogSet<T> {
    fn default() -> Self {
        DialogSet {
            dialogs: HashMap::new(),
        }
    }
}

impl<T> DialogSet<T> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Returns the previous value if the id was already present.
    pub fn insert(&mut self, id: DialogId, value: T) -> Option<T> {
        self.dialogs.insert(id, value)
    }
    pub fn remove(&mut self, id: &DialogId) -> Option<T> {
        self.dialogs.remove(id)
    }
    pub fn get(&self, id: &DialogId) -> Option<&T> {
        self.dialogs.get(id)
    }
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// Match an incoming request by (Call-ID, To tag, From tag).
    pub fn match_request(&self, request: &Request) -> Match {
        let has_to_tag = request
            .headers
            .to()
            .ok()
            .is_some_and(|to| to.tag().is_some());
        if !has_to_tag || request.method == Method::Cancel {
            return Match::OutOfDialog;
        }
        match request_dialog_id(request) {
            Some(id) if self.dialogs.contains_key(&id) => Match::Dialog(id),
            _ if request.method == Method::Ack => Match::StrayAck,
            _ => Match::NoDialog(481),
        }
    }
}

/// Serialise a name-addr (`"Display" <uri>;param=value`) with the message layer's form.
pub fn format_name_addr(addr: &NameAddr) -> String {
    addr.to_string()
}

pub(crate) fn header(name: &str, value: impl Into<String>) -> Header {
    Header {
        name: name.to_string(),
        value: value.into(),
    }
}

/// Split a header value on commas that are outside quotes and angle brackets.
pub(crate) fn split_header_list(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                let part = current.trim();
                if !part.is_empty() {
                    parts.push(part.to_string());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    let part = current.trim();
    if !part.is_empty() {
        parts.push(part.to_string());
    }
    parts
}

fn set_tag(addr: &mut NameAddr, tag: &str) {
    addr.params.retain(|(k, _)| !k.eq_ignore_ascii_case("tag"));
    addr.params.push(("tag".to_string(), Some(tag.to_string())));
}

fn first_contact(headers: &Headers) -> Result<Uri, DialogError> {
    match headers.contacts()? {
        Some(Contacts::List(list)) => list
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or(DialogError::MissingContact),
        _ => Err(DialogError::MissingContact),
    }
}

fn record_routes(headers: &Headers) -> Result<Vec<NameAddr>, DialogError> {
    let mut routes = Vec::new();
    for line in headers.get_all("Record-Route") {
        for entry in split_header_list(line) {
            routes.push(NameAddr::parse(&entry).map_err(|_| DialogError::RecordRoute)?);
        }
    }
    Ok(routes)
}

fn uri_has_lr(uri: &Uri) -> bool {
    uri.params.iter().any(|(k, _)| k.eq_ignore_ascii_case("lr"))
}

fn strip_uri_headers(uri: &Uri) -> Uri {
    if uri.headers.is_empty() && !uri.raw.contains('?') {
        return uri.clone();
    }
    let raw = uri.raw.split('?').next().unwrap_or_default().to_string();
    Uri {
        headers: Vec::new(),
        raw,
        ..uri.clone()
    }
}

fn carries_contact(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Refer | Method::Subscribe | Method::Notify
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Message, parse_message};

    fn parse_request(text: &str) -> Request {
        match parse_message(text.replace('\n', "\r\n").as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("test request did not parse: {other:?}"),
        }
    }

    const INVITE: &str = "INVITE sips:053112348@hotline.example SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKa
Record-Route: <sip:p1.example.net;lr>
Record-Route: \"Edge, Proxy\" <sip:p2.example.net;lr>
Max-Forwards: 69
From: <sip:13800000000@trunk.example.net>;tag=ft
To: <sips:053112348@hotline.example>
Call-ID: c1@trunk
CSeq: 4 INVITE
Contact: <sips:13800000000@192.0.2.10:5061>
Content-Length: 0

";

    fn contact() -> NameAddr {
        NameAddr::parse("<sips:12348@10.0.0.1:5061>").expect("contact")
    }

    #[test]
    fn uas_dialog_takes_ids_target_routes_and_security_from_the_invite() {
        let d = Dialog::from_uas(&parse_request(INVITE), "lt", &contact()).expect("dialog");
        assert_eq!(
            d.id(),
            &DialogId {
                call_id: "c1@trunk".to_string(),
                local_tag: "lt".to_string(),
                remote_tag: "ft".to_string(),
            }
        );
        assert_eq!(d.remote_target().raw, "sips:13800000000@192.0.2.10:5061");
        let routes: Vec<&str> = d.route_set().iter().map(|r| r.uri.host.as_str()).collect();
        assert_eq!(routes, vec!["p1.example.net", "p2.example.net"]);
        assert_eq!(d.remote_cseq(), Some(4));
        assert_eq!(d.security(), Security::Sips);
        assert_eq!(d.local_uri().tag(), Some("lt"));
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_continues_the_invite_cseq() {
        let mut invite = parse_request(INVITE);
        invite.headers.remove("Record-Route");
        let mut response = Response::for_request(&invite, 200, "OK", "rt");
        response.headers.push(
            "Record-Route",
            "<sip:p2.example.net;lr>, <sip:p1.example.net;lr>",
        );
        response.headers.push("Contact", "<sip:callee@192.0.2.77>");
        let mut d = Dialog::from_uac(&invite, &response).expect("dialog");
        assert_eq!(d.id().local_tag, "ft");
        assert_eq!(d.id().remote_tag, "rt");
        let routes: Vec<&str> = d.route_set().iter().map(|r| r.uri.host.as_str()).collect();
        assert_eq!(routes, vec!["p1.example.net", "p2.example.net"]);

        let mut ids = BranchSource::from_seed(1);
        let (b1, b2) = (ids.branch(), ids.branch());
        assert_ne!(b1, b2);
        let first = d.build_request(Method::Info, Vec::new(), Bytes::new(), &b1);
        let second = d.build_request(Method::Bye, Vec::new(), Bytes::new(), &b2);
        assert_eq!(first.headers.cseq().expect("cseq").seq, 5);
        assert_eq!(second.headers.cseq().expect("cseq").seq, 6);
        assert_eq!(
            second.headers.top_via().expect("via").branch.as_deref(),
            Some(b2.as_str())
        );
        assert_eq!(second.uri.raw, "sip:callee@192.0.2.77");
        let ack = d.build_ack_for_2xx(4, None, &ids.branch());
        assert_eq!(ack.headers.cseq().expect("cseq").seq, 4);
        assert_eq!(ack.headers.cseq().expect("cseq").method, Method::Ack);
    }

    #[test]
    fn uac_dialog_needs_a_to_tag_and_a_contact() {
        let invite = parse_request(INVITE);
        let untagged = Response::for_request(&invite, 100, "Trying", "rt");
        assert_eq!(
            Dialog::from_uac(&invite, &untagged),
            Err(DialogError::MissingRemoteTag)
        );
        let no_contact = Response::for_request(&invite, 200, "OK", "rt");
        assert_eq!(
            Dialog::from_uac(&invite, &no_contact),
            Err(DialogError::MissingContact)
        );
    }

    #[test]
    fn remote_cseq_lower_than_last_is_rejected_ack_is_not_checked() {
        let mut d = Dialog::from_uas(&parse_request(INVITE), "lt", &contact()).expect("dialog");
        let cseq = |seq, method| CSeq { seq, method };
        assert!(d.accept_remote_cseq(&cseq(4, Method::Ack)).is_ok());
        assert_eq!(
            d.accept_remote_cseq(&cseq(3, Method::Bye)),
            Err(OutOfOrderCSeq {
                received: 3,
                last: 4
            })
        );
        assert!(d.accept_remote_cseq(&cseq(9, Method::Info)).is_ok());
        assert!(d.accept_remote_cseq(&cseq(5, Method::Bye)).is_err());
    }

    #[test]
    fn branches_and_tags_are_deterministic_per_seed_and_carry_the_cookie() {
        let mut a = BranchSource::from_seed(42);
        let mut b = BranchSource::from_seed(42);
        let mut c = BranchSource::from_seed(43);
        let branch = a.branch();
        assert!(branch.as_str().starts_with(BRANCH_COOKIE));
        assert_eq!(branch, b.branch());
        assert_ne!(a.tag(), c.tag());
    }

    #[test]
    fn cancel_copies_the_invite_top_via_and_cseq_number() {
        let invite = parse_request(INVITE);
        let cancel = build_cancel(&invite).expect("cancel");
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(
            cancel.headers.top_via().expect("via").branch.as_deref(),
            Some("z9hG4bKa")
        );
        let cseq = cancel.headers.cseq().expect("cseq");
        assert_eq!((cseq.seq, cseq.method), (4, Method::Cancel));
    }

    #[test]
    fn header_lists_split_outside_quotes_and_brackets_only() {
        assert_eq!(
            split_header_list("\"A, B\" <sip:a@x;lr>, <sip:b@y?h=1,2>"),
            vec!["\"A, B\" <sip:a@x;lr>", "<sip:b@y?h=1,2>"]
        );
    }

    #[test]
    fn stray_ack_is_discarded_and_cancel_is_out_of_dialog() {
        let set: DialogSet<()> = DialogSet::new();
        let mut ack = parse_request(INVITE);
        ack.method = Method::Ack;
        ack.headers
            .set("To", "<sips:053112348@hotline.example>;tag=zz");
        ack.headers.set("CSeq", "4 ACK");
        assert_eq!(set.match_request(&ack), Match::StrayAck);
        let mut cancel = build_cancel(&parse_request(INVITE)).expect("cancel");
        cancel
            .headers
            .set("To", "<sips:053112348@hotline.example>;tag=zz");
        assert_eq!(set.match_request(&cancel), Match::OutOfDialog);
    }
}
