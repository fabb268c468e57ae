//! A call the hotline places itself, sans-IO: a person's phone first (the agent's
//! registered extension), then, once they are on and the owner says go on, the outside
//! party through the trunk; bridged when both are up. The callback in queue
//! (`server/callback.rs`) runs one per attempt.
//!
//! Why the person first: the citizen was promised a person, so they never answer to a
//! robot or to hold music, and the hotline never rings a citizen without someone ready.
//! The person hears hold music while the outside phone rings.
//!
//! Fed `(now, PlacedInput)`; [`PlacedCall::poll_output`] says what to do,
//! [`PlacedCall::poll_timeout`] when to call [`PlacedCall::handle_timeout`]. What the
//! media does (SDP, RTP, recording) stays with the shell, which reports whether an
//! answer was usable and when a leg's audio stopped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::queue::{CallbackResult, LegFailure, Party};
use crate::sip::call_leg::EndReason;

use super::legs::leg_failure;

/// Longest call the hotline places before it ends it.
pub const MAX_PLACED_CALL: Duration = Duration::from_secs(4 * 3600);

/// One of the two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedSide {
    /// The hotline person's phone, rung first.
    Person,
    /// The outside party, dialled once the person is on.
    Other,
}

/// What happened on the legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacedInput {
    /// Begin: ring the person.
    Start,
    /// The person's leg could not be placed (no registration, no ports).
    PersonNotPlaced,
    /// The person answered; `usable`: their SDP answer could be used.
    PersonAnswered { usable: bool },
    /// After [`PlacedOutput::PersonOn`]: go on and dial the outside party.
    Proceed,
    /// The owner lets go (e.g. the ACD withdrew the offer): end both legs, report
    /// nothing.
    Withdraw,
    /// The outside leg could not be placed (the outbound rule refused it, no ports).
    OtherNotPlaced,
    /// The outside party answered; `usable` as above.
    OtherAnswered { usable: bool },
    /// A leg's dialog ended.
    Ended { side: PlacedSide, reason: EndReason },
    /// A bridged or answered leg's audio stopped.
    MediaLost(PlacedSide),
    /// After [`PlacedOutput::Bridge`]: the two legs could not be joined (a leg without
    /// media): the outside party counts as not reached.
    BridgeFailed,
}

