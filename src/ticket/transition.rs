//! The pure transition function [`apply`]: checks role, unit scope, time and state,
//! then returns the events a command produces and the order folded with them.

use chrono::{DateTime, FixedOffset};

use crate::calendar::Calendar;

use super::command::{CallbackOutcome, Command, Decision};
use super::deadlines::{
    DeadlineKind, DeadlineWindow, Deadlines, FEEDBACK_CAP_WORKING_DAYS, leader_alerts_due,
    limits_missed, window_of,
};
use super::event::{DispatchMode, Event, EventKind};
use super::model::{
    Actor, AssignmentStatus, BusinessArea, CallId, CallbackRound, Category, CloseReason, Contact,
    ExtensionRequest, FieldValues, Order, RedoTarget, Role, Satisfaction, State, Urgency, UserId,
    WithdrawalConfirmation, hidden_character,
};
use super::routing::RoutingRules;
use super::units::{UnitId, UnitKind, UnitTree};

/// The feedback note of a consultation the unit's reply answered (H-10), as the ledger
/// shows it. (Events recorded before it was Chinese say "consultation answered by the
/// unit".)
pub const CONSULTATION_ANSWERED_NOTE: &str = "承办单位已答复，即为对来电人的答复";

/// Pure data the transition function consults.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Working-day calendar.
    pub calendar: &'a Calendar,
    /// Units.
    pub units: &'a UnitTree,
    /// Automatic routing.
    pub routing: &'a RoutingRules,
}

/// Why a command was refused. Role and scope errors are distinct from state errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The command is not allowed in this state (or for this category).
    #[error("{command} is not allowed in state {state} (rule {rule})")]
    NotAllowed {
        /// Current state.
        state: State,
        /// Command refused.
        command: &'static str,
        /// Rule that forbids it.
        rule: &'static str,
    },
    /// None of the actor's roles may issue this command.
    #[error("{command} needs one of the roles {needed:?}; the actor has {held:?}")]
    RoleNotPermitted {
        /// Command refused.
        command: &'static str,
        /// Roles that may.
        needed: Vec<Role>,
        /// Roles held.
        held: Vec<Role>,
    },
    /// The actor's role may, but not from its unit on this order.
    #[error("{command}: unit {unit} has no authority over this order (rule {rule})")]
    OutOfScope {
        /// Command refused.
        command: &'static str,
        /// Actor's unit.
        unit: UnitId,
        /// Rule.
        rule: &'static str,
    },
    /// A required text (reason, note, answer) is empty.
    #[error("{command} needs a non-empty {field} (rule {rule})")]
    MissingText {
        /// Command refused.
        command: &'static str,
        /// Field.
        field: &'static str,
        /// Rule.
        rule: &'static str,
    },
    /// A name holding an invisible format character (zero-width or bidi control): it
    /// would display as another name in lists.
    #[error("{field} holds the invisible character U+{:04X}; names may not", u32::from(*.character))]
    HiddenCharacter {
        /// Field.
        field: &'static str,
        /// The first such character.
        character: char,
    },
    /// The order does not exist yet.
    #[error("order does not exist; create it first")]
    NotCreated,
    /// Create on an existing order.
    #[error("order already exists")]
    AlreadyExists,
    /// A unit id that is not in the tree.
    #[error("unknown unit {0}")]
    UnknownUnit(UnitId),
    /// The order's city is not a city unit.
    #[error("{0} is not a city")]
    NotACity(UnitId),
    /// Dispatch to no unit.
    #[error("dispatch needs at least one unit")]
    NoUnits,
    /// A helping unit that already handles the order (W-11).
    #[error("unit {0} already handles this order")]
    AlreadyHandling(UnitId),
    /// `received_at` after the moment of registration.
    #[error("received_at {received_at} is after now {now}")]
    ReceivedInFuture {
        /// Given receipt time.
        received_at: DateTime<FixedOffset>,
        /// Now.
        now: DateTime<FixedOffset>,
    },
    /// `now` before the last event: history cannot be back-dated (TK-LEDGER).
    #[error("now {now} is before the order's last event at {last} (rule TK-LEDGER)")]
    TimeWentBackwards {
        /// Last event time.
        last: DateTime<FixedOffset>,
        /// Now.
        now: DateTime<FixedOffset>,
    },
    /// Extension asked after the current limit (W-12).
    #[error("extension must be asked before the limit {deadline} (rule TK-EXTEND)")]
    ExtensionTooLate {
        /// Current limit.
        deadline: DateTime<FixedOffset>,
    },
    /// Extension beyond 15 working days from receipt (H-9).
    #[error(
        "extension to {requested_working_days} working days exceeds the cap of {cap_working_days} (rule TK-EXTEND)"
    )]
    ExtensionBeyondCap {
        /// Total asked.
        requested_working_days: u32,
        /// Cap.
        cap_working_days: u32,
    },
    /// Extension of zero days.
    #[error("an extension must add at least one working day")]
    ExtensionZero,
    /// A request is already waiting for the unit head.
    #[error("an extension request is already pending")]
    ExtensionAlreadyPending,
    /// Nothing to decide.
    #[error("no extension request is pending")]
    NoPendingExtension,
    /// The unit head deciding the extension they asked for themselves: a request
    /// needs a second person (W-12).
    #[error(
        "user {} asked for this extension and may not decide it; another unit head must \
         (rule TK-EXTEND)", .0.0
    )]
    ExtensionDecidedByRequester(UserId),
    /// Redo aimed at the agent for an order handled by a unit, or vice versa.
    #[error("redo target {target:?} does not fit: the order was answered {answered_by}")]
    RedoTargetMismatch {
        /// Target asked.
        target: RedoTarget,
        /// Who answered.
        answered_by: &'static str,
    },
    /// The order has no such limit (e.g. callback limit of a non-urgent order).
    #[error("the order has no {0:?} deadline")]
    NoDeadline(DeadlineKind),
    /// A withdrawal with neither the caller's confirmation nor a supervisor's approval:
    /// an order may not vanish from the figures on an agent's or dispatcher's word.
    #[error(
        "withdraw needs the caller's confirmation on record (call_id of a call or callback \
         in the order's history) or a supervisor's approval (rules W-19, H-17-5)"
    )]
    WithdrawalNotConfirmed,
    /// The call named as the caller's confirmation is not in the order's history.
    #[error(
        "call {} is not in the order's history: the caller's confirmation must be on \
         record (rule H-17-5)", .0.0
    )]
    WithdrawalCallNotOnRecord(CallId),
    /// The second callback comes from the handling unit's supervising unit (W-14), not
    /// from above or beside it.
    #[error(
        "the second callback is made by the supervising unit {supervising}, not by unit \
         {unit} (rule W-14)"
    )]
    SecondCallbackNotBySupervisingUnit {
        /// Actor's unit.
        unit: UnitId,
        /// The supervising unit the order was pushed to.
        supervising: UnitId,
    },
    /// The second callback by the person who made the first (W-14): another person
    /// must hear the caller again.
    #[error(
        "user {} made the first callback; the second must be made by another person \
         (rule W-14)", .0.0
    )]
    SecondCallbackBySameUser(UserId),
}

