//! `queue_log`-style rows and the live queue snapshot (`GET /api/queues`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{
    AgentId, AgentState, CallbackResult, Party, PauseReason, Time, TransferTarget,
    VoiceMessageReason,
};
use crate::domain::{CallCategory, Urgency};
use crate::ivr::city::CityId;
use crate::ticket::model::CallId;

/// One `queue_log` row: when, which queue, which call and agent, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLogEntry {
    /// When.
    pub at: Time,
    /// The queue (city).
    pub queue: CityId,
    /// The call, for call events.
    pub call: Option<CallId>,
    /// The agent, for agent events.
    pub agent: Option<AgentId>,
    /// What happened.
    pub event: QueueLogEvent,
}

/// What a `queue_log` row records (durations in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum QueueLogEvent {
    /// The call entered the queue.
    Enter {
        /// Category.
        category: CallCategory,
        /// Urgency.
        urgency: Urgency,
        /// Position on entry (1-based).
        position: u32,
    },
    /// An offer rang out or failed.
    RingNoAnswer {
        /// How long it rang.
        ring_ms: i64,
    },
    /// An agent answered.
    Connect {
        /// Wait from entering the ACD to the answer.
        wait_ms: i64,
        /// How long the answering agent's leg rang.
        ring_ms: i64,
    },
    /// A bridged call ended.
    Complete {
        /// Wait before the answer.
        wait_ms: i64,
        /// Talk time.
        talk_ms: i64,
        /// Who hung up.
        who_hung_up: Party,
    },
    /// The caller hung up while waiting.
    Abandon {
        /// Position when they left.
        position: u32,
        /// Position on entry.
        original_position: u32,
        /// How long they waited.
        wait_ms: i64,
    },
    /// The agent blind-transferred the call.
    Transfer {
        /// Where to.
        to: TransferTarget,
        /// Wait before the answer.
        wait_ms: i64,
        /// Talk time.
        talk_ms: i64,
    },
    /// The bridged agent's phone vanished: the call went back to the queue.
    AgentLost {
        /// Wait before the (lost) answer.
        wait_ms: i64,
        /// Talk time until the agent was lost.
        talk_ms: i64,
    },
    /// Moved to another queue.
    Overflow {
        /// Target queue.
        to: CityId,
    },
    /// Handed to the voice-message flow.
    VoiceMessage {
        /// Why.
        reason: VoiceMessageReason,
        /// How long they waited.
        wait_ms: i64,
    },
    /// The caller asked for a callback.
    CallbackRequested {
        /// The place kept.
        position: u32,
    },
    /// One callback attempt's caller-leg result.
    CallbackAttempt {
        /// 1-based attempt number.
        attempt: u32,
        /// Result.
        result: CallbackResult,
    },
    /// The callback was given up.
    CallbackGaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// Agent signed in.
    SignIn,
    /// Agent signed out.
    SignOut,
    /// Agent paused.
    Pause {
        /// Why.
        reason: PauseReason,
    },
    /// Agent unpaused.
    Unpause,
    /// Agent's registration was lost during duty.
    Offline,
    /// Agent's registration came back.
    Online,
    /// On-duty agent not signed in at shift start.
    Absent {
        /// When the shift started.
        shift_start: Time,
    },
}

/// One agent in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// The agent.
    pub agent: AgentId,
    /// Current state.
    pub state: AgentState,
    /// On duty per the roster now.
    pub on_duty: bool,
    /// Calls answered today.
    pub answered_today: u32,
    /// Offers missed in a row.
    pub no_answer_count: u32,
}

/// One waiting call in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingCall {
    /// The call.
    pub call: CallId,
    /// 1-based position.
    pub position: u32,
    /// Waiting since (entering the ACD).
    pub since: Time,
    /// Urgency.
    pub urgency: Urgency,
    /// Whether the caller hung up and waits for a callback.
    pub callback: bool,
}

/// Live state of one queue (`GET /api/queues`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// The queue (city).
    pub city: CityId,
    /// Waiting calls (callbacks included), in order.
    pub waiting: Vec<WaitingCall>,
    /// Longest current wait, ms.
    pub longest_wait_ms: i64,
    /// Number of agents per state name (`available`, `on_call`, …).
    pub agents_by_state: BTreeMap<String, u32>,
    /// The agents.
    pub agents: Vec<AgentSnapshot>,
    /// Calls answered today (Asia/Shanghai).
    pub answered_today: u32,
    /// Calls abandoned today.
    pub abandoned_today: u32,
}

/// The intervals `agent` was signed in with a live registration, rebuilt from
/// `queue_log` rows in time order (`SignIn`, `SignOut`, `Offline`, `Online`), for the
/// sign-in rate ([`super::sign_in_rate`]). A presence still open at the end is closed
/// at `until`.
#[must_use]
pub fn presence_from_log(log: &[QueueLogEntry], agent: &AgentId, until: Time) -> Vec<(Time, Time)> {
    let mut out = Vec::new();
    let mut signed_in = false;
    let mut offline = false;
    let mut since: Option<Time> = None;
    for entry in log.iter().filter(|e| e.agent.as_ref() == Some(agent)) {
        match entry.event {
            QueueLogEvent::SignIn => {
                signed_in = true;
                offline = false;
            }
            QueueLogEvent::SignOut => signed_in = false,
            QueueLogEvent::Offline => offline = true,
            QueueLogEvent::Online => offline = false,
            _ => continue,
        }
        let present = signed_in && !offline;
        match (present, since) {
            (true, None) => since = Some(entry.at),
            (false, Some(start)) => {
                if start < entry.at {
                    out.push((start, entry.at));
                }
                since = None;
            }
            _ => {}
        }
    }
    if let Some(start) = since {
        if start < until {
            out.push((start, until));
        }
    }
    out
}
