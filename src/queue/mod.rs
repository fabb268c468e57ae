//! ACD: agents, duty rosters, sign-in, strategies, announcements, overflow,
//! callback-in-queue, wrap-up, no-answer pause (`CALL-QUEUE`, `CALL-TRANSFER`,
//! `CALL-CALLBACK`, `CALL-ETIQUETTE`, `CALL-AVAILABILITY`, `AS-METRICS`).
//!
//! One sans-IO state machine, [`Acd`], holds every city's queue, agent and waiting
//! call. It never reads a clock, opens a socket or places a call: the shell does.
//!
//! # Calling contract
//! 1. Feed an input with the current wall-clock time: [`Acd::handle`]`(now, input)`, or
//!    [`Acd::handle_timeout`]`(now)` once `now >= poll_timeout()`. Timers due by `now`
//!    fire before the input is applied.
//! 2. Drain [`Acd::poll_output`] until `None` and carry out each [`QueueAction`] in
//!    order, *before* the next input (so a leg the ACD asked for exists when the shell
//!    next reports live legs).
//! 3. Sleep until [`Acd::poll_timeout`] or the next input.
//!
//! `handle` returns `Err` only for API misuse (unknown agent, transfer of a call that is
//! not bridged, …); the ACD is unchanged then. Events about calls or legs it has already
//! let go (a 200 OK crossing a CANCEL, a BYE after a transfer) are races, not errors:
//! they are ignored, or answered with [`QueueAction::HangupAgentLeg`].
//!
//! # Legs and the stuck-agent rule
//! An agent is `ringing` or `on_call` only while the shell holds that agent's leg:
//! - [`QueueAction::RingAgent`] / [`QueueAction::PlaceCallback`] create it; the shell
//!   must report its end with exactly one of [`QueueInput::AgentLegFailed`],
//!   [`QueueInput::AgentAnswered`] → later [`QueueInput::CallEnded`] (or
//!   [`QueueInput::Transfer`], or [`QueueInput::CallbackOutcome`] for callbacks).
//! - [`QueueAction::CancelRing`] is the ACD letting go: the agent is free at once and any
//!   later report about that leg is stale.
//! - A call the ACD did not offer (an agent's consultation call to another agent) holds
//!   the called agent from [`QueueInput::DirectCall`] until
//!   [`QueueInput::DirectCallEnded`], or until [`QueueInput::AttendedTransfer`] hands
//!   them the queue call whose agent consulted them (that agent goes to wrap-up); its
//!   leg counts in [`QueueInput::LiveLegs`] under the direct call's id.
//! - The shell periodically sends [`QueueInput::LiveLegs`] from the dialog layer; any
//!   agent held without a live leg is released (`Reconciled`). This is the fix for
//!   agents left "reserved" / "in a queue call" after a lost event, the recurrent
//!   `mod_callcenter` complaint.
//!
//! # What the anchors' users complain about, and what this ACD does instead
//! (each pinned by a regression test in `tests.rs`)
//! - Agents stuck "Reserved" / "Receiving" after a lost event or a ring-all race
//!   (signalwire/freeswitch#2540, #1973): one owner for every agent leg, every offer
//!   withdrawn in the same step as the answer, and [`QueueInput::LiveLegs`] reconcile.
//! - A zombie call to the agent after the caller left (freeswitch#2529): the caller's
//!   hang-up cancels every ringing leg at once; a late 200 OK gets
//!   [`QueueAction::HangupAgentLeg`].
//! - INVITE/CANCEL loops when an agent changes state during an offer (freeswitch PR
//!   #800): the offer is withdrawn once and the agent is not offered again.
//! - Top-down stalling on an unavailable agent (freeswitch#1216): strategies choose
//!   only among ready agents.
//! - Wrap-up cut short: wrap-up lasts exactly its length from the hang-up; pausing,
//!   unpausing or signing in again does not end it.
//! - Announcements delaying the bridge (app_queue): see below.
//! - No callback-in-queue, no duty rotas: see below and [`roster`].
//! - Dropped mobile callers losing their place: a caller who calls back within
//!   `resume_abandoned_secs` resumes it.
//!
//! # Caller experience
//! [`QueueAction::PlayHoldMusic`] on entry; [`QueueAction::Announce`] at
//! `announce_frequency_secs`, only when the position changed; [`QueueAction::PleaseHold`]
//! every `please_hold_secs`. Offers never wait for an announcement to finish (the
//! app_queue complaint): when an agent answers, [`QueueAction::StopAnnouncement`] (if one
//! may be playing) and [`QueueAction::Bridge`] come out of the same `handle` call.
//!
//! # Callbacks
//! [`QueueInput::CallbackRequested`] keeps the call's place; when its turn comes the ACD
//! reserves an agent first, then emits [`QueueAction::PlaceCallback`] with the caller's
//! own number as received (never a number from an input: no open dialling). The shell
//! rings the agent, dials the caller once the agent answers, and reports
//! [`QueueInput::CallbackOutcome`]. Failed attempts retry after
//! `callback_retry_delay_secs`, still in place; every attempt is a `queue_log` row.
//!
//! # Time
//! `now` is wall-clock ([`Time`]); roster shifts and "today" counters use the
//! Asia/Shanghai date. A clock stepping back only delays timers.
//!
//! Configuration: see [`config`] (with a full TOML example).

