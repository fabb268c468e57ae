//! SDP (RFC 4566) parsing/serialising of what a G.711 voice B2BUA needs, and offer/answer
//! (RFC 3264).
//!
//! * [`SessionDescription::parse`] keeps every attribute (typed accessors for `rtpmap`,
//!   `fmtp`, direction, `ptime`, `rtcp`), `c=` at session and media level, IPv4 and IPv6.
//!   Unknown line types (`b=`, `i=`, `k=`, …) are skipped. Serialising with `Display`
//!   writes CRLF lines.
//! * [`answer`]: answer a caller's offer (initial INVITE or re-INVITE). Errors map to SIP:
//!   [`SdpError::NoCommonCodec`] and [`SdpError::NoUsableAudio`] → 488, parse errors → 400.
//! * [`offer`] / [`parse_answer`]: the agent leg, where we offer.
//!
//! Hold: a `sendonly` offer is answered `recvonly`, `inactive` with `inactive`, and an old
//! style `c=0.0.0.0` hold leaves [`Negotiated::remote_rtp`] empty (we must not send) and is
//! answered `recvonly`. A re-INVITE that moves the media gives a different
//! [`Negotiated::remote_rtp`]; the shell then calls `RtpSession::set_remote`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use super::g711::Codec;
use super::rtp::RemoteMedia;

/// What went wrong; `line` is 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP does not start with v=0")]
    BadVersion,
    #[error("line {line} is not of the form x=value")]
    MalformedLine { line: usize },
    #[error("missing or malformed o= line")]
    BadOrigin,
    #[error("malformed c= line at line {line}")]
    BadConnection { line: usize },
    #[error("malformed m= line at line {line}")]
    BadMedia { line: usize },
    #[error("no RTP/AVP audio stream with a non-zero port")]
    NoUsableAudio,
    #[error("audio stream has no connection address")]
    MissingConnection,
    #[error("no codec in common")]
    NoCommonCodec,
    #[error("the answer rejected our audio stream")]
    AudioRejected,
    /// A multicast or broadcast media address: we would send the call's audio to every
    /// host of a group or a network (reflection); a phone never asks for that.
    #[error("media address {0} is not a unicast address")]
    NotUnicast(std::net::IpAddr),
}

impl SdpError {
    /// The SIP response for an offer that failed this way: 488 Not Acceptable Here when the
    /// SDP is fine but unusable, 400 Bad Request when it cannot be parsed.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::NoUsableAudio
            | SdpError::NoCommonCodec
            | SdpError::AudioRejected
            | SdpError::NotUnicast(_) => 488,
            SdpError::BadVersion
            | SdpError::MalformedLine { .. }
            | SdpError::BadOrigin
            | SdpError::BadConnection { .. }
            | SdpError::BadMedia { .. }
            | SdpError::MissingConnection => 400,
        }
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other side.
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both allow.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

/// `c=IN IP4|IP6 <address>` (a multicast `/ttl` suffix is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub address: IpAddr,
}

impl Connection {
    fn parse(value: &str) -> Option<Connection> {
        let mut parts = value.split_ascii_whitespace();
        if parts.next()? != "IN" {
            return None;
        }
        let addr_type = parts.next()?;
        let address = parts.next()?.split('/').next()?;
        let address = match addr_type {
            "IP4" => IpAddr::V4(address.parse::<Ipv4Addr>().ok()?),
            "IP6" => IpAddr::V6(address.parse::<Ipv6Addr>().ok()?),
            _ => return None,
        };
        Some(Connection { address })
    }
}

fn addr_type(address: &IpAddr) -> &'static str {
    if address.is_ipv4() { "IP4" } else { "IP6" }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IN {} {}", addr_type(&self.address), self.address)
    }
}

/// `o=<username> <sess-id> <sess-version> IN <addrtype> <address>`; the address is kept as
/// text because real UAs put host names there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: u64,
    pub addr_type: String,
    pub address: String,
}

