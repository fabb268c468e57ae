//! Transaction matching key (RFC 3261 §17.1.3 and §17.2.3).

use crate::sip::message::Method;

/// The RFC 3261 branch prefix; branches without it come from RFC 2543 elements, whose
/// transactions cannot be matched by branch (see [`TransactionKey::is_rfc3261`]).
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

    /// True when the branch carries the RFC 3261 magic cookie. Requests from RFC 2543
    /// elements (no cookie) are not matched by this layer; the caller should handle them
    /// statelessly or reject them.
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

    #[test]
    fn rfc2543_branch_is_flagged() {
        assert!(!TransactionKey::for_request("1234", "h", &Method::Options).is_rfc3261());
        assert!(TransactionKey::for_request("z9hG4bK-x", "h", &Method::Options).is_rfc3261());
    }
}
