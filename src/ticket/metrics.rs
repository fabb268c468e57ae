//! Assessment data (AS-METRICS, AS-RANK, W-19): per unit and period, computed from the
//! orders alone (no manual input), ranked separately for business handling (cases),
//! consultations, and complaints/suggestions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::deadlines::is_overdue;
use super::model::{Category, Order, Satisfaction};
use super::units::UnitId;

/// Orders received in `[from, to)`: an order counts in the period it was received,
/// whatever is done to it later (AS-RANK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Start (inclusive).
    pub from: DateTime<FixedOffset>,
    /// End (exclusive).
    pub to: DateTime<FixedOffset>,
}

/// The three ranking groups of W-19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankGroup {
    /// 业务办理: cases.
    BusinessHandling,
    /// 业务咨询: consultations.
    Consultation,
    /// 投诉建议: complaints and suggestions.
    ComplaintSuggestion,
}

impl RankGroup {
    /// The group of a category.
    #[must_use]
    pub fn of(category: Category) -> Self {
        match category {
            Category::Case => Self::BusinessHandling,
            Category::Consultation => Self::Consultation,
            Category::Complaint | Category::Suggestion => Self::ComplaintSuggestion,
        }
    }
}

/// An exact ratio (no floating point, so rankings are deterministic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Numerator.
    pub numerator: u32,
    /// Denominator (0: no data).
    pub denominator: u32,
}

impl Rate {
    /// Per mille, `None` without data.
    #[must_use]
    pub fn per_mille(self) -> Option<u32> {
        let scaled = u64::from(self.numerator) * 1000 / u64::from(self.denominator).max(1);
        (self.denominator > 0).then(|| u32::try_from(scaled).unwrap_or(u32::MAX))
    }

    /// Higher rates first; "no data" after every rate.
    fn cmp_desc(self, other: Self) -> Ordering {
        match (self.denominator, other.denominator) {
            (0, 0) => Ordering::Equal,
            (0, _) => Ordering::Greater,
            (_, 0) => Ordering::Less,
            _ => {
                let left = u64::from(self.numerator) * u64::from(other.denominator);
                let right = u64::from(other.numerator) * u64::from(self.denominator);
                right.cmp(&left)
            }
        }
    }
}

/// One unit's score in one group and period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitScore {
    /// Unit.
    pub unit: UnitId,
    /// Group.
    pub group: RankGroup,
    /// Orders the unit is responsible for, withdrawn ones included.
    pub handled: u32,
    /// Of which answered / fed back (办结). A withdrawal is not a completion.
    pub completed: u32,
    /// Of which withdrawn (they still count: W-19, H-17-5).
    pub withdrawn: u32,
    /// Completed within the feedback limit (as extended).
    pub on_time: u32,
    /// Overdue as [`is_overdue`] judges it at the ranking: completed or withdrawn after
    /// the limit, or still open past it.
    pub overdue: u32,
    /// Callbacks with a satisfaction.
    pub rated: u32,
    /// Of which satisfied or basically satisfied.
    pub satisfied: u32,
    /// Returns (退回) made by the unit.
    pub returns: u32,
    /// completed / handled.
    pub completion_rate: Rate,
    /// on_time / (on_time + overdue): every order whose timeliness is decided —
    /// done, or past its limit — and an order open past its limit is not on time.
    pub on_time_rate: Rate,
    /// satisfied / rated.
    pub satisfaction_rate: Rate,
    /// Orders transferred (first dispatch) within the transfer limit — 1 working day,
    /// urgent 1 hour, from receipt (H-8, H-13-2). Counted for the city whose center
    /// received the order (its dispatchers answer for the transfer).
    pub transfer_on_time: u32,
    /// Orders transferred after the limit, or still waiting past it (or withdrawn
    /// waiting past it).
    pub transfer_late: u32,
    /// transfer_on_time / (transfer_on_time + transfer_late).
    pub transfer_rate: Rate,
    /// Duty shifts signed in on time / scheduled (W-19 签到率; filled in by the caller
    /// from `queue_log`, see [`crate::queue::attendance`]).
    pub sign_in_rate: Rate,
    /// The combined score in per mille ([`RankingWeights::combine`]); `None` without
    /// any weighted figure.
    pub combined: Option<u32>,
}