/// `a=<name>[:<value>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }
    pub fn new(name: &str, value: String) -> Attribute {
        Attribute {
            name: name.to_owned(),
            value: Some(value),
        }
    }
}

/// A parsed `a=rtpmap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub kind: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub attributes: Vec<Attribute>,
}

fn find_attribute<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes.iter().find(|a| a.name == name)
}

fn attribute_direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.name))
}

impl MediaDescription {
    /// The `rtpmap` for `payload_type`, if present.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .find_map(|a| {
                let value = a.value.as_deref()?;
                let (pt, rest) = value.split_once(' ')?;
                let pt: u8 = pt.trim().parse().ok()?;
                if pt != payload_type {
                    return None;
                }
                let mut parts = rest.trim().split('/');
                let encoding = parts.next()?.to_owned();
                let clock_rate = parts.next()?.parse().ok()?;
                let channels = parts.next().and_then(|c| c.parse().ok());
                Some(RtpMap {
                    payload_type: pt,
                    encoding,
                    clock_rate,
                    channels,
                })
            })
    }

    /// The `fmtp` parameters for `payload_type`.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .find_map(|a| {
                let (pt, params) = a.value.as_deref()?.split_once(' ')?;
                (pt.parse::<u8>().ok()? == payload_type).then_some(params.trim())
            })
    }

    /// Media-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        attribute_direction(&self.attributes)
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        find_attribute(&self.attributes, "ptime")?
            .value
            .as_deref()?
            .trim()
            .parse()
            .ok()
    }

    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
    pub fn rtcp(&self) -> Option<(u16, Option<Connection>)> {
        let value = find_attribute(&self.attributes, "rtcp")?.value.as_deref()?;
        let (port, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        Some((port.parse().ok()?, Connection::parse(rest)))
    }

    /// Payload types as numbers (non-numeric formats are skipped).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }

    /// The G.711 codec a payload type stands for here: via rtpmap, else the static type.
    pub fn codec_of(&self, payload_type: u8) -> Option<Codec> {
        match self.rtpmap(payload_type) {
            Some(map) if map.clock_rate == 8000 && map.channels.unwrap_or(1) == 1 => {
                Codec::from_encoding_name(&map.encoding)
            }
            Some(_) => None,
            None => [Codec::Pcmu, Codec::Pcma]
                .into_iter()
                .find(|c| c.static_payload_type() == payload_type),
        }
    }

    /// The payload type of `telephone-event/8000`, if offered.
    pub fn telephone_event(&self) -> Option<u8> {
        self.payload_types().find(|pt| {
            self.rtpmap(*pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }

    fn is_usable_audio(&self) -> bool {
        self.kind == "audio" && self.port != 0 && self.proto.eq_ignore_ascii_case("RTP/AVP")
    }

    /// The first `a=crypto` key of the suite we speak (SDES, RFC 4568).
    #[must_use]
    pub fn sdes_crypto(&self) -> Option<crate::media::srtp::SdesCrypto> {
        self.attributes
            .iter()
            .filter(|a| a.name == "crypto")
            .find_map(|a| crate::media::srtp::SdesCrypto::parse(a.value.as_deref()?).ok())
    }

    /// An SRTP profile (`RTP/SAVP`, RFC 3711 §12).
    #[must_use]
    pub fn is_savp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/SAVP")
    }
}

/// The key of an SRTP offer's audio stream: an `RTP/SAVP` or `RTP/AVP` audio stream
/// with an `a=crypto` line of our suite. `None` for plain RTP; `Err` for an SRTP stream
/// whose keys we cannot use (it must be refused, never answered in clear).
///
/// # Errors
/// [`SdpError::NoUsableAudio`] for `RTP/SAVP` without a usable key.
pub fn offered_sdes(
    offer: &SessionDescription,
) -> Result<Option<crate::media::srtp::SdesCrypto>, SdpError> {
    let Some(audio) = offer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0)
    else {
        return Ok(None);
    };
    match (audio.sdes_crypto(), audio.is_savp()) {
        (Some(crypto), _) => Ok(Some(crypto)),
        (None, true) => Err(SdpError::NoUsableAudio),
        (None, false) => Ok(None),
    }
}

/// `offer` as if it were plain RTP (its SRTP audio stream read as `RTP/AVP`), for
/// [`answer`]; the caller adds our key to the answer with [`with_sdes`].
#[must_use]
pub fn as_plain(offer: &SessionDescription) -> SessionDescription {
    let mut plain = offer.clone();
    for m in &mut plain.media {
        if m.kind == "audio" && m.is_savp() {
            m.proto = "RTP/AVP".to_owned();
        }
    }
    plain
}

/// `sdp` with our SDES key on its audio stream, and the `RTP/SAVP` profile when
/// `savp` (an offer that requires SRTP, or the answer to an `RTP/SAVP` offer).
#[must_use]
pub fn with_sdes(
    mut sdp: SessionDescription,
    crypto: &crate::media::srtp::SdesCrypto,
    savp: bool,
) -> SessionDescription {
    if let Some(audio) = sdp
        .media
        .iter_mut()
        .find(|m| m.kind == "audio" && m.port != 0)
    {
        if savp {
            audio.proto = "RTP/SAVP".to_owned();
        }
        audio
            .attributes
            .insert(0, Attribute::new("crypto", crypto.to_string()));
    }
    sdp
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    pub timing: (u64, u64),
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parse an SDP body.
    ///
    /// # Errors
    /// [`SdpError::BadVersion`], [`SdpError::MalformedLine`], [`SdpError::BadOrigin`],
    /// [`SdpError::BadConnection`], [`SdpError::BadMedia`].
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, "v=0")) => {}
            _ => return Err(SdpError::BadVersion),
        }
        let mut origin = None;
        let mut session_name = String::from("-");
        let mut connection = None;
        let mut timing = (0, 0);
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        for (index, line) in lines {
            let line_no = index + 1;
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(SdpError::MalformedLine { line: line_no });
            }
            let value = line.get(2..).unwrap_or_default();
            match (bytes[0], media.last_mut()) {
                (b'o', None) => origin = Some(parse_origin(value).ok_or(SdpError::BadOrigin)?),
                (b's', None) => session_name = value.to_owned(),
                (b't', None) => {
                    let mut parts = value.split_ascii_whitespace().map(|p| p.parse::<u64>());
                    if let (Some(Ok(start)), Some(Ok(stop))) = (parts.next(), parts.next()) {
                        timing = (start, stop);
                    }
                }
                (b'c', current) => {
                    let parsed = Connection::parse(value)
                        .ok_or(SdpError::BadConnection { line: line_no })?;
                    match current {
                        Some(m) => m.connection = Some(parsed),
                        None => connection = Some(parsed),
                    }
                }
                (b'a', current) => {
                    let attribute = match value.split_once(':') {
                        Some((name, v)) => Attribute::new(name, v.to_owned()),
                        None => Attribute::flag(value),
                    };
                    match current {
                        Some(m) => m.attributes.push(attribute),
                        None => attributes.push(attribute),
                    }
                }
                (b'm', _) => {
                    media.push(parse_media(value).ok_or(SdpError::BadMedia { line: line_no })?)
                }
                _ => {}
            }
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::BadOrigin)?,
            session_name,
            connection,
            timing,
            attributes,
            media,
        })
    }

    /// Session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        attribute_direction(&self.attributes)
    }

    /// The connection address that applies to `media` (media level, else session level).
    pub fn connection_for(&self, media: &MediaDescription) -> Option<Connection> {
        media.connection.or(self.connection)
    }
}

