//! Typed header values: name-addr (From/To/Contact), Via, CSeq (RFC 3261 §20, §25.1).

use super::lex::{
    is_token, is_token_char, is_ws, parse_digits_u32, parse_generic_params, quote,
    split_outside_quotes, take_quoted, trim_ws, write_params,
};
use super::uri::{parse_uri, split_host_port, valid_ipv6};
use super::{CSeq, Method, NameAddr, ParseError, Via};
use std::fmt;

pub(crate) fn parse_name_addr(text: &str, name: &'static str) -> Result<NameAddr, ParseError> {
    let err = ParseError::HeaderValue { name };
    let text = trim_ws(text);
    let (display_name, after_display) = if text.starts_with('"') {
        let (display, rest) = take_quoted(text).ok_or(err.clone())?;
        let rest = trim_ws(rest);
        if !rest.starts_with('<') {
            return Err(err);
        }
        (Some(display), rest)
    } else if let Some(lt) = text.find('<') {
        // Unquoted display name: tokens separated by LWS (RFC 3261 `display-name`).
        let display = trim_ws(text.get(..lt).ok_or(err.clone())?);
        let valid = display.split(is_ws).filter(|w| !w.is_empty()).all(is_token);
        if !valid {
            return Err(err);
        }
        let rest = text.get(lt..).ok_or(err.clone())?;
        let display = if display.is_empty() {
            None
        } else {
            Some(display.to_string())
        };
        (display, rest)
    } else {
        (None, text)
    };

    if let Some(inner) = after_display.strip_prefix('<') {
        let close = inner.find('>').ok_or(err.clone())?;
        let uri_text = inner.get(..close).ok_or(err.clone())?;
        // RFC 4475 §3.1.2.14 (badaspec): no whitespace is allowed inside the brackets.
        if uri_text.is_empty() || uri_text.chars().any(char::is_whitespace) {
            return Err(err);
        }
        let uri = parse_uri(uri_text).map_err(|_| err.clone())?;
        let rest = trim_ws(inner.get(close + 1..).ok_or(err.clone())?);
        let params = header_params(rest).ok_or(err)?;
        return Ok(NameAddr {
            display_name,
            uri,
            params,
        });
    }

    // Bare addr-spec: everything after the first ';' is a header parameter, and a URI
    // holding ',' or '?' must have been bracketed (RFC 3261 §20.10; RFC 4475 regbadct).
    let (uri_text, rest) = match text.find(';') {
        Some(i) => (
            trim_ws(text.get(..i).ok_or(err.clone())?),
            text.get(i..).ok_or(err.clone())?,
        ),
        None => (text, ""),
    };
    if uri_text.is_empty()
        || uri_text
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '?' || c == '"')
    {
        return Err(err);
    }
    let uri = parse_uri(uri_text).map_err(|_| err.clone())?;
    let params = header_params(rest).ok_or(err)?;
    Ok(NameAddr {
        display_name: None,
        uri,
        params,
    })
}

/// Parameters after a name-addr: empty, or `;p1;p2=v`.
fn header_params(rest: &str) -> Option<Vec<(String, Option<String>)>> {
    if rest.is_empty() {
        return Some(Vec::new());
    }
    parse_generic_params(rest.strip_prefix(';')?)
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if let Some(d) = &self.display_name {
            if !d.is_empty() && d.split(' ').all(is_token) {
                out.push_str(d);
            } else {
                out.push_str(&quote(d));
            }
            out.push(' ');
        }
        out.push('<');
        out.push_str(&self.uri.raw);
        out.push('>');
        write_params(&mut out, &self.params);
        f.write_str(&out)
    }
}

/// Reads a token at the start of `s`, returning it and the rest.
fn take_token(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !is_token_char(*c))
        .map_or(s.len(), |(i, _)| i);
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

fn take_slash(s: &str) -> Option<&str> {
    s.trim_start_matches(is_ws)
        .strip_prefix('/')
        .map(|r| r.trim_start_matches(is_ws))
}

/// One `via-parm` (a single comma-separated entry).
pub(crate) fn parse_via(text: &str) -> Result<Via, ParseError> {
    let err = ParseError::HeaderValue { name: "Via" };
    let text = trim_ws(text);
    let (protocol, rest) = take_token(text);
    if !protocol.eq_ignore_ascii_case("SIP") {
        return Err(err);
    }
    let rest = take_slash(rest).ok_or(err.clone())?;
    let (version, rest) = take_token(rest);
    if version != "2.0" {
        return Err(err);
    }
    let rest = take_slash(rest).ok_or(err.clone())?;
    let (transport, rest) = take_token(rest);
    if transport.is_empty() || !rest.starts_with(is_ws) {
        return Err(err);
    }
    let rest = trim_ws(rest);
    let (sent_by, params_text) = match rest.find(';') {
        Some(i) => (
            trim_ws(rest.get(..i).ok_or(err.clone())?),
            rest.get(i + 1..),
        ),
        None => (rest, None),
    };
    let (host, port) = split_host_port(sent_by).ok_or(err.clone())?;
    let raw_params = match params_text {
        Some(p) => parse_generic_params(p).ok_or(err.clone())?,
        None => Vec::new(),
    };
    let mut via = Via {
        transport: transport.to_ascii_uppercase(),
        host: host.to_string(),
        port,
        branch: None,
        received: None,
        rport: None,
        params: Vec::new(),
    };
    for (name, value) in raw_params {
        match name.to_ascii_lowercase().as_str() {
            "branch" if via.branch.is_none() => {
                via.branch = Some(value.ok_or(err.clone())?);
            }
            "received" if via.received.is_none() => {
                // IPv4address / IPv6address; RFC 5118 §4.5 shows it with and without
                // brackets, both are accepted.
                let v = value.ok_or(err.clone())?;
                let inner = v
                    .strip_prefix('[')
                    .and_then(|s| s.strip_suffix(']'))
                    .unwrap_or(&v);
                if inner.parse::<std::net::Ipv4Addr>().is_err() && !valid_ipv6(inner) {
                    return Err(err);
                }
                via.received = Some(v);
            }
            "rport" if via.rport.is_none() => {
                via.rport = Some(match value {
                    None => None,
                    Some(v) => Some(
                        parse_digits_u32(&v)
                            .and_then(|p| u16::try_from(p).ok())
                            .ok_or(err.clone())?,
                    ),
                });
            }
            "branch" | "received" | "rport" => return Err(err),
            _ => via.params.push((name, value)),
        }
    }
    Ok(via)
}

