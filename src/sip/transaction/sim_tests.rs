//! Model test: a client layer and a server layer driven against each other over a seeded
//! lossy in-memory link, in simulated time, with scripted TUs on both ends. For many seeds
//! every transaction must finish, the TUs must never see a retransmission, and the
//! outcome must be the right one (or, when the dice lost every copy, a clean timeout).

use super::*;
use crate::sip::message::Method;
use std::time::Instant;

const SENT_BY: &str = "client.example:5060";
const BRANCH: &str = "z9hG4bK-sim";
/// The ACK for a 2xx is a transaction of its own, with its own branch.
const BRANCH_2XX_ACK: &str = "z9hG4bK-sim-ack2xx";

/// SplitMix64: small, deterministic, good enough to decide drops and delays.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

struct Link {
    rng: Rng,
    drop_percent: u64,
    /// Random 10-60 ms latency (reorders) on the lossy link; fixed 20 ms otherwise.
    jitter: bool,
    in_flight: Vec<(Instant, u64, End, Bytes)>,
    seq: u64,
    dropped: u64,
}

impl Link {
    fn send(&mut self, now: Instant, to: End, payload: Bytes) {
        if self.rng.percent(self.drop_percent) {
            self.dropped += 1;
            return;
        }
        let delay = if self.jitter {
            self.rng.between(10, 60)
        } else {
            20
        };
        self.seq += 1;
        self.in_flight
            .push((now + Duration::from_millis(delay), self.seq, to, payload));
    }

    fn next_at(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(at, ..)| *at).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<(End, Bytes)> {
        let mut due: Vec<_> = self
            .in_flight
            .iter()
            .filter(|m| m.0 <= now)
            .cloned()
            .collect();
        self.in_flight.retain(|m| m.0 > now);
        due.sort_by_key(|m| (m.0, m.1));
        due.into_iter().map(|(_, _, to, p)| (to, p)).collect()
    }
}

/// The test's wire format: the machines never look inside, only the test shell does.
enum Wire {
    Request {
        method: Method,
        branch: String,
    },
    Response {
        status: u16,
        method: Method,
        branch: String,
    },
}

fn method_named(name: &str) -> Method {
    match name {
        "INVITE" => Method::Invite,
        "ACK" => Method::Ack,
        "OPTIONS" => Method::Options,
        other => Method::Extension(other.to_string()),
    }
}

fn request_bytes(method: &Method, branch: &str) -> Bytes {
    Bytes::from(format!("REQ {method} {branch}"))
}

fn response_bytes(status: u16, method: &Method, branch: &str) -> Bytes {
    Bytes::from(format!("RSP {status} {method} {branch}"))
}

fn parse_wire(payload: &Bytes) -> Wire {
    let text = std::str::from_utf8(payload).unwrap_or_default();
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["REQ", method, branch] => Wire::Request {
            method: method_named(method),
            branch: branch.to_string(),
        },
        ["RSP", status, method, branch] => Wire::Response {
            status: status.parse().unwrap_or(0),
            method: method_named(method),
            branch: branch.to_string(),
        },
        _ => panic!("test wire garbled: {text}"),
    }
}

#[derive(Debug, Default)]
struct ClientTu {
    provisionals: u32,
    finals: Vec<u16>,
    timed_out: bool,
    transport_error: bool,
    terminated: bool,
    event_after_terminated: bool,
}

enum Step {
    Ringing,
    Final,
}

struct ServerTu {
    final_status: u16,
    new_requests: u32,
    handle: Option<ServerTransaction>,
    key: Option<TransactionKey>,
    steps: Vec<(Instant, Step)>,
    /// 2xx retransmission by the TU (RFC 3261 §13.3.1.4): next send, interval, give-up.
    retransmit_2xx: Option<(Instant, Duration, Instant)>,
    acks_for_tu: u32,
    timed_out: bool,
    terminated: bool,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    invite: bool,
    final_status: u16,
    reliability: Reliability,
    drop_percent: u64,
}

struct World {
    t0: Instant,
    scenario: Scenario,
    timers: Timers,
    client: TransactionLayer<End>,
    server: TransactionLayer<End>,
    link: Link,
    client_tu: ClientTu,
    server_tu: ServerTu,
}

