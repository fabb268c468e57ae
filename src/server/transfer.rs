//! Blind transfer of a bridged caller, shared by the agent's SIP REFER and the
//! consoles' `POST /api/calls/{call_id}/transfer`: one target syntax
//! ([`parse_target`]), one function in the call task that carries it out
//! (`CallMedia::blind_transfer` in [`super::calls`]), and the reply channel the API
//! waits on ([`TransferReply`]).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::ivr::city::CityId;
use crate::queue::TransferTarget;

/// Why a transfer target is refused before anything happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not `survey`, `queue:<city>`, `<city>` or `unit:<id>`.
    #[error("unknown transfer target {0:?}: use survey, queue:<city> or unit:<unit id>")]
    Unknown(String),
    /// A unit's outside number needs an outbound trunk leg, which this server does not
    /// place yet.
    #[error("transfer to a unit's number ({0}) is not available on this server yet")]
    UnitNotAvailable(String),
}

fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The one target syntax: `survey` (the satisfaction survey), `queue:<city>` or a bare
/// `<city>` (a REFER's `sip:<city>@…`) for another city's queue, `unit:<unit id>` for
/// a unit's number (refused for now: [`TargetError::UnitNotAvailable`]).
///
/// # Errors
/// [`TargetError`] for anything else.
pub fn parse_target(text: &str) -> Result<TransferTarget, TargetError> {
    let text = text.trim();
    if text == "survey" {
        return Ok(TransferTarget::Survey);
    }
    if let Some(unit) = text.strip_prefix("unit:") {
        return Err(if is_id(unit) {
            TargetError::UnitNotAvailable(unit.to_owned())
        } else {
            TargetError::Unknown(text.to_owned())
        });
    }
    let city = text.strip_prefix("queue:").unwrap_or(text);
    if is_id(city) && !city.contains('-') {
        Ok(TransferTarget::Queue(CityId::new(city.to_owned())))
    } else {
        Err(TargetError::Unknown(text.to_owned()))
    }
}

/// Why the call task did not transfer the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The call is not (or no longer) bridged to an agent in the ACD.
    #[error("the call is not bridged to an agent")]
    NotBridged,
    /// The ACD refused (unknown queue, …).
    #[error("the ACD refused the transfer: {0}")]
    Refused(String),
    /// The call task ended before answering.
    #[error("the call ended")]
    CallGone,
}

/// What the API awaits from the call task.
pub type TransferResult = Result<(), TransferError>;

/// Where the call task answers a transfer asked through the API. Cloneable and
/// comparable (by identity) so it can travel inside an `AcdCommand`.
#[derive(Clone, Default)]
pub struct TransferReply(Arc<Mutex<Option<oneshot::Sender<TransferResult>>>>);

impl TransferReply {
    /// A reply slot and the receiver the API awaits.
    #[must_use]
    pub fn channel() -> (TransferReply, oneshot::Receiver<TransferResult>) {
        let (tx, rx) = oneshot::channel();
        (TransferReply(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Answer (the first answer wins; later ones are dropped).
    pub fn send(&self, result: TransferResult) {
        let sender = self.0.lock().ok().and_then(|mut slot| slot.take());
        if let Some(tx) = sender {
            let _ = tx.send(result);
        }
    }
}

impl std::fmt::Debug for TransferReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferReply")
    }
}

impl PartialEq for TransferReply {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TransferReply {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax_for_refer_and_api_targets() {
        assert_eq!(parse_target("survey"), Ok(TransferTarget::Survey));
        assert_eq!(
            parse_target("queue:qingdao"),
            Ok(TransferTarget::Queue(CityId::new("qingdao")))
        );
        assert_eq!(
            parse_target("qingdao"),
            Ok(TransferTarget::Queue(CityId::new("qingdao")))
        );
        assert_eq!(
            parse_target("unit:jinan-legal-aid"),
            Err(TargetError::UnitNotAvailable("jinan-legal-aid".into()))
        );
        for bad in [
            "",
            "queue:",
            "unit:",
            "queue:../x",
            "queue:a b",
            "sip:x@y",
            "unit:a/b",
        ] {
            assert!(
                matches!(parse_target(bad), Err(TargetError::Unknown(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_reply_is_delivered_once() {
        let (reply, mut rx) = TransferReply::channel();
        let copy = reply.clone();
        assert_eq!(reply, copy);
        assert_ne!(reply, TransferReply::channel().0);
        copy.send(Ok(()));
        reply.send(Err(TransferError::NotBridged));
        assert_eq!(rx.try_recv(), Ok(Ok(())));
    }
}