fn parse_origin(value: &str) -> Option<Origin> {
    let mut parts = value.split_ascii_whitespace();
    let username = parts.next()?.to_owned();
    let session_id = parts.next()?.to_owned();
    let session_version = parts.next()?.parse().ok()?;
    if parts.next()? != "IN" {
        return None;
    }
    let addr_type = parts.next()?.to_owned();
    let address = parts.next()?.to_owned();
    Some(Origin {
        username,
        session_id,
        session_version,
        addr_type,
        address,
    })
}

fn parse_media(value: &str) -> Option<MediaDescription> {
    let mut parts = value.split_ascii_whitespace();
    let kind = parts.next()?.to_owned();
    let port_token = parts.next()?;
    let (port, port_count) = match port_token.split_once('/') {
        Some((port, count)) => (port.parse().ok()?, Some(count.parse().ok()?)),
        None => (port_token.parse().ok()?, None),
    };
    let proto = parts.next()?.to_owned();
    let formats = parts.map(str::to_owned).collect();
    Some(MediaDescription {
        kind,
        port,
        port_count,
        proto,
        formats,
        connection: None,
        attributes: Vec::new(),
    })
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\n",
            o.username, o.session_id, o.session_version, o.addr_type, o.address
        )?;
        write!(f, "s={}\r\n", self.session_name)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write!(f, "t={} {}\r\n", self.timing.0, self.timing.1)?;
        write_attributes(f, &self.attributes)?;
        for m in &self.media {
            write!(f, "m={} {}", m.kind, m.port)?;
            if let Some(count) = m.port_count {
                write!(f, "/{count}")?;
            }
            write!(f, " {}", m.proto)?;
            for format in &m.formats {
                write!(f, " {format}")?;
            }
            f.write_str("\r\n")?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            write_attributes(f, &m.attributes)?;
        }
        Ok(())
    }
}