pub mod acd;
pub mod attendance;
pub mod config;
pub mod roster;
pub mod stats;
mod strategy;
pub mod types;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use acd::Acd;
pub use attendance::{ShiftAttendance, shift_attendance};
pub use config::{
    DutyPolicy, QueueAgentConfig, QueueConfig, QueueConfigError, QueueConfigLoadError,
    QueuesConfig, RosterEntry, Strategy, TierRule,
};
pub use roster::{SignInRate, on_duty, sign_in_rate};
pub use stats::{
    AgentSnapshot, QueueLogEntry, QueueLogEvent, QueueSnapshot, WaitingCall, presence_from_log,
};
pub use types::{
    AgentId, AgentState, CallbackGiveUp, CallbackResult, LegFailure, Party, PauseReason,
    QueueAction, QueueError, QueueInput, ReleaseReason, Time, TransferTarget, TransferTargetError,
    TransitionReason, VoiceMessageReason,
};

use crate::ivr::prompt::{PromptRef, queue_position};

/// The play list for an [`QueueAction::Announce`]: "您前面还有 n 位来电人" with
/// n = `position - 1` callers ahead.
#[must_use]
pub fn position_prompts(position: u32) -> Vec<PromptRef> {
    queue_position(position.saturating_sub(1))
}

/// The play list offering the callback: "如需挂机等候回电，请按" + the key ("星号键",
/// "井号键" or the digit). Empty for a key no phone has.
#[must_use]
pub fn callback_offer_prompts(key: char) -> Vec<PromptRef> {
    let key = match key {
        '*' => PromptRef::prompt("key_star"),
        '#' => PromptRef::prompt("key_pound"),
        d if d.is_ascii_digit() => PromptRef::prompt(format!("digit_{d}").as_str()),
        _ => return Vec::new(),
    };
    vec![PromptRef::prompt("callback_offer"), key]
}

/// Feature code: sign in (签到).
pub const SIGN_IN_CODE: &str = "*11";
/// Feature code: sign out (签退).
pub const SIGN_OUT_CODE: &str = "*12";
/// Feature code: pause; digits after it are the reason (`*13` + `2` → reason `"2"`).
pub const PAUSE_CODE: &str = "*13";
/// Feature code: end a pause.
pub const UNPAUSE_CODE: &str = "*14";

/// The ACD input for a feature code an agent dialled from their softphone (`*11` sign
/// in, `*12` sign out, `*13[reason digits]` pause, `*14` unpause); `None` if `dialled`
/// is not one of them.
#[must_use]
pub fn feature_code_input(agent: AgentId, dialled: &str) -> Option<QueueInput> {
    let dialled = dialled.trim();
    match dialled {
        SIGN_IN_CODE => Some(QueueInput::SignIn { agent }),
        SIGN_OUT_CODE => Some(QueueInput::SignOut { agent }),
        UNPAUSE_CODE => Some(QueueInput::Unpause { agent }),
        _ => {
            let reason = dialled.strip_prefix(PAUSE_CODE)?;
            if !reason.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let reason = if reason.is_empty() { "break" } else { reason };
            Some(QueueInput::Pause {
                agent,
                reason: PauseReason::new(reason),
            })
        }
    }
}
