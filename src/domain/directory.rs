//! The directory's vocabulary (W-6, W-8, DIR-LOOKUP): what kind of institution or
//! practitioner an entry is, its licence status, its integrity records and the states of
//! an appointment. Wire and database spelling is snake_case (`notary_office`).

use serde::{Deserialize, Serialize};

use super::BusinessArea;

/// What a directory entry is: an institution (机构) or a practitioner (执业人员).
#[derive(
    Debug,
    Clone,
    Copy,
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
pub enum DirectoryKind {
    /// 律师事务所.
    LawFirm,
    /// 律师.
    Lawyer,
    /// 公证处.
    NotaryOffice,
    /// 公证员.
    Notary,
    /// 法律援助中心.
    LegalAidCentre,
    /// 司法鉴定机构.
    AppraisalInstitution,
    /// 司法鉴定人.
    Appraiser,
    /// 人民调解委员会.
    MediationCommittee,
    /// 人民调解员.
    Mediator,
    /// 基层法律服务所.
    GrassrootsOffice,
    /// 基层法律服务工作者.
    GrassrootsWorker,
    /// 公共法律服务中心(站、点).
    ServiceCentre,
}

impl DirectoryKind {
    /// Every kind, institutions first.
    pub const ALL: [DirectoryKind; 12] = [
        Self::LawFirm,
        Self::NotaryOffice,
        Self::LegalAidCentre,
        Self::AppraisalInstitution,
        Self::MediationCommittee,
        Self::GrassrootsOffice,
        Self::ServiceCentre,
        Self::Lawyer,
        Self::Notary,
        Self::Appraiser,
        Self::Mediator,
        Self::GrassrootsWorker,
    ];

    /// The wire and database spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LawFirm => "law_firm",
            Self::Lawyer => "lawyer",
            Self::NotaryOffice => "notary_office",
            Self::Notary => "notary",
            Self::LegalAidCentre => "legal_aid_centre",
            Self::AppraisalInstitution => "appraisal_institution",
            Self::Appraiser => "appraiser",
            Self::MediationCommittee => "mediation_committee",
            Self::Mediator => "mediator",
            Self::GrassrootsOffice => "grassroots_office",
            Self::GrassrootsWorker => "grassroots_worker",
            Self::ServiceCentre => "service_centre",
        }
    }

    /// From the wire spelling or the Chinese name (CSV files use either).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text || k.label() == text)
    }

    /// The Chinese name.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::LawFirm => "律师事务所",
            Self::Lawyer => "律师",
            Self::NotaryOffice => "公证处",
            Self::Notary => "公证员",
            Self::LegalAidCentre => "法律援助中心",
            Self::AppraisalInstitution => "司法鉴定机构",
            Self::Appraiser => "司法鉴定人",
            Self::MediationCommittee => "人民调解委员会",
            Self::Mediator => "人民调解员",
            Self::GrassrootsOffice => "基层法律服务所",
            Self::GrassrootsWorker => "基层法律服务工作者",
            Self::ServiceCentre => "公共法律服务中心",
        }
    }

    /// An institution (takes appointments, has practitioners) rather than a person.
    #[must_use]
    pub fn is_institution(self) -> bool {
        matches!(
            self,
            Self::LawFirm
                | Self::NotaryOffice
                | Self::LegalAidCentre
                | Self::AppraisalInstitution
                | Self::MediationCommittee
                | Self::GrassrootsOffice
                | Self::ServiceCentre
        )
    }

    /// The institution kind a practitioner of this kind works at (itself for
    /// institutions).
    #[must_use]
    pub fn institution_kind(self) -> Self {
        match self {
            Self::Lawyer => Self::LawFirm,
            Self::Notary => Self::NotaryOffice,
            Self::Appraiser => Self::AppraisalInstitution,
            Self::Mediator => Self::MediationCommittee,
            Self::GrassrootsWorker => Self::GrassrootsOffice,
            other => other,
        }
    }

    /// The business area (TK-FIELDS) the entry serves.
    #[must_use]
    pub fn business_area(self) -> BusinessArea {
        match self {
            Self::LawFirm | Self::Lawyer => BusinessArea::Lawyer,
            Self::NotaryOffice | Self::Notary => BusinessArea::Notary,
            Self::LegalAidCentre => BusinessArea::LegalAid,
            Self::AppraisalInstitution | Self::Appraiser => BusinessArea::JudicialAppraisal,
            Self::MediationCommittee | Self::Mediator => BusinessArea::Mediation,
            Self::GrassrootsOffice | Self::GrassrootsWorker => BusinessArea::GrassrootsLegalService,
            Self::ServiceCentre => BusinessArea::Other,
        }
    }
}

/// Licence (执业) status.
#[derive(
    Debug,
    Clone,
    Copy,
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
pub enum LicenceStatus {
    /// 正常执业.
    Active,
    /// 停止执业 / 停业整顿 (temporarily).
    Suspended,
    /// 注销.
    Cancelled,
    /// 吊销.
    Revoked,
}

impl LicenceStatus {
    /// Every status.
    pub const ALL: [LicenceStatus; 4] = [
        Self::Active,
        Self::Suspended,
        Self::Cancelled,
        Self::Revoked,
    ];

    /// The wire and database spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Cancelled => "cancelled",
            Self::Revoked => "revoked",
        }
    }

    /// The Chinese name.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "正常执业",
            Self::Suspended => "停止执业",
            Self::Cancelled => "注销",
            Self::Revoked => "吊销",
        }
    }

    /// From the wire spelling or the Chinese name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text || s.label() == text)
    }
}

/// A commendation (表彰) or a penalty (处罚) on an entry's integrity record (诚信信息).
#[derive(
    Debug,
    Clone,
    Copy,
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
pub enum IntegrityKind {
    /// 表彰奖励.
    Commendation,
    /// 行政处罚 / 行业处分.
    Penalty,
}

/// One line of an integrity record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrityRecord {
    pub kind: IntegrityKind,
    /// The day it was decided.
    #[schema(value_type = String, format = Date)]
    pub date: chrono::NaiveDate,
    /// What (e.g. 警告, 优秀律师事务所).
    pub text: String,
    /// Who decided it (e.g. 济南市司法局).
    #[serde(default)]
    pub authority: String,
}

/// Where an appointment stands.
#[derive(
    Debug,
    Clone,
    Copy,
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
pub enum AppointmentStatus {
    /// Booked by the citizen, not yet confirmed by the institution.
    Booked,
    /// Confirmed by the institution.
    Confirmed,
    /// Cancelled by the citizen (the slot is free again).
    Cancelled,
    /// The citizen did not come (marked by the institution).
    NoShow,
}

impl AppointmentStatus {
    /// The wire and database spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// From the database spelling.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Booked, Self::Confirmed, Self::Cancelled, Self::NoShow]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Holds its slot (no one else may book it).
    #[must_use]
    pub fn holds_slot(self) -> bool {
        matches!(self, Self::Booked | Self::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_wire_name_and_chinese_name() {
        for kind in DirectoryKind::ALL {
            assert_eq!(DirectoryKind::parse(kind.as_str()), Some(kind));
            assert_eq!(DirectoryKind::parse(kind.label()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert!(kind.institution_kind().is_institution());
        }
        assert_eq!(
            DirectoryKind::parse("公证处"),
            Some(DirectoryKind::NotaryOffice)
        );
        assert_eq!(DirectoryKind::parse("notary"), Some(DirectoryKind::Notary));
        assert_eq!(DirectoryKind::parse("bank"), None);
        for status in LicenceStatus::ALL {
            assert_eq!(LicenceStatus::parse(status.label()), Some(status));
        }
    }
}