fn write_attributes(f: &mut fmt::Formatter<'_>, attributes: &[Attribute]) -> fmt::Result {
    for a in attributes {
        match &a.value {
            Some(v) => write!(f, "a={}:{}\r\n", a.name, v)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

/// Our side of the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    /// Codecs we accept, in our order of preference (used when we offer).
    pub codecs: Vec<Codec>,
    /// Payload type for telephone-event when we offer; `None` = no RFC 4733 support.
    pub telephone_event: Option<u8>,
    pub session_id: u64,
    /// Increment on every new offer/answer we send in the dialog.
    pub session_version: u64,
    /// What we want: `SendRecv` normally, `SendOnly` to put the other side on hold.
    pub direction: Direction,
    pub ptime: u32,
}

impl LocalMedia {
    /// PCMU, PCMA, telephone-event on 101, sendrecv, 20 ms.
    pub fn g711(address: IpAddr, port: u16, session_id: u64, session_version: u64) -> LocalMedia {
        LocalMedia {
            address,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: Some(101),
            session_id,
            session_version,
            direction: Direction::SendRecv,
            ptime: 20,
        }
    }
}

/// The outcome of a negotiation, for configuring the RTP session and bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    /// RFC 4733 payload type both sides use, if any.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP; `None` when the remote address is 0.0.0.0/:: (old-style hold).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP (`a=rtcp`, else RTP port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    /// What WE may do: send if `sends()`, expect media if `receives()`.
    pub direction: Direction,
    pub remote_ptime: Option<u32>,
}

impl Negotiated {
    /// The addresses for `RtpSession::new` / `RtpSession::set_remote`.
    pub fn remote(&self) -> RemoteMedia {
        RemoteMedia {
            rtp: self.remote_rtp,
            rtcp: self.remote_rtcp,
        }
    }

    /// The remote put us on hold (we must not send media).
    pub fn is_held(&self) -> bool {
        !self.direction.sends() || self.remote_rtp.is_none()
    }
}

/// Our answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: SessionDescription,
    pub media: Negotiated,
}

