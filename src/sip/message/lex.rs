//! Small lexical helpers shared by the SIP grammar pieces (RFC 3261 §25.1).

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Linear white space after unfolding: SP or HTAB.
pub(crate) fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(crate) fn trim_ws(s: &str) -> &str {
    s.trim_matches(is_ws)
}

/// Splits `s` at every `sep` that is outside a quoted string and outside `<...>`.
/// Returns `None` when a quoted string is not terminated.
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            _ if c == sep && !in_angle => {
                parts.push(s.get(start..i)?);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    parts.push(s.get(start..)?);
    Some(parts)
}

/// Parses a quoted string at the start of `s` (which must begin with `"`).
/// Returns the unescaped content and the rest after the closing quote.
pub(crate) fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, s.get(i + 1..)?));
        } else {
            out.push(c);
        }
    }
    None
}

/// Quotes `s` as a SIP quoted-string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Generic parameters (`;name[=value]` list, RFC 3261 `generic-param`), already split
/// from whatever precedes them. `text` is the part after the first `;`. LWS is allowed
/// around `;` and `=`. Values keep quotes if quoted. Empty names are an error.
pub(crate) fn parse_generic_params(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut params = Vec::new();
    for part in split_outside_quotes(text, ';')? {
        let part = trim_ws(part);
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (trim_ws(n), Some(trim_ws(v))),
            None => (part, None),
        };
        if !is_token(name) {
            return None;
        }
        let value = match value {
            Some(v) if v.starts_with('"') => {
                let (_, rest) = take_quoted(v)?;
                if !rest.is_empty() {
                    return None;
                }
                Some(v.to_string())
            }
            Some(v) => {
                // gen-value = token / host / quoted-string; host covers IPv6 references.
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| is_token_char(c) || matches!(c, '[' | ']' | ':'));
                if !ok {
                    return None;
                }
                Some(v.to_string())
            }
            None => None,
        };
        params.push((name.to_string(), value));
    }
    Some(params)
}

pub(crate) fn write_params(out: &mut String, params: &[(String, Option<String>)]) {
    for (name, value) in params {
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
}

/// Parses a decimal number made only of ASCII digits (no sign, no spaces), with overflow
/// checking.
pub(crate) fn parse_digits_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

pub(crate) fn parse_digits_u32(s: &str) -> Option<u32> {
    parse_digits_u64(s).and_then(|v| u32::try_from(v).ok())
}
