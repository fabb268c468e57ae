//! The one vocabulary of a matter, shared by the IVR, the ACD, the work orders and the
//! API: its category, urgency, business area and intake channel. The wire and database
//! spelling is snake_case (`consultation`, `urgent`, `legal_aid`).

use serde::{Deserialize, Serialize};

/// Demand category (H-8; `case` 案件 for business handling, W-13).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// 咨询.
    #[default]
    Consultation,
    /// 投诉.
    Complaint,
    /// 建议.
    Suggestion,
    /// 案件 (business handling).
    Case,
}

impl Category {
    /// Whether replies go through review (TK-REVIEW, W-13): complaints and cases.
    #[must_use]
    pub fn needs_review(self) -> bool {
        matches!(self, Self::Complaint | Self::Case)
    }
}

/// Urgency (紧急程度).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Ordinary.
    #[default]
    Normal,
    /// Urgent (应急类): 1-hour transfer, mandatory callback within 3 working days.
    Urgent,
}

/// Business area (问题分类, TK-FIELDS).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BusinessArea {
    /// 法律援助.
    LegalAid,
    /// 律师.
    Lawyer,
    /// 公证.
    Notary,
    /// 司法鉴定.
    JudicialAppraisal,
    /// 人民调解.
    Mediation,
    /// 基层法律服务.
    GrassrootsLegalService,
    /// 法治宣传教育.
    LegalEducation,
    /// Known to be outside the listed areas.
    Other,
    /// Not determined: never routed automatically (W-9).
    #[default]
    Unknown,
}

/// Intake channel (TK-INTAKE).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// 12348 telephone.
    #[default]
    Phone,
    /// Web site.
    Web,
    /// Mobile app.
    App,
    /// WeChat.
    Wechat,
    /// Transferred from the 12345 hotline.
    Hotline12345,
}

/// What a caller can choose on the phone (咨询 / 投诉 / 建议, H-8): the [`Category`]s
/// without 案件, which is registered from other channels only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallCategory {
    /// 咨询.
    Consultation,
    /// 投诉.
    Complaint,
    /// 建议.
    Suggestion,
}

impl From<CallCategory> for Category {
    fn from(category: CallCategory) -> Self {
        match category {
            CallCategory::Consultation => Self::Consultation,
            CallCategory::Complaint => Self::Complaint,
            CallCategory::Suggestion => Self::Suggestion,
        }
    }
}
