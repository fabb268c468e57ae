//! Call detail records (CDR): one per call, stored in the database and listed by
//! `GET /api/calls`. The call shell updates a [`CdrBuilder`] as the call proceeds and
//! stores [`CdrBuilder::finish`] at the end.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::city::{CityId, CityResolution, ResolvedBy};
use super::flow::{CallCategory, IvrOutcome, SurveyResult, Urgency};

/// A stage the call went through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallPath {
    /// Answered by the IVR (greeting, menus).
    Ivr,
    /// Outside working hours: the after-hours flow.
    AfterHours,
    /// Waited in the city's queue.
    Queue,
    /// Rang the after-hours duty list.
    DutyList,
    /// Left a voice message.
    VoiceMessage,
    /// Pressed the callback key in the queue and hung up, keeping the place
    /// (`CALL-CALLBACK`): not an abandoned call.
    CallbackRequested,
    /// Transferred live by the agent to a unit's outside number (`CALL-TRANSFER`).
    TransferredToUnit,
    /// The caller hung up before reaching an agent or leaving a message.
    Abandoned,
    /// Placed by the hotline from a work order to call its contact back (H-11, H-12-3
    /// 回拨解答): the person's phone first, then the contact through the trunk.
    OrderCallback,
}

/// Who ended the call first (`CALL-ETIQUETTE`: normally the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HangupParty {
    /// The caller.
    Caller,
    /// The agent.
    Agent,
    /// The server (end of IVR, errors, shutdown).
    System,
}

/// How an agent transferred a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// REFER without Replaces: to a queue or the survey.
    Blind,
    /// After a consultation call (REFER with Replaces, or INVITE with Replaces).
    Attended,
}

/// One transfer of the call, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallTransfer {
    /// When.
    pub at: DateTime<FixedOffset>,
    /// The agent who transferred.
    pub from_agent: Option<String>,
    /// Where to: `agent:<id>`, `queue:<city>` or `survey`.
    pub to: String,
    /// How.
    pub kind: TransferKind,
}

/// Why the server itself closed a record rather than a hang-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SystemEnd {
    /// SIGTERM: the call was still up when the drain timeout ran out (BYE with a Reason).
    Shutdown,
    /// Found still open at start-up after a clean stop (its end was never recorded).
    ServerRestart,
    /// Found still open at start-up after the process died (kill -9, power loss).
    Crash,
}

impl SystemEnd {
    /// The name as stored and shown (`shutdown`, `server-restart`, `crash`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::ServerRestart => "server-restart",
            Self::Crash => "crash",
        }
    }
}

/// Where an agent's leg was when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStage {
    /// The agent's phone was ringing.
    Ringing,
    /// The agent was talking to the caller.
    OnCall,
}

/// Why an agent's leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentFailureCause {
    /// The offer was withdrawn unanswered (ring timeout, the phone's registration
    /// lapsed, the call moved on).
    NotAnswered,
    /// The phone did not respond at all (not even ringing) before the ring timeout: it
    /// is gone, and was taken offline.
    NoResponse,
    /// The leg failed: a final error response, or no response at all.
    LegFailed,
    /// The bridged agent's audio stopped (the phone vanished): the caller was re-queued.
    MediaTimeout,
}

/// An agent who was offered the call and did not serve it to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentFailure {
    /// The agent (id).
    pub agent: String,
    /// When the failure was seen.
    pub at: DateTime<FixedOffset>,
    pub stage: AgentStage,
    pub cause: AgentFailureCause,
    /// The SIP status that ended the leg, when there was one.
    pub status: Option<u16>,
}

