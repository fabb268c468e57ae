//! Property tests over random command sequences by random actors.

use chrono::TimeDelta;
use proptest::prelude::*;

use super::deadlines::FEEDBACK_CAP_WORKING_DAYS;
use super::tests::{
    World, actor, agent, callback_staff, dispatcher, fields, lixia, lixia_head, moment, reviewer,
    shizhong, unit,
};
use super::*;

fn actors() -> Vec<Actor> {
    vec![
        agent(),
        dispatcher(),
        lixia(),
        lixia_head(),
        shizhong(),
        actor("shizhong-head", Role::UnitHead, "jinan-shizhong"),
        reviewer(),
        callback_staff(),
        actor("supervisor", Role::Supervisor, "jinan"),
        actor("prov-dispatcher", Role::Dispatcher, units::SHANDONG),
        actor("prov-callback", Role::CallbackStaff, units::SHANDONG),
        actor("qingdao-handler", Role::UnitHandler, "qingdao-shinan"),
        actor("notary-handler", Role::UnitHandler, "jinan-lixia-notary"),
        Actor::system(unit("jinan")),
    ]
}

fn text(present: bool) -> String {
    if present {
        "说明".to_owned()
    } else {
        String::new()
    }
}

/// Commands that move an order forward, drawn more often than the rest (withdrawal
/// in particular) so random runs reach callbacks, redo and second callbacks.
const PROGRESS: [u8; 14] = [0, 2, 4, 6, 9, 10, 11, 12, 13, 14, 14, 14, 1, 8];

fn command(choice: u8, param: u8, has_text: bool) -> Command {
    let choice = match choice.checked_sub(19) {
        Some(extra) => PROGRESS[usize::from(extra) % PROGRESS.len()],
        // Withdrawal ends a run: keep it rare.
        None if choice == 18 && param >= 16 => PROGRESS[usize::from(param) % PROGRESS.len()],
        None => choice,
    };
    let decision = if param % 2 == 0 {
        Decision::Approve
    } else {
        Decision::Reject
    };
    match choice {
        0 => Command::Submit,
        1 => Command::AnswerDirectly {
            answer: text(has_text),
        },
        2 => Command::Dispatch {
            units: match param % 4 {
                0 => vec![unit("jinan-lixia")],
                1 => vec![unit("jinan-shizhong"), unit("jinan-lixia")],
                2 => vec![unit("qingdao-shinan")],
                _ => Vec::new(),
            },
            category: (param % 5 == 0).then_some(Category::Case),
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        },
        3 => Command::ReturnUpward {
            reason: text(has_text),
        },
        4 => Command::Sign,
        5 => Command::Return {
            reason: text(has_text),
        },
        6 => Command::Start,
        7 => Command::RequestExtension {
            extra_working_days: u32::from(param % 13),
            reason: text(has_text),
        },
        8 => Command::DecideExtension {
            decision,
            reason: text(has_text),
        },
        9 => Command::DraftReply {
            text: text(has_text),
        },
        10 => Command::Review {
            decision,
            reason: text(has_text),
        },
        11 => Command::Reply {
            text: text(has_text),
        },
        12 => Command::SendReviewedReply,
        13 => Command::FeedBack {
            note: text(has_text),
        },
        14 => Command::RecordCallback {
            outcome: match param % 5 {
                0 => CallbackOutcome::Satisfied,
                1 => CallbackOutcome::ClosedOnJudgement {
                    satisfaction: Satisfaction::BasicallySatisfied,
                    ground: JudgementGround::UnreasonableDemand,
                },
                2 => CallbackOutcome::Redo {
                    target: RedoTarget::Unit,
                },
                3 => CallbackOutcome::Redo {
                    target: RedoTarget::Agent,
                },
                _ => CallbackOutcome::Dissatisfied,
            },
            note: text(has_text),
        },
        15 => Command::Remind {
            deadline: match param % 3 {
                0 => DeadlineKind::Transfer,
                1 => DeadlineKind::Feedback,
                _ => DeadlineKind::Callback,
            },
            level: ReminderLevel::Yellow,
            note: String::new(),
        },
        16 => Command::Supervise {
            note: text(has_text),
        },
        17 => Command::AddNote {
            note: text(has_text),
        },
        _ => Command::Withdraw {
            reason: text(has_text),
            // Half confirmed on the order's call, half not (refused unless a supervisor).
            call_id: (param % 2 == 0).then(|| super::model::CallId("call-1".to_owned())),
        },
    }
}

