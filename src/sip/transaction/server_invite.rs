//! INVITE server transaction: RFC 3261 §17.2.1 with RFC 6026 §8.5-8.7 (Accepted, Timer L).

use super::timer::{Timer, TimerTable};
use super::{
    Outputs, Reliability, StatusClass, Timers, TransactionError, TransactionEvent, Transmit,
};
use bytes::Bytes;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// What became of an ACK matched to an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDisposition {
    /// The ACK of a non-2xx final response (or a retransmission of it): part of this
    /// transaction, never shown to the TU.
    Absorbed,
    /// The transaction is `Accepted` (it sent a 2xx): the ACK belongs to the TU's dialog
    /// (RFC 6026 §8.6).
    ForTu,
}

#[derive(Debug)]
pub struct InviteServer {
    state: InviteServerState,
    timers: Timers,
    reliability: Reliability,
    /// 100 Trying, sent when Timer "Trying" fires before the TU answers.
    pending_trying: Option<Bytes>,
    last_provisional: Option<Bytes>,
    final_response: Option<Bytes>,
    retransmit_interval: Duration,
    table: TimerTable,
    out: Outputs,
}

impl InviteServer {
    /// A new INVITE arrived (the layer passes it to the TU). `trying` is the 100 Trying the
    /// caller built for it; it is sent `trying_delay` from now unless the TU has responded
    /// by then (zero: sent at once; `None`: never).
    pub fn new(
        now: Instant,
        timers: Timers,
        reliability: Reliability,
        trying: Option<Bytes>,
        trying_delay: Duration,
    ) -> Self {
        let mut server = InviteServer {
            state: InviteServerState::Proceeding,
            timers,
            reliability,
            pending_trying: None,
            last_provisional: None,
            final_response: None,
            retransmit_interval: timers.t1,
            table: TimerTable::default(),
            out: Outputs::default(),
        };
        if let Some(trying) = trying {
            if trying_delay.is_zero() {
                server.out.send(trying.clone());
                server.last_provisional = Some(trying);
            } else {
                server.pending_trying = Some(trying);
                server.table.set(Timer::Trying, now + trying_delay);
            }
        }
        server
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// The INVITE was received again: re-send the last provisional response (Proceeding)
    /// or the final response (Completed). Always absorbed: never shown to the TU.
    pub fn handle_request_retransmission(&mut self, _now: Instant) {
        let resend = match self.state {
            InviteServerState::Proceeding => self.last_provisional.clone(),
            InviteServerState::Completed => self.final_response.clone(),
            // Accepted: RFC 6026 §8.7 absorbs it; the TU re-sends 2xx on its own schedule.
            _ => None,
        };
        if let Some(response) = resend {
            self.out.send(response);
        }
    }

    pub fn handle_ack(&mut self, now: Instant) -> AckDisposition {
        match self.state {
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                self.table.stop(Timer::G);
                self.table.stop(Timer::H);
                match self.reliability {
                    Reliability::Reliable => self.terminate(),
                    Reliability::Unreliable => self.table.set(Timer::I, now + self.timers.t4),
                }
                AckDisposition::Absorbed
            }
            InviteServerState::Accepted => AckDisposition::ForTu,
            _ => AckDisposition::Absorbed,
        }
    }