/// The record of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallDetailRecord {
    /// The call's id (SIP Call-ID of the A-leg or a server id).
    pub call_id: String,
    /// Caller number as received.
    pub caller: String,
    /// Number dialled (Request-URI user).
    pub dialled: String,
    /// INVITE received.
    pub arrival: DateTime<FixedOffset>,
    /// Answered by the IVR (200 OK sent).
    pub ivr_answer: Option<DateTime<FixedOffset>>,
    /// Entered the queue.
    pub queue_entry: Option<DateTime<FixedOffset>>,
    /// An agent answered.
    pub agent_answer: Option<DateTime<FixedOffset>>,
    /// The call ended.
    pub end: Option<DateTime<FixedOffset>>,
    /// The city that handled the call.
    pub city: Option<CityId>,
    /// How the city was found.
    pub city_resolved_by: Option<ResolvedBy>,
    /// 咨询 / 投诉 / 建议.
    pub category: Option<CallCategory>,
    /// Urgency.
    pub urgency: Option<Urgency>,
    /// Stages, in order, each once.
    pub path: Vec<CallPath>,
    /// Who hung up first.
    pub hung_up_first: Option<HangupParty>,
    /// The agent who answered (id).
    pub agent: Option<String>,
    /// Recording files (call recording, voice message).
    pub recordings: Vec<String>,
    /// The work order opened for the call (draft or voice message), if any.
    pub work_order: Option<String>,
    /// Satisfaction survey answer.
    pub survey: Option<SurveyResult>,
    /// Transfers by agents, in order (the agent talking at the end is the last
    /// `agent:` target, else `agent`).
    #[serde(default)]
    pub transfers: Vec<CallTransfer>,
    /// Set when the server closed the record itself (shutdown, restart, crash).
    #[serde(default)]
    pub end_reason: Option<SystemEnd>,
    /// Agents offered the call who did not answer, or vanished while talking (the
    /// caller was then re-queued), in order.
    #[serde(default)]
    pub agent_failures: Vec<AgentFailure>,
}

impl CallDetailRecord {
    /// Close a record found open at start-up (the process stopped while the call was
    /// up): it ended at `last_known` (never before it arrived), by the system, for
    /// `reason`.
    pub fn close_after_stop(&mut self, last_known: DateTime<FixedOffset>, reason: SystemEnd) {
        let end = self.end.unwrap_or(last_known).max(self.arrival);
        self.end = Some(end);
        self.hung_up_first.get_or_insert(HangupParty::System);
        self.end_reason.get_or_insert(reason);
    }

    /// Time from queue entry to agent answer (or to the end when nobody answered).
    #[must_use]
    pub fn queue_wait(&self) -> Option<chrono::TimeDelta> {
        let entered = self.queue_entry?;
        let left = self.agent_answer.or(self.end)?;
        Some(left - entered)
    }

    /// Time from agent answer to the end.
    #[must_use]
    pub fn talk_time(&self) -> Option<chrono::TimeDelta> {
        Some(self.end? - self.agent_answer?)
    }
}

/// Builds a [`CallDetailRecord`] as the call proceeds.
#[derive(Debug, Clone)]
pub struct CdrBuilder {
    record: CallDetailRecord,
}

impl CdrBuilder {
    /// Starts the record when the INVITE arrives.
    #[must_use]
    pub fn new(
        call_id: impl Into<String>,
        caller: impl Into<String>,
        dialled: impl Into<String>,
        arrival: DateTime<FixedOffset>,
    ) -> Self {
        Self {
            record: CallDetailRecord {
                call_id: call_id.into(),
                caller: caller.into(),
                dialled: dialled.into(),
                arrival,
                ivr_answer: None,
                queue_entry: None,
                agent_answer: None,
                end: None,
                city: None,
                city_resolved_by: None,
                category: None,
                urgency: None,
                path: Vec::new(),
                hung_up_first: None,
                agent: None,
                recordings: Vec::new(),
                work_order: None,
                survey: None,
                transfers: Vec::new(),
                end_reason: None,
                agent_failures: Vec::new(),
            },
        }
    }

    fn push_path(&mut self, step: CallPath) {
        if !self.record.path.contains(&step) {
            self.record.path.push(step);
        }
    }

    /// The IVR answered the call.
    pub fn ivr_answered(&mut self, at: DateTime<FixedOffset>) -> &mut Self {
        self.record.ivr_answer.get_or_insert(at);
        self.push_path(CallPath::Ivr);
        self
    }

    /// The city was resolved (possibly again, after the city menu).
    pub fn city(&mut self, resolution: &CityResolution) -> &mut Self {
        self.record.city = Some(resolution.city.clone());
        self.record.city_resolved_by = Some(resolution.how);
        self
    }

    /// The call is outside the city's working hours.
    pub fn after_hours(&mut self) -> &mut Self {
        self.push_path(CallPath::AfterHours);
        self
    }

    /// The caller chose (or was given) a category and urgency.
    pub fn category(&mut self, category: CallCategory, urgency: Urgency) -> &mut Self {
        self.record.category = Some(category);
        self.record.urgency = Some(urgency);
        self
    }