impl UnitScore {
    fn new(unit: UnitId, group: RankGroup) -> Self {
        Self {
            unit,
            group,
            handled: 0,
            completed: 0,
            withdrawn: 0,
            on_time: 0,
            overdue: 0,
            rated: 0,
            satisfied: 0,
            returns: 0,
            completion_rate: Rate::default(),
            on_time_rate: Rate::default(),
            satisfaction_rate: Rate::default(),
            transfer_on_time: 0,
            transfer_late: 0,
            transfer_rate: Rate::default(),
            sign_in_rate: Rate::default(),
            combined: None,
        }
    }

    /// A unit with nothing counted in `group` (yet).
    #[must_use]
    pub fn empty(unit: UnitId, group: RankGroup) -> Self {
        Self::new(unit, group)
    }
}

/// Weights of the combined score (W-19), from `[ranking.weights]`: each figure with
/// data counts with its weight; weights need not sum to 1 (the score divides by the
/// sum of the weights of the figures the unit has data for).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RankingWeights {
    /// 办结率.
    pub completion_rate: f64,
    /// 按时办结率 (on time / decided).
    pub on_time_rate: f64,
    /// 满意率.
    pub satisfaction_rate: f64,
    /// 签到率.
    pub sign_in_rate: f64,
    /// 转办及时率 (transfer within 1 working day, urgent 1 hour).
    pub transfer_rate: f64,
}

impl Default for RankingWeights {
    fn default() -> Self {
        Self {
            completion_rate: 0.2,
            on_time_rate: 0.3,
            satisfaction_rate: 0.3,
            sign_in_rate: 0.1,
            transfer_rate: 0.1,
        }
    }
}

impl RankingWeights {
    /// The weights by name, in a fixed order.
    #[must_use]
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("completion_rate", self.completion_rate),
            ("on_time_rate", self.on_time_rate),
            ("satisfaction_rate", self.satisfaction_rate),
            ("sign_in_rate", self.sign_in_rate),
            ("transfer_rate", self.transfer_rate),
        ]
    }

    /// What is wrong with the weights: (key, problem). Each must be a finite number
    /// >= 0, and their sum > 0.
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems: Vec<(&'static str, &'static str)> = self
            .named()
            .into_iter()
            .filter(|(_, w)| !w.is_finite() || *w < 0.0)
            .map(|(key, _)| (key, "must be a number >= 0"))
            .collect();
        if problems.is_empty() && self.named().iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            problems.push(("", "the weights must not all be 0"));
        }
        problems
    }

    /// Σ weight × rate / Σ weight over the figures the score has data for, in per
    /// mille (rounded to nearest); `None` when no figure with a weight > 0 has data.
    #[must_use]
    pub fn combine(&self, score: &UnitScore) -> Option<u32> {
        let figures = [
            (self.completion_rate, score.completion_rate),
            (self.on_time_rate, score.on_time_rate),
            (self.satisfaction_rate, score.satisfaction_rate),
            (self.sign_in_rate, score.sign_in_rate),
            (self.transfer_rate, score.transfer_rate),
        ];
        let (mut sum, mut weights) = (0.0_f64, 0.0_f64);
        for (weight, rate) in figures {
            if let (true, Some(pm)) = (weight > 0.0, rate.per_mille()) {
                sum += weight * f64::from(pm);
                weights += weight;
            }
        }
        if weights <= 0.0 {
            return None;
        }
        let value = (sum / weights).round().clamp(0.0, 1000.0);
        // In 0..=1000 after the clamp: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(value as u32)
    }
}

/// What to rank by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Completion rate (办结率).
    CompletionRate,
    /// On-time rate.
    OnTimeRate,
    /// Satisfaction (满意度).
    SatisfactionRate,
    /// Sign-in rate (签到率).
    SignInRate,
    /// Transfer timeliness (转办及时率).
    TransferRate,
    /// The combined score ([`RankingWeights`]).
    Combined,
}

/// A ranked score; equal rates share a position (1, 1, 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    /// Position from 1.
    pub position: u32,
    /// Score.
    pub score: UnitScore,
}

/// The unit answerable for an order: the lead unit; else the first unit it is
/// dispatched to; else, when the agent answered it, the city; else the dispatch
/// center (still waiting for transfer).
fn responsible_unit(order: &Order) -> Option<UnitId> {
    order
        .lead_unit
        .clone()
        .or_else(|| order.assignments.first().map(|a| a.unit.clone()))
        .or_else(|| order.reply.as_ref().map(|_| order.fields.city.clone()))
        .or_else(|| order.dispatch_unit.clone())
}

