//! Unit tests of the work-order core on real dates.

use chrono::{DateTime, FixedOffset};

use super::*;
use crate::calendar::Calendar;

pub(super) const SHIPPED: &str = include_str!("../../config/calendar/cn-workdays.toml");

pub(super) fn moment(text: &str) -> DateTime<FixedOffset> {
    crate::calendar::cli::parse_moment(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub(super) fn unit(id: &str) -> UnitId {
    UnitId::new(id)
}

pub(super) struct World {
    pub calendar: Calendar,
    pub units: UnitTree,
    pub routing: RoutingRules,
}

impl World {
    pub fn new() -> Self {
        let calendar = Calendar::from_toml_str(SHIPPED).unwrap_or_else(|e| panic!("{e}"));
        let mut units = UnitTree::shandong_default();
        let extra = [
            ("jinan-lixia", UnitKind::County, "jinan"),
            ("jinan-shizhong", UnitKind::County, "jinan"),
            ("jinan-lixia-notary", UnitKind::Institution, "jinan-lixia"),
            ("jinan-legal-aid", UnitKind::Institution, "jinan"),
            ("qingdao-shinan", UnitKind::County, "qingdao"),
        ];
        for (id, kind, parent) in extra {
            let added = units.add(Unit {
                id: unit(id),
                name: id.to_owned(),
                kind,
                parent: Some(unit(parent)),
                area_code: None,
            });
            assert_eq!(added, Ok(()));
        }
        let routing = RoutingRules {
            rules: vec![
                RoutingRule {
                    city: Some(unit("jinan")),
                    area: Some(BusinessArea::Notary),
                    category: None,
                    unit: unit("jinan-lixia-notary"),
                },
                RoutingRule {
                    city: Some(unit("jinan")),
                    area: Some(BusinessArea::LegalAid),
                    category: None,
                    unit: unit("jinan-legal-aid"),
                },
            ],
        };
        Self {
            calendar,
            units,
            routing,
        }
    }

    pub fn ctx(&self) -> Context<'_> {
        Context {
            calendar: &self.calendar,
            units: &self.units,
            routing: &self.routing,
        }
    }
}

pub(super) fn actor(user: &str, role: Role, unit_id: &str) -> Actor {
    Actor {
        user_id: UserId(user.to_owned()),
        roles: vec![role],
        unit: unit(unit_id),
    }
}

pub(super) fn agent() -> Actor {
    actor("agent", Role::Agent, "jinan")
}
pub(super) fn dispatcher() -> Actor {
    actor("dispatcher", Role::Dispatcher, "jinan")
}
pub(super) fn lixia() -> Actor {
    actor("lixia-handler", Role::UnitHandler, "jinan-lixia")
}
pub(super) fn lixia_head() -> Actor {
    actor("lixia-head", Role::UnitHead, "jinan-lixia")
}
pub(super) fn shizhong() -> Actor {
    actor("shizhong-handler", Role::UnitHandler, "jinan-shizhong")
}
pub(super) fn reviewer() -> Actor {
    actor("reviewer", Role::Reviewer, "jinan")
}
pub(super) fn callback_staff() -> Actor {
    actor("callback", Role::CallbackStaff, "jinan")
}

pub(super) fn fields(category: Category, urgency: Urgency, received_at: &str) -> OrderFields {
    OrderFields {
        contact: Contact {
            name: "张三".to_owned(),
            phone: "13812345678".to_owned(),
        },
        category,
        urgency,
        area: BusinessArea::Unknown,
        units_involved: Vec::new(),
        description: "邻里纠纷咨询".to_owned(),
        remarks: String::new(),
        channel: Channel::Phone,
        city: unit("jinan"),
        call_id: Some(CallId("call-1".to_owned())),
        recordings: vec!["recordings/call-1.wav".to_owned()],
        received_at: moment(received_at),
    }
}

/// An order and its full history, driven step by step.
struct Run<'w> {
    world: &'w World,
    order: Order,
    events: Vec<Event>,
}

impl<'w> Run<'w> {
    fn new(world: &'w World, fields: OrderFields) -> Self {
        let now = fields.received_at;
        let mut run = Self {
            world,
            order: Order::new(OrderId("o-1".to_owned())),
            events: Vec::new(),
        };
        run.ok(Command::Create { fields }, &agent(), now);
        run
    }

    fn try_cmd(
        &mut self,
        command: Command,
        who: &Actor,
        now: DateTime<FixedOffset>,
    ) -> Result<Vec<Event>, TransitionError> {
        let (order, events) = apply(&self.order, command, who, now, &self.world.ctx())?;
        self.order = order;
        self.events.extend(events.iter().cloned());
        assert_eq!(
            Order::replay(&self.events),
            self.order,
            "replay must rebuild the order"
        );
        Ok(events)
    }

    fn ok(&mut self, command: Command, who: &Actor, now: DateTime<FixedOffset>) -> Vec<Event> {
        let name = command.name();
        self.try_cmd(command, who, now)
            .unwrap_or_else(|e| panic!("{name} refused in {}: {e}", self.order.state))
    }

    fn err(&self, command: Command, who: &Actor, now: DateTime<FixedOffset>) -> TransitionError {
        match apply(&self.order, command, who, now, &self.world.ctx()) {
            Ok(_) => panic!("expected refusal in state {}", self.order.state),
            Err(e) => e,
        }
    }

    fn state(&self) -> State {
        self.order.state
    }

    /// Submit, dispatch to Lixia, sign, start.
    fn advance_to_in_progress(&mut self, now: DateTime<FixedOffset>) {
        self.ok(Command::Submit, &agent(), now);
        self.dispatch(&["jinan-lixia"], now);
        self.ok(Command::Sign, &lixia(), now);
        self.ok(Command::Start, &lixia(), now);
        assert_eq!(self.state(), State::InProgress);
    }

    fn dispatch(&mut self, units: &[&str], now: DateTime<FixedOffset>) {
        let command = Command::Dispatch {
            units: units.iter().map(|u| unit(u)).collect(),
            category: None,
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        };
        self.ok(command, &dispatcher(), now);
    }
}

fn not_allowed_rule(error: &TransitionError) -> &'static str {
    match error {
        TransitionError::NotAllowed { rule, .. } => rule,
        other => panic!("expected NotAllowed, got {other:?}"),
    }
}

#[test]
fn transfer_due_received_before_national_day_2025_is_october_9_at_24() {
    let world = World::new();
    let run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(
        deadlines.transfer.due.display().to_string(),
        "2025-10-09T24:00+08:00"
    );
    assert!(!deadlines.provisional());
}

#[test]
fn feedback_due_received_in_spring_festival_2024_is_february_21_at_24() {
    let world = World::new();
    let run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2024-02-08T10:00+08:00",
        ),
    );
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(
        deadlines.feedback.due.display().to_string(),
        "2024-02-21T24:00+08:00"
    );
    // Cap: 15 working days → 02-09, 02-18..02-23 (7), 02-26..03-01 (12), 03-04..03-06 (15).
    assert_eq!(
        deadlines.feedback_cap.display().to_string(),
        "2024-03-06T24:00+08:00"
    );
}

#[test]
fn urgent_order_transfer_is_one_wall_clock_hour_and_callback_three_working_days() {
    let world = World::new();
    let run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Urgent,
            "2025-09-30T16:00+08:00",
        ),
    );
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(
        deadlines.transfer.due.display().to_string(),
        "2025-09-30T17:00+08:00"
    );
    let callback = deadlines
        .callback
        .unwrap_or_else(|| panic!("urgent callback"));
    assert_eq!(callback.due.display().to_string(), "2025-10-11T24:00+08:00");
}

#[test]
fn deadlines_in_a_year_without_calendar_data_are_provisional() {
    let world = World::new();
    let run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2027-03-01T10:00+08:00",
        ),
    );
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert!(deadlines.provisional());
    assert!(deadlines.feedback.due.provisional);
}