impl World {
    fn new(scenario: Scenario, seed: u64) -> World {
        let config = LayerConfig::default();
        World {
            t0: Instant::now(),
            scenario,
            timers: config.timers,
            client: TransactionLayer::new(config),
            server: TransactionLayer::new(config),
            link: Link {
                rng: Rng(seed),
                drop_percent: scenario.drop_percent,
                jitter: scenario.drop_percent > 0,
                in_flight: Vec::new(),
                seq: 0,
                dropped: 0,
            },
            client_tu: ClientTu::default(),
            server_tu: ServerTu {
                final_status: scenario.final_status,
                new_requests: 0,
                handle: None,
                key: None,
                steps: Vec::new(),
                retransmit_2xx: None,
                acks_for_tu: 0,
                timed_out: false,
                terminated: false,
            },
        }
    }

    fn method(&self) -> Method {
        if self.scenario.invite {
            Method::Invite
        } else {
            Method::Options
        }
    }

    fn key(&self, branch: &str, method: &Method) -> TransactionKey {
        TransactionKey::for_request(branch, SENT_BY, method)
    }

    /// Moves layer outputs onto the link and into the TUs.
    fn pump(&mut self, now: Instant) {
        while let Some(t) = self.client.poll_transmit() {
            self.link.send(now, t.peer, t.payload);
        }
        while let Some(t) = self.server.poll_transmit() {
            self.link.send(now, t.peer, t.payload);
        }
        while let Some(e) = self.client.poll_event() {
            let tu = &mut self.client_tu;
            if tu.terminated {
                tu.event_after_terminated = true;
            }
            match e.event {
                TransactionEvent::Response { status, .. } if status < 200 => tu.provisionals += 1,
                TransactionEvent::Response { status, .. } => {
                    tu.finals.push(status);
                    if self.scenario.invite && (200..300).contains(&status) {
                        // The UAC core ACKs every 2xx itself, outside the transaction.
                        let ack = request_bytes(&Method::Ack, BRANCH_2XX_ACK);
                        self.link.send(now, End::Server, ack);
                    }
                }
                TransactionEvent::TimedOut => tu.timed_out = true,
                TransactionEvent::TransportError => tu.transport_error = true,
                TransactionEvent::Terminated => tu.terminated = true,
            }
        }
        while let Some(e) = self.server.poll_event() {
            match e.event {
                TransactionEvent::TimedOut => self.server_tu.timed_out = true,
                TransactionEvent::Terminated => self.server_tu.terminated = true,
                other => panic!("unexpected server event {other:?}"),
            }
        }
    }

    fn deliver(&mut self, now: Instant, to: End, payload: Bytes) {
        match (to, parse_wire(&payload)) {
            (End::Server, Wire::Request { method, branch }) => {
                let key = self.key(&branch, &method);
                let trying =
                    (method == Method::Invite).then(|| response_bytes(100, &method, &branch));
                let outcome = self.server.handle_request(
                    now,
                    IncomingRequest {
                        key: key.clone(),
                        method: method.clone(),
                        peer: End::Client,
                        reliability: self.scenario.reliability,
                        trying,
                    },
                );
                let tu = &mut self.server_tu;
                match outcome {
                    RequestOutcome::New(handle) => {
                        tu.new_requests += 1;
                        tu.handle = Some(handle);
                        tu.key = Some(key);
                        if method == Method::Invite {
                            tu.steps
                                .push((now + Duration::from_millis(100), Step::Ringing));
                            tu.steps
                                .push((now + Duration::from_millis(300), Step::Final));
                        } else {
                            tu.steps
                                .push((now + Duration::from_millis(50), Step::Final));
                        }
                    }
                    RequestOutcome::AckForTu => {
                        tu.acks_for_tu += 1;
                        tu.retransmit_2xx = None;
                    }
                    RequestOutcome::Retransmission | RequestOutcome::AckAbsorbed => {}
                    RequestOutcome::Overloaded => panic!("cap reached in a one-call test"),
                }
            }
            (
                End::Client,
                Wire::Response {
                    status,
                    method,
                    branch,
                },
            ) => {
                let key = self.key(&branch, &method);
                let ack = (method == Method::Invite && status >= 300)
                    .then(|| request_bytes(&Method::Ack, &branch));
                let _ = self.client.handle_response(now, &key, status, payload, ack);
            }
            (End::Server, Wire::Response { .. }) | (End::Client, Wire::Request { .. }) => {
                panic!("message delivered to the wrong end")
            }
        }
    }