/// Invariants that must hold after every accepted command.
fn check_invariants(order: &Order, events: &[Event]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        &Order::replay(events),
        order,
        "replay must rebuild the order"
    );
    for (index, pair) in events.windows(2).enumerate() {
        prop_assert_eq!(pair[1].seq, pair[0].seq + 1, "seq gap at {}", index);
        prop_assert_eq!(pair[1].state_before, pair[0].state_after);
        prop_assert!(pair[1].at >= pair[0].at, "events back-dated");
    }
    let deadlines = order
        .deadlines
        .ok_or_else(|| TestCaseError::fail("no deadlines"))?;
    prop_assert!(deadlines.feedback.due.at <= deadlines.feedback_cap.at);
    prop_assert!(deadlines.feedback_working_days <= FEEDBACK_CAP_WORKING_DAYS);
    prop_assert_eq!(order.state == State::Closed, order.closing.is_some());
    if let Some(closing) = &order.closing {
        prop_assert!(
            order.satisfaction.is_some() || closing.reason.allows_without_satisfaction(),
            "closed as {:?} without satisfaction",
            closing.reason
        );
        if matches!(closing.reason, CloseReason::Answered | CloseReason::FedBack) {
            prop_assert_eq!(
                order.fields.urgency,
                Urgency::Normal,
                "urgent closed before callback"
            );
        }
        if matches!(
            closing.reason,
            CloseReason::Judgement(_) | CloseReason::SpecialFlag | CloseReason::Withdrawn
        ) {
            prop_assert!(!closing.note.is_empty(), "closing needs a note");
        }
    }
    if matches!(
        order.state,
        State::Signed | State::InProgress | State::ReplyDrafted | State::Reviewed | State::Replied
    ) && order.reply.is_none()
    {
        let lead = order
            .lead_unit
            .as_ref()
            .ok_or_else(|| TestCaseError::fail("no lead"))?;
        prop_assert!(order.is_assigned_to(lead), "lead not among the units");
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_command_sequences_keep_the_order_consistent(
        category in 0u8..4,
        urgent in any::<bool>(),
        notary in any::<bool>(),
        start in 0usize..4,
        steps in proptest::collection::vec(
            (0usize..14, 0u8..60, any::<u8>(), any::<bool>(), 0i64..4320, proptest::bool::weighted(0.8)),
            1..200,
        ),
    ) {
        let world = World::new();
        let ctx = world.ctx();
        let people = actors();
        let received = ["2025-09-30T16:00+08:00", "2024-02-08T10:00+08:00", "2026-12-28T09:00+08:00", "2025-10-12T23:30+08:00"][start];
        let mut intake = fields(
            [Category::Consultation, Category::Complaint, Category::Suggestion, Category::Case][usize::from(category)],
            if urgent { Urgency::Urgent } else { Urgency::Normal },
            received,
        );
        if notary {
            intake.area = BusinessArea::Notary;
        }
        let mut now = moment(received);
        let (mut order, mut events) = apply(
            &Order::new(OrderId("p-1".to_owned())),
            Command::Create { fields: intake },
            &agent(),
            now,
            &ctx,
        ).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_invariants(&order, &events)?;
        for (who, choice, param, has_text, minutes, helpful) in steps {
            now += TimeDelta::minutes(minutes);
            // Mostly let whoever may issue the command do it (to reach deep states);
            // sometimes insist on a random actor (to exercise refusals).
            let candidates: Vec<&Actor> = if helpful {
                people.iter().collect()
            } else {
                people.get(who).into_iter().collect()
            };
            let accepted = candidates.into_iter().find_map(|person| {
                apply(&order, command(choice, param, has_text), person, now, &ctx).ok()
            });
            if let Some((next, new_events)) = accepted {
                prop_assert!(!new_events.is_empty(), "accepted command without event");
                prop_assert_eq!(new_events.first().map(|e| e.seq), Some(order.version + 1));
                order = next;
                events.extend(new_events);
                check_invariants(&order, &events)?;
            }
        }
    }
}