#[test]
fn consultation_lifecycle_closes_when_the_unit_answers() {
    let world = World::new();
    let t = moment("2025-09-30T16:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    assert_eq!(run.state(), State::Draft);
    run.advance_to_in_progress(t);
    let done = moment("2025-10-09T09:00+08:00");
    run.ok(
        Command::Reply {
            text: "可申请人民调解".to_owned(),
        },
        &lixia(),
        done,
    );
    assert_eq!(run.state(), State::Closed);
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(closing.reason, CloseReason::Answered);
    assert_eq!(closing.reason.rule(), "H-10");
    assert_eq!(run.order.completed_at, Some(done));
    assert!(!is_overdue(&run.order, moment("2025-12-01T00:00+08:00")));
}

#[test]
fn consultation_answered_directly_by_the_agent_closes() {
    let world = World::new();
    let t = moment("2025-09-30T16:05+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(
        Command::AnswerDirectly {
            answer: "拨打当地法律援助中心".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
    let mut complaint = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    let error = complaint.err(
        Command::AnswerDirectly {
            answer: "x".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(not_allowed_rule(&error), "H-8");
    complaint.ok(Command::Submit, &agent(), t);
}

#[test]
fn complaint_lifecycle_goes_through_review_and_closes_on_feedback() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    let error = run.err(
        Command::Reply {
            text: "直接回复".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(not_allowed_rule(&error), "TK-REVIEW");
    run.ok(
        Command::DraftReply {
            text: "初稿".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::ReplyDrafted);
    let error = run.err(
        Command::Review {
            decision: Decision::Reject,
            reason: " ".to_owned(),
        },
        &reviewer(),
        t,
    );
    assert!(matches!(
        error,
        TransitionError::MissingText {
            field: "reason",
            ..
        }
    ));
    assert!(matches!(
        run.err(
            Command::Review {
                decision: Decision::Approve,
                reason: String::new()
            },
            &lixia(),
            t
        ),
        TransitionError::RoleNotPermitted { .. }
    ));
    run.ok(
        Command::Review {
            decision: Decision::Reject,
            reason: "事实不清".to_owned(),
        },
        &reviewer(),
        t,
    );
    assert_eq!(run.state(), State::InProgress);
    run.ok(
        Command::DraftReply {
            text: "二稿".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(
        Command::Review {
            decision: Decision::Approve,
            reason: String::new(),
        },
        &reviewer(),
        t,
    );
    assert_eq!(run.state(), State::Reviewed);
    run.ok(Command::SendReviewedReply, &lixia(), t);
    assert_eq!(run.state(), State::Replied);
    assert_eq!(run.order.reply.as_deref(), Some("二稿"));
    run.ok(
        Command::FeedBack {
            note: "已电话告知".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(closing.reason, CloseReason::FedBack);
    assert!(closing.reason.allows_without_satisfaction());
}

#[test]
fn suggestion_replies_directly_without_review() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    let error = run.err(
        Command::DraftReply {
            text: "x".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(not_allowed_rule(&error), "TK-REVIEW");
    run.ok(
        Command::Reply {
            text: "采纳".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::Replied);
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
}

#[test]
fn case_needs_review_like_a_complaint() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(Category::Case, Urgency::Normal, "2025-09-30T16:00+08:00"),
    );
    run.advance_to_in_progress(t);
    assert_eq!(
        not_allowed_rule(&run.err(
            Command::Reply {
                text: "x".to_owned()
            },
            &lixia(),
            t
        )),
        "TK-REVIEW"
    );
    run.ok(
        Command::DraftReply {
            text: "意见".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(
        Command::Review {
            decision: Decision::Approve,
            reason: String::new(),
        },
        &reviewer(),
        t,
    );
    run.ok(Command::SendReviewedReply, &lixia(), t);
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
}

#[test]
fn clear_business_area_is_dispatched_automatically_by_the_system() {
    let world = World::new();
    let mut f = fields(
        Category::Consultation,
        Urgency::Normal,
        "2025-09-30T16:00+08:00",
    );
    f.area = BusinessArea::Notary;
    let mut run = Run::new(&world, f);
    let events = run.ok(Command::Submit, &agent(), moment("2025-09-30T16:01+08:00"));
    assert_eq!(run.state(), State::Dispatched);
    assert_eq!(events.len(), 2);
    let auto = &events[1];
    assert_eq!(auto.role, Role::System);
    assert_eq!(auto.actor, UserId("system".to_owned()));
    assert!(matches!(
        &auto.kind,
        EventKind::Dispatched { mode: DispatchMode::Automatic, units, .. } if units == &vec![unit("jinan-lixia-notary")]
    ));
}

#[test]
fn unclear_business_area_waits_for_a_dispatcher() {
    let world = World::new();
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), moment("2025-09-30T16:01+08:00"));
    assert_eq!(run.state(), State::PendingDispatch);
}

#[test]
fn return_needs_a_reason_and_goes_back_to_dispatch_then_upward() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    run.dispatch(&["jinan-lixia"], t);
    let error = run.err(
        Command::Return {
            reason: "  ".to_owned(),
        },
        &lixia(),
        t,
    );
    assert!(matches!(
        error,
        TransitionError::MissingText {
            rule: "TK-RETURN",
            ..
        }
    ));
    run.ok(
        Command::Return {
            reason: "不属于本单位职责".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::PendingDispatch);
    assert_eq!(run.order.returned_by, vec![unit("jinan-lixia")]);
    // Once returned, Lixia can no longer act on it.
    assert!(matches!(
        run.err(Command::Sign, &lixia(), t),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(
        Command::ReturnUpward {
            reason: "市内无对口单位".to_owned(),
        },
        &dispatcher(),
        t,
    );
    assert_eq!(run.order.dispatch_unit, Some(unit(units::SHANDONG)));
    assert!(matches!(
        run.err(
            Command::Dispatch {
                units: vec![unit("jinan-lixia")],
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &dispatcher(),
            t
        ),
        TransitionError::OutOfScope { .. }
    ));
    let province = actor("prov-dispatcher", Role::Dispatcher, units::SHANDONG);
    let error = run.err(
        Command::ReturnUpward {
            reason: "x".to_owned(),
        },
        &province,
        t,
    );
    assert_eq!(not_allowed_rule(&error), "H-13-3");
    run.ok(
        Command::Dispatch {
            units: vec![unit("qingdao-shinan")],
            category: None,
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        },
        &province,
        t,
    );
    assert_eq!(run.state(), State::Dispatched);
}

#[test]
fn co_handling_first_unit_to_sign_leads_and_replies_for_all() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    run.dispatch(&["jinan-lixia", "jinan-shizhong"], t);
    let events = run.ok(Command::Sign, &shizhong(), t);
    assert!(matches!(
        &events[0].kind,
        EventKind::Signed { lead: true, .. }
    ));
    let events = run.ok(Command::Sign, &lixia(), t);
    assert!(matches!(
        &events[0].kind,
        EventKind::Signed { lead: false, .. }
    ));
    assert_eq!(run.order.lead_unit, Some(unit("jinan-shizhong")));
    assert_eq!(
        not_allowed_rule(&run.err(Command::Sign, &lixia(), t)),
        "TK-COHANDLE"
    );
    assert!(matches!(
        run.err(Command::Start, &lixia(), t),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(
        Command::AddNote {
            note: "历下区意见：同意".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(Command::Start, &shizhong(), t);
    assert!(matches!(
        run.err(
            Command::Reply {
                text: "x".to_owned()
            },
            &lixia(),
            t
        ),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(
        Command::Reply {
            text: "联合答复".to_owned(),
        },
        &shizhong(),
        t,
    );
    assert_eq!(run.state(), State::Replied);
}

#[test]
fn extension_is_approved_by_the_head_of_the_same_unit_and_capped_at_15_working_days() {
    let world = World::new();
    let received = "2024-02-08T10:00+08:00";
    let t = moment("2024-02-19T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(Category::Complaint, Urgency::Normal, received),
    );
    run.advance_to_in_progress(t);
    let too_long = Command::RequestExtension {
        extra_working_days: 11,
        reason: "复杂".to_owned(),
    };
    assert!(matches!(
        run.err(too_long, &lixia(), t),
        TransitionError::ExtensionBeyondCap {
            requested_working_days: 16,
            cap_working_days: 15
        }
    ));
    run.ok(
        Command::RequestExtension {
            extra_working_days: 10,
            reason: "涉及多个单位".to_owned(),
        },
        &lixia(),
        t,
    );
    assert_eq!(
        run.err(
            Command::RequestExtension {
                extra_working_days: 1,
                reason: "x".to_owned()
            },
            &lixia(),
            t
        ),
        TransitionError::ExtensionAlreadyPending
    );
    let approve = || Command::DecideExtension {
        decision: Decision::Approve,
        reason: String::new(),
    };
    assert!(matches!(
        run.err(approve(), &lixia(), t),
        TransitionError::RoleNotPermitted { .. }
    ));
    let other_head = actor("shizhong-head", Role::UnitHead, "jinan-shizhong");
    assert!(matches!(
        run.err(approve(), &other_head, t),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(approve(), &lixia_head(), t);
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(deadlines.feedback_working_days, 15);
    assert_eq!(deadlines.feedback.due, deadlines.feedback_cap);
    assert_eq!(
        deadlines.feedback.due.display().to_string(),
        "2024-03-06T24:00+08:00"
    );
    // Done after the original limit (02-21) but within the extension: not overdue.
    let done = moment("2024-03-05T15:00+08:00");
    run.ok(
        Command::DraftReply {
            text: "答复".to_owned(),
        },
        &lixia(),
        done,
    );
    run.ok(
        Command::Review {
            decision: Decision::Approve,
            reason: String::new(),
        },
        &reviewer(),
        done,
    );
    run.ok(Command::SendReviewedReply, &lixia(), done);
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        done,
    );
    assert!(!is_overdue(&run.order, moment("2024-04-01T00:00+08:00")));
}

#[test]
fn extension_must_be_asked_before_the_limit_and_can_be_rejected_with_a_reason() {
    let world = World::new();
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2024-02-08T10:00+08:00",
        ),
    );
    run.advance_to_in_progress(moment("2024-02-09T09:00+08:00"));
    let late = moment("2024-02-22T00:00+08:00");
    assert!(matches!(
        run.err(
            Command::RequestExtension {
                extra_working_days: 2,
                reason: "x".to_owned()
            },
            &lixia(),
            late
        ),
        TransitionError::ExtensionTooLate { .. }
    ));
    assert!(
        !is_overdue(&run.order, late),
        "24:00 itself is still in time"
    );
    assert!(is_overdue(&run.order, moment("2024-02-22T08:00+08:00")));
    let t = moment("2024-02-20T09:00+08:00");
    run.ok(
        Command::RequestExtension {
            extra_working_days: 2,
            reason: "需补充材料".to_owned(),
        },
        &lixia(),
        t,
    );
    assert!(matches!(
        run.err(
            Command::DecideExtension {
                decision: Decision::Reject,
                reason: String::new()
            },
            &lixia_head(),
            t
        ),
        TransitionError::MissingText { .. }
    ));
    run.ok(
        Command::DecideExtension {
            decision: Decision::Reject,
            reason: "理由不足".to_owned(),
        },
        &lixia_head(),
        t,
    );
    assert!(run.order.pending_extension.is_none());
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(deadlines.feedback_working_days, 5);
}

#[test]
fn callback_redo_sends_the_order_back_to_the_unit() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    run.ok(
        Command::Reply {
            text: "答复".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    let first_done = run.order.completed_at;
    let later = moment("2025-10-10T10:00+08:00");
    let agent_redo = Command::RecordCallback {
        outcome: CallbackOutcome::Redo {
            target: RedoTarget::Agent,
        },
        note: "x".to_owned(),
    };
    assert!(matches!(
        run.err(agent_redo, &callback_staff(), later),
        TransitionError::RedoTargetMismatch { .. }
    ));
    let no_note = Command::RecordCallback {
        outcome: CallbackOutcome::Redo {
            target: RedoTarget::Unit,
        },
        note: String::new(),
    };
    assert!(matches!(
        run.err(no_note, &callback_staff(), later),
        TransitionError::MissingText { .. }
    ));
    run.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Redo {
                target: RedoTarget::Unit,
            },
            note: "办理结果存在重大失误".to_owned(),
        },
        &callback_staff(),
        later,
    );
    assert_eq!(run.state(), State::InProgress);
    assert_eq!(run.order.redo_count, 1);
    assert!(run.order.closing.is_none());
    run.ok(
        Command::Reply {
            text: "重新答复".to_owned(),
        },
        &lixia(),
        later,
    );
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        later,
    );
    assert_eq!(run.state(), State::Closed);
    assert_eq!(
        run.order.completed_at, first_done,
        "timeliness judged on the first result"
    );
    // The redone result may be sampled again, once.
    let satisfied = || Command::RecordCallback {
        outcome: CallbackOutcome::Satisfied,
        note: String::new(),
    };
    run.ok(satisfied(), &callback_staff(), later);
    assert_eq!(run.order.satisfaction, Some(Satisfaction::Satisfied));
    assert_eq!(
        not_allowed_rule(&run.err(satisfied(), &callback_staff(), later)),
        "TK-VISIT"
    );
}

#[test]
fn agent_answer_found_unlawful_is_redone_by_the_agents() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-10-09T08:00+08:00",
        ),
    );
    run.ok(
        Command::AnswerDirectly {
            answer: "错误解答".to_owned(),
        },
        &agent(),
        t,
    );
    run.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Redo {
                target: RedoTarget::Agent,
            },
            note: "解答不符合法律规定".to_owned(),
        },
        &callback_staff(),
        t,
    );
    assert_eq!(run.state(), State::PendingDispatch);
    run.ok(
        Command::AnswerDirectly {
            answer: "正确解答".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
}

#[test]
fn still_dissatisfied_at_second_callback_gets_the_special_flag() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    run.ok(
        Command::DraftReply {
            text: "答复".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(
        Command::Review {
            decision: Decision::Approve,
            reason: String::new(),
        },
        &reviewer(),
        t,
    );
    run.ok(Command::SendReviewedReply, &lixia(), t);
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    let dissatisfied = |note: &str| Command::RecordCallback {
        outcome: CallbackOutcome::Dissatisfied,
        note: note.to_owned(),
    };
    let qingdao_callback = actor("qd-callback", Role::CallbackStaff, "qingdao");
    assert!(matches!(
        run.err(dissatisfied("x"), &qingdao_callback, t),
        TransitionError::OutOfScope { .. }
    ));
    // 2025-10-10 (Friday) → report to the unit due 10-11 (working Saturday) 24:00.
    let events = run.ok(
        dissatisfied("对处理结果不满意"),
        &callback_staff(),
        moment("2025-10-10T10:00+08:00"),
    );
    assert_eq!(run.state(), State::SecondCallback);
    assert_eq!(run.order.second_callback_unit, Some(unit("jinan")));
    let report_due = events.iter().find_map(|e| match &e.kind {
        EventKind::EscalatedForSecondCallback { report_due, .. } => {
            Some(report_due.display().to_string())
        }
        _ => None,
    });
    assert_eq!(report_due.as_deref(), Some("2025-10-11T24:00+08:00"));
    // The clerk of the first callback may not make the second (W-14)…
    assert_eq!(
        run.err(
            dissatisfied("仍不满意"),
            &callback_staff(),
            moment("2025-10-13T10:00+08:00")
        ),
        TransitionError::SecondCallbackBySameUser(callback_staff().user_id)
    );
    // …nor a unit above the supervising one.
    let province_supervisor = actor("sd-supervisor", Role::Supervisor, "shandong");
    assert!(matches!(
        run.err(
            dissatisfied("仍不满意"),
            &province_supervisor,
            moment("2025-10-13T10:00+08:00")
        ),
        TransitionError::SecondCallbackNotBySupervisingUnit { .. }
    ));
    let supervisor = actor("jn-supervisor", Role::Supervisor, "jinan");
    run.ok(
        dissatisfied("仍不满意"),
        &supervisor,
        moment("2025-10-13T10:00+08:00"),
    );
    // Flagged and kept open for study (W-14 特殊标记，进行研究处理).
    assert_eq!(run.state(), State::SpecialStudy);
    assert!(run.order.special_flag);
    assert!(run.order.closing.is_none());
    assert_eq!(run.order.satisfaction, Some(Satisfaction::Dissatisfied));
    assert_eq!(
        not_allowed_rule(&run.err(
            dissatisfied("again"),
            &callback_staff(),
            moment("2025-10-14T10:00+08:00")
        )),
        "TK-VISIT"
    );
    let lixia_note = Command::StudyNote {
        note: "x".to_owned(),
    };
    assert!(matches!(
        run.err(lixia_note, &lixia(), moment("2025-10-14T10:00+08:00")),
        TransitionError::RoleNotPermitted { .. }
    ));
    run.ok(
        Command::StudyNote {
            note: "约谈承办人，调阅录音".to_owned(),
        },
        &supervisor,
        moment("2025-10-14T10:00+08:00"),
    );
    assert_eq!(run.state(), State::SpecialStudy);
    run.ok(
        Command::ConcludeStudy {
            result: "经研究，依法维持原处理意见并向来电人说明".to_owned(),
        },
        &supervisor,
        moment("2025-10-15T10:00+08:00"),
    );
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(closing.reason, CloseReason::SpecialFlag);
    assert_eq!(closing.reason.rule(), "W-14");
}

#[test]
fn closed_on_judgement_needs_a_note() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Urgent,
            "2025-10-09T08:00+08:00",
        ),
    );
    run.ok(
        Command::AnswerDirectly {
            answer: "答复".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(
        run.state(),
        State::FedBack,
        "urgent orders wait for their callback (H-11)"
    );
    let judgement = |note: &str| Command::RecordCallback {
        outcome: CallbackOutcome::ClosedOnJudgement {
            satisfaction: Satisfaction::BasicallySatisfied,
            ground: JudgementGround::LawOrPolicy,
        },
        note: note.to_owned(),
    };
    assert!(matches!(
        run.err(judgement(""), &callback_staff(), t),
        TransitionError::MissingText { .. }
    ));
    run.ok(judgement("法律规定所限"), &callback_staff(), t);
    assert_eq!(run.state(), State::Closed);
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(
        closing.reason,
        CloseReason::Judgement(JudgementGround::LawOrPolicy)
    );
    assert_eq!(
        run.order.satisfaction,
        Some(Satisfaction::BasicallySatisfied)
    );
}

#[test]
fn urgent_order_closes_only_through_its_callback() {
    let world = World::new();
    let t = moment("2025-09-30T16:30+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Urgent,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    run.ok(
        Command::Reply {
            text: "答复".to_owned(),
        },
        &lixia(),
        t,
    );
    run.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    assert_eq!(run.state(), State::FedBack);
    let due = reminders_due(&run.order, moment("2025-10-11T00:00+08:00"));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].deadline, DeadlineKind::Callback);
    run.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: String::new(),
        },
        &callback_staff(),
        moment("2025-10-09T10:00+08:00"),
    );
    assert_eq!(run.state(), State::Closed);
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(closing.reason, CloseReason::Satisfied);
}

#[test]
fn sampled_callback_on_a_closed_order_keeps_it_closed_when_satisfied() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-10-09T08:00+08:00",
        ),
    );
    run.ok(
        Command::AnswerDirectly {
            answer: "答复".to_owned(),
        },
        &agent(),
        t,
    );
    run.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: String::new(),
        },
        &callback_staff(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
    assert_eq!(run.order.satisfaction, Some(Satisfaction::Satisfied));
    assert_eq!(run.order.callbacks.len(), 1);
}

#[test]
fn illegal_transitions_name_state_and_rule_and_role_errors_are_distinct() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    assert!(matches!(
        run.err(Command::Start, &lixia(), t),
        TransitionError::OutOfScope { .. }
    ));
    assert!(matches!(
        run.err(
            Command::Dispatch {
                units: vec![unit("jinan-lixia")],
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &agent(),
            t
        ),
        TransitionError::RoleNotPermitted { .. }
    ));
    let error = run.err(
        Command::Dispatch {
            units: vec![unit("jinan-lixia")],
            category: None,
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        },
        &dispatcher(),
        t,
    );
    assert_eq!(
        error,
        TransitionError::NotAllowed {
            state: State::Draft,
            command: "dispatch",
            rule: "TK-ROUTE"
        }
    );
    assert!(error.to_string().contains("draft"), "{error}");
    run.ok(Command::Submit, &agent(), t);
    assert_eq!(
        not_allowed_rule(&run.err(Command::Submit, &agent(), t)),
        "TK-LIFECYCLE"
    );
    assert_eq!(
        run.err(
            Command::Dispatch {
                units: Vec::new(),
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &dispatcher(),
            t
        ),
        TransitionError::NoUnits
    );
    assert_eq!(
        run.err(
            Command::Dispatch {
                units: vec![unit("nowhere")],
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &dispatcher(),
            t
        ),
        TransitionError::UnknownUnit(unit("nowhere"))
    );
    let qingdao_dispatcher = actor("qd", Role::Dispatcher, "qingdao");
    assert!(matches!(
        run.err(
            Command::Dispatch {
                units: vec![unit("jinan-lixia")],
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &qingdao_dispatcher,
            t
        ),
        TransitionError::OutOfScope { .. }
    ));
    assert!(matches!(
        run.err(
            Command::Supervise {
                note: "快办".to_owned()
            },
            &actor("qs", Role::Supervisor, "qingdao"),
            t
        ),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(
        Command::Supervise {
            note: "请加快".to_owned(),
        },
        &actor("ps", Role::Supervisor, units::SHANDONG),
        t,
    );
    assert_eq!(
        run.state(),
        State::PendingDispatch,
        "supervision does not change state"
    );
    assert!(matches!(
        run.err(Command::Submit, &agent(), moment("2025-10-01T09:00+08:00")),
        TransitionError::TimeWentBackwards { .. }
    ));
    assert_eq!(
        run.err(
            Command::Create {
                fields: fields(
                    Category::Complaint,
                    Urgency::Normal,
                    "2025-09-30T16:00+08:00"
                )
            },
            &agent(),
            t
        ),
        TransitionError::AlreadyExists
    );
    let blank = Order::new(OrderId("o-2".to_owned()));
    assert_eq!(
        apply(&blank, Command::Submit, &agent(), t, &world.ctx()).err(),
        Some(TransitionError::NotCreated)
    );
}

#[test]
fn create_checks_city_and_receipt_time() {
    let world = World::new();
    let blank = Order::new(OrderId("o-3".to_owned()));
    let mut f = fields(
        Category::Complaint,
        Urgency::Normal,
        "2025-09-30T16:00+08:00",
    );
    f.city = unit("jinan-lixia");
    assert_eq!(
        apply(
            &blank,
            Command::Create { fields: f },
            &agent(),
            moment("2025-09-30T16:00+08:00"),
            &world.ctx()
        )
        .err(),
        Some(TransitionError::NotACity(unit("jinan-lixia")))
    );
    let f = fields(
        Category::Complaint,
        Urgency::Normal,
        "2025-09-30T16:00+08:00",
    );
    assert!(matches!(
        apply(
            &blank,
            Command::Create { fields: f.clone() },
            &agent(),
            moment("2025-09-30T15:00+08:00"),
            &world.ctx()
        ),
        Err(TransitionError::ReceivedInFuture { .. })
    ));
    let qingdao_agent = actor("qa", Role::Agent, "qingdao");
    assert!(matches!(
        apply(
            &blank,
            Command::Create { fields: f },
            &qingdao_agent,
            moment("2025-09-30T16:00+08:00"),
            &world.ctx()
        ),
        Err(TransitionError::OutOfScope { .. })
    ));
}

#[test]
fn withdrawal_is_an_event_and_closes_without_deleting() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    assert!(matches!(
        run.err(
            Command::Withdraw {
                reason: String::new(),
                call_id: Some(CallId("call-1".to_owned())),
            },
            &agent(),
            t
        ),
        TransitionError::MissingText { .. }
    ));
    run.ok(
        Command::Withdraw {
            reason: "来电人撤回".to_owned(),
            call_id: Some(CallId("call-1".to_owned())),
        },
        &agent(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
    assert_eq!(run.events.len(), 4);
    assert!(
        run.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Created { .. }))
    );
    assert_eq!(
        run.order.closing.as_ref().map(|c| c.reason.rule()),
        Some("TK-LEDGER")
    );
}

/// W-19 (automatic ranking, no manual intervention), H-17-5 (no hiding complaints): an
/// agent or dispatcher cannot make an order vanish on their own word. The caller's
/// confirmation must be on record (a call in the order's history: the call it came
/// from, an answered callback), or a supervisor approves; the withdrawal keeps it.
#[test]
fn withdrawal_needs_the_callers_call_on_record_or_a_supervisor() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let withdraw = |call: Option<&str>| Command::Withdraw {
        reason: "来电人撤回".to_owned(),
        call_id: call.map(|c| CallId(c.to_owned())),
    };
    let mut complaint = fields(
        Category::Complaint,
        Urgency::Normal,
        "2025-09-30T16:00+08:00",
    );
    complaint.call_id = None;
    let mut run = Run::new(&world, complaint);
    run.ok(Command::Submit, &agent(), t);
    for who in [agent(), dispatcher()] {
        assert_eq!(
            run.err(withdraw(None), &who, t),
            TransitionError::WithdrawalNotConfirmed
        );
        assert_eq!(
            run.err(withdraw(Some("call-elsewhere")), &who, t),
            TransitionError::WithdrawalCallNotOnRecord(CallId("call-elsewhere".to_owned()))
        );
    }
    // A callback that rang out is no contact with the caller; an answered one is.
    let system = Actor::system(unit("jinan"));
    let attempt = |result| Command::LogCall {
        call: CallLog::CallbackAttempt {
            call_id: CallId("callback-7".to_owned()),
            attempt: 1,
            agent: "1001".to_owned(),
            result,
            recording: None,
        },
    };
    run.ok(attempt(CallAttemptResult::NoAnswer), &system, t);
    assert_eq!(
        run.err(withdraw(Some("callback-7")), &agent(), t),
        TransitionError::WithdrawalCallNotOnRecord(CallId("callback-7".to_owned()))
    );
    run.ok(attempt(CallAttemptResult::Answered), &system, t);
    let events = run.ok(withdraw(Some("callback-7")), &dispatcher(), t);
    assert!(matches!(
        &events[0].kind,
        EventKind::Withdrawn {
            confirmation: Some(WithdrawalConfirmation::CallerOnCall { call_id }),
            ..
        } if call_id.0 == "callback-7"
    ));
    assert!(run.order.is_withdrawn());
    // Replay rebuilds the same order, calls on record included.
    assert_eq!(Order::replay(&run.events), run.order);

    // A supervisor approves without a call, under their own name; out of their
    // subtree they cannot.
    let mut other = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    other.ok(Command::Submit, &agent(), t);
    let qingdao_supervisor = actor("qd-supervisor", Role::Supervisor, "qingdao");
    assert!(matches!(
        other.err(withdraw(None), &qingdao_supervisor, t),
        TransitionError::OutOfScope { .. }
    ));
    let supervisor = actor("supervisor", Role::Supervisor, "jinan");
    let events = other.ok(withdraw(None), &supervisor, t);
    assert!(matches!(
        &events[0].kind,
        EventKind::Withdrawn {
            confirmation: Some(WithdrawalConfirmation::SupervisorApproval),
            ..
        }
    ));
    assert_eq!(events[0].role, Role::Supervisor);
}

/// H-13-1: on review the dispatcher corrects urgency and contact details as well as
/// category and area; every correction is an event with the values before and after,
/// and a new urgency moves the transfer and callback limits (from receipt).
#[test]
fn dispatch_corrections_are_events_and_urgency_moves_the_limits() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-10-09T08:30+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    let events = run.ok(
        Command::Dispatch {
            units: vec![unit("jinan-lixia")],
            category: Some(Category::Complaint),
            area: None,
            urgency: Some(Urgency::Urgent),
            contact_name: Some(" 张三丰 ".to_owned()),
            contact_phone: None,
        },
        &dispatcher(),
        t,
    );
    let EventKind::FieldsCorrected {
        fields: after,
        before,
        deadlines,
    } = &events[0].kind
    else {
        panic!("{events:?}")
    };
    assert_eq!(after.category, Some(Category::Complaint));
    assert_eq!(before.category, Some(Category::Consultation));
    assert_eq!(
        (before.urgency, after.urgency),
        (Some(Urgency::Normal), Some(Urgency::Urgent))
    );
    assert_eq!(after.area, None, "an unchanged field is not a correction");
    assert_eq!(
        after
            .contact
            .as_ref()
            .map(|c| (c.name.as_str(), c.phone.as_str())),
        Some(("张三丰", "13812345678"))
    );
    assert!(deadlines.is_some());
    assert!(matches!(events[1].kind, EventKind::Dispatched { .. }));
    assert_eq!(run.order.fields.urgency, Urgency::Urgent);
    assert_eq!(run.order.fields.contact.name, "张三丰");
    let limits = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    // Urgent: transfer within 1 hour of receipt; a callback limit now exists.
    assert_eq!(limits.transfer.due.at, moment("2025-10-09T09:30+08:00"));
    assert!(limits.callback.is_some());
    assert_eq!(Order::replay(&run.events), run.order);

    // A dispatch that changes nothing records no correction.
    let mut plain = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-10-09T08:30+08:00",
        ),
    );
    plain.ok(Command::Submit, &agent(), t);
    let events = plain.ok(
        Command::Dispatch {
            units: vec![unit("jinan-lixia")],
            category: Some(Category::Consultation),
            area: None,
            urgency: Some(Urgency::Normal),
            contact_name: None,
            contact_phone: Some("13812345678".to_owned()),
        },
        &dispatcher(),
        t,
    );
    assert_eq!(events.len(), 1, "{events:?}");
}

/// H-8 (解释说明): a matter outside the justice system is closed once it is explained
/// to the caller, whatever its category; the explanation is the order's answer.
#[test]
fn outside_the_remit_closes_with_the_explanation() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-10-09T08:30+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    let refused = run.err(
        Command::AnswerDirectly {
            answer: "x".to_owned(),
        },
        &agent(),
        t,
    );
    assert_eq!(not_allowed_rule(&refused), "H-8");
    assert!(matches!(
        run.err(
            Command::ExplainOutsideRemit {
                explanation: " ".to_owned()
            },
            &dispatcher(),
            t
        ),
        TransitionError::MissingText { .. }
    ));
    run.ok(
        Command::ExplainOutsideRemit {
            explanation: "物业纠纷请向住建部门反映".to_owned(),
        },
        &dispatcher(),
        t,
    );
    assert_eq!(run.state(), State::Closed);
    assert_eq!(run.order.completed_at, Some(t));
    assert_eq!(run.order.fields.area, BusinessArea::Other);
    let closing = run
        .order
        .closing
        .clone()
        .unwrap_or_else(|| panic!("closing"));
    assert_eq!(
        (closing.reason, closing.reason.rule()),
        (CloseReason::OutsideRemit, "H-8")
    );
    // Sampled callbacks apply to it as to any answered order (W-14, H-11).
    run.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: String::new(),
        },
        &callback_staff(),
        t,
    );
    assert_eq!(Order::replay(&run.events), run.order);
}

/// The post-call survey lands on the order opened from that call: only from the
/// server, only for the linked call, once, in any state (a closed order keeps it too).
#[test]
fn call_survey_is_recorded_once_by_the_system_for_the_linked_call_only() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2025-10-09T08:55+08:00",
        ),
    );
    let system = Actor::system(unit("jinan"));
    let survey = |call: &str, answer| Command::RecordCallSurvey {
        call_id: CallId(call.to_owned()),
        answer,
    };
    assert!(matches!(
        run.err(survey("call-1", CallSurveyAnswer::Satisfied), &agent(), t),
        TransitionError::RoleNotPermitted { .. }
    ));
    let stranger = run.err(survey("call-2", CallSurveyAnswer::Satisfied), &system, t);
    assert_eq!(not_allowed_rule(&stranger), "CALL-ETIQUETTE");
    run.ok(
        Command::Withdraw {
            reason: "来电人撤回".to_owned(),
            call_id: Some(CallId("call-1".to_owned())),
        },
        &agent(),
        t,
    );
    let events = run.ok(
        survey("call-1", CallSurveyAnswer::BasicallySatisfied),
        &system,
        t,
    );
    assert!(matches!(
        &events[..],
        [Event {
            kind: EventKind::CallSurveyRecorded {
                answer: CallSurveyAnswer::BasicallySatisfied,
                ..
            },
            ..
        }]
    ));
    assert_eq!(run.state(), State::Closed);
    assert_eq!(
        run.order.call_survey,
        Some(CallSurveyAnswer::BasicallySatisfied)
    );
    let again = run.err(survey("call-1", CallSurveyAnswer::Dissatisfied), &system, t);
    assert_eq!(not_allowed_rule(&again), "CALL-ETIQUETTE");
    assert_eq!(Order::replay(&run.events), run.order);
}

