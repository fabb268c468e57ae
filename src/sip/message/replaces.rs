//! The `Replaces` header (RFC 3891 §6.1) and its escaped form inside a `Refer-To` URI
//! (RFC 3891 §4.1, RFC 3515): the dialog an attended transfer replaces.
//!
//! ```text
//! Replaces       = "Replaces" HCOLON callid *(SEMI replaces-param)
//! replaces-param = to-tag / from-tag / early-flag / generic-param
//! to-tag         = "to-tag" EQUAL token
//! from-tag       = "from-tag" EQUAL token
//! early-flag     = "early-only"
//! ```
//!
//! Exactly one `to-tag` and one `from-tag` are required (§6.1: they are needed to match
//! a dialog uniquely). The tags are seen from the side that receives the request: the
//! `to-tag` is compared with its *local* tag, the `from-tag` with its *remote* tag (§3).

use super::lex::{is_token, is_ws, trim_ws};
use super::{Headers, ParseError};
use std::fmt;

/// A parsed `Replaces` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID of the dialog to replace.
    pub call_id: String,
    /// Compared with the receiver's local tag.
    pub to_tag: String,
    /// Compared with the receiver's remote tag.
    pub from_tag: String,
    /// `early-only`: replace the dialog only while it is early (§3: else 486).
    pub early_only: bool,
}

const ERR: ParseError = ParseError::HeaderValue { name: "Replaces" };

/// RFC 3261 `word`: the characters of a Call-ID half.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '!'
                | '%'
                | '*'
                | '_'
                | '+'
                | '`'
                | '\''
                | '~'
                | '('
                | ')'
                | '<'
                | '>'
                | ':'
                | '\\'
                | '"'
                | '/'
                | '['
                | ']'
                | '?'
                | '{'
                | '}'
        )
}

/// RFC 3261 `callid = word [ "@" word ]`.
fn valid_call_id(text: &str) -> bool {
    let mut halves = text.splitn(2, '@');
    let word = |w: Option<&str>| w.is_some_and(|w| !w.is_empty() && w.chars().all(is_word_char));
    let first = halves.next();
    match halves.next() {
        Some(second) => word(first) && word(Some(second)),
        None => word(first),
    }
}