    /// The IVR handed over or ended; records the matching path step.
    pub fn ivr_outcome(&mut self, outcome: IvrOutcome) -> &mut Self {
        match outcome {
            IvrOutcome::Enqueued => {}
            IvrOutcome::DutyList => self.push_path(CallPath::DutyList),
            IvrOutcome::VoiceMessage => self.push_path(CallPath::VoiceMessage),
            IvrOutcome::SystemHangup | IvrOutcome::Abandoned => {}
        }
        self
    }

    /// The call entered the queue.
    pub fn queued(&mut self, at: DateTime<FixedOffset>) -> &mut Self {
        self.record.queue_entry.get_or_insert(at);
        self.push_path(CallPath::Queue);
        self
    }

    /// An agent (or duty agent) answered.
    pub fn agent_answered(
        &mut self,
        at: DateTime<FixedOffset>,
        agent: impl Into<String>,
    ) -> &mut Self {
        self.record.agent_answer.get_or_insert(at);
        self.record.agent.get_or_insert_with(|| agent.into());
        self
    }

    /// An agent transferred the call.
    pub fn transferred(
        &mut self,
        at: DateTime<FixedOffset>,
        from_agent: Option<String>,
        to: String,
        kind: TransferKind,
    ) -> &mut Self {
        self.record.transfers.push(CallTransfer {
            at,
            from_agent,
            to,
            kind,
        });
        self
    }

    /// A recording file belongs to the call.
    pub fn recording(&mut self, path: impl Into<String>) -> &mut Self {
        self.record.recordings.push(path.into());
        self
    }

    /// The caller asked to be called back from the queue.
    pub fn callback_requested(&mut self) -> &mut Self {
        self.push_path(CallPath::CallbackRequested);
        self
    }

    /// The agent transferred the caller to a unit's outside number.
    pub fn transferred_to_unit(&mut self) -> &mut Self {
        self.push_path(CallPath::TransferredToUnit);
        self
    }

    /// A voice message was left (recording path).
    pub fn voice_message(&mut self, path: impl Into<String>) -> &mut Self {
        self.push_path(CallPath::VoiceMessage);
        self.recording(path)
    }

    /// Someone hung up; only the first one counts as "hung up first".
    pub fn hung_up(&mut self, at: DateTime<FixedOffset>, party: HangupParty) -> &mut Self {
        if self.record.hung_up_first.is_none() {
            self.record.hung_up_first = Some(party);
            self.record.end = Some(at);
        }
        self
    }

    /// An agent's leg failed. A bridged agent who vanished is no longer "the agent" of
    /// the call: the caller goes back to the queue and the next one to answer is.
    pub fn agent_failed(
        &mut self,
        at: DateTime<FixedOffset>,
        agent: impl Into<String>,
        stage: AgentStage,
        cause: AgentFailureCause,
        status: Option<u16>,
    ) -> &mut Self {
        let agent = agent.into();
        if stage == AgentStage::OnCall && self.record.agent.as_deref() == Some(agent.as_str()) {
            self.record.agent = None;
            self.record.agent_answer = None;
        }
        self.record.agent_failures.push(AgentFailure {
            agent,
            at,
            stage,
            cause,
            status,
        });
        self
    }

    /// The server ended the call itself for `reason` (a shutdown's drain timeout).
    pub fn system_end(&mut self, at: DateTime<FixedOffset>, reason: SystemEnd) -> &mut Self {
        self.record.end_reason.get_or_insert(reason);
        self.hung_up(at, HangupParty::System)
    }

    /// The work order opened for the call.
    pub fn work_order(&mut self, id: impl Into<String>) -> &mut Self {
        self.record.work_order = Some(id.into());
        self
    }

    /// The survey answer.
    pub fn survey(&mut self, result: SurveyResult) -> &mut Self {
        self.record.survey = Some(result);
        self
    }

    /// The record so far.
    #[must_use]
    pub fn record(&self) -> &CallDetailRecord {
        &self.record
    }

