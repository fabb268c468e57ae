//! The Chinese words people read for the enum values of orders and their ledger
//! (states, roles, events, satisfaction …). They are the console's own tables,
//! `web/src/labels.json`, which `web/src/format.ts` imports: the server reads the same
//! file so that what it exports (the ledger CSV) says what the console's history says.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// One table: enum value (snake_case, as serialized) → label.
pub type Table = BTreeMap<String, String>;

/// The tables of `web/src/labels.json`.
#[derive(Debug, Default, Deserialize)]
pub struct Labels {
    /// Order states (`State`).
    pub state: Table,
    /// User roles (`Role`).
    pub role: Table,
    /// Ledger event types (`kind.type`).
    pub event: Table,
    /// The caller's satisfaction at a callback.
    pub satisfaction: Table,
    /// The caller's answer to the post-call survey (satisfaction, or none).
    pub call_survey: Table,
    /// First or second callback.
    pub callback_round: Table,
    /// Why an order was closed (`CloseReason`, the key of `{"judgement": …}` too).
    pub close_reason: Table,
    /// Which limit (transfer, feedback, callback, report).
    pub limit: Table,
    /// Reminder colours.
    pub reminder_level: Table,
    /// Who redoes the work after a callback.
    pub redo_target: Table,
    /// Demand categories.
    pub category: Table,
    /// Business areas.
    pub area: Table,
    /// Urgency.
    pub urgency: Table,
}

const SOURCE: &str = include_str!("../../web/src/labels.json");

/// The tables, read once. (A file that does not parse gives empty tables; the unit
/// test below keeps it parsing.)
#[must_use]
pub fn labels() -> &'static Labels {
    static LABELS: OnceLock<Labels> = OnceLock::new();
    LABELS.get_or_init(|| serde_json::from_str(SOURCE).unwrap_or_default())
}

/// The label of `value` in `table`; `None` when the table has none.
#[must_use]
pub fn label<'a>(table: &'a Table, value: &str) -> Option<&'a str> {
    table.get(value).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{CallbackRound, Role, Satisfaction, State};

    fn text<T: serde::Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn the_console_tables_parse_and_name_every_state_role_and_satisfaction() {
        let parsed: Labels = serde_json::from_str(SOURCE).expect("web/src/labels.json parses");
        assert_eq!(parsed.state.len(), labels().state.len());
        let states = [
            State::Draft,
            State::PendingDispatch,
            State::Dispatched,
            State::Signed,
            State::InProgress,
            State::ReplyDrafted,
            State::Reviewed,
            State::Replied,
            State::FedBack,
            State::SecondCallback,
            State::SpecialStudy,
            State::Closed,
        ];
        for state in states {
            assert!(label(&labels().state, state.as_str()).is_some(), "{state}");
        }
        assert_eq!(label(&labels().state, "fed_back"), Some("待回访"));
        let roles = [
            Role::Agent,
            Role::Dispatcher,
            Role::UnitHandler,
            Role::UnitHead,
            Role::Reviewer,
            Role::Supervisor,
            Role::CallbackStaff,
            Role::ProvinceAdmin,
            Role::System,
        ];
        for role in roles {
            assert!(label(&labels().role, &text(role)).is_some(), "{role:?}");
        }
        for satisfaction in [
            Satisfaction::Satisfied,
            Satisfaction::BasicallySatisfied,
            Satisfaction::Dissatisfied,
        ] {
            assert!(label(&labels().satisfaction, &text(satisfaction)).is_some());
        }
        assert_eq!(
            label(&labels().satisfaction, "basically_satisfied"),
            Some("基本满意")
        );
        for round in [CallbackRound::First, CallbackRound::Second] {
            assert!(label(&labels().callback_round, &text(round)).is_some());
        }
        assert_eq!(label(&labels().event, "returned_upward"), Some("退回上级"));
    }
}