#[test]
fn reminders_turn_yellow_a_working_day_before_and_red_at_the_deadline_once_each() {
    let world = World::new();
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), moment("2025-09-30T16:00+08:00"));
    // Transfer due 10-09 24:00: yellow from 10-08 24:00 (start of the last working day).
    assert!(reminders_due(&run.order, moment("2025-10-08T23:59+08:00")).is_empty());
    let yellow = reminders_due(&run.order, moment("2025-10-09T00:00+08:00"));
    assert_eq!(yellow.len(), 1);
    assert_eq!(
        (yellow[0].deadline, yellow[0].level),
        (DeadlineKind::Transfer, ReminderLevel::Yellow)
    );
    let system = Actor::system(unit("jinan"));
    run.ok(
        Command::Remind {
            deadline: DeadlineKind::Transfer,
            level: ReminderLevel::Yellow,
            note: String::new(),
        },
        &system,
        moment("2025-10-09T00:00+08:00"),
    );
    assert_eq!(run.state(), State::PendingDispatch);
    assert!(reminders_due(&run.order, moment("2025-10-09T12:00+08:00")).is_empty());
    let red = reminders_due(&run.order, moment("2025-10-10T00:00+08:00"));
    assert_eq!(red.first().map(|r| r.level), Some(ReminderLevel::Red));
    // Once dispatched, the feedback limit runs instead (10-14 24:00, yellow from 10-13 24:00).
    run.ok(
        Command::Dispatch {
            units: vec![unit("jinan-lixia")],
            category: None,
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        },
        &dispatcher(),
        moment("2025-10-10T00:00+08:00"),
    );
    assert!(reminders_due(&run.order, moment("2025-10-13T12:00+08:00")).is_empty());
    let feedback = reminders_due(&run.order, moment("2025-10-14T08:00+08:00"));
    assert_eq!(
        feedback.first().map(|r| (r.deadline, r.level)),
        Some((DeadlineKind::Feedback, ReminderLevel::Yellow))
    );
    assert_eq!(
        feedback
            .first()
            .map(|r| r.due.display().to_string())
            .as_deref(),
        Some("2025-10-14T24:00+08:00")
    );
}

