//! INVITE client transaction: RFC 3261 §17.1.1 with RFC 6026 §8.4 (Accepted, Timer M).

use super::timer::{Timer, TimerTable};
use super::{Disposition, Outputs, Reliability, StatusClass, Timers, TransactionEvent, Transmit};
use bytes::Bytes;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct InviteClient {
    state: InviteClientState,
    timers: Timers,
    reliability: Reliability,
    request: Bytes,
    /// The ACK for the non-2xx final response, re-sent for each retransmission of it.
    ack: Option<Bytes>,
    retransmit_interval: Duration,
    proceeding_timeout: Duration,
    table: TimerTable,
    out: Outputs,
}

impl InviteClient {
    /// Starts the transaction in `Calling` and queues the request for sending.
    ///
    /// `proceeding_timeout` is a guard the RFC leaves to the TU: RFC 3261 stops Timer B in
    /// `Proceeding`, so a peer that sends 180 and then loses every final response would
    /// keep the transaction forever. Like a proxy's Timer C (§16.6), it restarts on each
    /// provisional response and reports [`TransactionEvent::TimedOut`] when it fires.
    /// The TU should CANCEL well before (ring timeouts); this only bounds memory.
    pub fn new(
        now: Instant,
        timers: Timers,
        reliability: Reliability,
        request: Bytes,
        proceeding_timeout: Duration,
    ) -> Self {
        let mut client = InviteClient {
            state: InviteClientState::Calling,
            timers,
            reliability,
            request: request.clone(),
            ack: None,
            retransmit_interval: timers.t1,
            proceeding_timeout,
            table: TimerTable::default(),
            out: Outputs::default(),
        };
        client.out.send(request);
        if reliability == Reliability::Unreliable {
            client.table.set(Timer::A, now + timers.t1);
        }
        client
            .table
            .set(Timer::B, now + timers.transaction_timeout());
        client
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// A response matched to this transaction. `ack` is the ACK the caller built for a
    /// 300-699 response (RFC 3261 §17.1.1.3: the original request's Request-URI, Call-ID,
    /// From, CSeq number, top Via and Route, with the response's To); it is ignored for
    /// other responses. The transaction sends it and re-sends it for every retransmission
    /// of the final response while `Completed`. Out-of-range status codes are absorbed.
    pub fn handle_response(
        &mut self,
        now: Instant,
        status: u16,
        payload: Bytes,
        ack: Option<Bytes>,
    ) -> Disposition {
        use InviteClientState::*;
        let Some(class) = StatusClass::of(status) else {
            return Disposition::Absorbed;
        };
        match (self.state, class) {
            (Calling | Proceeding, StatusClass::Provisional) => {
                self.state = Proceeding;
                self.table.stop(Timer::A);
                self.table.stop(Timer::B);
                self.table.set(Timer::C, now + self.proceeding_timeout);
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                Disposition::Delivered
            }
            (Calling | Proceeding, StatusClass::Success) => {
                self.state = Accepted;
                self.table.stop(Timer::A);
                self.table.stop(Timer::B);
                self.table.stop(Timer::C);
                self.table
                    .set(Timer::M, now + self.timers.transaction_timeout());
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                Disposition::Delivered
            }
            (Calling | Proceeding, StatusClass::Failure) => {
                self.state = Completed;
                self.table.stop(Timer::A);
                self.table.stop(Timer::B);
                self.table.stop(Timer::C);
                self.ack = ack;
                if let Some(ack) = &self.ack {
                    self.out.send(ack.clone());
                }
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                match self.reliability {
                    Reliability::Reliable => self.terminate(),
                    Reliability::Unreliable => {
                        self.table.set(Timer::D, now + self.timers.timer_d());
                    }
                }
                Disposition::Delivered
            }
            (Completed, StatusClass::Failure) => {
                if self.ack.is_none() {
                    self.ack = ack;
                }
                if let Some(ack) = &self.ack {
                    self.out.send(ack.clone());
                }
                Disposition::Absorbed
            }
            // RFC 6026 §8.4: every 2xx goes to the TU, which ACKs each one itself.
            (Accepted, StatusClass::Success) => {
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                Disposition::Delivered
            }
            _ => Disposition::Absorbed,
        }
    }

    /// The transport could not send for this transaction. Ignored in `Accepted`
    /// (RFC 6026 §8.4: the transaction sends nothing there).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        match self.state {
            InviteClientState::Calling
            | InviteClientState::Proceeding
            | InviteClientState::Completed => {
                self.out.emit(TransactionEvent::TransportError);
                self.terminate();
            }
            InviteClientState::Accepted | InviteClientState::Terminated => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.table.take_expired(now) {
            match timer {
                Timer::A if self.state == InviteClientState::Calling => {
                    self.out.send(self.request.clone());
                    // RFC 3261 §17.1.1.2: doubled each time, no T2 cap for INVITE.
                    self.retransmit_interval = self.retransmit_interval.saturating_mul(2);
                    self.table.set(Timer::A, now + self.retransmit_interval);
                }
                Timer::B if self.state == InviteClientState::Calling => {
                    self.out.emit(TransactionEvent::TimedOut);
                    self.terminate();
                }
                Timer::C if self.state == InviteClientState::Proceeding => {
                    self.out.emit(TransactionEvent::TimedOut);
                    self.terminate();
                }
                Timer::D | Timer::M => self.terminate(),
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

    fn terminate(&mut self) {
        if self.state != InviteClientState::Terminated {
            self.state = InviteClientState::Terminated;
            self.table.clear();
            self.out.emit(TransactionEvent::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::*;

    fn udp(t0: Instant) -> InviteClient {
        InviteClient::new(
            t0,
            Timers::default(),
            Reliability::Unreliable,
            b("INVITE"),
            ms(180_000),
        )
    }

    fn transmits(c: &mut InviteClient) -> Vec<Bytes> {
        drain_transmits(|| c.poll_transmit())
    }

    fn events(c: &mut InviteClient) -> Vec<TransactionEvent> {
        drain_events(|| c.poll_event())
    }

    /// Runs the client until `end`, returning the offsets (ms) at which it transmitted.
    fn send_times(c: &mut InviteClient, t0: Instant, end: Instant) -> Vec<u64> {
        let mut times = Vec::new();
        let mut now = t0;
        loop {
            for _ in transmits(c) {
                times.push(now.duration_since(t0).as_millis() as u64);
            }
            match c.poll_timeout() {
                Some(at) if at <= end => {
                    now = at;
                    c.handle_timeout(now);
                }
                _ => return times,
            }
        }
    }

    #[test]
    fn timer_a_doubles_without_t2_cap_over_udp_per_rfc3261() {
        let t0 = origin();
        let mut c = udp(t0);
        let times = send_times(&mut c, t0, t0 + ms(40_000));
        // 0.5, 1, 2, 4, 8, 16 s intervals; Timer B at 32 s ends it before the next one.
        assert_eq!(times, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    }

    #[test]
    fn timer_b_fires_at_64_t1_and_reports_timed_out() {
        let t0 = origin();
        let mut c = udp(t0);
        let _ = send_times(&mut c, t0, t0 + ms(31_999));
        assert_eq!(c.state(), InviteClientState::Calling);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(32_000)));
        c.handle_timeout(t0 + ms(32_000));
        assert_eq!(
            events(&mut c),
            vec![TransactionEvent::TimedOut, TransactionEvent::Terminated]
        );
        assert!(c.is_terminated());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn no_retransmission_over_tcp_but_timer_b_still_runs() {
        let t0 = origin();
        let mut c = InviteClient::new(
            t0,
            Timers::default(),
            Reliability::Reliable,
            b("INVITE"),
            ms(180_000),
        );
        let times = send_times(&mut c, t0, t0 + ms(40_000));
        assert_eq!(times, vec![0]);
        assert_eq!(
            events(&mut c),
            vec![TransactionEvent::TimedOut, TransactionEvent::Terminated]
        );
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b_leaving_only_the_proceeding_guard() {
        let t0 = origin();
        let mut c = udp(t0);
        transmits(&mut c);
        assert_eq!(
            c.handle_response(t0 + ms(100), 180, b("180"), None),
            Disposition::Delivered
        );
        assert_eq!(c.state(), InviteClientState::Proceeding);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(180_100)));
        assert_eq!(
            events(&mut c),
            vec![TransactionEvent::Response {
                status: 180,
                payload: b("180")
            }]
        );
        // Each provisional restarts the guard; without a final it times out.
        c.handle_response(t0 + ms(60_000), 183, b("183"), None);
        c.handle_timeout(t0 + ms(180_100));
        assert_eq!(c.state(), InviteClientState::Proceeding);
        assert!(
            transmits(&mut c).is_empty(),
            "no retransmission in Proceeding"
        );
        c.handle_timeout(t0 + ms(240_000));
        assert_eq!(
            events(&mut c),
            vec![
                TransactionEvent::Response {
                    status: 183,
                    payload: b("183")
                },
                TransactionEvent::TimedOut,
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn non_2xx_final_is_acked_by_the_transaction_and_reacked_on_each_retransmission() {
        let t0 = origin();
        let mut c = udp(t0);
        transmits(&mut c);
        c.handle_response(t0 + ms(100), 486, b("486"), Some(b("ACK")));
        assert_eq!(c.state(), InviteClientState::Completed);
        assert_eq!(transmits(&mut c), vec![b("ACK")]);
        assert_eq!(
            events(&mut c),
            vec![TransactionEvent::Response {
                status: 486,
                payload: b("486")
            }]
        );
        for at in [600, 1600] {
            let d = c.handle_response(t0 + ms(at), 486, b("486"), Some(b("ACK-rebuilt")));
            assert_eq!(d, Disposition::Absorbed);
            // The ACK stored with the first final response is the one re-sent.
            assert_eq!(transmits(&mut c), vec![b("ACK")]);
            assert!(events(&mut c).is_empty(), "retransmission reached the TU");
        }
    }

    #[test]
    fn timer_d_is_32_s_on_udp() {
        let t0 = origin();
        let mut c = udp(t0);
        c.handle_response(t0 + ms(100), 503, b("503"), Some(b("ACK")));
        events(&mut c);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(32_100)));
        c.handle_timeout(t0 + ms(32_099));
        assert_eq!(c.state(), InviteClientState::Completed);
        c.handle_timeout(t0 + ms(32_100));
        assert_eq!(events(&mut c), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn timer_d_is_zero_on_tcp() {
        let t0 = origin();
        let mut c = InviteClient::new(
            t0,
            Timers::default(),
            Reliability::Reliable,
            b("INVITE"),
            ms(180_000),
        );
        transmits(&mut c);
        c.handle_response(t0 + ms(100), 404, b("404"), Some(b("ACK")));
        assert_eq!(transmits(&mut c), vec![b("ACK")]);
        assert!(c.is_terminated());
        assert_eq!(
            events(&mut c),
            vec![
                TransactionEvent::Response {
                    status: 404,
                    payload: b("404")
                },
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn rfc6026_2xx_enters_accepted_passes_every_2xx_to_tu_and_timer_m_ends_it() {
        let t0 = origin();
        let mut c = udp(t0);
        transmits(&mut c);
        c.handle_response(t0 + ms(100), 200, b("200"), None);
        assert_eq!(c.state(), InviteClientState::Accepted);
        assert!(
            transmits(&mut c).is_empty(),
            "the transaction must not ACK a 2xx"
        );
        c.handle_response(t0 + ms(600), 200, b("200"), None);
        assert_eq!(
            events(&mut c),
            vec![
                TransactionEvent::Response {
                    status: 200,
                    payload: b("200")
                },
                TransactionEvent::Response {
                    status: 200,
                    payload: b("200")
                }
            ]
        );
        // A late non-2xx is ignored; a transport error too.
        assert_eq!(
            c.handle_response(t0 + ms(700), 500, b("500"), Some(b("ACK"))),
            Disposition::Absorbed
        );
        c.handle_transport_error(t0 + ms(800));
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + ms(32_100)));
        c.handle_timeout(t0 + ms(32_100));
        assert_eq!(events(&mut c), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn transport_error_in_calling_informs_tu() {
        let t0 = origin();
        let mut c = udp(t0);
        c.handle_transport_error(t0);
        assert_eq!(
            events(&mut c),
            vec![
                TransactionEvent::TransportError,
                TransactionEvent::Terminated
            ]
        );
    }
}
