//! Violations and rectification (H-16, H-17), pure: the kinds of fault, the
//! rectification deadline (限期整改) counted on the working-day calendar like an
//! order's limits (N working days from the day after registration, ending 24:00),
//! the state a rectification is in at a moment, and the praise and criticism
//! circulars (通报) written from the register.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Deadline};

/// What went wrong (H-17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// 热线无法接通 (H-17-1).
    UnreachableLine,
    /// 值班人员脱岗 (H-17-2).
    AbsentFromDuty,
    /// 推介有偿服务 (H-17-3).
    PaidReferral,
    /// 服务态度、解答错误 (H-17-4).
    PoorService,
    /// 瞒报、不报 (H-17-5).
    Concealment,
    /// 其他.
    Other,
}

impl ViolationKind {
    /// The kind as a circular names it.
    #[must_use]
    pub fn chinese(self) -> &'static str {
        match self {
            ViolationKind::UnreachableLine => "热线无法接通",
            ViolationKind::AbsentFromDuty => "值班人员脱岗",
            ViolationKind::PaidReferral => "推介有偿服务",
            ViolationKind::PoorService => "服务态度差或解答错误",
            ViolationKind::Concealment => "瞒报、不报",
            ViolationKind::Other => "其他问题",
        }
    }

    /// `snake_case` name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::UnreachableLine => "unreachable_line",
            ViolationKind::AbsentFromDuty => "absent_from_duty",
            ViolationKind::PaidReferral => "paid_referral",
            ViolationKind::PoorService => "poor_service",
            ViolationKind::Concealment => "concealment",
            ViolationKind::Other => "other",
        }
    }

    /// Parses [`ViolationKind::as_str`].
    #[must_use]
    pub fn parse(text: &str) -> Option<ViolationKind> {
        [
            ViolationKind::UnreachableLine,
            ViolationKind::AbsentFromDuty,
            ViolationKind::PaidReferral,
            ViolationKind::PoorService,
            ViolationKind::Concealment,
            ViolationKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The most working days a rectification may be given.
pub const MAX_RECTIFICATION_DAYS: u32 = 30;

/// The rectification deadline of a fault registered at `registered`: `days` working
/// days, counted as an order's limits are.
#[must_use]
pub fn rectification_due(
    calendar: &Calendar,
    registered: DateTime<FixedOffset>,
    days: u32,
) -> Deadline {
    calendar.add_working_days(registered, days)
}

/// Where a rectification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RectificationState {
    /// 整改中: not done, the deadline ahead.
    Open,
    /// 逾期未整改: not done, the deadline passed.
    Overdue,
    /// 已整改: done by the deadline.
    Done,
    /// 逾期整改: done after the deadline.
    DoneLate,
}

impl RectificationState {
    #[must_use]
    pub fn chinese(self) -> &'static str {
        match self {
            RectificationState::Open => "整改中",
            RectificationState::Overdue => "逾期未整改",
            RectificationState::Done => "已整改",
            RectificationState::DoneLate => "逾期整改",
        }
    }
}

/// The state at `now` of a rectification due at `due`, done at `done` if it is.
#[must_use]
pub fn rectification_state(
    due: DateTime<FixedOffset>,
    done: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> RectificationState {
    match done {
        Some(at) if at <= due => RectificationState::Done,
        Some(_) => RectificationState::DoneLate,
        None if now <= due => RectificationState::Open,
        None => RectificationState::Overdue,
    }
}

/// One line of a criticism circular.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub unit_name: String,
    pub person_name: Option<String>,
    pub kind: ViolationKind,
    pub description: String,
    /// `3月9日 24:00` as a bureau writes it.
    pub due: String,
    pub state: RectificationState,
}

/// One line of a praise circular.
#[derive(Debug, Clone, PartialEq)]
pub struct Praise {
    pub name: String,
    /// Why: e.g. `服务质量评查平均 95.0 分（4 件）`.
    pub merit: String,
}

/// A circular (通报) as plain text: title, the praised or the faults with their
/// rectification, and the closing line.
#[must_use]
pub fn circular_text(period_name: &str, praise: &[Praise], faults: &[Fault]) -> String {
    let mut out = String::new();
    if !praise.is_empty() || faults.is_empty() {
        out.push_str(&format!("关于{period_name}12348热线服务工作的表扬通报\n\n"));
        if praise.is_empty() {
            out.push_str("本期无表扬对象。\n");
        }
        for (i, p) in praise.iter().enumerate() {
            out.push_str(&format!("{}. {}：{}。\n", i + 1, p.name, p.merit));
        }
        out.push_str("\n希望受表扬的单位和个人再接再厉。\n");
    }
    if !faults.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("关于{period_name}12348热线服务问题的批评通报\n\n"));
        for (i, f) in faults.iter().enumerate() {
            let who = match &f.person_name {
                Some(p) => format!("{}（{}）", f.unit_name, p),
                None => f.unit_name.clone(),
            };
            out.push_str(&format!(
                "{}. {}：{}。{}。限{}前整改，{}。\n",
                i + 1,
                who,
                f.kind.chinese(),
                f.description,
                f.due,
                f.state.chinese()
            ));
        }
        out.push_str("\n请有关单位按期整改并报告整改情况。\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).expect("time")
    }

    fn calendar() -> Calendar {
        Calendar::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config/calendar/cn-workdays.toml"),
        )
        .expect("calendar")
    }

    #[test]
    fn the_rectification_deadline_counts_working_days_like_an_order() {
        let c = calendar();
        // Registered Friday 2025-09-26; 5 working days from the next day: 9-28 (调休
        // Sunday), 9-29, 9-30, then the National Day holiday, 10-9, 10-10 → 10-10 24:00.
        let due = rectification_due(&c, at("2025-09-26T15:00:00+08:00"), 5);
        assert_eq!(due.at, at("2025-10-11T00:00:00+08:00"), "{}", due.display());
        assert!(!due.provisional);
    }

    #[test]
    fn a_rectification_is_open_overdue_done_or_done_late() {
        let due = at("2026-03-10T00:00:00+08:00");
        let before = at("2026-03-09T10:00:00+08:00");
        let after = at("2026-03-10T10:00:00+08:00");
        assert_eq!(
            rectification_state(due, None, before),
            RectificationState::Open
        );
        assert_eq!(
            rectification_state(due, None, after),
            RectificationState::Overdue
        );
        assert_eq!(
            rectification_state(due, Some(before), after),
            RectificationState::Done
        );
        assert_eq!(
            rectification_state(due, Some(after), after),
            RectificationState::DoneLate
        );
    }

    #[test]
    fn circulars_name_the_praised_and_the_faults_with_their_rectification() {
        let text = circular_text(
            "2026年3月",
            &[Praise {
                name: "济南市司法局".into(),
                merit: "服务质量评查平均 95.0 分（4 件）".into(),
            }],
            &[Fault {
                unit_name: "青岛市司法局".into(),
                person_name: Some("李四".into()),
                kind: ViolationKind::AbsentFromDuty,
                description: "3月5日上午值班时段无人接听".into(),
                due: "3月12日 24:00".into(),
                state: RectificationState::Overdue,
            }],
        );
        assert!(text.contains("表扬通报") && text.contains("济南市司法局"));
        assert!(text.contains("批评通报"));
        assert!(text.contains("青岛市司法局（李四）：值班人员脱岗。3月5日上午值班时段无人接听。限3月12日 24:00前整改，逾期未整改。"), "{text}");
        assert_eq!(
            ViolationKind::parse("concealment"),
            Some(ViolationKind::Concealment)
        );
        assert_eq!(ViolationKind::parse("x"), None);
    }
}