#[test]
fn privacy_masks_phone_and_name_for_roles_that_do_not_need_them() {
    assert_eq!(mask_name("张三"), "张*");
    assert_eq!(mask_name("欧阳娜娜"), "欧***");
    assert_eq!(mask_name("李"), "*");
    // Dispatch, the handling unit and callback staff work with the caller's contact;
    // agents, heads, reviewers and supervisors see it masked.
    assert!(can_see_contact(&dispatcher()));
    assert!(can_see_contact(&actor(
        "h",
        Role::UnitHandler,
        "jinan-lixia"
    )));
    assert!(can_see_contact(&callback_staff()));
    assert!(!can_see_contact(&agent()));
    assert!(!can_see_contact(&reviewer()));
    assert!(!can_see_contact(&actor("s", Role::Supervisor, "jinan")));
    assert!(!can_see_contact(&actor("h", Role::UnitHead, "jinan")));
    // An agent may still find a caller's earlier orders by the number said on the line.
    assert!(may_search_by_number(&agent()));
    assert!(!may_search_by_number(&reviewer()));
    let contact = Contact {
        name: "张三".to_owned(),
        phone: "13812345678".to_owned(),
    };
    assert_eq!(contact_for(&reviewer(), &contact).phone, "138****5678");
    assert_eq!(contact_for(&agent(), &contact).phone, "138****5678");
    assert_eq!(contact_for(&agent(), &contact).name, "张*");
    assert_eq!(contact_for(&callback_staff(), &contact), contact);
}