/// How the call ended, for the owner's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedEnd {
    /// The person's phone did not take it.
    PersonFailed(LegFailure),
    /// The outside party was not reached (the person was on).
    OtherFailed(CallbackResult),
    /// The person hung up while the outside phone rang.
    PersonLeft,
    /// They talked; `who` hung up first (`System`: the longest call, or lost audio).
    Talked { who: Party },
    /// The owner withdrew.
    Withdrawn,
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacedOutput {
    /// Ring the person's phone.
    RingPerson,
    /// The person is on: the owner checks it still wants the call and answers with
    /// [`PlacedInput::Proceed`] or [`PlacedInput::Withdraw`].
    PersonOn,
    /// Hold music to the person.
    HoldPerson,
    /// Dial the outside party through the trunk.
    DialOther,
    /// Both are up: relay and record.
    Bridge,
    /// CANCEL or BYE this leg.
    HangUp(PlacedSide),
    /// The call is over; nothing more comes.
    Ended(PlacedEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    RingingPerson { until: Instant },
    PersonOn,
    DiallingOther { until: Instant },
    Bridged { until: Instant },
    Over,
}

/// One placed call (see the module docs).
#[derive(Debug)]
pub struct PlacedCall {
    phase: Phase,
    person_ring: Duration,
    other_ring: Duration,
    outputs: VecDeque<PlacedOutput>,
}

impl PlacedCall {
    /// The person's phone rings at most `person_ring` (a backstop when the owner times
    /// it), the outside party's `other_ring`.
    pub fn new(person_ring: Duration, other_ring: Duration) -> PlacedCall {
        PlacedCall {
            phase: Phase::Idle,
            person_ring,
            other_ring,
            outputs: VecDeque::new(),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<PlacedOutput> {
        self.outputs.pop_front()
    }

    /// When [`PlacedCall::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::RingingPerson { until }
            | Phase::DiallingOther { until }
            | Phase::Bridged { until } => Some(until),
            _ => None,
        }
    }

    /// True once the call is over.
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// True while both legs talk.
    pub fn is_bridged(&self) -> bool {
        matches!(self.phase, Phase::Bridged { .. })
    }

    /// Ring timeouts and the longest call.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::RingingPerson { until } if now >= until => {
                self.end(
                    &[PlacedSide::Person],
                    PlacedEnd::PersonFailed(LegFailure::NoAnswer),
                );
            }
            Phase::DiallingOther { until } if now >= until => {
                self.end(
                    &[PlacedSide::Other, PlacedSide::Person],
                    PlacedEnd::OtherFailed(CallbackResult::NoAnswer),
                );
            }
            Phase::Bridged { until } if now >= until => {
                self.end(
                    &[PlacedSide::Person, PlacedSide::Other],
                    PlacedEnd::Talked { who: Party::System },
                );
            }
            _ => {}
        }
    }

    /// Feed one input.
    pub fn handle(&mut self, now: Instant, input: PlacedInput) {
        match (self.phase, input) {
            (Phase::Idle, PlacedInput::Start) => {
                self.phase = Phase::RingingPerson {
                    until: now + self.person_ring,
                };
                self.outputs.push_back(PlacedOutput::RingPerson);
            }
            (Phase::Over, _) => {}
            (_, PlacedInput::Withdraw) => {
                self.end(
                    &[PlacedSide::Person, PlacedSide::Other],
                    PlacedEnd::Withdrawn,
                );
            }
            (Phase::RingingPerson { .. }, PlacedInput::PersonNotPlaced) => {
                self.end(&[], PlacedEnd::PersonFailed(LegFailure::Unreachable));
            }
            (Phase::RingingPerson { .. }, PlacedInput::PersonAnswered { usable: false }) => {
                self.end(
                    &[PlacedSide::Person],
                    PlacedEnd::PersonFailed(LegFailure::Unreachable),
                );
            }
            (Phase::RingingPerson { .. }, PlacedInput::PersonAnswered { usable: true }) => {
                self.phase = Phase::PersonOn;
                self.outputs.push_back(PlacedOutput::PersonOn);
            }
            (Phase::PersonOn, PlacedInput::Proceed) => {
                self.phase = Phase::DiallingOther {
                    until: now + self.other_ring,
                };
                self.outputs.push_back(PlacedOutput::HoldPerson);
                self.outputs.push_back(PlacedOutput::DialOther);
            }
            (Phase::DiallingOther { .. }, PlacedInput::OtherNotPlaced) => {
                self.end(
                    &[PlacedSide::Person],
                    PlacedEnd::OtherFailed(CallbackResult::Unreachable),
                );
            }
            (Phase::DiallingOther { .. }, PlacedInput::OtherAnswered { usable: false }) => {
                self.end(
                    &[PlacedSide::Other, PlacedSide::Person],
                    PlacedEnd::OtherFailed(CallbackResult::Unreachable),
                );
            }
            (Phase::DiallingOther { .. }, PlacedInput::OtherAnswered { usable: true }) => {
                self.phase = Phase::Bridged {
                    until: now + MAX_PLACED_CALL,
                };
                self.outputs.push_back(PlacedOutput::Bridge);
            }
            (Phase::Bridged { .. }, PlacedInput::BridgeFailed) => {
                self.end(
                    &[PlacedSide::Other, PlacedSide::Person],
                    PlacedEnd::OtherFailed(CallbackResult::Unreachable),
                );
            }
            (phase, PlacedInput::Ended { side, reason }) => self.leg_ended(phase, side, reason),
            (phase, PlacedInput::MediaLost(side)) => self.media_lost(phase, side),
            // Late or crossing events (an answer after a CANCEL): the legs sort them.
            _ => {}
        }
    }

    fn leg_ended(&mut self, phase: Phase, side: PlacedSide, reason: EndReason) {
        match (phase, side) {
            (Phase::RingingPerson { .. }, PlacedSide::Person) => {
                self.end(&[], PlacedEnd::PersonFailed(leg_failure(reason)));
            }
            (Phase::PersonOn | Phase::DiallingOther { .. }, PlacedSide::Person) => {
                self.end(&[PlacedSide::Other], PlacedEnd::PersonLeft);
            }
            (Phase::DiallingOther { .. }, PlacedSide::Other) => {
                self.end(
                    &[PlacedSide::Person],
                    PlacedEnd::OtherFailed(attempt_result(reason)),
                );
            }
            (Phase::Bridged { .. }, PlacedSide::Person) => {
                self.end(
                    &[PlacedSide::Other],
                    PlacedEnd::Talked { who: Party::Agent },
                );
            }
            (Phase::Bridged { .. }, PlacedSide::Other) => {
                self.end(
                    &[PlacedSide::Person],
                    PlacedEnd::Talked { who: Party::Caller },
                );
            }
            _ => {}
        }
    }

    fn media_lost(&mut self, phase: Phase, _side: PlacedSide) {
        match phase {
            Phase::Bridged { .. } => self.end(
                &[PlacedSide::Person, PlacedSide::Other],
                PlacedEnd::Talked { who: Party::System },
            ),
            Phase::PersonOn | Phase::DiallingOther { .. } => self.end(
                &[PlacedSide::Other, PlacedSide::Person],
                PlacedEnd::OtherFailed(CallbackResult::Unreachable),
            ),
            _ => {}
        }
    }

    fn end(&mut self, hang_up: &[PlacedSide], how: PlacedEnd) {
        for side in hang_up {
            self.outputs.push_back(PlacedOutput::HangUp(*side));
        }
        self.outputs.push_back(PlacedOutput::Ended(how));
        self.phase = Phase::Over;
    }
}