fn remote_addresses(
    sdp: &SessionDescription,
    m: &MediaDescription,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), SdpError> {
    let connection = sdp.connection_for(m).ok_or(SdpError::MissingConnection)?;
    if connection.address.is_unspecified() {
        return Ok((None, None));
    }
    let rtcp_address = m
        .rtcp()
        .and_then(|(_, conn)| conn)
        .map_or(connection.address, |c| c.address);
    for address in [connection.address, rtcp_address] {
        if !is_unicast(address) {
            return Err(SdpError::NotUnicast(address));
        }
    }
    let rtp = SocketAddr::new(connection.address, m.port);
    let rtcp = match m.rtcp() {
        Some((port, _)) => SocketAddr::new(rtcp_address, port),
        None => SocketAddr::new(connection.address, m.port.wrapping_add(1)),
    };
    Ok((Some(rtp), Some(rtcp)))
}

/// Neither multicast nor the IPv4 limited broadcast (a subnet's directed broadcast
/// cannot be told from a host address without the netmask).
fn is_unicast(address: std::net::IpAddr) -> bool {
    match address {
        std::net::IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

fn origin_for(local: &LocalMedia) -> Origin {
    Origin {
        username: "hotline".to_owned(),
        session_id: local.session_id.to_string(),
        session_version: local.session_version,
        addr_type: addr_type(&local.address).to_owned(),
        address: local.address.to_string(),
    }
}

fn audio_media(
    local: &LocalMedia,
    codecs: &[(u8, Codec)],
    dtmf: Option<u8>,
    direction: Direction,
) -> MediaDescription {
    let mut formats: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut attributes: Vec<Attribute> = codecs
        .iter()
        .map(|(pt, codec)| Attribute::new("rtpmap", format!("{pt} {}/8000", codec.encoding_name())))
        .collect();
    if let Some(pt) = dtmf {
        formats.push(pt.to_string());
        attributes.push(Attribute::new(
            "rtpmap",
            format!("{pt} telephone-event/8000"),
        ));
        attributes.push(Attribute::new("fmtp", format!("{pt} 0-15")));
    }
    attributes.push(Attribute::new("ptime", local.ptime.to_string()));
    attributes.push(Attribute::flag(direction.as_str()));
    MediaDescription {
        kind: "audio".to_owned(),
        port: local.port,
        port_count: None,
        proto: "RTP/AVP".to_owned(),
        formats,
        connection: None,
        attributes,
    }
}

fn session(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        origin: origin_for(local),
        session_name: "-".to_owned(),
        connection: Some(Connection {
            address: local.address,
        }),
        timing: (0, 0),
        attributes: Vec::new(),
        media,
    }
}

/// Answer an offer (RFC 3264 §6): the first usable audio stream gets the first codec of the
/// offer's list that we support, plus telephone-event on the offer's payload type; every
/// other stream is rejected with port 0.
///
/// # Errors
/// [`SdpError::NoUsableAudio`], [`SdpError::NoCommonCodec`] (both → 488),
/// [`SdpError::MissingConnection`].
pub fn answer(offer: &SessionDescription, local: &LocalMedia) -> Result<Answer, SdpError> {
    let index = offer
        .media
        .iter()
        .position(MediaDescription::is_usable_audio)
        .ok_or(SdpError::NoUsableAudio)?;
    let offered = offer.media.get(index).ok_or(SdpError::NoUsableAudio)?;
    let (payload_type, codec) = offered
        .payload_types()
        .find_map(|pt| {
            offered
                .codec_of(pt)
                .filter(|c| local.codecs.contains(c))
                .map(|c| (pt, c))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let dtmf_payload_type = local.telephone_event.and(offered.telephone_event());
    let (remote_rtp, remote_rtcp) = remote_addresses(offer, offered)?;
    let mut offered_direction = offered
        .direction()
        .or(offer.direction())
        .unwrap_or_default();
    if remote_rtp.is_none() {
        // Old-style hold (RFC 2543 c=0.0.0.0): the offerer does not want media.
        offered_direction = offered_direction.intersect(Direction::SendOnly);
    }
    let direction = offered_direction.reversed().intersect(local.direction);
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == index {
                audio_media(
                    local,
                    &[(payload_type, codec)],
                    dtmf_payload_type,
                    direction,
                )
            } else {
                MediaDescription {
                    kind: m.kind.clone(),
                    port: 0,
                    port_count: None,
                    proto: m.proto.clone(),
                    formats: m.formats.clone(),
                    connection: None,
                    attributes: Vec::new(),
                }
            }
        })
        .collect();
    Ok(Answer {
        sdp: session(local, media),
        media: Negotiated {
            codec,
            payload_type,
            dtmf_payload_type,
            remote_rtp,
            remote_rtcp,
            direction,
            remote_ptime: offered.ptime(),
        },
    })
}

/// Our offer (agent leg): one audio stream with `local.codecs` on their static payload
/// types and telephone-event if configured.
pub fn offer(local: &LocalMedia) -> SessionDescription {
    let codecs: Vec<(u8, Codec)> = local
        .codecs
        .iter()
        .map(|c| (c.static_payload_type(), *c))
        .collect();
    session(
        local,
        vec![audio_media(
            local,
            &codecs,
            local.telephone_event,
            local.direction,
        )],
    )
}

/// Read the answer to our `offer`: the chosen codec is the answer's first payload type
/// that we offered.
///
/// # Errors
/// [`SdpError::AudioRejected`] (port 0 or no audio), [`SdpError::NoCommonCodec`],
/// [`SdpError::MissingConnection`].
pub fn parse_answer(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    let index = our_offer
        .media
        .iter()
        .position(|m| m.kind == "audio")
        .ok_or(SdpError::NoUsableAudio)?;
    let offered = our_offer.media.get(index).ok_or(SdpError::NoUsableAudio)?;
    let answered = answer
        .media
        .get(index)
        .filter(|m| m.kind == "audio" && m.port != 0)
        .ok_or(SdpError::AudioRejected)?;
    let (payload_type, codec) = answered
        .payload_types()
        .find_map(|pt| {
            let codec = answered.codec_of(pt)?;
            offered
                .payload_types()
                .any(|o| o == pt && offered.codec_of(o) == Some(codec))
                .then_some((pt, codec))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let dtmf_payload_type = answered
        .telephone_event()
        .filter(|_| offered.telephone_event().is_some());
    let (remote_rtp, remote_rtcp) = remote_addresses(answer, answered)?;
    let answered_direction = answered
        .direction()
        .or(answer.direction())
        .unwrap_or_default();
    let mut direction = answered_direction
        .reversed()
        .intersect(offered.direction().unwrap_or_default());
    if remote_rtp.is_none() {
        direction = direction.intersect(Direction::RecvOnly);
    }
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_payload_type,
        remote_rtp,
        remote_rtcp,
        direction,
        remote_ptime: answered.ptime(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINPHONE_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n\
s=Talk\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000\r\n\
m=audio 49170 RTP/AVP 96 8 0 18 97\r\n\
b=AS:64\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:97 telephone-event/8000\r\n\
a=fmtp:97 0-16\r\n\
a=ptime:20\r\n\
a=rtcp:49171\r\n\
m=video 0 RTP/AVP 31\r\n";

    fn local() -> LocalMedia {
        LocalMedia::g711("203.0.113.5".parse().unwrap(), 30000, 42, 1)
    }

    #[test]
    fn parses_session_and_media_level_fields() {
        let sdp = SessionDescription::parse(LINPHONE_OFFER).unwrap();
        assert_eq!(sdp.origin.username, "alice");
        assert_eq!(sdp.origin.session_version, 2890844526);
        assert_eq!(
            sdp.connection.unwrap().address,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(sdp.media.len(), 2);
        let audio = &sdp.media[0];
        assert_eq!(
            audio.payload_types().collect::<Vec<_>>(),
            vec![96, 8, 0, 18, 97]
        );
        assert_eq!(audio.rtpmap(96).unwrap().channels, Some(2));
        assert_eq!(audio.codec_of(96), None);
        assert_eq!(audio.codec_of(8), Some(Codec::Pcma));
        assert_eq!(audio.codec_of(18), None);
        assert_eq!(audio.telephone_event(), Some(97));
        assert_eq!(audio.fmtp(97), Some("0-16"));
        assert_eq!(audio.ptime(), Some(20));
        assert_eq!(audio.rtcp(), Some((49171, None)));
        assert_eq!(audio.direction(), None);
        assert_eq!(sdp.attributes[0].name, "rtcp-xr");
    }

    #[test]
    fn serialise_then_parse_is_identity() {
        let sdp = SessionDescription::parse(LINPHONE_OFFER).unwrap();
        let text = sdp.to_string();
        assert!(text.ends_with("\r\n"));
        assert_eq!(SessionDescription::parse(&text).unwrap(), sdp);
    }

    #[test]
    fn answer_picks_first_common_codec_in_offer_order_and_offer_dtmf_pt() {
        let offer = SessionDescription::parse(LINPHONE_OFFER).unwrap();
        let answer = answer(&offer, &local()).unwrap();
        assert_eq!(answer.media.codec, Codec::Pcma, "offer lists 8 before 0");
        assert_eq!(answer.media.payload_type, 8);
        assert_eq!(answer.media.dtmf_payload_type, Some(97));
        assert_eq!(
            answer.media.remote_rtp,
            Some("198.51.100.7:49170".parse().unwrap())
        );
        assert_eq!(
            answer.media.remote_rtcp,
            Some("198.51.100.7:49171".parse().unwrap())
        );
        assert_eq!(answer.media.direction, Direction::SendRecv);
        let text = answer.sdp.to_string();
        let reparsed = SessionDescription::parse(&text).unwrap();
        assert_eq!(
            reparsed.media.len(),
            2,
            "one answer m-line per offer m-line"
        );
        let audio = &reparsed.media[0];
        assert_eq!(audio.port, 30000);
        assert_eq!(audio.formats, vec!["8", "97"]);
        assert_eq!(audio.rtpmap(97).unwrap().encoding, "telephone-event");
        assert_eq!(audio.direction(), Some(Direction::SendRecv));
        assert_eq!(reparsed.media[1].port, 0);
        assert_eq!(reparsed.connection.unwrap().address, local().address);
    }

    #[test]
    fn static_payload_without_rtpmap_and_no_dtmf() {
        let offer = SessionDescription::parse(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
        )
        .unwrap();
        let a = answer(&offer, &local()).unwrap();
        assert_eq!(
            (a.media.codec, a.media.dtmf_payload_type),
            (Codec::Pcmu, None)
        );
    }

    #[test]
    fn no_common_codec_is_488_material() {
        let offer = SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 18 101\r\na=rtpmap:101 telephone-event/8000\r\n").unwrap();
        assert_eq!(answer(&offer, &local()), Err(SdpError::NoCommonCodec));
        assert_eq!(SdpError::NoCommonCodec.sip_status(), 488);
        assert_eq!(SdpError::BadVersion.sip_status(), 400);
        let srtp = SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n").unwrap();
        assert_eq!(answer(&srtp, &local()), Err(SdpError::NoUsableAudio));
    }

    #[test]
    fn telephone_event_at_16khz_is_not_used() {
        let offer = SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/16000\r\n").unwrap();
        assert_eq!(
            answer(&offer, &local()).unwrap().media.dtmf_payload_type,
            None
        );
    }

    #[test]
    fn hold_offers() {
        let base = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sendonly = SessionDescription::parse(&format!("{base}a=sendonly\r\n")).unwrap();
        let a = answer(&sendonly, &local()).unwrap();
        assert_eq!(a.media.direction, Direction::RecvOnly);
        assert!(a.media.is_held());
        assert_eq!(a.sdp.media[0].direction(), Some(Direction::RecvOnly));
        let inactive = SessionDescription::parse(&format!("{base}a=inactive\r\n")).unwrap();
        assert_eq!(
            answer(&inactive, &local()).unwrap().media.direction,
            Direction::Inactive
        );
        // Session-level direction applies when the media has none.
        let session_level = base.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
        assert_eq!(
            answer(
                &SessionDescription::parse(&session_level).unwrap(),
                &local()
            )
            .unwrap()
            .media
            .direction,
            Direction::RecvOnly
        );
        let old_style =
            SessionDescription::parse(&base.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0"))
                .unwrap();
        let a = answer(&old_style, &local()).unwrap();
        assert_eq!(a.media.remote_rtp, None);
        assert_eq!(a.media.direction, Direction::RecvOnly);
        assert!(a.media.is_held());
    }

    #[test]
    fn reinvite_with_new_address_and_media_level_connection() {
        let first = SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        let second = SessionDescription::parse("v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\n").unwrap();
        let a1 = answer(&first, &local()).unwrap().media;
        let a2 = answer(&second, &local()).unwrap().media;
        assert_eq!(a1.remote_rtp, Some("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(a2.remote_rtp, Some("10.9.9.9:5000".parse().unwrap()));
        assert_ne!(a1.remote_rtp, a2.remote_rtp);
    }

    #[test]
    fn multicast_and_broadcast_media_addresses_are_488() {
        for (connection, rtcp) in [
            ("c=IN IP4 224.0.0.1", ""),
            ("c=IN IP4 239.255.255.250", ""),
            ("c=IN IP4 255.255.255.255", ""),
            ("c=IN IP6 ff02::1", ""),
            ("c=IN IP4 10.0.0.1", "a=rtcp:4001 IN IP4 224.0.0.9\r\n"),
        ] {
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n{connection}\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n{rtcp}"
            );
            let error = answer(&SessionDescription::parse(&offer).unwrap(), &local()).unwrap_err();
            assert!(
                matches!(error, SdpError::NotUnicast(_)),
                "{connection}: {error}"
            );
            assert_eq!(error.sip_status(), 488);
        }
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let offer = SessionDescription::parse("v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n").unwrap();
        let mut l = local();
        l.address = "2001:db8::5".parse().unwrap();
        let a = answer(&offer, &l).unwrap();
        assert_eq!(
            a.media.remote_rtp,
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        let text = a.sdp.to_string();
        assert!(text.contains("c=IN IP6 2001:db8::5\r\n"), "{text}");
        assert!(
            text.contains("o=hotline 42 1 IN IP6 2001:db8::5\r\n"),
            "{text}"
        );
    }

    #[test]
    fn malformed_sdp_errors() {
        assert_eq!(SessionDescription::parse(""), Err(SdpError::BadVersion));
        assert_eq!(
            SessionDescription::parse("v=1\r\n"),
            Err(SdpError::BadVersion)
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\nbogus\r\n"),
            Err(SdpError::MalformedLine { line: 2 })
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\ns=-\r\n"),
            Err(SdpError::BadOrigin)
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 host.example\r\n"),
            Err(SdpError::BadConnection { line: 3 })
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n"),
            Err(SdpError::BadMedia { line: 3 })
        );
        let no_c =
            SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 4000 RTP/AVP 0\r\n")
                .unwrap();
        assert_eq!(answer(&no_c, &local()), Err(SdpError::MissingConnection));
    }

    #[test]
    fn our_offer_and_their_answer() {
        let ours = offer(&local());
        let text = ours.to_string();
        assert!(text.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        let their = SessionDescription::parse("v=0\r\no=agent 5 5 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 7078 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").unwrap();
        let n = parse_answer(&ours, &their).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_payload_type),
            (Codec::Pcma, 8, Some(101))
        );
        assert_eq!(n.remote_rtp, Some("192.168.1.20:7078".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        let rejected = SessionDescription::parse("v=0\r\no=a 5 5 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n").unwrap();
        assert_eq!(parse_answer(&ours, &rejected), Err(SdpError::AudioRejected));
        let recvonly = their.to_string().replace("a=sendrecv", "a=recvonly");
        let n = parse_answer(&ours, &SessionDescription::parse(&recvonly).unwrap()).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
    }
}