/// H-12-4: one mask for every length. Long numbers keep 3 + 4, shorter ones only the
/// end, and at least 4 characters are always hidden (all of 4 or fewer).
#[test]
fn mask_phone_hides_at_least_four_digits_at_every_length() {
    for (number, masked) in [
        ("", ""),
        ("1", "*"),
        ("12", "**"),
        ("1001", "****"),
        ("12345", "****5"),
        ("123456", "****56"),
        ("1234567", "****567"),
        ("82345678", "****5678"),
        ("123456789", "*****6789"),
        ("5312345678", "******5678"),
        ("13812345678", "138****5678"),
        ("053188886666", "053*****6666"),
        ("+8613900001111", "+86*******1111"),
        ("008613812345678", "008********5678"),
    ] {
        assert_eq!(mask_phone(number), masked, "{number}");
    }
    // The rule itself, on every length up to 40: the length stays, at least 4 (or all)
    // hidden, at most the last 4 and the first 3 shown.
    for len in 0..=40_usize {
        let number: String = (0..len)
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        let masked = mask_phone(&number);
        assert_eq!(masked.chars().count(), len, "{number}");
        let hidden = masked.chars().filter(|c| *c == '*').count();
        assert!(hidden >= len.min(4), "{number} → {masked}");
        assert!(len - hidden <= 7, "{number} → {masked}");
        assert!(
            masked.ends_with(&number[len - (len - hidden).min(4)..]),
            "{masked}"
        );
    }
    // Characters, not bytes: a SIP user name with letters masks the same way.
    assert_eq!(mask_phone("张三李四王五"), "****王五");
}