/// Where a role's authority must reach for a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Actor's unit covers the order's city.
    City,
    /// Actor's unit covers the order's dispatch center.
    Dispatch,
    /// Actor's unit is one the order is dispatched to.
    Assigned,
    /// Actor's unit is the lead unit.
    Lead,
    /// Actor's unit covers the lead unit (competent department).
    Reviewer,
    /// Actor's unit is the one that asked for the pending extension.
    ExtensionUnit,
    /// Actor's unit covers the city, the dispatch center or a handling unit.
    Subtree,
    /// First callback: covers the city; second: covers the supervising unit.
    Callback,
    /// Second callback only: covers the supervising unit.
    SecondCallback,
    /// Flagged order under study: covers the supervising unit (W-14).
    Study,
    /// A county or township registering what it received itself, in the order's city
    /// (W-7).
    OwnRegistration,
    /// Anywhere.
    Any,
}

fn permissions(command: &Command) -> (&'static [(Role, Scope)], &'static str) {
    use Role::{
        Agent, CallbackStaff, Dispatcher, ProvinceAdmin, Reviewer, Supervisor, System, UnitHandler,
        UnitHead,
    };
    use Scope::{
        Any, Assigned, Callback, City, Dispatch, ExtensionUnit, Lead, OwnRegistration,
        SecondCallback, Study, Subtree,
    };
    match command {
        Command::Create { .. } => (
            &[
                (Agent, City),
                (Dispatcher, City),
                (UnitHandler, OwnRegistration),
                (UnitHead, OwnRegistration),
                (System, Any),
            ],
            "TK-INTAKE",
        ),
        Command::Submit => (
            &[
                (Agent, City),
                (Dispatcher, Dispatch),
                (UnitHandler, OwnRegistration),
                (UnitHead, OwnRegistration),
                (System, Any),
            ],
            "TK-INTAKE",
        ),
        Command::AnswerDirectly { .. } => (&[(Agent, City)], "H-8"),
        Command::ExplainOutsideRemit { .. } => (&[(Agent, City), (Dispatcher, Dispatch)], "H-8"),
        Command::Dispatch { .. } => (&[(Dispatcher, Dispatch)], "TK-ROUTE"),
        Command::AddHelpingUnits { .. } => (&[(Dispatcher, Dispatch)], "W-11"),
        Command::ReturnUpward { .. } => (&[(Dispatcher, Dispatch)], "TK-RETURN"),
        Command::RecordCallSurvey { .. } => (&[(System, Any)], "CALL-ETIQUETTE"),
        Command::Sign | Command::AddNote { .. } => (
            &[(UnitHandler, Assigned), (UnitHead, Assigned)],
            "TK-COHANDLE",
        ),
        Command::Return { .. } => (
            &[(UnitHandler, Assigned), (UnitHead, Assigned)],
            "TK-RETURN",
        ),
        Command::Start
        | Command::DraftReply { .. }
        | Command::Reply { .. }
        | Command::SendReviewedReply => (&[(UnitHandler, Lead), (UnitHead, Lead)], "TK-COHANDLE"),
        Command::RequestExtension { .. } => (&[(UnitHandler, Lead), (UnitHead, Lead)], "TK-EXTEND"),
        Command::DecideExtension { .. } => (&[(UnitHead, ExtensionUnit)], "TK-EXTEND"),
        Command::Review { .. } => (&[(Reviewer, Scope::Reviewer)], "TK-REVIEW"),
        Command::FeedBack { .. } => (
            &[
                (UnitHandler, Lead),
                (UnitHead, Lead),
                (Agent, City),
                (CallbackStaff, City),
            ],
            "TK-CLOSE",
        ),
        // The system records a citizen's own rating from the public channel (W-14): the
        // same outcomes as a callback's, decided by the same rules.
        Command::RecordCallback { .. } => (
            &[
                (CallbackStaff, Callback),
                (Supervisor, SecondCallback),
                (System, Any),
            ],
            "TK-VISIT",
        ),
        Command::Remind { .. } => (
            &[(Dispatcher, Dispatch), (System, Any), (ProvinceAdmin, Any)],
            "TK-REMIND",
        ),
        Command::Supervise { .. } => (
            &[(Supervisor, Subtree), (ProvinceAdmin, Any)],
            "TK-SUPERVISE",
        ),
        Command::RevealContact { .. } => (
            &[
                (Agent, Any),
                (Dispatcher, Any),
                (UnitHandler, Any),
                (UnitHead, Any),
                (Reviewer, Any),
                (Supervisor, Any),
                (CallbackStaff, Any),
                (ProvinceAdmin, Any),
            ],
            "H-12-4",
        ),
        Command::StudyNote { .. } | Command::ConcludeStudy { .. } => {
            (&[(Supervisor, Study), (ProvinceAdmin, Any)], "W-14")
        }
        Command::Withdraw { .. } => (
            &[(Agent, City), (Dispatcher, Dispatch), (Supervisor, Subtree)],
            "TK-LEDGER",
        ),
        Command::RecomputeDeadlines => (&[(System, Any), (ProvinceAdmin, Any)], "TK-DEADLINE"),
        Command::LogCall { .. } => (&[(System, Any)], "CALL-CALLBACK"),
        Command::ReportDissatisfaction { .. } => (
            &[
                (CallbackStaff, City),
                (CallbackStaff, Study),
                (Supervisor, Study),
            ],
            "H-9",
        ),
        Command::RecordMissedLimit { .. } => (&[(System, Any)], "TK-DEADLINE"),
        Command::AlertLeaders { .. } => (&[(System, Any)], "H-13-2"),
    }
}

