//! RFC 3261 §17 transactions, sans-IO, with the RFC 6026 corrections for 2xx responses to
//! INVITE (the `Accepted` states, Timers L and M).
//!
//! # Shape
//! One type per machine, each in its own file: [`InviteClient`], [`NonInviteClient`],
//! [`InviteServer`], [`NonInviteServer`]; and [`TransactionLayer`], which owns many of them
//! keyed by [`TransactionKey`] and routes messages to them.
//!
//! The machines never parse SIP: requests and responses are opaque [`Bytes`] plus the few
//! facts the caller already parsed (status code, method, transaction key). They never read
//! the clock or touch a socket either: time is an input.
//!
//! # Calling contract (same for a machine and for the layer)
//! 1. Feed an input with the current time: `handle_*(now, …)` (a received message, a TU
//!    action, a transport error) or `handle_timeout(now)` once `now >= poll_timeout()`.
//! 2. Drain `poll_transmit()` (bytes to send, in order) and `poll_event()` (for the TU)
//!    until both return `None`.
//! 3. Sleep until `poll_timeout()` (the earliest armed timer) or the next input.
//!
//! Protocol failures (Timer B/F/H expiry, transport errors) are events, not `Err`: an `Err`
//! only ever means the caller misused the API (e.g. a second final response).
//!
//! # Choices
//! - 100 Trying for INVITE: sent by the [`InviteServer`] when the TU has not sent any
//!   response within `trying_delay` (RFC 3261 §17.2.1 says 200 ms; that is the
//!   [`LayerConfig`] default). A delay of zero sends it immediately. Waiting avoids a useless
//!   100 in front of a fast answer (401, 486, 503 ...).
//! - Timer A is *not* capped at T2: RFC 3261 §17.1.1.2 doubles it each time (0.5, 1, 2, 4 ...
//!   seconds) until Timer B; only Timers E and G are capped at T2.
//! - Timer D is `max(32 s, 64·T1)` over unreliable transports so that it always outlives the
//!   server's Timer G retransmissions when T1 is configured above 500 ms; zero over TCP.
//! - Zero-length waits over reliable transports (Timers D, I, J, K) terminate the
//!   transaction at once rather than arming a timer at `now`.

mod client_invite;
mod client_non_invite;
mod key;
mod layer;
mod server_invite;
mod server_non_invite;
mod timer;

#[cfg(test)]
mod sim_tests;

pub use client_invite::{InviteClient, InviteClientState};
pub use client_non_invite::{NonInviteClient, NonInviteClientState};
pub use key::{Rfc2543Ids, TransactionKey, has_magic_cookie};
pub use layer::{
    IncomingRequest, KindCounters, LayerConfig, LayerError, LayerEvent, LayerTransmit,
    RequestOutcome, ResponseOutcome, ServerTransaction, Side, TransactionCounters, TransactionKind,
    TransactionLayer,
};
pub use server_invite::{AckDisposition, InviteServer, InviteServerState};
pub use server_non_invite::{NonInviteServer, NonInviteServerState};

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// RFC 3261 §17.1.1.1 / Table 4 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J, L, M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D over an unreliable transport: at least 32 s, and never shorter than the peer's
    /// Timer G retransmission window (64·T1).
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.transaction_timeout())
    }
}

/// Whether the transport retransmits for us (TCP, TLS, WS) or not (UDP). Decides if the
/// retransmission timers run and if the linger timers are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    Unreliable,
    Reliable,
}

/// Bytes for the transport to send to the transaction's peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub payload: Bytes,
}

/// What a transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A response for the TU (client transactions only): provisional, final, and in the
    /// INVITE client's `Accepted` state every further 2xx (the TU must ACK each one).
    Response { status: u16, payload: Bytes },
    /// Timer B, F or H fired: no (final) response, or no ACK, in 64·T1.
    TimedOut,
    /// The transport reported that it could not send for this transaction.
    TransportError,
    /// The transaction reached `Terminated`; it takes no more input. Always the last event.
    Terminated,
}

/// API misuse by the TU; protocol failures are [`TransactionEvent`]s instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("status {0} is not a SIP response code (100-699)")]
    InvalidStatus(u16),
    #[error("status {0} is not provisional (1xx)")]
    NotProvisional(u16),
    #[error("status {0} is not final (200-699)")]
    NotFinal(u16),
    #[error("a final response was already sent on this transaction")]
    FinalAlreadySent,
    #[error("only a 2xx may be re-sent, and only while the INVITE server is Accepted")]
    NotAccepted,
    #[error("the transaction has terminated")]
    Terminated,
}

/// Whether a received message went to the TU or was absorbed by the transaction
/// (a retransmission, or a message that the current state ignores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    Absorbed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Provisional,
    Success,
    Failure,
}

impl StatusClass {
    pub(crate) fn of(status: u16) -> Option<StatusClass> {
        match status {
            100..=199 => Some(StatusClass::Provisional),
            200..=299 => Some(StatusClass::Success),
            300..=699 => Some(StatusClass::Failure),
            _ => None,
        }
    }
}

/// Output queues shared by the four machines.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

impl Outputs {
    pub(crate) fn send(&mut self, payload: Bytes) {
        self.transmits.push_back(Transmit { payload });
    }
    pub(crate) fn emit(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    pub(crate) fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use std::time::Instant;

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A fixed origin for simulated time; only differences matter.
    pub fn origin() -> Instant {
        Instant::now()
    }

    pub fn b(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    pub fn drain_transmits(mut poll: impl FnMut() -> Option<Transmit>) -> Vec<Bytes> {
        std::iter::from_fn(|| poll().map(|t| t.payload)).collect()
    }

    pub fn drain_events(
        mut poll: impl FnMut() -> Option<TransactionEvent>,
    ) -> Vec<TransactionEvent> {
        std::iter::from_fn(&mut poll).collect()
    }
}