#[test]
fn routing_prefers_the_most_specific_rule() {
    let rules = RoutingRules {
        rules: vec![
            RoutingRule {
                city: None,
                area: Some(BusinessArea::Mediation),
                category: None,
                unit: unit("shandong"),
            },
            RoutingRule {
                city: Some(unit("jinan")),
                area: Some(BusinessArea::Mediation),
                category: None,
                unit: unit("jinan"),
            },
            RoutingRule {
                city: Some(unit("jinan")),
                area: Some(BusinessArea::Mediation),
                category: Some(Category::Complaint),
                unit: unit("jinan-lixia"),
            },
        ],
    };
    let jinan = unit("jinan");
    assert_eq!(
        rules.route_fields(&jinan, BusinessArea::Mediation, Category::Complaint),
        Some(unit("jinan-lixia"))
    );
    assert_eq!(
        rules.route_fields(&jinan, BusinessArea::Mediation, Category::Consultation),
        Some(unit("jinan"))
    );
    assert_eq!(
        rules.route_fields(
            &unit("qingdao"),
            BusinessArea::Mediation,
            Category::Consultation
        ),
        Some(unit("shandong"))
    );
    assert_eq!(
        rules.route_fields(&jinan, BusinessArea::Notary, Category::Consultation),
        None
    );
    let catch_all = RoutingRules {
        rules: vec![RoutingRule {
            city: None,
            area: None,
            category: None,
            unit: jinan.clone(),
        }],
    };
    assert_eq!(
        catch_all.route_fields(&jinan, BusinessArea::Unknown, Category::Consultation),
        None
    );
}

#[test]
fn shandong_tree_has_16_cities_with_their_area_codes() {
    let tree = UnitTree::shandong_default();
    let cities: Vec<&Unit> = tree.units().filter(|u| u.kind == UnitKind::City).collect();
    assert_eq!(cities.len(), 16);
    let root = unit(units::SHANDONG);
    assert!(cities.iter().all(|c| c.parent.as_ref() == Some(&root)));
    for (code, city) in [
        ("0531", "jinan"),
        ("0530", "heze"),
        ("0543", "binzhou"),
        ("0546", "dongying"),
        ("0631", "weihai"),
        ("0632", "zaozhuang"),
        ("0633", "rizhao"),
        ("0635", "liaocheng"),
        ("0534", "dezhou"),
    ] {
        assert_eq!(tree.city_by_area_code(code), Some(&unit(city)), "{code}");
    }
    let world = World::new();
    assert!(world.units.is_ancestor(&root, &unit("jinan-lixia-notary")));
    assert!(
        world
            .units
            .is_ancestor(&unit("jinan"), &unit("jinan-lixia-notary"))
    );
    assert!(
        !world
            .units
            .is_ancestor(&unit("qingdao"), &unit("jinan-lixia"))
    );
    assert!(!world.units.is_ancestor(&unit("jinan"), &unit("jinan")));
    assert!(world.units.covers(&unit("jinan"), &unit("jinan")));
    assert_eq!(
        world.units.parent(&unit("jinan-lixia")),
        Some(&unit("jinan"))
    );
    assert_eq!(
        world.units.city_of(&unit("jinan-lixia-notary")),
        Some(&unit("jinan"))
    );
    let mut tree = tree;
    let orphan = Unit {
        id: unit("x"),
        name: "x".to_owned(),
        kind: UnitKind::County,
        parent: Some(unit("nowhere")),
        area_code: None,
    };
    assert!(matches!(
        tree.add(orphan),
        Err(UnitError::UnknownParent { .. })
    ));
    let dup = Unit {
        id: unit("jinan"),
        name: "x".to_owned(),
        kind: UnitKind::City,
        parent: Some(root),
        area_code: None,
    };
    assert_eq!(tree.add(dup), Err(UnitError::Duplicate(unit("jinan"))));
}