fn in_scope(
    scope: Scope,
    actor: &Actor,
    order: &Order,
    command: &Command,
    units: &UnitTree,
) -> bool {
    let covers = |target: &UnitId| units.covers(&actor.unit, target);
    let city = match command {
        Command::Create { fields } => &fields.city,
        _ => &order.fields.city,
    };
    match scope {
        Scope::Any => true,
        Scope::City => covers(city),
        Scope::Dispatch => order.dispatch_unit.as_ref().is_some_and(covers),
        Scope::Assigned => order.is_assigned_to(&actor.unit),
        Scope::Lead => order.lead_unit.as_ref() == Some(&actor.unit),
        Scope::Reviewer => order.lead_unit.as_ref().is_some_and(covers),
        Scope::ExtensionUnit => order
            .pending_extension
            .as_ref()
            .is_some_and(|request| request.unit == actor.unit),
        Scope::Subtree => {
            covers(city)
                || order.dispatch_unit.as_ref().is_some_and(covers)
                || order.active_units().any(covers)
        }
        Scope::Callback => match order.state {
            State::SecondCallback => order.second_callback_unit.as_ref().is_some_and(covers),
            _ => covers(city),
        },
        Scope::SecondCallback => {
            order.state == State::SecondCallback
                && order.second_callback_unit.as_ref().is_some_and(covers)
        }
        Scope::Study => order.second_callback_unit.as_ref().is_some_and(covers),
        Scope::OwnRegistration => {
            units
                .get(&actor.unit)
                .is_some_and(|unit| matches!(unit.kind, UnitKind::County | UnitKind::Township))
                && units.covers(city, &actor.unit)
        }
    }
}

/// Picks the role under which the actor may issue the command.
fn authorize(
    actor: &Actor,
    order: &Order,
    command: &Command,
    units: &UnitTree,
) -> Result<Role, TransitionError> {
    let (allowed, rule) = permissions(command);
    let mut role_matched = false;
    for (role, scope) in allowed {
        if actor.roles.contains(role) {
            role_matched = true;
            if in_scope(*scope, actor, order, command, units) {
                return Ok(*role);
            }
        }
    }
    if role_matched {
        Err(TransitionError::OutOfScope {
            command: command.name(),
            unit: actor.unit.clone(),
            rule,
        })
    } else {
        Err(TransitionError::RoleNotPermitted {
            command: command.name(),
            needed: allowed.iter().map(|(role, _)| *role).collect(),
            held: actor.roles.clone(),
        })
    }
}

/// Builds events one by one, folding each into a working copy of the order.
struct Emitter<'a> {
    order: Order,
    events: Vec<Event>,
    actor: &'a Actor,
    role: Role,
    now: DateTime<FixedOffset>,
}

impl Emitter<'_> {
    fn emit(&mut self, kind: EventKind) {
        let actor = self.actor.clone();
        let role = self.role;
        self.emit_as(&actor, role, kind);
    }

    fn emit_as(&mut self, actor: &Actor, role: Role, kind: EventKind) {
        let mut event = Event {
            order_id: self.order.id.clone(),
            seq: self.order.version.saturating_add(1),
            at: self.now,
            actor: actor.user_id.clone(),
            role,
            unit: actor.unit.clone(),
            state_before: self.order.state,
            state_after: self.order.state,
            kind,
        };
        self.order.fold(&event);
        event.state_after = self.order.state;
        self.events.push(event);
    }

    /// After the caller got the answer / result: closed (H-10) unless the order is
    /// urgent, which stays `fed_back` until its mandatory callback (H-11).
    fn close_unless_urgent(&mut self, reason: CloseReason) {
        if self.order.fields.urgency == Urgency::Normal {
            self.emit(EventKind::Closed {
                reason,
                note: String::new(),
            });
        }
    }
}