    /// The TU sends a response.
    /// - 1xx in `Proceeding`: sent and remembered for INVITE retransmissions.
    /// - 2xx in `Proceeding`: sent; the transaction moves to `Accepted` for 64·T1 (Timer L).
    ///   In `Accepted` the TU re-sends its 2xx through here (RFC 3261 §13.3.1.4).
    /// - 300-699 in `Proceeding`: sent, then re-sent on Timer G until the ACK or Timer H.
    ///
    /// # Errors
    /// [`TransactionError::InvalidStatus`] for a code outside 100-699,
    /// [`TransactionError::FinalAlreadySent`] for anything but a 2xx after a final response,
    /// [`TransactionError::Terminated`] once terminated.
    pub fn respond(
        &mut self,
        now: Instant,
        status: u16,
        payload: Bytes,
    ) -> Result<(), TransactionError> {
        use InviteServerState::*;
        let class = StatusClass::of(status).ok_or(TransactionError::InvalidStatus(status))?;
        match (self.state, class) {
            (Terminated, _) => Err(TransactionError::Terminated),
            (Proceeding, StatusClass::Provisional) => {
                self.cancel_trying();
                self.out.send(payload.clone());
                self.last_provisional = Some(payload);
                Ok(())
            }
            (Proceeding, StatusClass::Success) => {
                self.cancel_trying();
                self.out.send(payload);
                self.state = Accepted;
                self.table
                    .set(Timer::L, now + self.timers.transaction_timeout());
                Ok(())
            }
            (Proceeding, StatusClass::Failure) => {
                self.cancel_trying();
                self.out.send(payload.clone());
                self.final_response = Some(payload);
                self.state = Completed;
                if self.reliability == Reliability::Unreliable {
                    self.table.set(Timer::G, now + self.retransmit_interval);
                }
                self.table
                    .set(Timer::H, now + self.timers.transaction_timeout());
                Ok(())
            }
            (Accepted, StatusClass::Success) => {
                self.out.send(payload);
                Ok(())
            }
            _ => Err(TransactionError::FinalAlreadySent),
        }
    }