    fn server_tu_next(&self) -> Option<Instant> {
        let steps = self.server_tu.steps.iter().map(|(at, _)| *at);
        let retransmit = self.server_tu.retransmit_2xx.map(|(at, ..)| at);
        steps.chain(retransmit).min()
    }

    fn run_server_tu(&mut self, now: Instant) {
        let method = self.method();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.server_tu.steps)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.server_tu.steps = later;
        for (_, step) in due {
            match step {
                Step::Ringing => {
                    if let Some(handle) = &self.server_tu.handle {
                        let ringing = response_bytes(180, &method, BRANCH);
                        self.server
                            .send_provisional(now, handle, 180, ringing)
                            .unwrap();
                    }
                }
                Step::Final => {
                    let status = self.server_tu.final_status;
                    if let Some(handle) = self.server_tu.handle.take() {
                        let response = response_bytes(status, &method, BRANCH);
                        self.server
                            .send_final(now, handle, status, response)
                            .unwrap();
                        if self.scenario.invite && status < 300 {
                            let t1 = self.timers.t1;
                            let give_up = now + self.timers.transaction_timeout();
                            self.server_tu.retransmit_2xx = Some((now + t1, t1, give_up));
                        }
                    }
                }
            }
        }
        if let Some((at, interval, give_up)) = self.server_tu.retransmit_2xx {
            if at <= now {
                if now >= give_up {
                    self.server_tu.retransmit_2xx = None;
                } else if let Some(key) = self.server_tu.key.clone() {
                    let status = self.server_tu.final_status;
                    let response = response_bytes(status, &method, BRANCH);
                    let _ = self.server.retransmit_2xx(now, &key, status, response);
                    let next = (interval * 2).min(self.timers.t2);
                    self.server_tu.retransmit_2xx = Some((now + next, next, give_up));
                }
            }
        }
    }

    fn run(&mut self) {
        let mut now = self.t0;
        let method = self.method();
        let key = self.key(BRANCH, &method);
        let request = request_bytes(&method, BRANCH);
        self.client
            .start_client(now, key, End::Server, self.scenario.reliability, request)
            .unwrap();
        for step in 0.. {
            assert!(step < 100_000, "simulation did not settle");
            self.pump(now);
            let next = [
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                self.link.next_at(),
                self.server_tu_next(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            assert!(next >= now, "a deadline went backwards");
            now = next;
            for (to, payload) in self.link.take_due(now) {
                self.deliver(now, to, payload);
            }
            self.run_server_tu(now);
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
        }
    }

    /// Checks what must hold whatever the link did; returns whether the outcome was the
    /// ideal one (final status delivered, and the server saw the ACK).
    fn check(&self, seed: u64) -> bool {
        let c = &self.client_tu;
        let s = &self.server_tu;
        let ctx = format!("seed {seed} {:?} {c:?}", self.scenario);
        assert!(
            self.client.is_empty() && self.server.is_empty(),
            "{ctx}: leftover"
        );
        assert_eq!(self.client.poll_timeout(), None, "{ctx}");
        assert_eq!(self.server.poll_timeout(), None, "{ctx}");
        assert!(c.terminated && !c.event_after_terminated, "{ctx}");
        assert!(!c.transport_error, "{ctx}");
        assert!(
            s.new_requests <= 1,
            "{ctx}: a retransmission reached the server TU"
        );
        assert_eq!(
            s.terminated,
            s.new_requests == 1,
            "{ctx}: server never finished"
        );
        for counters in [self.client.counters(), self.server.counters()] {
            for kind in [
                TransactionKind::InviteClient,
                TransactionKind::NonInviteClient,
                TransactionKind::InviteServer,
                TransactionKind::NonInviteServer,
            ] {
                let k = counters.kind(kind);
                assert_eq!(k.created, k.terminated, "{ctx}: {kind:?}");
            }
        }
        // Exactly one outcome for the client TU: a final response or a timeout.
        assert_ne!(c.finals.is_empty(), !c.timed_out, "{ctx}");
        let two_xx = self.scenario.invite && self.scenario.final_status < 300;
        if two_xx {
            // Every 2xx (retransmissions by the peer's TU) is for the TU: all equal.
            assert!(
                c.finals.iter().all(|f| *f == self.scenario.final_status),
                "{ctx}"
            );
        } else {
            // Any other final arrives at most once, retransmissions absorbed.
            assert!(c.finals.len() <= 1, "{ctx}: duplicate final to the TU");
            assert!(
                c.finals.iter().all(|f| *f == self.scenario.final_status),
                "{ctx}"
            );
        }
        if !c.finals.is_empty() {
            assert_eq!(s.new_requests, 1, "{ctx}: a response without a request");
        }
        let got_final = !c.finals.is_empty();
        match (self.scenario.invite, two_xx) {
            (true, true) => got_final && s.acks_for_tu >= 1,
            (true, false) => got_final && !s.timed_out,
            (false, _) => got_final,
        }
    }
}

fn run_seeds(scenario: Scenario, seeds: u64) -> (u64, u64) {
    let mut ideal = 0;
    let mut dropped = 0;
    for seed in 1..=seeds {
        let mut world = World::new(scenario, seed);
        world.run();
        if world.check(seed) {
            ideal += 1;
        }
        dropped += world.link.dropped;
    }
    (ideal, dropped)
}

fn lossy(invite: bool, final_status: u16) -> Scenario {
    Scenario {
        invite,
        final_status,
        reliability: Reliability::Unreliable,
        drop_percent: 30,
    }
}

#[test]
fn model_non_invite_over_30_percent_loss_finishes_with_the_right_outcome_for_every_seed() {
    let (ideal, dropped) = run_seeds(lossy(false, 200), 300);
    assert!(
        dropped >= 100,
        "the link must actually lose messages: {dropped}"
    );
    assert!(ideal >= 290, "only {ideal}/300 seeds delivered the 200");
}

#[test]
fn model_invite_rejected_over_30_percent_loss_acks_inside_the_transactions() {
    let (ideal, dropped) = run_seeds(lossy(true, 486), 300);
    assert!(
        dropped >= 100,
        "the link must actually lose messages: {dropped}"
    );
    assert!(
        ideal >= 290,
        "only {ideal}/300 seeds delivered 486 and its ACK"
    );
}

#[test]
fn model_invite_accepted_over_30_percent_loss_rfc6026_accepted_states_finish() {
    let (ideal, dropped) = run_seeds(lossy(true, 200), 300);
    assert!(
        dropped >= 100,
        "the link must actually lose messages: {dropped}"
    );
    assert!(
        ideal >= 290,
        "only {ideal}/300 seeds delivered 200 and its ACK"
    );
}

#[test]
fn model_lossless_and_reliable_links_always_give_the_ideal_outcome() {
    for invite in [false, true] {
        for final_status in [200, 486] {
            for reliability in [Reliability::Unreliable, Reliability::Reliable] {
                let scenario = Scenario {
                    invite,
                    final_status,
                    reliability,
                    drop_percent: 0,
                };
                let (ideal, dropped) = run_seeds(scenario, 3);
                assert_eq!(dropped, 0);
                assert_eq!(ideal, 3, "{scenario:?}");
            }
        }
    }
}

#[test]
fn model_under_70_percent_loss_timeouts_are_clean_and_nothing_leaks() {
    // Heavy loss makes Timers B, F and H fire in some seeds: `check` still requires every
    // transaction to end, one outcome per TU, and no retransmission leaking to a TU.
    for (invite, final_status) in [(false, 200), (true, 486), (true, 200)] {
        let scenario = Scenario {
            drop_percent: 70,
            ..lossy(invite, final_status)
        };
        let (ideal, _) = run_seeds(scenario, 300);
        assert!(ideal > 0 && ideal < 300, "{scenario:?}: {ideal}/300 ideal");
    }
}