/// How an outside leg that ended before it answered counts.
pub fn attempt_result(reason: EndReason) -> CallbackResult {
    match reason {
        EndReason::Rejected { status: 486 | 600 } => CallbackResult::Busy,
        EndReason::Rejected {
            status: 408 | 480 | 487 | 603,
        }
        | EndReason::Cancelled
        | EndReason::LocalHangup => CallbackResult::NoAnswer,
        _ => CallbackResult::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: Duration = Duration::from_secs(20);

    fn started() -> (PlacedCall, Instant) {
        let now = Instant::now();
        let mut call = PlacedCall::new(Duration::from_secs(180), RING);
        call.handle(now, PlacedInput::Start);
        (call, now)
    }

    fn drain(call: &mut PlacedCall) -> Vec<PlacedOutput> {
        std::iter::from_fn(|| call.poll_output()).collect()
    }

    fn ms(t: Instant, ms: u64) -> Instant {
        t + Duration::from_millis(ms)
    }

    #[test]
    fn the_person_first_then_the_outside_party_then_both_talk_until_one_hangs_up() {
        let (mut call, t) = started();
        assert_eq!(drain(&mut call), vec![PlacedOutput::RingPerson]);
        call.handle(ms(t, 3_000), PlacedInput::PersonAnswered { usable: true });
        assert_eq!(drain(&mut call), vec![PlacedOutput::PersonOn]);
        call.handle(ms(t, 3_000), PlacedInput::Proceed);
        assert_eq!(
            drain(&mut call),
            vec![PlacedOutput::HoldPerson, PlacedOutput::DialOther]
        );
        assert_eq!(call.poll_timeout(), Some(ms(t, 3_000) + RING));
        call.handle(ms(t, 9_000), PlacedInput::OtherAnswered { usable: true });
        assert_eq!(drain(&mut call), vec![PlacedOutput::Bridge]);
        assert!(call.is_bridged());
        call.handle(
            ms(t, 60_000),
            PlacedInput::Ended {
                side: PlacedSide::Other,
                reason: EndReason::RemoteHangup,
            },
        );
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Person),
                PlacedOutput::Ended(PlacedEnd::Talked { who: Party::Caller }),
            ]
        );
        assert!(call.is_over());
    }

    #[test]
    fn an_outside_phone_that_rings_out_ends_both_legs_as_no_answer() {
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        drain(&mut call);
        call.handle_timeout(ms(t, 19_999));
        assert!(drain(&mut call).is_empty());
        call.handle_timeout(ms(t, 20_000));
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Other),
                PlacedOutput::HangUp(PlacedSide::Person),
                PlacedOutput::Ended(PlacedEnd::OtherFailed(CallbackResult::NoAnswer)),
            ]
        );
        // The CANCEL's 487 arriving later is no news.
        call.handle(
            ms(t, 20_050),
            PlacedInput::Ended {
                side: PlacedSide::Other,
                reason: EndReason::Cancelled,
            },
        );
        assert!(drain(&mut call).is_empty());
    }

    #[test]
    fn a_busy_outside_party_and_a_refused_dial_fail_the_attempt_and_free_the_person() {
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        drain(&mut call);
        call.handle(
            ms(t, 2_000),
            PlacedInput::Ended {
                side: PlacedSide::Other,
                reason: EndReason::Rejected { status: 486 },
            },
        );
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Person),
                PlacedOutput::Ended(PlacedEnd::OtherFailed(CallbackResult::Busy)),
            ]
        );
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        call.handle(t, PlacedInput::OtherNotPlaced);
        assert_eq!(
            drain(&mut call).last(),
            Some(&PlacedOutput::Ended(PlacedEnd::OtherFailed(
                CallbackResult::Unreachable
            )))
        );
    }

    #[test]
    fn the_persons_phone_declining_or_withdrawn_offer_never_dials_the_citizen() {
        let (mut call, t) = started();
        drain(&mut call);
        call.handle(
            ms(t, 1_000),
            PlacedInput::Ended {
                side: PlacedSide::Person,
                reason: EndReason::Rejected { status: 603 },
            },
        );
        assert_eq!(
            drain(&mut call),
            vec![PlacedOutput::Ended(PlacedEnd::PersonFailed(
                LegFailure::Rejected
            ))]
        );
        // An answer crossing the owner's withdrawal: nobody is dialled.
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Withdraw);
        let out = drain(&mut call);
        assert!(!out.contains(&PlacedOutput::DialOther), "{out:?}");
        assert_eq!(out.last(), Some(&PlacedOutput::Ended(PlacedEnd::Withdrawn)));
        // The backstop on the person's ring.
        let (mut call, t) = started();
        drain(&mut call);
        call.handle_timeout(t + Duration::from_secs(180));
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Person),
                PlacedOutput::Ended(PlacedEnd::PersonFailed(LegFailure::NoAnswer)),
            ]
        );
    }

    #[test]
    fn the_person_leaving_while_the_citizen_rings_cancels_the_citizens_phone() {
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        drain(&mut call);
        call.handle(
            ms(t, 5_000),
            PlacedInput::Ended {
                side: PlacedSide::Person,
                reason: EndReason::RemoteHangup,
            },
        );
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Other),
                PlacedOutput::Ended(PlacedEnd::PersonLeft),
            ]
        );
    }

    #[test]
    fn legs_that_cannot_be_joined_end_as_the_citizen_not_reached() {
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        call.handle(t, PlacedInput::OtherAnswered { usable: true });
        drain(&mut call);
        call.handle(t, PlacedInput::BridgeFailed);
        assert_eq!(
            drain(&mut call),
            vec![
                PlacedOutput::HangUp(PlacedSide::Other),
                PlacedOutput::HangUp(PlacedSide::Person),
                PlacedOutput::Ended(PlacedEnd::OtherFailed(CallbackResult::Unreachable)),
            ]
        );
    }

    #[test]
    fn lost_audio_or_the_longest_call_ends_a_bridged_call_by_the_system() {
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        call.handle(t, PlacedInput::OtherAnswered { usable: true });
        drain(&mut call);
        call.handle(ms(t, 30_000), PlacedInput::MediaLost(PlacedSide::Other));
        assert_eq!(
            drain(&mut call).last(),
            Some(&PlacedOutput::Ended(PlacedEnd::Talked {
                who: Party::System
            }))
        );
        let (mut call, t) = started();
        call.handle(t, PlacedInput::PersonAnswered { usable: true });
        call.handle(t, PlacedInput::Proceed);
        call.handle(t, PlacedInput::OtherAnswered { usable: true });
        drain(&mut call);
        call.handle_timeout(t + MAX_PLACED_CALL);
        assert_eq!(
            drain(&mut call).last(),
            Some(&PlacedOutput::Ended(PlacedEnd::Talked {
                who: Party::System
            }))
        );
    }
}
