//! Events: the append-only history of an order (TK-LEDGER). The [`Order`] is a fold
//! of its events ([`Order::replay`]); [`super::apply`] only decides which events a
//! command produces, then folds them with the same code, so replay and live state
//! cannot disagree.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::deadlines::{DeadlineKind, DeadlineWindow, Deadlines, ReminderLevel};
use super::model::{
    Assignment, AssignmentStatus, BusinessArea, CallId, CallLog, CallSurveyAnswer, CallbackRecord,
    CallbackRound, Category, CloseReason, Closing, DissatisfactionReport, ExtensionRequest,
    FieldValues, IssuedReminder, LeaderAlert, MissedLimit, Order, OrderFields, OrderId, RedoTarget,
    Role, Satisfaction, State, UserId, WithdrawalConfirmation,
};
use super::units::UnitId;

/// How a dispatch was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchMode {
    /// By a dispatcher.
    Manual,
    /// By a routing rule, business area clear (W-9).
    Automatic,
    /// A county or township registering a matter it received itself handles it
    /// itself (W-7).
    SelfRegistered,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Order registered (draft).
    Created {
        /// Intake fields.
        fields: Box<OrderFields>,
        /// Limits computed from `received_at`.
        deadlines: Deadlines,
        /// Dispatch center (the city).
        dispatch_unit: UnitId,
        /// The short order number read out on the phone (`鲁12348-20261207-0042`),
        /// assigned by the store when the order is first written
        /// ([`crate::store::Store::set_order_numbering`]); absent on orders created
        /// before numbers existed (the chained events are never rewritten).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<String>,
    },
    /// Draft submitted for dispatch.
    Submitted,
    /// A consultation answered at once by the agent (H-8).
    AnsweredDirectly {
        /// The answer.
        answer: String,
    },
    /// The caller was told the matter is outside the justice system's remit and
    /// where to turn (解释说明, H-8): the order's answer.
    ExplainedOutsideRemit {
        /// The explanation given.
        explanation: String,
    },
    /// Pushed to units.
    Dispatched {
        /// Units (first signer leads).
        units: Vec<UnitId>,
        /// Category after the dispatcher's review.
        category: Category,
        /// Business area after the dispatcher's review.
        area: BusinessArea,
        /// Manual or automatic.
        mode: DispatchMode,
    },
    /// Dispatch added helping units after the lead signed (W-11): each is assigned, to
    /// sign like any co-handling unit.
    HelpingUnitsAdded {
        /// Units added.
        units: Vec<UnitId>,
        /// Why.
        reason: String,
    },
    /// Dispatch corrected intake fields on review (H-13-1), before dispatching.
    FieldsCorrected {
        /// The corrected values (named `fields` like the creation's, so the contact is
        /// masked the same way for those who may not see it).
        fields: Box<FieldValues>,
        /// The values they replace.
        before: Box<FieldValues>,
        /// The limits, when the urgency changed (transfer and callback recomputed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadlines: Option<Deadlines>,
    },
    /// Dispatch handed the order to the dispatch center above (H-13-3).
    ReturnedUpward {
        /// New dispatch unit.
        to_unit: UnitId,
        /// Why.
        reason: String,
    },
    /// A unit signed (签收).
    Signed {
        /// Unit.
        unit: UnitId,
        /// Whether it became the lead (first to sign, W-11).
        lead: bool,
    },
    /// A unit returned the order as not its business (W-10).
    Returned {
        /// Unit.
        unit: UnitId,
        /// Why.
        reason: String,
        /// Whether this took the order back to dispatch.
        back_to_dispatch: bool,
    },
    /// Handling started.
    Started,
    /// Extension asked (W-12).
    ExtensionRequested {
        /// Request.
        request: ExtensionRequest,
    },
    /// Extension approved by the unit head.
    ExtensionApproved {
        /// New feedback limit.
        feedback: DeadlineWindow,
        /// Working days it counts from receipt.
        feedback_working_days: u32,
        /// Note.
        reason: String,
    },
    /// Extension refused by the unit head.
    ExtensionRejected {
        /// Why.
        reason: String,
    },
    /// Complaint / case reply drafted for review (W-13).
    ReplyDrafted {
        /// Draft.
        text: String,
    },
    /// Reviewer approved the draft.
    ReviewApproved {
        /// Note.
        reason: String,
    },
    /// Reviewer rejected the draft: back to handling.
    ReviewRejected {
        /// Why.
        reason: String,
    },
    /// The unit replied.
    Replied {
        /// Reply.
        text: String,
    },
    /// The result was fed back to the caller (H-9).
    FedBack {
        /// Note.
        note: String,
    },
    /// Closed (办结).
    Closed {
        /// Why (carries the rule).
        reason: CloseReason,
        /// Note.
        note: String,
    },
    /// A callback was made (回访).
    CallbackRecorded {
        /// Round.
        round: CallbackRound,
        /// Satisfaction.
        satisfaction: Satisfaction,
        /// Note.
        note: String,
        /// Who made it (the event's actor), kept in the projection so the second
        /// callback can refuse the same person (W-14). In the event rather than taken
        /// from the actor so that histories written before replay to the snapshots
        /// stored then (absent → not serialized → same hash).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// Sent back to be redone (重办, H-14).
    RedoOrdered {
        /// Agent or unit.
        target: RedoTarget,
        /// Why.
        reason: String,
    },
    /// Pushed to the supervising unit for a second callback (W-14); the caller's
    /// dissatisfaction is reported to the unit within one working day (H-9).
    EscalatedForSecondCallback {
        /// Supervising unit.
        to_unit: UnitId,
        /// When the report to the unit is due.
        report_due: crate::calendar::Deadline,
    },
    /// Flagged for study (特殊标记, W-14).
    SpecialFlagged {
        /// Why.
        reason: String,
    },
    /// A caller's full contact was shown to a role that sees it masked (H-12-4): who and
    /// when are the event's, why is here. The number itself is not.
    ContactRevealed {
        /// Why it was needed.
        reason: String,
    },
    /// A supervisor's note on a flagged order under study (W-14 研究处理).
    StudyNoteAdded {
        /// Note.
        note: String,
    },
    /// The supervising unit's decision ending the study of a flagged order (W-14); the
    /// order closes with it.
    StudyConcluded {
        /// What was decided and done.
        result: String,
    },
    /// Reminder (催办, H-13-4). Does not change state.
    Reminded {
        /// Limit.
        deadline: DeadlineKind,
        /// Level.
        level: ReminderLevel,
        /// The limit it was raised for.
        due: DateTime<FixedOffset>,
        /// Note.
        note: String,
    },
    /// Supervision press (督办, W-18). Does not change state.
    Supervised {
        /// Note.
        note: String,
    },
    /// A note by a handling unit (co-handlers' contributions). Does not change state.
    NoteAdded {
        /// Note.
        note: String,
    },
    /// The post-call survey of the linked call (recorded by the server). Does not
    /// change state.
    CallSurveyRecorded {
        /// The call.
        call_id: CallId,
        /// The caller's answer.
        answer: CallSurveyAnswer,
    },
    /// Provisional limits recomputed with new calendar data.
    DeadlinesRecomputed {
        /// New limits.
        deadlines: Deadlines,
    },
    /// A limit passed unmet, recorded once by the scheduler: the urgent order's hour
    /// for the transfer (H-13-2), the dissatisfaction report (H-9). Does not change
    /// state.
    LimitMissed {
        /// Which limit.
        deadline: DeadlineKind,
        /// When it fell.
        due: DateTime<FixedOffset>,
    },
    /// The caller's dissatisfaction was reported to the handling unit (H-9), by the
    /// callback clerk or the supervising unit. Does not change state.
    DissatisfactionReported {
        /// The unit told.
        unit: UnitId,
        /// What it was told.
        note: String,
    },
    /// The city's leaders were told (H-13-2 报告领导), by the scheduler. Does not
    /// change state.
    LeadersAlerted {
        /// Why.
        alert: LeaderAlert,
        /// The leaders' names as configured then (empty: none configured).
        leaders: Vec<String>,
    },
    /// The caller withdrew the demand (the order is closed, never deleted).
    Withdrawn {
        /// Why.
        reason: String,
        /// The caller's confirmation or the supervisor's approval. Absent in events
        /// written before withdrawals needed one (their bytes, and so the ledger's
        /// hashes, stay as they were).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirmation: Option<WithdrawalConfirmation>,
    },
    /// A telephone fact about the order's call, by the system (callback attempts,
    /// live transfer to a unit). Does not change state.
    CallLogged {
        /// What happened.
        call: CallLog,
        /// The same for people.
        note: String,
    },
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Order.
    pub order_id: OrderId,
    /// Position in the order's history, from 1.
    pub seq: u64,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Who.
    pub actor: UserId,
    /// Under which role.
    pub role: Role,
    /// Actor's unit.
    pub unit: UnitId,
    /// State before.
    pub state_before: State,
    /// State after.
    pub state_after: State,
    /// What (payload, including reasons).
    pub kind: EventKind,
}