    /// Ignored in `Accepted` and `Confirmed`, where the transaction itself sends nothing.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => {
                self.out.emit(TransactionEvent::TransportError);
                self.terminate();
            }
            _ => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use InviteServerState::*;
        while let Some(timer) = self.table.take_expired(now) {
            match (timer, self.state) {
                (Timer::Trying, Proceeding) => {
                    if let Some(trying) = self.pending_trying.take() {
                        self.out.send(trying.clone());
                        self.last_provisional = Some(trying);
                    }
                }
                (Timer::G, Completed) => {
                    if let Some(response) = &self.final_response {
                        self.out.send(response.clone());
                    }
                    self.retransmit_interval = self
                        .retransmit_interval
                        .saturating_mul(2)
                        .min(self.timers.t2);
                    self.table.set(Timer::G, now + self.retransmit_interval);
                }
                (Timer::H, Completed) => {
                    self.out.emit(TransactionEvent::TimedOut);
                    self.terminate();
                }
                (Timer::I, Confirmed) | (Timer::L, Accepted) => self.terminate(),
                _ => {}
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

    fn cancel_trying(&mut self) {
        self.pending_trying = None;
        self.table.stop(Timer::Trying);
    }

    fn terminate(&mut self) {
        if self.state != InviteServerState::Terminated {
            self.state = InviteServerState::Terminated;
            self.table.clear();
            self.out.emit(TransactionEvent::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::*;

    fn udp(t0: Instant) -> InviteServer {
        InviteServer::new(
            t0,
            Timers::default(),
            Reliability::Unreliable,
            Some(b("100")),
            ms(200),
        )
    }

    fn transmits(s: &mut InviteServer) -> Vec<Bytes> {
        drain_transmits(|| s.poll_transmit())
    }

    fn events(s: &mut InviteServer) -> Vec<TransactionEvent> {
        drain_events(|| s.poll_event())
    }

    #[test]
    fn trying_is_sent_after_200_ms_when_the_tu_is_silent() {
        let t0 = origin();
        let mut s = udp(t0);
        assert!(transmits(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + ms(200)));
        s.handle_timeout(t0 + ms(200));
        assert_eq!(transmits(&mut s), vec![b("100")]);
        // A retransmitted INVITE now gets the 100.
        s.handle_request_retransmission(t0 + ms(500));
        assert_eq!(transmits(&mut s), vec![b("100")]);
    }

    #[test]
    fn no_trying_when_the_tu_answers_within_200_ms() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0 + ms(50), 180, b("180")).unwrap();
        s.handle_timeout(t0 + ms(200));
        assert_eq!(transmits(&mut s), vec![b("180")]);
    }

    #[test]
    fn zero_trying_delay_sends_trying_immediately() {
        let t0 = origin();
        let mut s = InviteServer::new(
            t0,
            Timers::default(),
            Reliability::Unreliable,
            Some(b("100")),
            Duration::ZERO,
        );
        assert_eq!(transmits(&mut s), vec![b("100")]);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn retransmitted_invite_gets_the_last_response_again() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0 + ms(10), 180, b("180")).unwrap();
        s.respond(t0 + ms(20), 183, b("183")).unwrap();
        transmits(&mut s);
        s.handle_request_retransmission(t0 + ms(500));
        assert_eq!(transmits(&mut s), vec![b("183")]);
        s.respond(t0 + ms(600), 486, b("486")).unwrap();
        transmits(&mut s);
        s.handle_request_retransmission(t0 + ms(700));
        assert_eq!(transmits(&mut s), vec![b("486")]);
        assert!(events(&mut s).is_empty());
    }

    #[test]
    fn timer_g_retransmits_final_non_2xx_doubling_to_t2_and_timer_h_times_out_without_ack() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0, 486, b("486")).unwrap();
        let mut times = Vec::new();
        let mut now = t0;
        loop {
            for _ in transmits(&mut s) {
                times.push(now.duration_since(t0).as_millis() as u64);
            }
            let Some(at) = s.poll_timeout() else { break };
            now = at;
            s.handle_timeout(now);
        }
        assert_eq!(
            times,
            vec![
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(now, t0 + ms(32_000));
        assert_eq!(
            events(&mut s),
            vec![TransactionEvent::TimedOut, TransactionEvent::Terminated]
        );
    }

    #[test]
    fn ack_for_non_2xx_is_absorbed_moves_to_confirmed_and_timer_i_is_t4() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0, 603, b("603")).unwrap();
        transmits(&mut s);
        assert_eq!(s.handle_ack(t0 + ms(100)), AckDisposition::Absorbed);
        assert_eq!(s.state(), InviteServerState::Confirmed);
        // Retransmitted ACKs and INVITEs are absorbed silently in Confirmed.
        assert_eq!(s.handle_ack(t0 + ms(200)), AckDisposition::Absorbed);
        s.handle_request_retransmission(t0 + ms(300));
        assert!(transmits(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + ms(5_100)));
        s.handle_timeout(t0 + ms(5_100));
        assert_eq!(events(&mut s), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn timer_i_is_zero_and_no_timer_g_over_tcp() {
        let t0 = origin();
        let mut s = InviteServer::new(t0, Timers::default(), Reliability::Reliable, None, ms(200));
        s.respond(t0, 486, b("486")).unwrap();
        // Only Timer H is armed over TCP.
        assert_eq!(s.poll_timeout(), Some(t0 + ms(32_000)));
        s.handle_ack(t0 + ms(10));
        assert!(s.is_terminated());
    }

    #[test]
    fn rfc6026_2xx_enters_accepted_absorbs_invite_passes_ack_and_timer_l_ends_it() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0 + ms(50), 200, b("200")).unwrap();
        assert_eq!(s.state(), InviteServerState::Accepted);
        // TU-driven 2xx retransmission goes out through the transaction.
        s.respond(t0 + ms(550), 200, b("200")).unwrap();
        assert_eq!(transmits(&mut s), vec![b("200"), b("200")]);
        s.handle_request_retransmission(t0 + ms(600));
        assert!(transmits(&mut s).is_empty());
        assert_eq!(s.handle_ack(t0 + ms(700)), AckDisposition::ForTu);
        assert_eq!(s.state(), InviteServerState::Accepted);
        assert_eq!(
            s.respond(t0 + ms(800), 500, b("500")),
            Err(TransactionError::FinalAlreadySent)
        );
        assert_eq!(s.poll_timeout(), Some(t0 + ms(32_050)));
        s.handle_timeout(t0 + ms(32_050));
        assert_eq!(events(&mut s), vec![TransactionEvent::Terminated]);
        assert_eq!(
            s.respond(t0 + ms(32_100), 200, b("200")),
            Err(TransactionError::Terminated)
        );
    }

    #[test]
    fn second_final_response_is_refused() {
        let t0 = origin();
        let mut s = udp(t0);
        s.respond(t0, 486, b("486")).unwrap();
        assert_eq!(
            s.respond(t0, 200, b("200")),
            Err(TransactionError::FinalAlreadySent)
        );
        assert_eq!(
            s.respond(t0, 99, b("x")),
            Err(TransactionError::InvalidStatus(99))
        );
    }
}
