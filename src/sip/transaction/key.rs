//! Transaction matching key (RFC 3261 §17.1.3 and §17.2.3).

use crate::sip::message::Method;

/// The RFC 3261 branch prefix; branches without it come from RFC 2543 elements, whose
/// transactions cannot be matched by branch (see [`TransactionKey::for_rfc2543_request`]).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies one transaction: top Via branch, top Via sent-by and method.
///
/// The caller computes it from the parsed message:
/// - requests: `for_request(top_via.branch, top_via.sent_by, request.method)`. An ACK maps
///   to the INVITE key, so it matches the INVITE server transaction it acknowledges
///   (§17.2.3). A CANCEL keeps its own method: it is a transaction of its own, and the
///   INVITE it cancels is found with
///   [`TransactionLayer::find_invite_for_cancel`](super::TransactionLayer::find_invite_for_cancel).
/// - responses: `for_request(top_via.branch, top_via.sent_by, cseq.method)` — the top Via
///   of a response is the one the client transaction put in its request (§17.1.3).
///
/// The branch is compared exactly; the sent-by (`host[:port]`) is compared
/// case-insensitively because host names are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl TransactionKey {
    pub fn for_request(branch: &str, sent_by: &str, method: &Method) -> TransactionKey {
        let method = match method {
            Method::Ack => Method::Invite,
            other => other.clone(),
        };
        TransactionKey {
            branch: branch.to_string(),
            sent_by: sent_by.to_ascii_lowercase(),
            method,
        }
    }

    /// The key of a request whose top Via branch lacks the magic cookie (an RFC 2543
    /// element, RFC 3261 §17.2.3): such branches are not unique, so the request is matched
    /// by Request-URI, To tag, From tag, Call-ID, CSeq number and the whole top Via instead.
    ///
    /// For INVITE, ACK and CANCEL the To tag is left out: an ACK carries the tag of our
    /// response, which the INVITE did not have, and a CANCEL is matched to its INVITE with
    /// [`invite_for_cancel`](Self::invite_for_cancel) (RFC 3261 §9.2). Those three share
    /// one key but for the method, as with a cookie branch.
    ///
    /// Callers use [`for_request`](Self::for_request) when [`has_magic_cookie`] is true;
    /// this one allocates a longer key and is for the rare cookie-less request only.
    pub fn for_rfc2543_request(ids: &Rfc2543Ids<'_>, method: &Method) -> TransactionKey {
        let to_tag = match method {
            Method::Invite | Method::Ack | Method::Cancel => "",
            _ => ids.to_tag.unwrap_or(""),
        };
        // Space-separated: none of these fields contains a space (the Request-URI is cut
        // at one, tags and Call-ID are words), and a cookie branch never does, so the two
        // key spaces cannot collide.
        let branch = format!(
            "rfc2543 {} {} {} {} {} {}",
            ids.request_uri,
            to_tag,
            ids.from_tag.unwrap_or(""),
            ids.call_id,
            ids.cseq,
            ids.top_via
        );
        TransactionKey::for_request(&branch, ids.sent_by, method)
    }

    /// Same as [`for_request`](Self::for_request), with the CSeq method of the response.
    pub fn for_response(branch: &str, sent_by: &str, cseq_method: &Method) -> TransactionKey {
        TransactionKey::for_request(branch, sent_by, cseq_method)
    }

    /// The key of the INVITE transaction that a CANCEL with this key would cancel (same
    /// branch and sent-by, RFC 3261 §9.2).
    pub fn invite_for_cancel(&self) -> Option<TransactionKey> {
        (self.method == Method::Cancel).then(|| TransactionKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: Method::Invite,
        })
    }

    /// True when the key was made from an RFC 3261 branch (magic cookie), false for a
    /// key from [`for_rfc2543_request`](Self::for_rfc2543_request).
    pub fn is_rfc3261(&self) -> bool {
        self.branch.starts_with(MAGIC_COOKIE)
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// True when `branch` is an RFC 3261 branch (it starts with the magic cookie).
pub fn has_magic_cookie(branch: Option<&str>) -> bool {
    branch.is_some_and(|b| b.starts_with(MAGIC_COOKIE))
}

/// What an RFC 2543 request is matched by (RFC 3261 §17.2.3), as the caller parsed it.
#[derive(Debug, Clone, Copy)]
pub struct Rfc2543Ids<'a> {
    pub request_uri: &'a str,
    pub to_tag: Option<&'a str>,
    pub from_tag: Option<&'a str>,
    pub call_id: &'a str,
    pub cseq: u32,
    /// The whole top Via value, as received (after `received`/`rport` are stamped).
    pub top_via: &'a str,
    /// Its sent-by (`host[:port]`).
    pub sent_by: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_matches_the_invite_key() {
        let invite = TransactionKey::for_request("z9hG4bK1", "10.0.0.1:5060", &Method::Invite);
        let ack = TransactionKey::for_request("z9hG4bK1", "10.0.0.1:5060", &Method::Ack);
        assert_eq!(invite, ack);
        assert_eq!(ack.method(), &Method::Invite);
    }

    #[test]
    fn cancel_has_its_own_key_and_points_to_the_invite() {
        let invite = TransactionKey::for_request("z9hG4bK1", "a.example:5060", &Method::Invite);
        let cancel = TransactionKey::for_request("z9hG4bK1", "A.Example:5060", &Method::Cancel);
        assert_ne!(invite, cancel);
        assert_eq!(cancel.invite_for_cancel(), Some(invite.clone()));
        assert_eq!(invite.invite_for_cancel(), None);
    }

    #[test]
    fn branch_is_case_sensitive_and_sent_by_is_not() {
        let a = TransactionKey::for_request("z9hG4bKabc", "HOST", &Method::Bye);
        let b = TransactionKey::for_request("z9hG4bKABC", "host", &Method::Bye);
        let c = TransactionKey::for_request("z9hG4bKabc", "host", &Method::Bye);
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    fn ids<'a>(uri: &'a str, to_tag: Option<&'a str>, cseq: u32) -> Rfc2543Ids<'a> {
        Rfc2543Ids {
            request_uri: uri,
            to_tag,
            from_tag: Some("f1"),
            call_id: "call-1",
            cseq,
            top_via: "SIP/2.0/UDP 192.0.2.1:5060",
            sent_by: "192.0.2.1:5060",
        }
    }

    #[test]
    fn cookieless_requests_with_the_same_via_are_told_apart_by_the_other_fields() {
        let register = |uri, cseq| {
            TransactionKey::for_rfc2543_request(&ids(uri, None, cseq), &Method::Register)
        };
        // Same Via (no branch at all), different CSeq or Request-URI: different requests.
        assert_ne!(register("sip:a", 1), register("sip:a", 2));
        assert_ne!(register("sip:a", 1), register("sip:b", 1));
        // A retransmission: identical.
        assert_eq!(register("sip:a", 1), register("sip:a", 1));
        assert!(!register("sip:a", 1).is_rfc3261());
        // The To tag counts for non-INVITE requests.
        let bye = |tag| TransactionKey::for_rfc2543_request(&ids("sip:a", tag, 1), &Method::Bye);
        assert_ne!(bye(Some("t1")), bye(Some("t2")));
        // Neither field can be confused with a cookie branch of the same text.
        let cookie = TransactionKey::for_request("z9hG4bK1", "192.0.2.1:5060", &Method::Register);
        assert_ne!(register("sip:a", 1), cookie);
    }

    #[test]
    fn cookieless_ack_and_cancel_find_the_invite_whatever_the_to_tag() {
        let invite = TransactionKey::for_rfc2543_request(&ids("sip:a", None, 7), &Method::Invite);
        // The ACK of our 486 carries the To tag we put in the response.
        let ack = TransactionKey::for_rfc2543_request(&ids("sip:a", Some("ours"), 7), &Method::Ack);
        assert_eq!(ack, invite);
        let cancel = TransactionKey::for_rfc2543_request(&ids("sip:a", None, 7), &Method::Cancel);
        assert_eq!(cancel.invite_for_cancel(), Some(invite.clone()));
        // Another INVITE (new CSeq) on the same Via is a new transaction.
        let next = TransactionKey::for_rfc2543_request(&ids("sip:a", None, 8), &Method::Invite);
        assert_ne!(next, invite);
    }

    #[test]
    fn magic_cookie_detection() {
        assert!(has_magic_cookie(Some("z9hG4bK-1")));
        assert!(!has_magic_cookie(Some("1234")));
        assert!(!has_magic_cookie(None));
    }

    #[test]
    fn rfc2543_branch_is_flagged() {
        assert!(!TransactionKey::for_request("1234", "h", &Method::Options).is_rfc3261());
        assert!(TransactionKey::for_request("z9hG4bK-x", "h", &Method::Options).is_rfc3261());
    }
}