    /// The final record. A caller who hung up before any agent answered and without
    /// leaving a message has `abandoned` appended to the path; a call never hung up
    /// explicitly is closed at `at` by the system.
    #[must_use]
    pub fn finish(mut self, at: DateTime<FixedOffset>) -> CallDetailRecord {
        if self.record.hung_up_first.is_none() {
            self.hung_up(at, HangupParty::System);
        }
        let abandoned = self.record.hung_up_first == Some(HangupParty::Caller)
            && self.record.agent_answer.is_none()
            && !self.record.path.contains(&CallPath::VoiceMessage)
            && !self.record.path.contains(&CallPath::CallbackRequested);
        if abandoned {
            self.push_path(CallPath::Abandoned);
        }
        self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn builder() -> CdrBuilder {
        let mut b = CdrBuilder::new(
            "call-1",
            "13805310000",
            "12348",
            at("2026-02-14T10:00:00+08:00"),
        );
        b.ivr_answered(at("2026-02-14T10:00:01+08:00"))
            .city(&CityResolution {
                city: CityId::new("jinan"),
                how: ResolvedBy::MobilePrefix,
            });
        b
    }

    #[test]
    fn answered_call_records_times_waits_and_who_hung_up() {
        let mut b = builder();
        b.category(CallCategory::Complaint, Urgency::Normal)
            .ivr_outcome(IvrOutcome::Enqueued)
            .queued(at("2026-02-14T10:00:30+08:00"))
            .agent_answered(at("2026-02-14T10:01:10+08:00"), "1001")
            .recording("recordings/2026/02/14/call-1.wav")
            .hung_up(at("2026-02-14T10:06:10+08:00"), HangupParty::Caller)
            .hung_up(at("2026-02-14T10:06:11+08:00"), HangupParty::Agent)
            .survey(SurveyResult::Satisfied);
        let cdr = b.finish(at("2026-02-14T10:06:12+08:00"));
        assert_eq!(cdr.path, vec![CallPath::Ivr, CallPath::Queue]);
        assert_eq!(cdr.hung_up_first, Some(HangupParty::Caller));
        assert_eq!(cdr.end, Some(at("2026-02-14T10:06:10+08:00")));
        assert_eq!(cdr.queue_wait(), Some(chrono::TimeDelta::seconds(40)));
        assert_eq!(cdr.talk_time(), Some(chrono::TimeDelta::seconds(300)));
        assert_eq!(cdr.agent.as_deref(), Some("1001"));
    }

    #[test]
    fn caller_leaving_the_queue_is_abandoned() {
        let mut b = builder();
        b.queued(at("2026-02-14T10:00:30+08:00"))
            .hung_up(at("2026-02-14T10:02:00+08:00"), HangupParty::Caller);
        let cdr = b.finish(at("2026-02-14T10:02:00+08:00"));
        assert_eq!(
            cdr.path,
            vec![CallPath::Ivr, CallPath::Queue, CallPath::Abandoned]
        );
        assert_eq!(cdr.queue_wait(), Some(chrono::TimeDelta::seconds(90)));
        assert_eq!(cdr.talk_time(), None);
    }

    #[test]
    fn a_caller_who_asked_for_a_callback_did_not_abandon() {
        let mut b = builder();
        b.queued(at("2026-02-14T10:00:30+08:00"))
            .callback_requested()
            .hung_up(at("2026-02-14T10:01:00+08:00"), HangupParty::Caller);
        let cdr = b.finish(at("2026-02-14T10:01:00+08:00"));
        assert_eq!(
            cdr.path,
            vec![CallPath::Ivr, CallPath::Queue, CallPath::CallbackRequested]
        );
    }

    #[test]
    fn after_hours_voice_message_is_not_abandoned() {
        let mut b = builder();
        b.after_hours()
            .category(CallCategory::Consultation, Urgency::Urgent)
            .voice_message("recordings/vm/call-1.wav")
            .work_order("T-20260214-0001")
            .ivr_outcome(IvrOutcome::VoiceMessage)
            .hung_up(at("2026-02-14T20:03:00+08:00"), HangupParty::Caller);
        let cdr = b.finish(at("2026-02-14T20:03:00+08:00"));
        assert_eq!(
            cdr.path,
            vec![CallPath::Ivr, CallPath::AfterHours, CallPath::VoiceMessage]
        );
        assert_eq!(cdr.recordings, vec!["recordings/vm/call-1.wav".to_owned()]);
        assert_eq!(cdr.work_order.as_deref(), Some("T-20260214-0001"));
    }

    #[test]
    fn unfinished_hangup_is_closed_by_the_system() {
        let cdr = builder().finish(at("2026-02-14T10:05:00+08:00"));
        assert_eq!(cdr.hung_up_first, Some(HangupParty::System));
        assert!(!cdr.path.contains(&CallPath::Abandoned));
    }

    #[test]
    fn a_record_left_open_by_a_crash_is_closed_by_the_system_with_the_reason() {
        let mut open = builder().record().clone();
        assert_eq!(open.end, None);
        open.close_after_stop(at("2026-02-14T10:03:00+08:00"), SystemEnd::Crash);
        assert_eq!(open.end, Some(at("2026-02-14T10:03:00+08:00")));
        assert_eq!(open.hung_up_first, Some(HangupParty::System));
        assert_eq!(open.end_reason, Some(SystemEnd::Crash));
        let json = serde_json::to_value(&open).unwrap_or_default();
        assert_eq!(json["end_reason"], "crash");
        // A last-known time before the arrival (clock skew) never ends a call early.
        let mut skewed = builder().record().clone();
        skewed.close_after_stop(at("2026-02-14T09:00:00+08:00"), SystemEnd::ServerRestart);
        assert_eq!(skewed.end, Some(skewed.arrival));
        assert_eq!(SystemEnd::ServerRestart.as_str(), "server-restart");
    }

    #[test]
    fn a_vanished_agent_is_listed_and_the_next_one_serves_the_call() {
        let mut b = builder();
        b.queued(at("2026-02-14T10:00:30+08:00"))
            .agent_failed(
                at("2026-02-14T10:00:40+08:00"),
                "1001",
                AgentStage::Ringing,
                AgentFailureCause::NotAnswered,
                None,
            )
            .agent_answered(at("2026-02-14T10:00:45+08:00"), "1002")
            .agent_failed(
                at("2026-02-14T10:01:00+08:00"),
                "1002",
                AgentStage::OnCall,
                AgentFailureCause::MediaTimeout,
                None,
            )
            .agent_answered(at("2026-02-14T10:01:10+08:00"), "1003")
            .hung_up(at("2026-02-14T10:02:10+08:00"), HangupParty::Agent);
        let cdr = b.finish(at("2026-02-14T10:02:10+08:00"));
        assert_eq!(cdr.agent.as_deref(), Some("1003"));
        assert_eq!(cdr.talk_time(), Some(chrono::TimeDelta::seconds(60)));
        let lost: Vec<(&str, AgentStage)> = cdr
            .agent_failures
            .iter()
            .map(|f| (f.agent.as_str(), f.stage))
            .collect();
        assert_eq!(
            lost,
            [("1001", AgentStage::Ringing), ("1002", AgentStage::OnCall)]
        );
        let json = serde_json::to_value(&cdr).unwrap_or_default();
        assert_eq!(json["agent_failures"][1]["cause"], "media_timeout");
    }

    #[test]
    fn records_stored_before_these_fields_still_load() {
        let mut json = serde_json::to_value(builder().finish(at("2026-02-14T10:05:00+08:00")))
            .unwrap_or_default();
        if let Some(map) = json.as_object_mut() {
            map.remove("end_reason");
            map.remove("agent_failures");
        }
        let back: Result<CallDetailRecord, _> = serde_json::from_value(json);
        assert!(back.is_ok_and(|r| r.end_reason.is_none() && r.agent_failures.is_empty()));
    }

    #[test]
    fn serialises_with_snake_case_values() {
        let mut b = builder();
        b.after_hours()
            .ivr_outcome(IvrOutcome::DutyList)
            .category(CallCategory::Suggestion, Urgency::Urgent)
            .survey(SurveyResult::BasicallySatisfied);
        let cdr = b.finish(at("2026-02-14T20:05:00+08:00"));
        let json = match serde_json::to_value(&cdr) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json["city_resolved_by"], "mobile_prefix");
        assert_eq!(json["category"], "suggestion");
        assert_eq!(json["urgency"], "urgent");
        assert_eq!(
            json["path"],
            serde_json::json!(["ivr", "after_hours", "duty_list"])
        );
        assert_eq!(json["hung_up_first"], "system");
        assert_eq!(json["survey"], "basically_satisfied");
        assert_eq!(json["arrival"], "2026-02-14T10:00:00+08:00");
        let back: CallDetailRecord = match serde_json::from_value(json) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(back, cdr);
    }
}