#[test]
fn events_serialize_with_stable_snake_case_names_and_canonical_bytes() {
    let world = World::new();
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), moment("2025-09-30T16:01+08:00"));
    let submitted = &run.events[1];
    let json = String::from_utf8(submitted.canonical_bytes()).unwrap_or_default();
    assert!(json.contains(r#""state_before":"draft""#), "{json}");
    assert!(
        json.contains(r#""state_after":"pending_dispatch""#),
        "{json}"
    );
    assert!(json.contains(r#""type":"submitted""#), "{json}");
    for event in &run.events {
        let bytes = event.canonical_bytes();
        let back: Event = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, event);
        assert_eq!(back.canonical_bytes(), bytes);
    }
    let order_json = serde_json::to_string(&run.order).unwrap_or_default();
    let back: Order = serde_json::from_str(&order_json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, run.order);
    let command = serde_json::to_string(&Command::Sign).unwrap_or_default();
    assert_eq!(command, r#"{"command":"sign"}"#);
}

fn period() -> Period {
    Period {
        from: moment("2025-09-01T00:00+08:00"),
        to: moment("2025-11-01T00:00+08:00"),
    }
}

#[test]
fn unit_scores_count_completion_timeliness_satisfaction_and_returns() {
    let world = World::new();
    let mut orders = Vec::new();
    // 1: complaint, Lixia, on time, satisfied at sampled callback.
    let t = moment("2025-10-09T09:00+08:00");
    let mut on_time = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    on_time.advance_to_in_progress(t);
    on_time.ok(
        Command::Reply {
            text: "r".to_owned(),
        },
        &lixia(),
        t,
    );
    on_time.ok(
        Command::FeedBack {
            note: String::new(),
        },
        &lixia(),
        t,
    );
    on_time.ok(
        Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: String::new(),
        },
        &callback_staff(),
        t,
    );
    orders.push(on_time.order.clone());
    // 2: suggestion, Lixia, still open past its limit (10-14 24:00): overdue.
    let mut late = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    late.advance_to_in_progress(t);
    orders.push(late.order.clone());
    // 3: Shizhong returned a complaint, then Lixia got it and has not finished.
    let mut returned = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    returned.ok(Command::Submit, &agent(), t);
    returned.dispatch(&["jinan-shizhong"], t);
    returned.ok(
        Command::Return {
            reason: "非本单位".to_owned(),
        },
        &shizhong(),
        t,
    );
    orders.push(returned.order.clone());
    // Outside the period: ignored.
    let old = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2024-02-08T10:00+08:00",
        ),
    );
    orders.push(old.order.clone());

    let scores = unit_scores(&orders, period(), period().to);
    let find = |u: &str, g: RankGroup| {
        scores
            .iter()
            .find(|s| s.unit == unit(u) && s.group == g)
            .cloned()
    };
    let suggestions =
        find("jinan-lixia", RankGroup::ComplaintSuggestion).unwrap_or_else(|| panic!("{scores:?}"));
    assert_eq!(
        (
            suggestions.handled,
            suggestions.completed,
            suggestions.on_time,
            suggestions.overdue
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(
        suggestions.completion_rate,
        Rate {
            numerator: 1,
            denominator: 2
        }
    );
    assert_eq!(suggestions.satisfaction_rate.per_mille(), Some(1000));
    // The order open past its limit is not on time: 1 of 2, not 1 of 1 completed.
    assert_eq!(suggestions.on_time_rate.per_mille(), Some(500));
    // Judged before the limit passed, the open order is neither late nor on time.
    let earlier = unit_scores(&orders, period(), t);
    let suggestions_then = earlier
        .iter()
        .find(|s| s.unit == unit("jinan-lixia") && s.group == RankGroup::ComplaintSuggestion)
        .unwrap_or_else(|| panic!("{earlier:?}"));
    assert_eq!(
        (
            suggestions_then.overdue,
            suggestions_then.on_time_rate.per_mille()
        ),
        (0, Some(1000))
    );
    let shizhong_score = find("jinan-shizhong", RankGroup::ComplaintSuggestion)
        .unwrap_or_else(|| panic!("{scores:?}"));
    assert_eq!((shizhong_score.returns, shizhong_score.handled), (1, 0));
    assert!(find("jinan", RankGroup::BusinessHandling).is_none());
}

#[test]
fn ranking_is_per_group_best_first_with_shared_positions() {
    let score = |u: &str, group: RankGroup, completed: u32, handled: u32| UnitScore {
        unit: unit(u),
        group,
        handled,
        completed,
        withdrawn: 0,
        on_time: completed,
        overdue: 0,
        rated: 0,
        satisfied: 0,
        returns: 0,
        completion_rate: Rate {
            numerator: completed,
            denominator: handled,
        },
        on_time_rate: Rate {
            numerator: completed,
            denominator: completed,
        },
        satisfaction_rate: Rate::default(),
        ..UnitScore::empty(unit(u), group)
    };
    let scores = vec![
        score("a", RankGroup::Consultation, 1, 2),
        score("b", RankGroup::Consultation, 3, 4),
        score("c", RankGroup::Consultation, 2, 4),
        score("d", RankGroup::Consultation, 0, 0),
        score("e", RankGroup::BusinessHandling, 1, 1),
    ];
    let ranked = rank(&scores, RankGroup::Consultation, RankBy::CompletionRate);
    let order: Vec<(&str, u32)> = ranked
        .iter()
        .map(|r| (r.score.unit.as_str(), r.position))
        .collect();
    assert_eq!(order, vec![("b", 1), ("a", 2), ("c", 2), ("d", 4)]);
    assert_eq!(
        rank(&scores, RankGroup::BusinessHandling, RankBy::CompletionRate).len(),
        1
    );
}

#[test]
fn provisional_deadlines_are_recomputed_when_the_missing_year_is_added() {
    let world = World::new();
    let received = "2026-12-30T10:00+08:00";
    let run = Run::new(
        &world,
        fields(Category::Complaint, Urgency::Normal, received),
    );
    let before = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert!(before.provisional());
    // Not provisional any more: nothing to recompute.
    let admin = actor("admin", Role::ProvinceAdmin, units::SHANDONG);
    let t = moment("2026-12-30T11:00+08:00");
    let with_2027 = format!(
        "{SHIPPED}\n[years.2027]\nholidays = [\"2027-01-01\"]\nworkdays = []\nin_lieu = []\n"
    );
    let calendar = Calendar::from_toml_str(&with_2027).unwrap_or_else(|e| panic!("{e}"));
    let reloaded = World {
        calendar,
        units: world.units.clone(),
        routing: world.routing.clone(),
    };
    assert!(matches!(
        run.err(Command::RecomputeDeadlines, &agent(), t),
        TransitionError::RoleNotPermitted { .. }
    ));
    let (order, events) = apply(
        &run.order,
        Command::RecomputeDeadlines,
        &admin,
        t,
        &reloaded.ctx(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let after = order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert!(!after.provisional());
    // 12-31 (1), 2027-01-01 holiday, 01-04..01-07 (5).
    assert_eq!(
        after.feedback.due.display().to_string(),
        "2027-01-07T24:00+08:00"
    );
    assert_eq!(events.len(), 1);
    let again = apply(
        &order,
        Command::RecomputeDeadlines,
        &admin,
        t,
        &reloaded.ctx(),
    );
    assert!(matches!(
        again,
        Err(TransitionError::NotAllowed {
            rule: "TK-DEADLINE",
            ..
        })
    ));
}

#[test]
fn call_facts_are_logged_by_the_system_only_and_change_no_state() {
    let world = World::new();
    let mut run = Run::new(
        &world,
        fields(
            Category::Consultation,
            Urgency::Normal,
            "2026-02-14T10:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), moment("2026-02-14T10:00+08:00"));
    let state = run.state();
    let log = |attempt| Command::LogCall {
        call: CallLog::CallbackAttempt {
            call_id: CallId("c1".into()),
            attempt,
            agent: "1001".into(),
            result: CallAttemptResult::NoAnswer,
            recording: None,
        },
    };
    // People cannot write call facts: the system does, in any state.
    assert!(matches!(
        run.try_cmd(log(1), &agent(), moment("2026-02-14T10:05+08:00")),
        Err(TransitionError::RoleNotPermitted { .. })
    ));
    let system = Actor::system(unit("jinan"));
    let events = run.ok(log(1), &system, moment("2026-02-14T10:05+08:00"));
    assert_eq!(run.state(), state);
    match &events[..] {
        [event] => match &event.kind {
            EventKind::CallLogged { call, note } => {
                assert!(matches!(call, CallLog::CallbackAttempt { attempt: 1, .. }));
                assert!(note.contains("no answer"), "{note}");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    run.ok(
        Command::LogCall {
            call: CallLog::TransferredToUnit {
                call_id: CallId("c1".into()),
                unit: unit("jinan-legal-aid"),
                agent: Some("1001".into()),
            },
        },
        &system,
        moment("2026-02-14T10:06+08:00"),
    );
    assert_eq!(run.state(), state);
}

/// Callbacks recorded before the recorder was kept (W-14): the event reads and writes
/// back byte for byte (its hash stands) and replays to a record without a recorder,
/// as the snapshots stored then.
#[test]
fn callbacks_recorded_before_the_recorder_was_kept_replay_unchanged() {
    let old =
        r#"{"type":"callback_recorded","round":"first","satisfaction":"dissatisfied","note":"x"}"#;
    let kind: EventKind = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        serde_json::to_string(&kind).unwrap_or_else(|e| panic!("{e}")),
        old
    );
    let EventKind::CallbackRecorded { by, .. } = kind else {
        panic!("kind")
    };
    assert_eq!(by, None);
}

/// A unit head who asks for an extension may not approve it: the request needs a
/// second person (W-12); another head of the unit may decide it.
#[test]
fn a_unit_head_may_not_decide_their_own_extension_request() {
    let world = World::new();
    let t = moment("2024-02-19T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Complaint,
            Urgency::Normal,
            "2024-02-08T10:00+08:00",
        ),
    );
    run.advance_to_in_progress(t);
    run.ok(
        Command::RequestExtension {
            extra_working_days: 3,
            reason: "涉及多个单位".to_owned(),
        },
        &lixia_head(),
        t,
    );
    let approve = || Command::DecideExtension {
        decision: Decision::Approve,
        reason: String::new(),
    };
    assert_eq!(
        run.err(approve(), &lixia_head(), t),
        TransitionError::ExtensionDecidedByRequester(lixia_head().user_id)
    );
    assert!(run.order.pending_extension.is_some());
    let deputy_head = actor("lixia-deputy-head", Role::UnitHead, "jinan-lixia");
    run.ok(approve(), &deputy_head, t);
    let deadlines = run.order.deadlines.unwrap_or_else(|| panic!("deadlines"));
    assert_eq!(deadlines.feedback_working_days, 8);
}

/// Extension requests recorded before the requester was kept: the event reads and
/// writes back byte for byte (its hash stands) and replays without a requester.
#[test]
fn extension_requests_recorded_before_the_requester_was_kept_replay_unchanged() {
    let old = r#"{"type":"extension_requested","request":{"unit":"jinan-lixia","extra_working_days":2,"reason":"x","at":"2024-02-20T09:00:00+08:00"}}"#;
    let kind: EventKind = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        serde_json::to_string(&kind).unwrap_or_else(|e| panic!("{e}")),
        old
    );
    let EventKind::ExtensionRequested { request } = kind else {
        panic!("kind")
    };
    assert_eq!(request.requested_by, None);
}

/// W-19: the combined score weighs the figures a unit has data for; check-config's
/// rule for the weights (each >= 0, not all 0).
#[test]
fn combined_score_weighs_the_figures_with_data() {
    use super::metrics::RankingWeights;
    let mut score = UnitScore::empty(unit("a"), RankGroup::Consultation);
    let weights = RankingWeights::default();
    assert_eq!(weights.combine(&score), None, "no figure, no score");
    score.on_time_rate = Rate {
        numerator: 1,
        denominator: 2,
    };
    score.sign_in_rate = Rate {
        numerator: 1,
        denominator: 1,
    };
    // (0.3 × 500 + 0.1 × 1000) / 0.4 = 625.
    assert_eq!(weights.combine(&score), Some(625));
    let only_sign_in = RankingWeights {
        completion_rate: 0.0,
        on_time_rate: 0.0,
        satisfaction_rate: 0.0,
        sign_in_rate: 1.0,
        transfer_rate: 0.0,
    };
    assert_eq!(only_sign_in.combine(&score), Some(1000));
    assert!(weights.problems().is_empty());
    assert_eq!(
        RankingWeights {
            on_time_rate: -0.5,
            ..weights
        }
        .problems(),
        vec![("on_time_rate", "must be a number >= 0")]
    );
    assert_eq!(
        RankingWeights {
            sign_in_rate: 0.0,
            ..only_sign_in
        }
        .problems()
        .len(),
        1,
        "all zero"
    );
    assert_eq!(
        RankingWeights {
            transfer_rate: f64::NAN,
            ..weights
        }
        .problems()
        .len(),
        1
    );
}

#[test]
fn urgent_transfer_missed_and_leader_alerts_are_recorded_once_by_the_system() {
    let world = World::new();
    let received = "2025-09-30T16:00+08:00";
    let mut run = Run::new(
        &world,
        fields(Category::Complaint, Urgency::Urgent, received),
    );
    run.ok(Command::Submit, &agent(), moment(received));
    let system = Actor::system(unit("jinan"));
    // Within the hour: the leaders are owed the receipt only; nothing is missed.
    let early = moment("2025-09-30T16:20+08:00");
    assert_eq!(
        leader_alerts_due(&run.order, early),
        [LeaderAlert::UrgentReceived]
    );
    assert!(limits_missed(&run.order, early).is_empty());
    assert_eq!(scheduler_due(&run.order), Some(moment(received)));
    let missed_early = run.err(
        Command::RecordMissedLimit {
            deadline: DeadlineKind::Transfer,
        },
        &system,
        early,
    );
    assert_eq!(not_allowed_rule(&missed_early), "TK-DEADLINE");
    run.ok(
        Command::AlertLeaders {
            alert: LeaderAlert::UrgentReceived,
            leaders: vec!["王局长".to_owned()],
        },
        &system,
        early,
    );
    // Only the system records them.
    let by_hand = run.err(
        Command::AlertLeaders {
            alert: LeaderAlert::UrgentTransferMissed,
            leaders: Vec::new(),
        },
        &dispatcher(),
        early,
    );
    assert!(
        matches!(by_hand, TransitionError::RoleNotPermitted { .. }),
        "{by_hand}"
    );
    // Dispatched at 17:10, after the hour: a late transfer, missed once.
    let late = moment("2025-09-30T17:10+08:00");
    run.dispatch(&["jinan-lixia"], late);
    assert_eq!(transfer_on_time(&run.order, late), Some(false));
    assert_eq!(
        run.order.dispatched_by,
        Some(UserId("dispatcher".to_owned()))
    );
    assert_eq!(
        scheduler_due(&run.order),
        Some(moment("2025-09-30T17:00+08:00"))
    );
    let missed = limits_missed(&run.order, late);
    assert_eq!(missed.len(), 1);
    assert_eq!(missed[0].0, DeadlineKind::Transfer);
    run.ok(
        Command::RecordMissedLimit {
            deadline: DeadlineKind::Transfer,
        },
        &system,
        late,
    );
    run.ok(
        Command::AlertLeaders {
            alert: LeaderAlert::UrgentTransferMissed,
            leaders: vec!["王局长".to_owned()],
        },
        &system,
        late,
    );
    assert!(limits_missed(&run.order, late).is_empty());
    assert!(leader_alerts_due(&run.order, late).is_empty());
    let again = run.err(
        Command::RecordMissedLimit {
            deadline: DeadlineKind::Transfer,
        },
        &system,
        late,
    );
    assert_eq!(not_allowed_rule(&again), "TK-DEADLINE");
    // Back to the feedback limit alone (5 working days after National Day).
    assert_eq!(
        scheduler_due(&run.order),
        Some(run.order.deadlines.expect("deadlines").feedback.due.at)
    );
    // Replaying the ledger gives the same order.
    assert_eq!(Order::replay(&run.events), run.order);
}

#[test]
fn helping_units_are_added_by_dispatch_after_the_lead_signed_and_co_handle() {
    let world = World::new();
    let t = moment("2025-10-09T09:00+08:00");
    let mut run = Run::new(
        &world,
        fields(
            Category::Suggestion,
            Urgency::Normal,
            "2025-09-30T16:00+08:00",
        ),
    );
    run.ok(Command::Submit, &agent(), t);
    run.dispatch(&["jinan-lixia"], t);
    let add = |units: &[&str], reason: &str| Command::AddHelpingUnits {
        units: units.iter().map(|u| unit(u)).collect(),
        reason: reason.to_owned(),
    };
    // Before the lead signed: W-11 allows it only after.
    assert_eq!(
        not_allowed_rule(&run.err(add(&["jinan-shizhong"], "需市中区协助"), &dispatcher(), t)),
        "W-11"
    );
    run.ok(Command::Sign, &lixia(), t);
    // Only dispatch adds helpers; a reason is required; no unit twice.
    assert!(matches!(
        run.err(add(&["jinan-shizhong"], "需协助"), &lixia(), t),
        TransitionError::RoleNotPermitted { .. }
    ));
    assert!(matches!(
        run.err(add(&["jinan-shizhong"], " "), &dispatcher(), t),
        TransitionError::MissingText { .. }
    ));
    assert!(matches!(
        run.err(add(&["jinan-lixia"], "需协助"), &dispatcher(), t),
        TransitionError::AlreadyHandling(_)
    ));
    assert!(matches!(
        run.err(add(&["nowhere"], "需协助"), &dispatcher(), t),
        TransitionError::UnknownUnit(_)
    ));
    let events = run.ok(
        add(&["jinan-shizhong"], "涉及市中区辖区，需协办"),
        &dispatcher(),
        t,
    );
    assert!(matches!(
        &events[0].kind,
        EventKind::HelpingUnitsAdded { units, reason }
            if units == &vec![unit("jinan-shizhong")] && reason == "涉及市中区辖区，需协办"
    ));
    assert_eq!(run.state(), State::Signed, "the lead keeps the order");
    assert_eq!(run.order.lead_unit, Some(unit("jinan-lixia")));
    assert!(run.order.is_assigned_to(&unit("jinan-shizhong")));
    // The helper acts like any co-handler: signs (not lead), adds notes, may not reply.
    let events = run.ok(Command::Sign, &shizhong(), t);
    assert!(matches!(
        &events[0].kind,
        EventKind::Signed { lead: false, .. }
    ));
    run.ok(
        Command::AddNote {
            note: "市中区协办意见".to_owned(),
        },
        &shizhong(),
        t,
    );
    assert!(matches!(
        run.err(Command::Start, &shizhong(), t),
        TransitionError::OutOfScope { .. }
    ));
    run.ok(Command::Start, &lixia(), t);
    run.ok(
        Command::Reply {
            text: "答复".to_owned(),
        },
        &lixia(),
        t,
    );
    // After the reply the work is done: no helpers any more.
    assert_eq!(
        not_allowed_rule(&run.err(add(&["jinan-legal-aid"], "晚了"), &dispatcher(), t)),
        "W-11"
    );
}
