//! A ledger row in the words of a bureau (issue 15): people by name, units by name,
//! states, roles, events, satisfaction and closing reasons by their Chinese labels
//! (the console's tables, [`crate::api::labels`]), never an enum value or a login id.
//! The CSV export (`GET /api/ledger/{unit}.csv`) writes these; the hash columns keep
//! the chain verifiable against the stored rows.

use chrono::DateTime;
use serde_json::Value;

use super::{Auth, OrdersContext, person_name};
use crate::api::labels::{Table, label, labels};
use crate::calendar::shanghai;
use crate::store::orders::StoredEvent;
use crate::ticket::UnitId;

/// The CSV header: one column per [`LedgerLine`] field, in order.
pub(super) const HEADER: &str =
    "工单编号,序号,时间,操作人,角色,单位,原状态,新状态,事件,详情,说明,前一哈希,哈希\n";

/// One ledger row for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LedgerLine {
    pub order_id: String,
    pub seq: String,
    /// `2026-12-07 10:05:00`, Beijing time.
    pub at: String,
    /// Who acted, by name (系统 for the server).
    pub who: String,
    pub role: String,
    pub unit: String,
    pub state_before: String,
    pub state_after: String,
    /// What happened (`登记`, `派单`, `回访` …).
    pub what: String,
    /// Its particulars: units, the callback's round and satisfaction, the limit …
    pub detail: String,
    /// The human text: reason, note, reply, or the closing's reason and note.
    pub text: String,
    pub prev_hash: String,
    pub hash: String,
}

impl LedgerLine {
    /// The cells in [`HEADER`] order.
    pub(super) fn cells(&self) -> [&str; 13] {
        [
            &self.order_id,
            &self.seq,
            &self.at,
            &self.who,
            &self.role,
            &self.unit,
            &self.state_before,
            &self.state_after,
            &self.what,
            &self.detail,
            &self.text,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

/// Where the names come from: units from the orders' unit tree, people and agents
/// from the configured users.
pub(super) struct Names<'a> {
    pub orders: &'a OrdersContext,
    pub auth: &'a Auth,
}

/// `value`'s label in `table`, or nothing: an unknown value is left out rather than
/// shown raw.
fn word(table: &Table, value: &str) -> String {
    label(table, value).unwrap_or_default().to_owned()
}

fn text_of<'a>(kind: &'a Value, key: &str) -> &'a str {
    kind.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn unit_word(ctx: &Names<'_>, id: &str) -> String {
    ctx.orders
        .unit_name(&UnitId::new(id.to_owned()))
        .map_or_else(|| id.to_owned(), str::to_owned)
}

/// A queue agent by the name of the user who works as that extension; `坐席 1001`
/// for an extension nobody works as.
fn agent_word(ctx: &Names<'_>, agent: &str) -> String {
    ctx.auth
        .agent_name(agent)
        .unwrap_or_else(|| format!("坐席 {agent}"))
}

/// A logged call (`kind.call`, tagged by `what`) in words, agents by name.
fn call_words(ctx: &Names<'_>, call: &Value) -> String {
    let agent = |key: &str| agent_word(ctx, text_of(call, key));
    let number = |key: &str| call.get(key).and_then(Value::as_u64).unwrap_or_default();
    match text_of(call, "what") {
        "callback_requested" => format!("来电人在排队第{}位时要求回电", number("position")),
        "callback_attempt" => {
            let result = match text_of(call, "result") {
                "answered" => "已接通",
                "no_answer" => "无人接听",
                "busy" => "占线",
                _ => "无法接通",
            };
            format!(
                "第{}次回电（{}）：{result}",
                number("attempt"),
                agent("agent")
            )
        }
        "callback_gave_up" => format!("回电未成功，共{}次，请人工回电", number("attempts")),
        "transferred_to_unit" => format!("来电已转接至{}", unit_word(ctx, text_of(call, "unit"))),
        "transferred_to_agent" if call.get("from").is_some_and(Value::is_string) => {
            format!("来电由{}转接至{}", agent("from"), agent("to"))
        }
        "transferred_to_agent" => format!("来电转接至{}", agent("to")),
        _ => String::new(),
    }
}

/// A limit as a bureau writes it: `12月8日 24:00` (a limit at 00:00 is 24:00 of the
/// day before).
fn due_words(text: &str) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(text) else {
        return String::new();
    };
    let local = at.with_timezone(&shanghai());
    let midnight = local.format("%H:%M:%S").to_string() == "00:00:00";
    let day = if midnight {
        local - chrono::TimeDelta::days(1)
    } else {
        local
    };
    let time = if midnight {
        "24:00".to_owned()
    } else {
        local.format("%H:%M").to_string()
    };
    format!(
        "{}年{}月{}日 {time}",
        day.format("%Y"),
        day.format("%-m"),
        day.format("%-d")
    )
}

