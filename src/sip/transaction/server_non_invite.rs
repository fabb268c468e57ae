//! Non-INVITE server transaction: RFC 3261 §17.2.2.

use super::timer::{Timer, TimerTable};
use super::{
    Outputs, Reliability, StatusClass, Timers, TransactionError, TransactionEvent, Transmit,
};
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct NonInviteServer {
    state: NonInviteServerState,
    timers: Timers,
    reliability: Reliability,
    last_response: Option<Bytes>,
    table: TimerTable,
    out: Outputs,
}

impl NonInviteServer {
    /// A new request arrived (the layer passes it to the TU); the transaction is `Trying`.
    pub fn new(_now: Instant, timers: Timers, reliability: Reliability) -> Self {
        NonInviteServer {
            state: NonInviteServerState::Trying,
            timers,
            reliability,
            last_response: None,
            table: TimerTable::default(),
            out: Outputs::default(),
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    /// The request was received again: re-send the last response, if any (none yet in
    /// `Trying`). Always absorbed: never shown to the TU.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        let answered = matches!(
            self.state,
            NonInviteServerState::Proceeding | NonInviteServerState::Completed
        );
        if let (true, Some(response)) = (answered, &self.last_response) {
            self.out.send(response.clone());
        }
    }

    /// The TU sends a response: 1xx keeps the transaction open (`Proceeding`); 200-699
    /// completes it (Timer J: 64·T1 over UDP, zero over TCP).
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a code outside 100-699,
    /// [`TransactionError::FinalAlreadySent`] once `Completed`,
    /// [`TransactionError::Terminated`] once terminated.
    pub fn respond(
        &mut self,
        now: Instant,
        status: u16,
        payload: Bytes,
    ) -> Result<(), TransactionError> {
        use NonInviteServerState::*;
        let class = StatusClass::of(status).ok_or(TransactionError::InvalidStatus(status))?;
        match (self.state, class) {
            (Terminated, _) => Err(TransactionError::Terminated),
            (Completed, _) => Err(TransactionError::FinalAlreadySent),
            (Trying | Proceeding, StatusClass::Provisional) => {
                self.state = Proceeding;
                self.out.send(payload.clone());
                self.last_response = Some(payload);
                Ok(())
            }
            (Trying | Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.state = Completed;
                self.out.send(payload.clone());
                self.last_response = Some(payload);
                match self.reliability {
                    Reliability::Reliable => self.terminate(),
                    Reliability::Unreliable => self
                        .table
                        .set(Timer::J, now + self.timers.transaction_timeout()),
                }
                Ok(())
            }
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != NonInviteServerState::Terminated {
            self.out.emit(TransactionEvent::TransportError);
            self.terminate();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.take_expired(now) {
            if timer == Timer::J && self.state == NonInviteServerState::Completed {
                self.terminate();
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.out.poll_event()
    }

    fn terminate(&mut self) {
        if self.state != NonInviteServerState::Terminated {
            self.state = NonInviteServerState::Terminated;
            self.table.clear();
            self.out.emit(TransactionEvent::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::*;

    fn transmits(s: &mut NonInviteServer) -> Vec<Bytes> {
        drain_transmits(|| s.poll_transmit())
    }

    #[test]
    fn retransmission_in_trying_is_absorbed_without_response() {
        let t0 = origin();
        let mut s = NonInviteServer::new(t0, Timers::default(), Reliability::Unreliable);
        s.handle_request_retransmission(t0 + ms(500));
        assert!(transmits(&mut s).is_empty());
    }

    #[test]
    fn retransmission_in_proceeding_gets_the_provisional() {
        let t0 = origin();
        let mut s = NonInviteServer::new(t0, Timers::default(), Reliability::Unreliable);
        s.respond(t0, 100, b("100")).unwrap();
        transmits(&mut s);
        s.handle_request_retransmission(t0 + ms(500));
        assert_eq!(transmits(&mut s), vec![b("100")]);
    }

    #[test]
    fn retransmission_is_answered_from_completed_and_timer_j_is_64_t1() {
        let t0 = origin();
        let mut s = NonInviteServer::new(t0, Timers::default(), Reliability::Unreliable);
        s.respond(t0 + ms(10), 200, b("200")).unwrap();
        assert_eq!(transmits(&mut s), vec![b("200")]);
        s.handle_request_retransmission(t0 + ms(500));
        assert_eq!(transmits(&mut s), vec![b("200")]);
        assert_eq!(
            s.respond(t0 + ms(600), 500, b("500")),
            Err(TransactionError::FinalAlreadySent)
        );
        assert_eq!(s.poll_timeout(), Some(t0 + ms(32_010)));
        s.handle_timeout(t0 + ms(32_009));
        assert_eq!(s.state(), NonInviteServerState::Completed);
        s.handle_timeout(t0 + ms(32_010));
        assert_eq!(s.poll_event(), Some(TransactionEvent::Terminated));
    }

    #[test]
    fn timer_j_is_zero_on_tcp() {
        let t0 = origin();
        let mut s = NonInviteServer::new(t0, Timers::default(), Reliability::Reliable);
        s.respond(t0, 404, b("404")).unwrap();
        assert!(s.is_terminated());
        assert_eq!(transmits(&mut s), vec![b("404")]);
    }
}