impl Replaces {
    /// Parse a header value (`98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff`);
    /// white space around `;` and `=` and folded lines are allowed.
    ///
    /// # Errors
    /// `HeaderValue { name: "Replaces" }`: a malformed Call-ID, a missing or repeated
    /// tag, a tag that is not a token, or `early-only` with a value.
    pub fn parse(text: &str) -> Result<Replaces, ParseError> {
        // Unfold (RFC 3261 §7.3.1): a line break followed by white space is white space.
        let unfolded: String = text
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        let mut parts = unfolded.split(';');
        let call_id = trim_ws(parts.next().ok_or(ERR)?);
        if !valid_call_id(call_id) {
            return Err(ERR);
        }
        let mut to_tag = None;
        let mut from_tag = None;
        let mut early_only = false;
        for part in parts {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (trim_ws(n), Some(trim_ws(v))),
                None => (trim_ws(part), None),
            };
            if !is_token(name) || value.is_some_and(|v| v.contains(is_ws)) {
                return Err(ERR);
            }
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                &mut to_tag
            } else if name.eq_ignore_ascii_case("from-tag") {
                &mut from_tag
            } else if name.eq_ignore_ascii_case("early-only") {
                if value.is_some() || early_only {
                    return Err(ERR);
                }
                early_only = true;
                continue;
            } else {
                // generic-param: ignored, but it must be well formed.
                if value.is_some_and(|v| v.is_empty()) {
                    return Err(ERR);
                }
                continue;
            };
            let tag = value.filter(|v| is_token(v)).ok_or(ERR)?;
            if slot.replace(tag.to_string()).is_some() {
                return Err(ERR);
            }
        }
        Ok(Replaces {
            call_id: call_id.to_string(),
            to_tag: to_tag.ok_or(ERR)?,
            from_tag: from_tag.ok_or(ERR)?,
            early_only,
        })
    }

    /// Parse the escaped value of a `Replaces` URI header, as carried in a `Refer-To`
    /// (`12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994`).
    ///
    /// # Errors
    /// A bad `%XX` escape, or what [`Replaces::parse`] refuses.
    pub fn from_uri_header(escaped: &str) -> Result<Replaces, ParseError> {
        Replaces::parse(&percent_decode(escaped).ok_or(ERR)?)
    }

    /// The value escaped for a URI header (`?Replaces=…` of a `Refer-To`).
    #[must_use]
    pub fn to_uri_header(&self) -> String {
        let mut out = String::new();
        for b in self.to_string().bytes() {
            let c = char::from(b);
            // hnv-unreserved and unreserved characters stay; everything else is escaped.
            let keep = c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '_'
                        | '.'
                        | '!'
                        | '~'
                        | '*'
                        | '\''
                        | '('
                        | ')'
                        | '['
                        | ']'
                        | '/'
                        | '?'
                        | ':'
                        | '+'
                        | '$'
                );
            if keep {
                out.push(c);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

impl Headers {
    /// The `Replaces` header of a request, if any.
    ///
    /// # Errors
    /// `DuplicateHeader` when there is more than one (RFC 3891 §3: 400), or what
    /// [`Replaces::parse`] refuses.
    pub fn replaces(&self) -> Result<Option<Replaces>, ParseError> {
        match self.count("Replaces") {
            0 => Ok(None),
            1 => self.get("Replaces").map(Replaces::parse).transpose(),
            _ => Err(ParseError::DuplicateHeader { name: "Replaces" }),
        }
    }
}

/// Decode `%XX` escapes; `None` for a bad escape or a non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaces(call_id: &str, to_tag: &str, from_tag: &str, early_only: bool) -> Replaces {
        Replaces {
            call_id: call_id.into(),
            to_tag: to_tag.into(),
            from_tag: from_tag.into(),
            early_only,
        }
    }

    #[test]
    fn rfc3891_section_6_1_examples() {
        // The three examples of §6.1, the first one folded over three lines.
        assert_eq!(
            Replaces::parse(
                "98732@sip.example.com\r\n          ;from-tag=r33th4x0r\r\n          ;to-tag=ff87ff"
            ),
            Ok(replaces(
                "98732@sip.example.com",
                "ff87ff",
                "r33th4x0r",
                false
            ))
        );
        assert_eq!(
            Replaces::parse("12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"),
            Ok(replaces("12adf2f34456gs5", "12345", "54321", true))
        );
        assert_eq!(
            Replaces::parse("87134@171.161.34.23;to-tag=24796;from-tag=0"),
            Ok(replaces("87134@171.161.34.23", "24796", "0", false))
        );
    }

    #[test]
    fn rfc3891_refer_to_example_is_decoded_from_the_uri_header() {
        // §6.1 (Refer-To example of the call flow in §7.1 style):
        // Refer-To: <sip:bob@bobster.example.org?Replaces=12345%40192.168.118.3%3B
        //            to-tag%3D12345%3Bfrom-tag%3D5FFE-3994>
        let escaped = "12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994";
        let parsed = Replaces::from_uri_header(escaped).expect("valid");
        assert_eq!(
            parsed,
            replaces("12345@192.168.118.3", "12345", "5FFE-3994", false)
        );
        // And back: the escaped form round-trips.
        assert_eq!(parsed.to_uri_header(), escaped);
        assert_eq!(
            Replaces::from_uri_header(&parsed.to_uri_header()),
            Ok(parsed)
        );
    }

    #[test]
    fn parameters_are_case_insensitive_spaced_and_generic_ones_ignored() {
        assert_eq!(
            Replaces::parse("a@b ; To-Tag = x ; FROM-TAG=y ; foo=bar ; Early-Only"),
            Ok(replaces("a@b", "x", "y", true))
        );
        // A Call-ID with the characters SIPp and others put in them.
        assert_eq!(
            Replaces::parse("consult///1-2@127.0.0.1;to-tag=t;from-tag=f"),
            Ok(replaces("consult///1-2@127.0.0.1", "t", "f", false))
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            ";to-tag=a;from-tag=b",
            "abc",                                  // no tags
            "abc;to-tag=a",                         // from-tag missing
            "abc;from-tag=b",                       // to-tag missing
            "abc;to-tag=a;to-tag=c;from-tag=b",     // repeated
            "abc;to-tag=;from-tag=b",               // empty tag
            "abc;to-tag=a b;from-tag=b",            // not a token
            "abc;to-tag=a;from-tag=b;early-only=1", // flag with a value
            "a b;to-tag=a;from-tag=b",              // space in the Call-ID
            "a@;to-tag=a;from-tag=b",               // empty host word
            "a@b@c;to-tag=a;from-tag=b",            // two @
        ] {
            assert_eq!(Replaces::parse(bad), Err(ERR), "{bad:?}");
        }
        assert_eq!(Replaces::from_uri_header("abc%3Bto-tag%3"), Err(ERR));
        assert_eq!(Replaces::from_uri_header("abc%ZZ"), Err(ERR));
    }

    #[test]
    fn more_than_one_replaces_header_is_an_error() {
        let mut headers = Headers::default();
        assert_eq!(headers.replaces(), Ok(None));
        headers.push("Replaces", "a@b;to-tag=1;from-tag=2");
        assert_eq!(
            headers.replaces(),
            Ok(Some(replaces("a@b", "1", "2", false)))
        );
        headers.push("replaces", "c@d;to-tag=1;from-tag=2");
        assert_eq!(
            headers.replaces(),
            Err(ParseError::DuplicateHeader { name: "Replaces" })
        );
    }
}