/// The particulars of an event (as the console's history shows them).
fn detail(ctx: &Names<'_>, event: &str, kind: &Value) -> String {
    let all = labels();
    let units = |key: &str| {
        kind.get(key)
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(|id| unit_word(ctx, id))
                    .collect::<Vec<_>>()
                    .join("、")
            })
            .unwrap_or_default()
    };
    match event {
        "dispatched" | "helping_units_added" => format!("→ {}", units("units")),
        "returned_upward" | "escalated_for_second_callback" => {
            format!("→ {}", unit_word(ctx, text_of(kind, "to_unit")))
        }
        "signed" => {
            let part = if kind.get("lead").and_then(Value::as_bool) == Some(true) {
                "（主办）"
            } else {
                "（协办）"
            };
            format!("{}{part}", unit_word(ctx, text_of(kind, "unit")))
        }
        "returned" | "dissatisfaction_reported" => unit_word(ctx, text_of(kind, "unit")),
        "callback_recorded" => {
            let by = match text_of(kind, "by") {
                "" => String::new(),
                id => person_name(ctx.auth, id).map_or_else(String::new, |n| format!("回访人 {n}")),
            };
            [
                word(&all.callback_round, text_of(kind, "round")),
                word(&all.satisfaction, text_of(kind, "satisfaction")),
                by,
            ]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" · ")
        }
        "call_survey_recorded" => word(&all.call_survey, text_of(kind, "answer")),
        "redo_ordered" => word(&all.redo_target, text_of(kind, "target")),
        "reminded" => format!(
            "{} · {}",
            word(&all.limit, text_of(kind, "deadline")),
            word(&all.reminder_level, text_of(kind, "level"))
        ),
        "limit_missed" => format!(
            "{}（{}）",
            word(&all.limit, text_of(kind, "deadline")),
            due_words(text_of(kind, "due"))
        ),
        "call_logged" => kind
            .get("call")
            .map(|c| call_words(ctx, c))
            .unwrap_or_default(),
        "extension_approved" => kind
            .get("feedback_working_days")
            .and_then(Value::as_u64)
            .map(|days| format!("反馈时限共 {days}个工作日"))
            .unwrap_or_default(),
        "extension_requested" => kind
            .get("request")
            .and_then(|r| r.get("extra_working_days"))
            .and_then(Value::as_u64)
            .map(|days| format!("延长 {days}个工作日"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A closing reason (`"satisfied"` or `{"judgement": "law_or_policy"}`) in words.
fn close_reason_words(reason: Option<&Value>) -> String {
    let key = match reason {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => o.keys().next().map_or("", String::as_str),
        _ => "",
    };
    word(&labels().close_reason, key)
}

/// System notes recorded in English before they were written in Chinese, in the words
/// they read now.
const EARLIER_SYSTEM_NOTES: [(&str, &str); 2] = [
    (
        "consultation answered by the unit",
        crate::ticket::transition::CONSULTATION_ANSWERED_NOTE,
    ),
    (
        "automatic reminder",
        crate::server::reminders::AUTOMATIC_REMINDER_NOTE,
    ),
];

fn current_words(note: &str) -> &str {
    EARLIER_SYSTEM_NOTES
        .iter()
        .find(|(earlier, _)| *earlier == note)
        .map_or(note, |(_, now)| now)
}

/// The human text of an event: what the person wrote (reason, note, reply …); for a
/// closing its reason in words and its note; nothing for a call log (its particulars
/// say it) or a survey answer (not text).
fn text(event: &str, kind: &Value, stored_reason: &str) -> String {
    match event {
        "call_logged" | "call_survey_recorded" => String::new(),
        "closed" => [
            close_reason_words(kind.get("reason")),
            current_words(text_of(kind, "note")).to_owned(),
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("："),
        "extension_requested" => kind
            .get("request")
            .map(|r| text_of(r, "reason").to_owned())
            .unwrap_or_default(),
        _ if !stored_reason.is_empty() => current_words(stored_reason).to_owned(),
        _ => ["explanation", "result"]
            .iter()
            .map(|key| text_of(kind, key))
            .find(|t| !t.is_empty())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The row of `event` for people.
pub(super) fn ledger_line(ctx: &Names<'_>, row: &StoredEvent) -> LedgerLine {
    let all = labels();
    let kind: Value = serde_json::from_str(&row.kind).unwrap_or(Value::Null);
    let event = text_of(&kind, "type");
    let role = word(&all.role, &row.role);
    let who = person_name(ctx.auth, &row.actor).unwrap_or_else(|| format!("{role}（已停用账号）"));
    let at = DateTime::parse_from_rfc3339(&row.at).map_or_else(
        |_| row.at.clone(),
        |t| {
            t.with_timezone(&shanghai())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    );
    LedgerLine {
        order_id: row.order_id.clone(),
        seq: row.seq.to_string(),
        at,
        who,
        role,
        unit: unit_word(ctx, &row.unit),
        state_before: word(&all.state, &row.state_before),
        state_after: word(&all.state, &row.state_after),
        what: word(&all.event, event),
        detail: detail(ctx, event, &kind),
        text: text(event, &kind, &row.reason),
        prev_hash: row.prev_hash.clone(),
        hash: row.hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_notes_recorded_in_english_read_in_chinese() {
        assert_eq!(
            text(
                "fed_back",
                &serde_json::json!({"type": "fed_back", "note": "consultation answered by the unit"}),
                "consultation answered by the unit"
            ),
            crate::ticket::transition::CONSULTATION_ANSWERED_NOTE
        );
        assert_eq!(
            text(
                "closed",
                &serde_json::json!({"type": "closed", "reason": {"judgement": "law_or_policy"}, "note": "依法"}),
                ""
            ),
            "依法办结：依法"
        );
        assert_eq!(
            text(
                "call_survey_recorded",
                &serde_json::json!({"type": "call_survey_recorded", "answer": "satisfied"}),
                "satisfied"
            ),
            ""
        );
        assert_eq!(
            due_words("2026-12-09T00:00:00+08:00"),
            "2026年12月8日 24:00"
        );
    }
}