/// Every Via entry of one header line.
pub(crate) fn parse_via_list(text: &str) -> Result<Vec<Via>, ParseError> {
    let err = ParseError::HeaderValue { name: "Via" };
    split_outside_quotes(text, ',')
        .ok_or(err)?
        .into_iter()
        .map(parse_via)
        .collect()
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("SIP/2.0/{} {}", self.transport, self.host);
        if let Some(p) = self.port {
            out.push_str(&format!(":{p}"));
        }
        if let Some(b) = &self.branch {
            out.push_str(";branch=");
            out.push_str(b);
        }
        if let Some(r) = &self.received {
            out.push_str(";received=");
            out.push_str(r);
        }
        match self.rport {
            Some(Some(p)) => out.push_str(&format!(";rport={p}")),
            Some(None) => out.push_str(";rport"),
            None => {}
        }
        write_params(&mut out, &self.params);
        f.write_str(&out)
    }
}

pub(crate) fn parse_method(token: &str) -> Option<Method> {
    if !is_token(token) {
        return None;
    }
    Some(match token {
        "INVITE" => Method::Invite,
        "ACK" => Method::Ack,
        "BYE" => Method::Bye,
        "CANCEL" => Method::Cancel,
        "REGISTER" => Method::Register,
        "OPTIONS" => Method::Options,
        "INFO" => Method::Info,
        "UPDATE" => Method::Update,
        "PRACK" => Method::Prack,
        "SUBSCRIBE" => Method::Subscribe,
        "NOTIFY" => Method::Notify,
        "REFER" => Method::Refer,
        "MESSAGE" => Method::Message,
        "PUBLISH" => Method::Publish,
        other => Method::Extension(other.to_string()),
    })
}

pub(crate) fn parse_cseq(text: &str) -> Result<CSeq, ParseError> {
    let err = ParseError::HeaderValue { name: "CSeq" };
    let text = trim_ws(text);
    let (num, method) = text.split_once(is_ws).ok_or(err.clone())?;
    // RFC 3261 §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned
    // integer (RFC 4475 scalar02 carries 2**65).
    let seq = parse_digits_u32(num).ok_or(err.clone())?;
    let method = parse_method(trim_ws(method)).ok_or(err)?;
    Ok(CSeq { seq, method })
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr(
            "\"J Rosenberg \\\\\\\"\"  <sip:jdrosen@example.com> ; tag = 98asjd8",
            "From",
        )
        .expect("valid");
        assert_eq!(n.display_name.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));

        let n = parse_name_addr("caller<sip:caller@example.com>;tag=323", "From").expect("valid");
        assert_eq!(n.display_name.as_deref(), Some("caller"));

        let n = parse_name_addr("sip:user@example.com;tag=abc", "To").expect("valid");
        assert_eq!(n.display_name, None);
        assert!(n.uri.params.is_empty());
        assert_eq!(n.tag(), Some("abc"));
    }

    #[test]
    fn malformed_name_addrs_rejected() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "",
        ] {
            assert!(parse_name_addr(bad, "To").is_err(), "{bad}");
        }
    }

    #[test]
    fn via_with_lws_and_rport() {
        let v = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
            .expect("valid");
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "spindle.example.com");
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK9ikj8"));

        let v = parse_via("SIP/2.0/udp [2001:db8::9:1]:5070;rport;received=[2001:db8::9:255]")
            .expect("valid");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport, Some(None));
        let v = parse_via("SIP/2.0/UDP h;rport=5060").expect("valid");
        assert_eq!(v.rport, Some(Some(5060)));
        assert!(parse_via("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(parse_via("SIP/2.0/UDP h;rport=70000").is_err());
        assert!(parse_via("SIP/3.0/UDP h").is_err());
        assert!(parse_via_list("SIP/2.0/UDP a, SIP/2.0/TCP b:5061").is_ok_and(|v| v.len() == 2));
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(
            parse_cseq("0009\r\n  INVITE".replace("\r\n", "").as_str()).map(|c| c.seq),
            Ok(9)
        );
        assert!(parse_cseq("36893488147419103232 OPTIONS").is_err());
        assert!(parse_cseq("-1 OPTIONS").is_err());
        assert!(parse_cseq("1").is_err());
    }
}
