//! Blind transfer of a bridged caller, shared by the agent's SIP REFER and the
//! consoles' `POST /api/calls/{call_id}/transfer`: one target parser
//! ([`crate::queue::TransferTarget::parse`]; the consoles' syntax is rewritten to it by
//! [`refer_user`]), one function in the call task that carries it out
//! (`CallMedia::blind_transfer` in [`super::calls`]), and the reply channel the API
//! waits on ([`TransferReply`]).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A console transfer target that is not written the console's way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not `survey`, `queue:<city>`, `<city>` or `unit:<id>`.
    #[error("unknown transfer target {0:?}: use survey, queue:<city> or unit:<unit id>")]
    Unknown(String),
}

fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The consoles' target syntax (`survey`, `queue:<city>` or a bare `<city>`,
/// `unit:<unit id>`) rewritten as the user part an agent's REFER would carry
/// (`survey`, `<city>`, `unit-<unit id>`), so both go through the one parser,
/// [`crate::queue::TransferTarget::parse`] (via `AcdShell::transfer_target`, which also checks that
/// a unit can be dialled).
///
/// # Errors
/// [`TargetError`] for anything else.
pub fn refer_user(text: &str) -> Result<String, TargetError> {
    let text = text.trim();
    if text == "survey" {
        return Ok(text.to_owned());
    }
    if let Some(unit) = text.strip_prefix("unit:") {
        return if is_id(unit) {
            Ok(format!("unit-{unit}"))
        } else {
            Err(TargetError::Unknown(text.to_owned()))
        };
    }
    let city = text.strip_prefix("queue:").unwrap_or(text);
    if is_id(city) && !city.contains('-') {
        Ok(city.to_owned())
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
    use crate::ivr::city::CityId;
    use crate::queue::TransferTarget;

    #[test]
    fn console_targets_become_the_refer_syntax_of_the_one_parser() {
        let parsed =
            |text: &str| refer_user(text).map(|user| TransferTarget::parse(&user, |_| None).ok());
        assert_eq!(parsed("survey"), Ok(Some(TransferTarget::Survey)));
        assert_eq!(
            parsed("queue:qingdao"),
            Ok(Some(TransferTarget::Queue(CityId::new("qingdao"))))
        );
        assert_eq!(
            parsed("qingdao"),
            Ok(Some(TransferTarget::Queue(CityId::new("qingdao"))))
        );
        assert_eq!(
            parsed("unit:jinan-legal-aid"),
            Ok(Some(TransferTarget::Unit(crate::ticket::UnitId::new(
                "jinan-legal-aid"
            ))))
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
                matches!(refer_user(bad), Err(TargetError::Unknown(_))),
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
