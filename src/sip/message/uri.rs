//! SIP/SIPS URI parsing (RFC 3261 §19.1, §25.1) with RFC 5118 IPv6 references.

use super::{ParseError, Uri};
use std::net::{Ipv4Addr, Ipv6Addr};

/// `unreserved` (alphanum / mark) of RFC 3261.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '!' | '~' | '*' | '\'' | '(' | ')')
}

/// Checks that every `%` starts a valid `%HH` escape and every other char is allowed.
fn valid_escaped(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !b.is_ascii() || !allowed(char::from(b)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_user_char(c: char) -> bool {
    is_unreserved(c) || matches!(c, '&' | '=' | '+' | '$' | ',' | ';' | '?' | '/')
}

fn is_password_char(c: char) -> bool {
    is_unreserved(c) || matches!(c, '&' | '=' | '+' | '$' | ',')
}

fn is_param_char(c: char) -> bool {
    is_unreserved(c) || matches!(c, '[' | ']' | '/' | ':' | '&' | '+' | '$')
}

fn is_header_char(c: char) -> bool {
    is_unreserved(c) || matches!(c, '[' | ']' | '/' | '?' | ':' | '+' | '$')
}

/// Validates an IPv6 reference body (between the brackets). RFC 5118 §4.10: the RFC 3261
/// ABNF wrongly allowed three colons before an embedded IPv4 address
/// (`2001:db8:::192.0.2.1`); the RFC asks parsers to be robust, so that form is tolerated
/// and read as its two-colon equivalent.
pub(crate) fn valid_ipv6(text: &str) -> bool {
    if text.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    let Some(pos) = text.find(":::") else {
        return false;
    };
    let tail = text.get(pos + 3..).unwrap_or("");
    if tail.parse::<Ipv4Addr>().is_err() {
        return false;
    }
    let fixed = format!("{}::{}", text.get(..pos).unwrap_or(""), tail);
    fixed.parse::<Ipv6Addr>().is_ok()
}

/// Validates `host` (hostname / IPv4address / IPv6reference).
pub(crate) fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner.strip_suffix(']').is_some_and(valid_ipv6);
    }
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    // hostname = *( domainlabel "." ) toplabel [ "." ]; an IPv4 address is a special case
    // of the same character set, so the character check covers both.
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    labels.iter().all(|label| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Splits `host[:port]` where host may be an IPv6 reference.
pub(crate) fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port_text) = if text.starts_with('[') {
        let close = text.find(']')?;
        let host = text.get(..=close)?;
        let rest = text.get(close + 1..)?;
        match rest.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if !valid_host(host) {
        return None;
    }
    let port = match port_text {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(p.parse::<u16>().ok()?)
        }
        None => None,
    };
    Some((host, port))
}

fn valid_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

pub(crate) fn parse_uri(text: &str) -> Result<Uri, ParseError> {
    let err = ParseError::RequestUri;
    let (scheme, rest) = text.split_once(':').ok_or(err.clone())?;
    if !valid_scheme(scheme) {
        return Err(err);
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        // Kept verbatim: the core answers 416 (or stores it, e.g. a tel: To) without
        // needing its structure. It must still be one visible-ASCII/UTF-8 word.
        if rest.is_empty()
            || rest
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            return Err(err);
        }
        return Ok(Uri {
            scheme,
            user: None,
            password: None,
            host: String::new(),
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
            raw: text.to_string(),
        });
    }

    // userinfo ends at the only '@' (no component after it may contain an unescaped '@').
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(u) => {
            let (user, password) = match u.split_once(':') {
                Some((user, pw)) => (user, Some(pw)),
                None => (u, None),
            };
            if user.is_empty() || !valid_escaped(user, is_user_char) {
                return Err(err);
            }
            if let Some(pw) = password {
                if !valid_escaped(pw, is_password_char) {
                    return Err(err);
                }
            }
            (Some(user.to_string()), password.map(str::to_string))
        }
        None => (None, None),
    };

    let (before_headers, headers_text) = match hostpart.split_once('?') {
        Some((b, h)) => (b, Some(h)),
        None => (hostpart, None),
    };
    let mut sections = before_headers.split(';');
    let hostport = sections.next().unwrap_or("");
    let (host, port) = split_host_port(hostport).ok_or(err.clone())?;

    let mut params = Vec::new();
    for p in sections {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !valid_escaped(name, is_param_char) {
            return Err(err);
        }
        if let Some(v) = value {
            if v.is_empty() || !valid_escaped(v, is_param_char) {
                return Err(err);
            }
        }
        params.push((name.to_string(), value.map(str::to_string)));
    }

    let mut headers = Vec::new();
    if let Some(h) = headers_text {
        for pair in h.split('&') {
            let (name, value) = pair.split_once('=').ok_or(err.clone())?;
            if name.is_empty()
                || !valid_escaped(name, is_header_char)
                || !valid_escaped(value, is_header_char)
            {
                return Err(err);
            }
            headers.push((name.to_string(), value.to_string()));
        }
    }

    Ok(Uri {
        scheme,
        user,
        password,
        host: host.to_string(),
        port,
        params,
        headers,
        raw: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_with_everything() {
        let u = parse_uri("sips:alice:pw@[2001:db8::10]:5061;transport=tcp;lr?subject=x&a=b")
            .expect("valid");
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(
            u.params,
            vec![
                ("transport".to_string(), Some("tcp".to_string())),
                ("lr".to_string(), None)
            ]
        );
        assert_eq!(u.headers.len(), 2);
    }

    #[test]
    fn unbracketed_ipv6_is_rejected() {
        assert!(parse_uri("sip:2001:db8::10").is_err());
        assert!(parse_uri("sip:[2001:db8::10").is_err());
        assert!(parse_uri("sip:[2001:db8::10]x").is_err());
        assert!(parse_uri("sip:[2001:db8:::zz]").is_err());
    }

    #[test]
    fn three_colon_ipv4_suffix_is_tolerated() {
        assert!(parse_uri("sip:user@[2001:db8:::192.0.2.1]").is_ok());
        assert!(parse_uri("sip:user@[2001:db8::192.0.2.1]").is_ok());
    }

    #[test]
    fn other_schemes_kept_raw() {
        let u = parse_uri("tel:+86-531-12348").expect("valid");
        assert_eq!(u.scheme, "tel");
        assert_eq!(u.raw, "tel:+86-531-12348");
        assert!(parse_uri("<sip:a@b>").is_err());
        assert!(parse_uri("sip:a@b c").is_err());
        assert!(parse_uri("sip:%zz@host").is_err());
        assert!(parse_uri("sip:host:99999").is_err());
    }
}
