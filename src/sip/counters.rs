//! What the endpoint counts, as a trait the shell implements (its Prometheus registry):
//! the sans-IO SIP layer names the events, the shell decides how they are exposed.
//! Nothing here imports from the shell.

use std::time::Duration;

use super::message::Method;

/// Which way a SIP message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

impl Direction {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Unparseable and too broken to answer with 400.
    Unanswerable,
    /// Source is banned after repeated authentication failures.
    Banned,
    /// A response that matches no transaction.
    StrayResponse,
    /// A TCP stream that could not be framed (connection closed).
    BadStream,
}

impl DropReason {
    /// Every reason, for exposing all label values from the start.
    pub const ALL: [DropReason; 4] = [
        DropReason::Unanswerable,
        DropReason::Banned,
        DropReason::StrayResponse,
        DropReason::BadStream,
    ];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Unanswerable => "unanswerable",
            DropReason::Banned => "banned",
            DropReason::StrayResponse => "stray_response",
            DropReason::BadStream => "bad_stream",
        }
    }
}

/// The endpoint's counters and gauges. Methods that return a number return the total
/// so far (the endpoint logs it on the first and every 100th occurrence).
pub trait EndpointCounters: std::fmt::Debug + Send + Sync {
    /// A request sent or received.
    fn request(&self, direction: Direction, method: &Method);
    /// A response sent or received.
    fn response(&self, direction: Direction, status: u16);
    /// A datagram or stream message that did not parse.
    fn parse_error(&self);
    /// A message dropped without an answer.
    fn dropped(&self, why: DropReason);
    /// A failed digest authentication.
    fn auth_failure(&self);
    /// A source banned for repeated authentication failures.
    fn ban(&self);
    /// A request refused with 503 because the endpoint is overloaded: the total.
    fn overloaded(&self) -> u64;
    /// A call to a number the configuration does not allow (toll fraud) refused.
    fn toll_fraud_refused(&self);
    /// A new call refused above the admission rate: the total.
    fn calls_over_rate(&self) -> u64;
    /// Registrations now bound.
    fn set_active_registrations(&self, n: usize);
    /// Calls now up.
    fn set_calls_active(&self, n: usize);
    /// Server transactions now open.
    fn set_active_transactions(&self, n: usize);
    /// How long a call took from INVITE to its final answer.
    fn call_setup(&self, direction: Direction, took: Duration);
}

/// Counts nothing: for tests of the endpoint and tools that need none.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounters;

impl EndpointCounters for NoCounters {
    fn request(&self, _: Direction, _: &Method) {}
    fn response(&self, _: Direction, _: u16) {}
    fn parse_error(&self) {}
    fn dropped(&self, _: DropReason) {}
    fn auth_failure(&self) {}
    fn ban(&self) {}
    fn overloaded(&self) -> u64 {
        0
    }
    fn toll_fraud_refused(&self) {}
    fn calls_over_rate(&self) -> u64 {
        0
    }
    fn set_active_registrations(&self, _: usize) {}
    fn set_calls_active(&self, _: usize) {}
    fn set_active_transactions(&self, _: usize) {}
    fn call_setup(&self, _: Direction, _: Duration) {}
}
