//! Non-INVITE client transaction: RFC 3261 §17.1.2.

use super::timer::{Timer, TimerTable};
use super::{Disposition, Outputs, Reliability, StatusClass, Timers, TransactionEvent, Transmit};
use bytes::Bytes;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteClientState,
    timers: Timers,
    reliability: Reliability,
    request: Bytes,
    retransmit_interval: Duration,
    table: TimerTable,
    out: Outputs,
}

impl NonInviteClient {
    /// Starts the transaction in `Trying` and queues the request for sending.
    pub fn new(now: Instant, timers: Timers, reliability: Reliability, request: Bytes) -> Self {
        let mut client = NonInviteClient {
            state: NonInviteClientState::Trying,
            timers,
            reliability,
            request: request.clone(),
            retransmit_interval: timers.t1,
            table: TimerTable::default(),
            out: Outputs::default(),
        };
        client.out.send(request);
        if reliability == Reliability::Unreliable {
            client.table.set(Timer::E, now + timers.t1);
        }
        client
            .table
            .set(Timer::F, now + timers.transaction_timeout());
        client
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    /// A response matched to this transaction. Out-of-range status codes are absorbed.
    pub fn handle_response(&mut self, now: Instant, status: u16, payload: Bytes) -> Disposition {
        use NonInviteClientState::*;
        let Some(class) = StatusClass::of(status) else {
            return Disposition::Absorbed;
        };
        match (self.state, class) {
            (Trying | Proceeding, StatusClass::Provisional) => {
                self.state = Proceeding;
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                Disposition::Delivered
            }
            (Trying | Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.state = Completed;
                self.table.stop(Timer::E);
                self.table.stop(Timer::F);
                self.out
                    .emit(TransactionEvent::Response { status, payload });
                match self.reliability {
                    Reliability::Reliable => self.terminate(),
                    Reliability::Unreliable => self.table.set(Timer::K, now + self.timers.t4),
                }
                Disposition::Delivered
            }
            _ => Disposition::Absorbed,
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != NonInviteClientState::Terminated {
            self.out.emit(TransactionEvent::TransportError);
            self.terminate();
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use NonInviteClientState::*;
        while let Some(timer) = self.table.take_expired(now) {
            match (timer, self.state) {
                (Timer::E, Trying) => {
                    self.out.send(self.request.clone());
                    self.retransmit_interval = self
                        .retransmit_interval
                        .saturating_mul(2)
                        .min(self.timers.t2);
                    self.table.set(Timer::E, now + self.retransmit_interval);
                }
                // §17.1.2.2: in Proceeding the request is re-sent every T2.
                (Timer::E, Proceeding) => {
                    self.out.send(self.request.clone());
                    self.table.set(Timer::E, now + self.timers.t2);
                }
                (Timer::F, Trying | Proceeding) => {
                    self.out.emit(TransactionEvent::TimedOut);
                    self.terminate();
                }
                (Timer::K, Completed) => self.terminate(),
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
        if self.state != NonInviteClientState::Terminated {
            self.state = NonInviteClientState::Terminated;
            self.table.clear();
            self.out.emit(TransactionEvent::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::*;

    fn send_times(c: &mut NonInviteClient, t0: Instant, end: Instant) -> Vec<u64> {
        let mut times = Vec::new();
        let mut now = t0;
        loop {
            while c.poll_transmit().is_some() {
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
    fn timer_e_doubles_up_to_t2_then_stays_at_t2_and_timer_f_times_out_at_64_t1() {
        let t0 = origin();
        let mut c =
            NonInviteClient::new(t0, Timers::default(), Reliability::Unreliable, b("OPTIONS"));
        let times = send_times(&mut c, t0, t0 + ms(40_000));
        assert_eq!(
            times,
            vec![
                0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(
            drain_events(|| c.poll_event()),
            vec![TransactionEvent::TimedOut, TransactionEvent::Terminated]
        );
    }

    #[test]
    fn timer_e_in_proceeding_retransmits_every_t2() {
        let t0 = origin();
        let mut c = NonInviteClient::new(t0, Timers::default(), Reliability::Unreliable, b("BYE"));
        c.poll_transmit();
        c.handle_response(t0 + ms(100), 100, b("100"));
        assert_eq!(c.state(), NonInviteClientState::Proceeding);
        // Timer E armed at 500 ms still fires, then every T2.
        let times = send_times(&mut c, t0, t0 + ms(9_000));
        assert_eq!(times, vec![500, 4500, 8500]);
    }

    #[test]
    fn no_retransmission_over_tcp_and_timer_f_still_fires() {
        let t0 = origin();
        let mut c = NonInviteClient::new(t0, Timers::default(), Reliability::Reliable, b("BYE"));
        let times = send_times(&mut c, t0, t0 + ms(40_000));
        assert_eq!(times, vec![0]);
        assert_eq!(c.poll_event(), Some(TransactionEvent::TimedOut));
    }

    #[test]
    fn timer_k_is_t4_on_udp_and_absorbs_response_retransmissions() {
        let t0 = origin();
        let mut c = NonInviteClient::new(t0, Timers::default(), Reliability::Unreliable, b("BYE"));
        c.poll_transmit();
        assert_eq!(
            c.handle_response(t0 + ms(50), 200, b("200")),
            Disposition::Delivered
        );
        assert_eq!(
            c.handle_response(t0 + ms(550), 200, b("200")),
            Disposition::Absorbed
        );
        assert_eq!(
            drain_events(|| c.poll_event()),
            vec![TransactionEvent::Response {
                status: 200,
                payload: b("200")
            }]
        );
        assert_eq!(c.poll_timeout(), Some(t0 + ms(5_050)));
        c.handle_timeout(t0 + ms(5_050));
        assert_eq!(c.poll_event(), Some(TransactionEvent::Terminated));
        assert!(c.poll_transmit().is_none());
    }

    #[test]
    fn timer_k_is_zero_on_tcp() {
        let t0 = origin();
        let mut c = NonInviteClient::new(t0, Timers::default(), Reliability::Reliable, b("BYE"));
        c.handle_response(t0 + ms(50), 481, b("481"));
        assert!(c.is_terminated());
        assert_eq!(c.poll_timeout(), None);
    }
}