impl Event {
    /// Stable serialization for hashing in a chained ledger: compact JSON with fields
    /// in declaration order (no maps, no floats), so the same event always gives the
    /// same bytes. Plain data of these types cannot fail to serialize; an empty
    /// vector would only come from a serializer bug.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Order {
    /// Rebuilds an order from its events.
    #[must_use]
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Order {
        let mut order = Order::default();
        for event in events {
            order.fold(event);
        }
        order
    }

    /// Applies one event's effect. Total: never fails, so a stored history always
    /// rebuilds (validation happened when the event was produced).
    pub fn fold(&mut self, event: &Event) {
        self.version = event.seq;
        self.last_event_at = Some(event.at);
        match &event.kind {
            EventKind::Created {
                fields,
                deadlines,
                dispatch_unit,
                number,
            } => {
                self.id = event.order_id.clone();
                self.number.clone_from(number);
                self.fields = fields.as_ref().clone();
                self.deadlines = Some(*deadlines);
                self.dispatch_unit = Some(dispatch_unit.clone());
                self.state = State::Draft;
            }
            EventKind::Submitted => self.state = State::PendingDispatch,
            EventKind::AnsweredDirectly { answer } => {
                self.reply = Some(answer.clone());
                self.completed_at.get_or_insert(event.at);
                self.state = State::FedBack;
            }
            EventKind::ExplainedOutsideRemit { explanation } => {
                self.reply = Some(explanation.clone());
                self.fields.area = BusinessArea::Other;
                self.completed_at.get_or_insert(event.at);
                self.state = State::FedBack;
            }
            EventKind::Dispatched {
                units,
                category,
                area,
                ..
            } => {
                self.assignments = units
                    .iter()
                    .map(|unit| Assignment {
                        unit: unit.clone(),
                        status: AssignmentStatus::Assigned,
                    })
                    .collect();
                self.lead_unit = None;
                self.fields.category = *category;
                self.fields.area = *area;
                if self.dispatched_at.is_none() {
                    self.dispatched_by = Some(event.actor.clone());
                }
                self.dispatched_at.get_or_insert(event.at);
                self.state = State::Dispatched;
            }
            EventKind::HelpingUnitsAdded { units, .. } => {
                for unit in units {
                    if !self.assignments.iter().any(|a| &a.unit == unit) {
                        self.assignments.push(Assignment {
                            unit: unit.clone(),
                            status: AssignmentStatus::Assigned,
                        });
                    }
                }
            }
            EventKind::FieldsCorrected {
                fields, deadlines, ..
            } => {
                if let Some(category) = fields.category {
                    self.fields.category = category;
                }
                if let Some(area) = fields.area {
                    self.fields.area = area;
                }
                if let Some(urgency) = fields.urgency {
                    self.fields.urgency = urgency;
                }
                if let Some(contact) = &fields.contact {
                    self.fields.contact = contact.clone();
                }
                if let Some(deadlines) = deadlines {
                    self.deadlines = Some(*deadlines);
                }
            }
            EventKind::ReturnedUpward { to_unit, .. } => {
                self.dispatch_unit = Some(to_unit.clone());
                self.state = State::PendingDispatch;
            }
            EventKind::Signed { unit, lead } => {
                for assignment in &mut self.assignments {
                    if &assignment.unit == unit {
                        assignment.status = AssignmentStatus::Signed;
                    }
                }
                if *lead {
                    self.lead_unit = Some(unit.clone());
                    self.state = State::Signed;
                }
            }
            EventKind::Returned {
                unit,
                back_to_dispatch,
                ..
            } => {
                self.returned_by.push(unit.clone());
                self.assignments.retain(|a| &a.unit != unit);
                if *back_to_dispatch {
                    self.assignments.clear();
                    self.lead_unit = None;
                    self.pending_extension = None;
                    self.draft_reply = None;
                    self.state = State::PendingDispatch;
                }
            }
            EventKind::Started => self.state = State::InProgress,
            EventKind::ExtensionRequested { request } => {
                self.pending_extension = Some(request.clone());
            }
            EventKind::ExtensionApproved {
                feedback,
                feedback_working_days,
                ..
            } => {
                if let Some(deadlines) = &mut self.deadlines {
                    deadlines.feedback = *feedback;
                    deadlines.feedback_working_days = *feedback_working_days;
                }
                self.pending_extension = None;
            }
            EventKind::ExtensionRejected { .. } => self.pending_extension = None,
            EventKind::ReplyDrafted { text } => {
                self.draft_reply = Some(text.clone());
                self.state = State::ReplyDrafted;
            }
            EventKind::ReviewApproved { .. } => self.state = State::Reviewed,
            EventKind::ReviewRejected { .. } => self.state = State::InProgress,
            EventKind::Replied { text } => {
                self.reply = Some(text.clone());
                self.state = State::Replied;
            }
            EventKind::FedBack { .. } => {
                self.completed_at.get_or_insert(event.at);
                self.state = State::FedBack;
            }
            EventKind::Closed { reason, note } => {
                self.closing = Some(Closing {
                    reason: *reason,
                    note: note.clone(),
                    at: event.at,
                    callbacks_before: u32::try_from(self.callbacks.len()).unwrap_or(u32::MAX),
                });
                self.pending_extension = None;
                self.state = State::Closed;
            }
            EventKind::CallbackRecorded {
                round,
                satisfaction,
                by,
                ..
            } => {
                self.callbacks.push(CallbackRecord {
                    round: *round,
                    satisfaction: *satisfaction,
                    at: event.at,
                    by: by.clone(),
                });
                self.satisfaction = Some(*satisfaction);
            }
            EventKind::RedoOrdered { target, .. } => {
                self.redo_count = self.redo_count.saturating_add(1);
                self.closing = None;
                self.second_callback_unit = None;
                self.draft_reply = None;
                self.reply = None;
                self.state = match target {
                    RedoTarget::Agent => State::PendingDispatch,
                    RedoTarget::Unit => State::InProgress,
                };
            }
            EventKind::EscalatedForSecondCallback {
                to_unit,
                report_due,
            } => {
                let unit = self
                    .lead_unit
                    .clone()
                    .or_else(|| self.dispatch_unit.clone())
                    .unwrap_or_else(|| self.fields.city.clone());
                self.dissatisfaction_report = Some(DissatisfactionReport {
                    unit,
                    window: DeadlineWindow::from_due(*report_due),
                    reported_at: None,
                    reported_by: None,
                });
                self.closing = None;
                self.second_callback_unit = Some(to_unit.clone());
                self.state = State::SecondCallback;
            }
            EventKind::SpecialFlagged { .. } => {
                // Histories written before W-14's study close it in the next event.
                self.special_flag = true;
                self.state = State::SpecialStudy;
            }
            EventKind::StudyNoteAdded { .. }
            | EventKind::StudyConcluded { .. }
            | EventKind::ContactRevealed { .. } => {}
            EventKind::Reminded {
                deadline,
                level,
                due,
                ..
            } => self.reminders.push(IssuedReminder {
                deadline: *deadline,
                level: *level,
                due: *due,
            }),
            EventKind::Supervised { .. } => {
                self.supervisions = self.supervisions.saturating_add(1);
            }
            EventKind::DeadlinesRecomputed { deadlines } => self.deadlines = Some(*deadlines),
            EventKind::NoteAdded { .. } => {}
            EventKind::CallSurveyRecorded { answer, .. } => self.call_survey = Some(*answer),
            EventKind::Withdrawn { .. } => {}
            EventKind::LimitMissed { deadline, due } => self.missed_limits.push(MissedLimit {
                deadline: *deadline,
                due: *due,
            }),
            EventKind::DissatisfactionReported { .. } => {
                if let Some(report) = &mut self.dissatisfaction_report {
                    report.reported_at.get_or_insert(event.at);
                    report.reported_by.get_or_insert(event.actor.clone());
                }
            }
            EventKind::LeadersAlerted { alert, .. } => {
                if !self.leader_alerts.contains(alert) {
                    self.leader_alerts.push(*alert);
                }
            }
            EventKind::CallLogged { call, .. } => {
                if let Some(call_id) = call.caller_reached_on()
                    && !self.has_caller_call(call_id)
                {
                    self.caller_calls.push(call_id.clone());
                }
            }
        }
    }
}