fn require_text(
    text: &str,
    command: &Command,
    field: &'static str,
    rule: &'static str,
) -> Result<String, TransitionError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(TransitionError::MissingText {
            command: command.name(),
            field,
            rule,
        })
    } else {
        Ok(trimmed.to_owned())
    }
}

fn refuse_hidden_characters(field: &'static str, text: &str) -> Result<(), TransitionError> {
    match hidden_character(text) {
        Some(character) => Err(TransitionError::HiddenCharacter { field, character }),
        None => Ok(()),
    }
}

fn not_allowed(order: &Order, command: &Command, rule: &'static str) -> TransitionError {
    TransitionError::NotAllowed {
        state: order.state,
        command: command.name(),
        rule,
    }
}

/// Rule cited when a command comes at the wrong point of the lifecycle.
const LIFECYCLE: &str = "TK-LIFECYCLE";

/// Applies `command` by `actor` at `now` to `order`.
///
/// Returns the new order and the events to append (in order); the new order equals
/// `order` folded with those events, so `Order::replay(all events)` rebuilds it.
///
/// # Errors
/// [`TransitionError`]: role/scope errors (`RoleNotPermitted`, `OutOfScope`), state
/// errors (`NotAllowed` naming state and rule), missing reasons, back-dating, and
/// the extension, unit and redo checks.
pub fn apply(
    order: &Order,
    command: Command,
    actor: &Actor,
    now: DateTime<FixedOffset>,
    ctx: &Context<'_>,
) -> Result<(Order, Vec<Event>), TransitionError> {
    match (&command, order.exists()) {
        (Command::Create { .. }, true) => return Err(TransitionError::AlreadyExists),
        (Command::Create { .. }, false) => {}
        (_, false) => return Err(TransitionError::NotCreated),
        (_, true) => {}
    }
    let role = authorize(actor, order, &command, ctx.units)?;
    if let Some(last) = order.last_event_at {
        if now < last {
            return Err(TransitionError::TimeWentBackwards { last, now });
        }
    }
    let mut out = Emitter {
        order: order.clone(),
        events: Vec::new(),
        actor,
        role,
        now,
    };
    let state = order.state;
    let before_completion = matches!(
        state,
        State::Signed | State::InProgress | State::ReplyDrafted | State::Reviewed
    );
    match &command {
        Command::Create { fields } => {
            match ctx.units.get(&fields.city) {
                None => return Err(TransitionError::UnknownUnit(fields.city.clone())),
                Some(unit) if unit.kind != UnitKind::City => {
                    return Err(TransitionError::NotACity(fields.city.clone()));
                }
                Some(_) => {}
            }
            if let Some(unknown) = fields
                .units_involved
                .iter()
                .find(|u| !ctx.units.contains(u))
            {
                return Err(TransitionError::UnknownUnit(unknown.clone()));
            }
            refuse_hidden_characters("contact_name", &fields.contact.name)?;
            if fields.received_at > now {
                return Err(TransitionError::ReceivedInFuture {
                    received_at: fields.received_at,
                    now,
                });
            }
            out.emit(EventKind::Created {
                fields: Box::new(fields.clone()),
                deadlines: Deadlines::compute(ctx.calendar, fields.received_at, fields.urgency),
                dispatch_unit: fields.city.clone(),
                number: None,
            });
        }
        Command::Submit => {
            if state != State::Draft {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            out.emit(EventKind::Submitted);
            if matches!(out.role, Role::UnitHandler | Role::UnitHead) {
                // A county or township handles what it registered itself (W-7).
                out.emit(EventKind::Dispatched {
                    units: vec![actor.unit.clone()],
                    category: out.order.fields.category,
                    area: out.order.fields.area,
                    mode: DispatchMode::SelfRegistered,
                });
                return Ok((out.order, out.events));
            }
            let routed = ctx
                .routing
                .route(&out.order)
                .filter(|unit| ctx.units.contains(unit));
            if let (Some(unit), Some(center)) = (routed, out.order.dispatch_unit.clone()) {
                let system = Actor::system(center);
                let kind = EventKind::Dispatched {
                    units: vec![unit],
                    category: out.order.fields.category,
                    area: out.order.fields.area,
                    mode: DispatchMode::Automatic,
                };
                out.emit_as(&system, Role::System, kind);
            }
        }
        Command::AnswerDirectly { answer } => {
            if !matches!(state, State::Draft | State::PendingDispatch) {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            if order.fields.category != Category::Consultation {
                return Err(not_allowed(order, &command, "H-8"));
            }
            let answer = require_text(answer, &command, "answer", "H-8")?;
            out.emit(EventKind::AnsweredDirectly { answer });
            out.close_unless_urgent(CloseReason::Answered);
        }
        Command::ExplainOutsideRemit { explanation } => {
            if !matches!(state, State::Draft | State::PendingDispatch) {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            let explanation = require_text(explanation, &command, "explanation", "H-8")?;
            out.emit(EventKind::ExplainedOutsideRemit { explanation });
            out.close_unless_urgent(CloseReason::OutsideRemit);
        }
        Command::Dispatch {
            units,
            category,
            area,
            urgency,
            contact_name,
            contact_phone,
        } => {
            if state != State::PendingDispatch {
                return Err(not_allowed(order, &command, "TK-ROUTE"));
            }
            refuse_hidden_characters("contact_name", contact_name.as_deref().unwrap_or(""))?;
            let corrected = Correction {
                category: *category,
                area: *area,
                urgency: *urgency,
                contact_name: contact_name.as_deref(),
                contact_phone: contact_phone.as_deref(),
            };
            let mut chosen: Vec<UnitId> = Vec::new();
            for unit in units {
                if !ctx.units.contains(unit) {
                    return Err(TransitionError::UnknownUnit(unit.clone()));
                }
                if !chosen.contains(unit) {
                    chosen.push(unit.clone());
                }
            }
            if chosen.is_empty() {
                return Err(TransitionError::NoUnits);
            }
            if let Some(kind) = corrected.event(order, ctx) {
                out.emit(kind);
            }
            out.emit(EventKind::Dispatched {
                units: chosen,
                category: out.order.fields.category,
                area: out.order.fields.area,
                mode: DispatchMode::Manual,
            });
        }
        Command::AddHelpingUnits { units, reason } => {
            // After the lead signed and before the reply: the work is still being done.
            if order.lead_unit.is_none() || !before_completion {
                return Err(not_allowed(order, &command, "W-11"));
            }
            let mut added: Vec<UnitId> = Vec::new();
            for unit in units {
                if !ctx.units.contains(unit) {
                    return Err(TransitionError::UnknownUnit(unit.clone()));
                }
                if order.is_assigned_to(unit) {
                    return Err(TransitionError::AlreadyHandling(unit.clone()));
                }
                if !added.contains(unit) {
                    added.push(unit.clone());
                }
            }
            if added.is_empty() {
                return Err(TransitionError::NoUnits);
            }
            let reason = require_text(reason, &command, "reason", "W-11")?;
            out.emit(EventKind::HelpingUnitsAdded {
                units: added,
                reason,
            });
        }
        Command::ReturnUpward { reason } => {
            if state != State::PendingDispatch {
                return Err(not_allowed(order, &command, "TK-RETURN"));
            }
            let reason = require_text(reason, &command, "reason", "TK-RETURN")?;
            let Some(to_unit) = order
                .dispatch_unit
                .as_ref()
                .and_then(|unit| ctx.units.parent(unit))
                .cloned()
            else {
                return Err(not_allowed(order, &command, "H-13-3"));
            };
            out.emit(EventKind::ReturnedUpward { to_unit, reason });
        }
        Command::Sign => {
            let assigned_unsigned = order
                .assignments
                .iter()
                .any(|a| a.unit == actor.unit && a.status == AssignmentStatus::Assigned);
            if !(state == State::Dispatched || before_completion) || !assigned_unsigned {
                return Err(not_allowed(order, &command, "TK-COHANDLE"));
            }
            out.emit(EventKind::Signed {
                unit: actor.unit.clone(),
                lead: order.lead_unit.is_none(),
            });
        }
        Command::Return { reason } => {
            let is_lead = order.lead_unit.as_ref() == Some(&actor.unit);
            let unsigned = order
                .assignments
                .iter()
                .any(|a| a.unit == actor.unit && a.status == AssignmentStatus::Assigned);
            let allowed = if is_lead {
                matches!(state, State::Signed | State::InProgress)
            } else {
                unsigned && (state == State::Dispatched || before_completion)
            };
            if !allowed {
                return Err(not_allowed(order, &command, "TK-RETURN"));
            }
            let reason = require_text(reason, &command, "reason", "TK-RETURN")?;
            let others_left = order.assignments.iter().any(|a| a.unit != actor.unit);
            out.emit(EventKind::Returned {
                unit: actor.unit.clone(),
                reason,
                back_to_dispatch: is_lead || !others_left,
            });
        }
        Command::Start => {
            if state != State::Signed {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            out.emit(EventKind::Started);
        }
        Command::RequestExtension {
            extra_working_days,
            reason,
        } => {
            if !before_completion || order.completed_at.is_some() {
                return Err(not_allowed(order, &command, "TK-EXTEND"));
            }
            if order.pending_extension.is_some() {
                return Err(TransitionError::ExtensionAlreadyPending);
            }
            let Some(deadlines) = order.deadlines else {
                return Err(TransitionError::NoDeadline(DeadlineKind::Feedback));
            };
            if now >= deadlines.feedback.due.at {
                return Err(TransitionError::ExtensionTooLate {
                    deadline: deadlines.feedback.due.at,
                });
            }
            if *extra_working_days == 0 {
                return Err(TransitionError::ExtensionZero);
            }
            let total = deadlines
                .feedback_working_days
                .saturating_add(*extra_working_days);
            if total > FEEDBACK_CAP_WORKING_DAYS {
                return Err(TransitionError::ExtensionBeyondCap {
                    requested_working_days: total,
                    cap_working_days: FEEDBACK_CAP_WORKING_DAYS,
                });
            }
            let reason = require_text(reason, &command, "reason", "TK-EXTEND")?;
            out.emit(EventKind::ExtensionRequested {
                request: ExtensionRequest {
                    unit: actor.unit.clone(),
                    extra_working_days: *extra_working_days,
                    reason,
                    at: now,
                    requested_by: Some(actor.user_id.clone()),
                },
            });
        }
        Command::DecideExtension { decision, reason } => {
            // Scope already required a pending request from the head's own unit.
            let (Some(request), Some(deadlines)) = (&order.pending_extension, order.deadlines)
            else {
                return Err(TransitionError::NoPendingExtension);
            };
            if state == State::Closed {
                return Err(not_allowed(order, &command, "TK-EXTEND"));
            }
            if request.requested_by.as_ref() == Some(&actor.user_id) {
                return Err(TransitionError::ExtensionDecidedByRequester(
                    actor.user_id.clone(),
                ));
            }
            match decision {
                Decision::Approve => {
                    let total = deadlines
                        .feedback_working_days
                        .saturating_add(request.extra_working_days)
                        .min(FEEDBACK_CAP_WORKING_DAYS);
                    let received_at = order.fields.received_at;
                    let mut feedback =
                        DeadlineWindow::working_days(ctx.calendar, received_at, total);
                    // The cap was stored at creation; never go past it even if the
                    // calendar data changed since.
                    if feedback.due.at > deadlines.feedback_cap.at {
                        feedback.due = deadlines.feedback_cap;
                    }
                    out.emit(EventKind::ExtensionApproved {
                        feedback,
                        feedback_working_days: total,
                        reason: reason.trim().to_owned(),
                    });
                }
                Decision::Reject => {
                    let reason = require_text(reason, &command, "reason", "TK-EXTEND")?;
                    out.emit(EventKind::ExtensionRejected { reason });
                }
            }
        }
        Command::DraftReply { text } => {
            if !order.fields.category.needs_review() {
                return Err(not_allowed(order, &command, "TK-REVIEW"));
            }
            if state != State::InProgress {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            let text = require_text(text, &command, "text", "TK-REVIEW")?;
            out.emit(EventKind::ReplyDrafted { text });
        }
        Command::Review { decision, reason } => {
            if state != State::ReplyDrafted {
                return Err(not_allowed(order, &command, "TK-REVIEW"));
            }
            match decision {
                Decision::Approve => out.emit(EventKind::ReviewApproved {
                    reason: reason.trim().to_owned(),
                }),
                Decision::Reject => {
                    let reason = require_text(reason, &command, "reason", "TK-REVIEW")?;
                    out.emit(EventKind::ReviewRejected { reason });
                }
            }
        }
        Command::Reply { text } => {
            if order.fields.category.needs_review() {
                return Err(not_allowed(order, &command, "TK-REVIEW"));
            }
            if state != State::InProgress {
                return Err(not_allowed(order, &command, LIFECYCLE));
            }
            let text = require_text(text, &command, "text", "TK-CLOSE")?;
            out.emit(EventKind::Replied { text });
            if order.fields.category == Category::Consultation {
                // The unit's reply is the answer to the caller (H-10).
                out.emit(EventKind::FedBack {
                    note: CONSULTATION_ANSWERED_NOTE.to_owned(),
                });
                out.close_unless_urgent(CloseReason::Answered);
            }
        }
        Command::SendReviewedReply => {
            if state != State::Reviewed {
                return Err(not_allowed(order, &command, "TK-REVIEW"));
            }
            let text = order.draft_reply.clone().unwrap_or_default();
            out.emit(EventKind::Replied { text });
        }
        Command::FeedBack { note } => {
            if state != State::Replied {
                return Err(not_allowed(order, &command, "TK-CLOSE"));
            }
            out.emit(EventKind::FedBack {
                note: note.trim().to_owned(),
            });
            out.close_unless_urgent(CloseReason::FedBack);
        }
        Command::RecordCallback { outcome, note } => {
            record_callback(order, &command, *outcome, note, ctx, &mut out)?;
        }
        Command::Remind {
            deadline,
            level,
            note,
        } => {
            if matches!(state, State::Closed) {
                return Err(not_allowed(order, &command, "TK-REMIND"));
            }
            let window =
                window_of(order, *deadline).ok_or(TransitionError::NoDeadline(*deadline))?;
            out.emit(EventKind::Reminded {
                deadline: *deadline,
                level: *level,
                due: window.due.at,
                note: note.trim().to_owned(),
            });
        }
        Command::Supervise { note } => {
            if state == State::Closed {
                return Err(not_allowed(order, &command, "TK-SUPERVISE"));
            }
            let note = require_text(note, &command, "note", "TK-SUPERVISE")?;
            out.emit(EventKind::Supervised { note });
        }
        Command::ReportDissatisfaction { note } => {
            let report = order
                .dissatisfaction_report
                .as_ref()
                .filter(|r| r.reported_at.is_none() && state != State::Closed)
                .ok_or_else(|| not_allowed(order, &command, "H-9"))?;
            let unit = report.unit.clone();
            let note = require_text(note, &command, "note", "H-9")?;
            out.emit(EventKind::DissatisfactionReported { unit, note });
        }
        Command::RecordMissedLimit { deadline } => {
            let (_, due) = limits_missed(order, out.now)
                .into_iter()
                .find(|(kind, _)| kind == deadline)
                .ok_or_else(|| not_allowed(order, &command, "TK-DEADLINE"))?;
            out.emit(EventKind::LimitMissed {
                deadline: *deadline,
                due: due.at,
            });
        }
        Command::AlertLeaders { alert, leaders } => {
            if !leader_alerts_due(order, out.now).contains(alert) {
                return Err(not_allowed(order, &command, "H-13-2"));
            }
            out.emit(EventKind::LeadersAlerted {
                alert: *alert,
                leaders: leaders.clone(),
            });
        }
        Command::LogCall { call } => {
            let note = call.describe();
            out.emit(EventKind::CallLogged {
                call: call.clone(),
                note,
            });
        }
        Command::AddNote { note } => {
            if state == State::Closed {
                return Err(not_allowed(order, &command, "TK-COHANDLE"));
            }
            let note = require_text(note, &command, "note", "TK-COHANDLE")?;
            out.emit(EventKind::NoteAdded { note });
        }
        Command::RecordCallSurvey { call_id, answer } => {
            // Once per order, and only for the call the order was opened from: the
            // survey loop may retry after a crash, and must not attach a stranger's call.
            if order.call_survey.is_some() || order.fields.call_id.as_ref() != Some(call_id) {
                return Err(not_allowed(order, &command, "CALL-ETIQUETTE"));
            }
            out.emit(EventKind::CallSurveyRecorded {
                call_id: call_id.clone(),
                answer: *answer,
            });
        }
        Command::RecomputeDeadlines => {
            let current = order
                .deadlines
                .ok_or(TransitionError::NoDeadline(DeadlineKind::Feedback))?;
            if state == State::Closed || !current.provisional() {
                return Err(not_allowed(order, &command, "TK-DEADLINE"));
            }
            let received_at = order.fields.received_at;
            let mut deadlines = Deadlines::compute(ctx.calendar, received_at, order.fields.urgency);
            deadlines.feedback_working_days = current.feedback_working_days;
            deadlines.feedback = DeadlineWindow::working_days(
                ctx.calendar,
                received_at,
                current.feedback_working_days,
            );
            out.emit(EventKind::DeadlinesRecomputed { deadlines });
        }
        Command::RevealContact { reason } => {
            // Whether the order is the actor's to read is the shell's check (it loads
            // only visible orders); here: a reason, on the record.
            let reason = require_text(reason, &command, "reason", "H-12-4")?;
            out.emit(EventKind::ContactRevealed { reason });
        }
        Command::StudyNote { note } => {
            if state != State::SpecialStudy {
                return Err(not_allowed(order, &command, "W-14"));
            }
            let note = require_text(note, &command, "note", "W-14")?;
            out.emit(EventKind::StudyNoteAdded { note });
        }
        Command::ConcludeStudy { result } => {
            if state != State::SpecialStudy {
                return Err(not_allowed(order, &command, "W-14"));
            }
            let result = require_text(result, &command, "result", "W-14")?;
            out.emit(EventKind::StudyConcluded {
                result: result.clone(),
            });
            out.emit(EventKind::Closed {
                reason: CloseReason::SpecialFlag,
                note: result,
            });
        }
        Command::Withdraw { reason, call_id } => {
            // A flagged order's end is the supervising unit's decision (W-14).
            if matches!(state, State::Closed | State::SpecialStudy) {
                return Err(not_allowed(order, &command, "TK-LEDGER"));
            }
            let reason = require_text(reason, &command, "reason", "TK-LEDGER")?;
            // An empty call id (a form's untouched field) names no call.
            let call_id = call_id.as_ref().filter(|c| !c.0.trim().is_empty());
            let confirmation = match call_id {
                Some(call) if order.has_caller_call(call) => WithdrawalConfirmation::CallerOnCall {
                    call_id: call.clone(),
                },
                Some(call) => return Err(TransitionError::WithdrawalCallNotOnRecord(call.clone())),
                None if actor.roles.contains(&Role::Supervisor)
                    && in_scope(Scope::Subtree, actor, order, &command, ctx.units) =>
                {
                    WithdrawalConfirmation::SupervisorApproval
                }
                None => return Err(TransitionError::WithdrawalNotConfirmed),
            };
            out.emit(EventKind::Withdrawn {
                reason: reason.clone(),
                confirmation: Some(confirmation),
            });
            out.emit(EventKind::Closed {
                reason: CloseReason::Withdrawn,
                note: reason,
            });
        }
    }
    Ok((out.order, out.events))
}

/// What a dispatcher corrects on review before dispatching (H-13-1).
struct Correction<'a> {
    category: Option<Category>,
    area: Option<BusinessArea>,
    urgency: Option<Urgency>,
    contact_name: Option<&'a str>,
    contact_phone: Option<&'a str>,
}

impl Correction<'_> {
    /// The event recording every field that changes (before and after), or `None`
    /// when nothing does. A new urgency moves the transfer and callback limits, which
    /// still count from receipt; the feedback limit and its extensions stay.
    fn event(&self, order: &Order, ctx: &Context<'_>) -> Option<EventKind> {
        let current = &order.fields;
        let mut before = FieldValues::default();
        let mut after = FieldValues::default();
        if let Some(category) = self.category.filter(|c| *c != current.category) {
            before.category = Some(current.category);
            after.category = Some(category);
        }
        if let Some(area) = self.area.filter(|a| *a != current.area) {
            before.area = Some(current.area);
            after.area = Some(area);
        }
        if let Some(urgency) = self.urgency.filter(|u| *u != current.urgency) {
            before.urgency = Some(current.urgency);
            after.urgency = Some(urgency);
        }
        let contact = Contact {
            // An empty value corrects nothing (a form's untouched field).
            name: self
                .contact_name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map_or_else(|| current.contact.name.clone(), str::to_owned),
            phone: self
                .contact_phone
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map_or_else(|| current.contact.phone.clone(), str::to_owned),
        };
        if contact != current.contact {
            before.contact = Some(current.contact.clone());
            after.contact = Some(contact);
        }
        if after.is_empty() {
            return None;
        }
        let deadlines = after.urgency.and_then(|urgency| {
            let current = order.deadlines?;
            let fresh = Deadlines::compute(ctx.calendar, order.fields.received_at, urgency);
            Some(Deadlines {
                transfer: fresh.transfer,
                callback: fresh.callback,
                ..current
            })
        });
        Some(EventKind::FieldsCorrected {
            fields: Box::new(after),
            before: Box::new(before),
            deadlines,
        })
    }
}

/// Callback outcomes (H-14, W-14). First callbacks come on urgent orders waiting in
/// `fed_back` (mandatory, H-11) or on closed orders (sampling, W-14/H-11); the
/// second comes from the supervising unit in `second_callback`.
fn record_callback(
    order: &Order,
    command: &Command,
    outcome: CallbackOutcome,
    note: &str,
    ctx: &Context<'_>,
    out: &mut Emitter<'_>,
) -> Result<(), TransitionError> {
    let round = match order.state {
        State::FedBack => CallbackRound::First,
        State::Closed => {
            // Sampling applies to orders closed on answer / feedback (H-10), once per
            // closing; other closings already came out of a callback.
            let callbacks = u32::try_from(order.callbacks.len()).unwrap_or(u32::MAX);
            let sampled_ok = order.closing.as_ref().is_some_and(|c| {
                matches!(
                    c.reason,
                    CloseReason::Answered | CloseReason::FedBack | CloseReason::OutsideRemit
                ) && c.callbacks_before == callbacks
            });
            if !sampled_ok {
                return Err(not_allowed(order, command, "TK-VISIT"));
            }
            CallbackRound::First
        }
        State::SecondCallback => {
            // Another person, of the supervising unit itself (W-14).
            if let Some(supervising) = &order.second_callback_unit
                && out.actor.unit != *supervising
            {
                return Err(TransitionError::SecondCallbackNotBySupervisingUnit {
                    unit: out.actor.unit.clone(),
                    supervising: supervising.clone(),
                });
            }
            let first_by = order
                .callbacks
                .iter()
                .rev()
                .find(|c| c.round == CallbackRound::First)
                .and_then(|c| c.by.as_ref());
            if first_by == Some(&out.actor.user_id) {
                return Err(TransitionError::SecondCallbackBySameUser(
                    out.actor.user_id.clone(),
                ));
            }
            CallbackRound::Second
        }
        _ => return Err(not_allowed(order, command, "TK-VISIT")),
    };
    let still_open = order.state != State::Closed;
    match outcome {
        CallbackOutcome::Satisfied => {
            out.emit(EventKind::CallbackRecorded {
                round,
                by: Some(out.actor.user_id.clone()),
                satisfaction: Satisfaction::Satisfied,
                note: note.trim().to_owned(),
            });
            if still_open {
                out.emit(EventKind::Closed {
                    reason: CloseReason::Satisfied,
                    note: note.trim().to_owned(),
                });
            }
        }
        CallbackOutcome::ClosedOnJudgement {
            satisfaction,
            ground,
        } => {
            let note = require_text(note, command, "note", "TK-SATISFACTION")?;
            out.emit(EventKind::CallbackRecorded {
                round,
                by: Some(out.actor.user_id.clone()),
                satisfaction,
                note: note.clone(),
            });
            out.emit(EventKind::Closed {
                reason: CloseReason::Judgement(ground),
                note,
            });
        }
        CallbackOutcome::Redo { target } => {
            let note = require_text(note, command, "note", "TK-SATISFACTION")?;
            match (target, order.lead_unit.is_some()) {
                (RedoTarget::Agent, true) => {
                    return Err(TransitionError::RedoTargetMismatch {
                        target,
                        answered_by: "by a unit",
                    });
                }
                (RedoTarget::Unit, false) => {
                    return Err(TransitionError::RedoTargetMismatch {
                        target,
                        answered_by: "directly by the agent",
                    });
                }
                _ => {}
            }
            out.emit(EventKind::CallbackRecorded {
                round,
                by: Some(out.actor.user_id.clone()),
                satisfaction: Satisfaction::Dissatisfied,
                note: note.clone(),
            });
            out.emit(EventKind::RedoOrdered {
                target,
                reason: note,
            });
        }
        CallbackOutcome::Dissatisfied => {
            let note = require_text(note, command, "note", "TK-SATISFACTION")?;
            out.emit(EventKind::CallbackRecorded {
                round,
                by: Some(out.actor.user_id.clone()),
                satisfaction: Satisfaction::Dissatisfied,
                note: note.clone(),
            });
            match round {
                CallbackRound::First => {
                    let handled_by = order
                        .lead_unit
                        .clone()
                        .or_else(|| order.dispatch_unit.clone())
                        .unwrap_or_else(|| order.fields.city.clone());
                    let to_unit = ctx.units.parent(&handled_by).cloned().unwrap_or(handled_by);
                    let report_due = ctx.calendar.add_working_days(out.now, 1);
                    out.emit(EventKind::EscalatedForSecondCallback {
                        to_unit,
                        report_due,
                    });
                }
                CallbackRound::Second => {
                    // Kept open for study until the supervising unit decides (W-14).
                    out.emit(EventKind::SpecialFlagged { reason: note });
                }
            }
        }
    }
    Ok(())
}