/// Scores per (unit, group) for orders received in `period`, overdue judged at `now`
/// (the moment of the ranking, as `/api/stats/orders` judges it). Drafts never
/// created are skipped; withdrawn orders count (as withdrawn, and overdue if they
/// were withdrawn after the limit).
#[must_use]
pub fn unit_scores(orders: &[Order], period: Period, now: DateTime<FixedOffset>) -> Vec<UnitScore> {
    let mut scores: BTreeMap<(UnitId, RankGroup), UnitScore> = BTreeMap::new();
    for order in orders {
        let received = order.fields.received_at;
        if !order.exists() || received < period.from || received >= period.to {
            continue;
        }
        let group = RankGroup::of(order.fields.category);
        for unit in &order.returned_by {
            let score = scores
                .entry((unit.clone(), group))
                .or_insert_with(|| UnitScore::new(unit.clone(), group));
            score.returns = score.returns.saturating_add(1);
        }
        if let Some(in_time) = super::deadlines::transfer_on_time(order, now) {
            let city = order.fields.city.clone();
            let score = scores
                .entry((city.clone(), group))
                .or_insert_with(|| UnitScore::new(city, group));
            if in_time {
                score.transfer_on_time += 1;
            } else {
                score.transfer_late += 1;
            }
        }
        let Some(unit) = responsible_unit(order) else {
            continue;
        };
        let score = scores
            .entry((unit.clone(), group))
            .or_insert_with(|| UnitScore::new(unit, group));
        score.handled += 1;
        let overdue = is_overdue(order, now);
        if order.completed_at.is_some() {
            score.completed += 1;
            if !overdue {
                score.on_time += 1;
            }
        }
        if order.is_withdrawn() {
            score.withdrawn += 1;
        }
        if overdue {
            score.overdue += 1;
        }
        if let Some(satisfaction) = order.satisfaction {
            score.rated += 1;
            if satisfaction != Satisfaction::Dissatisfied {
                score.satisfied += 1;
            }
        }
    }
    scores
        .into_values()
        .map(|mut score| {
            score.completion_rate = Rate {
                numerator: score.completed,
                denominator: score.handled,
            };
            score.on_time_rate = Rate {
                numerator: score.on_time,
                denominator: score.on_time.saturating_add(score.overdue),
            };
            score.satisfaction_rate = Rate {
                numerator: score.satisfied,
                denominator: score.rated,
            };
            score.transfer_rate = Rate {
                numerator: score.transfer_on_time,
                denominator: score.transfer_on_time.saturating_add(score.transfer_late),
            };
            score
        })
        .collect()
}

/// Ranks the scores of one group by one rate, best first; ties share a position and
/// are listed by unit id.
#[must_use]
pub fn rank(scores: &[UnitScore], group: RankGroup, by: RankBy) -> Vec<Ranked> {
    let rate = |s: &UnitScore| match by {
        RankBy::CompletionRate => s.completion_rate,
        RankBy::OnTimeRate => s.on_time_rate,
        RankBy::SatisfactionRate => s.satisfaction_rate,
        RankBy::SignInRate => s.sign_in_rate,
        RankBy::TransferRate => s.transfer_rate,
        RankBy::Combined => s.combined.map_or(Rate::default(), |pm| Rate {
            numerator: pm,
            denominator: 1000,
        }),
    };
    let mut selected: Vec<&UnitScore> = scores.iter().filter(|s| s.group == group).collect();
    selected.sort_by(|a, b| rate(a).cmp_desc(rate(b)).then_with(|| a.unit.cmp(&b.unit)));
    let mut ranked: Vec<Ranked> = Vec::with_capacity(selected.len());
    for (index, score) in selected.into_iter().enumerate() {
        let position = match ranked.last() {
            Some(previous) if rate(&previous.score).cmp_desc(rate(score)) == Ordering::Equal => {
                previous.position
            }
            _ => u32::try_from(index + 1).unwrap_or(u32::MAX),
        };
        ranked.push(Ranked {
            position,
            score: score.clone(),
        });
    }
    ranked
}
