//! Quality review of answers (H-15, H-17-3/4, H-12), pure: the rubric and its
//! weighted score, the sampler (rule-based picks and a seeded random draw), and the
//! roll-up per person, unit and city.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// One item of the rubric: `[[quality.rubric]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RubricItem {
    /// Machine key of the item (`attitude`, `law`, …): the key of its mark.
    pub key: String,
    /// The item as the form shows it.
    pub name: String,
    /// Its weight in the score.
    pub weight: f64,
}

/// `[quality]`: the rubric and the sampling rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Scored items, each marked 0–100.
    pub rubric: Vec<RubricItem>,
    /// A call talked at least this long is sampled by rule.
    pub long_call_secs: u64,
    /// Calls and answers drawn at random per sampling, besides the rule's.
    pub random_per_draw: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        let item = |key: &str, name: &str, weight: f64| RubricItem {
            key: key.to_owned(),
            name: name.to_owned(),
            weight,
        };
        Self {
            rubric: vec![
                item("attitude", "服务态度", 0.3),
                item("law", "法律解答准确", 0.4),
                item("no_paid_referral", "未推介有偿服务", 0.2),
                item("etiquette", "文明规范用语", 0.1),
            ],
            long_call_secs: 600,
            random_per_draw: 5,
        }
    }
}

impl QualityConfig {
    /// What is wrong with the rubric: one line per problem (for `check-config`).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rubric.is_empty() {
            out.push("quality.rubric: no item".to_owned());
        }
        let mut keys = BTreeSet::new();
        for item in &self.rubric {
            if !item.weight.is_finite() || item.weight < 0.0 {
                out.push(format!(
                    "quality.rubric {}: the weight must be a number >= 0",
                    item.key
                ));
            }
            if item.key.is_empty() || !keys.insert(item.key.as_str()) {
                out.push(format!(
                    "quality.rubric {:?}: keys must be unique and not empty",
                    item.key
                ));
            }
        }
        if !self.rubric.is_empty() && self.rubric.iter().map(|i| i.weight).sum::<f64>() <= 0.0 {
            out.push("quality.rubric: the weights add up to 0".to_owned());
        }
        out
    }

    /// The weighted score of `marks` (each item 0–100) in tenths of a point
    /// (0–1000): Σ weight × mark / Σ weight, rounded.
    ///
    /// # Errors
    /// A missing or unknown item, or a mark above 100.
    pub fn score(&self, marks: &BTreeMap<String, u32>) -> Result<u32, ScoreError> {
        if let Some(unknown) = marks
            .keys()
            .find(|k| !self.rubric.iter().any(|i| &i.key == *k))
        {
            return Err(ScoreError::Unknown(unknown.clone()));
        }
        let mut sum = 0.0;
        let mut weights = 0.0;
        for item in &self.rubric {
            let mark = *marks
                .get(&item.key)
                .ok_or_else(|| ScoreError::Missing(item.key.clone()))?;
            if mark > 100 {
                return Err(ScoreError::OutOfRange(item.key.clone()));
            }
            sum += item.weight * f64::from(mark);
            weights += item.weight;
        }
        if weights <= 0.0 {
            return Err(ScoreError::NoWeight);
        }
        Ok((sum / weights * 10.0).round().clamp(0.0, 1000.0) as u32)
    }
}

/// Why marks cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("no mark for {0}")]
    Missing(String),
    #[error("{0} is not an item of the rubric")]
    Unknown(String),
    #[error("the mark for {0} is above 100")]
    OutOfRange(String),
    #[error("the rubric's weights add up to 0")]
    NoWeight,
}

/// What is reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A recorded call, reviewed with its recording.
    Call,
    /// The written answer of a web (online) order.
    WebAnswer,
}

impl SubjectKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Call => "call",
            SubjectKind::WebAnswer => "web_answer",
        }
    }
}

/// Why a subject was sampled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SampleReason {
    /// The caller said they were dissatisfied.
    Dissatisfied,
    /// A complaint.
    Complaint,
    /// Talked at least `long_call_secs`.
    LongCall,
    /// Drawn at random.
    Random,
}

impl SampleReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SampleReason::Dissatisfied => "dissatisfied",
            SampleReason::Complaint => "complaint",
            SampleReason::LongCall => "long_call",
            SampleReason::Random => "random",
        }
    }
}

/// A call or answer that may be sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: SubjectKind,
    /// The call id or order id.
    pub id: String,
    pub complaint: bool,
    pub dissatisfied: bool,
    /// Seconds talked (0 for web answers).
    pub talk_secs: u64,
}

/// The sample: every candidate a rule picks (dissatisfied, then complaint, then long
/// call: the first that applies is the reason), then `random` more drawn from the
/// rest with a generator seeded by `seed` (the same seed, the same draw). Candidates
/// whose id is in `already` (sampled before) are skipped. Returns (index, reason) in
/// candidate order.
#[must_use]
pub fn sample(
    candidates: &[Candidate],
    rules: &QualityConfig,
    random: usize,
    seed: u64,
    already: &BTreeSet<String>,
) -> Vec<(usize, SampleReason)> {
    let mut picked: Vec<(usize, SampleReason)> = Vec::new();
    let mut rest = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if already.contains(&c.id) {
            continue;
        }
        let reason = if c.dissatisfied {
            Some(SampleReason::Dissatisfied)
        } else if c.complaint {
            Some(SampleReason::Complaint)
        } else if c.kind == SubjectKind::Call && c.talk_secs >= rules.long_call_secs {
            Some(SampleReason::LongCall)
        } else {
            None
        };
        match reason {
            Some(r) => picked.push((i, r)),
            None => rest.push(i),
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let amount = random.min(rest.len());
    for at in rand::seq::index::sample(&mut rng, rest.len(), amount) {
        picked.push((rest[at], SampleReason::Random));
    }
    picked.sort_by_key(|(i, _)| *i);
    picked
}

/// One scored review for the roll-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    pub person: String,
    pub unit: String,
    pub city: String,
    /// Tenths of a point, 0–1000.
    pub score: u32,
}

/// An average score.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Average {
    /// The person (user id), unit or city.
    pub key: String,
    /// Reviews scored.
    pub reviews: u32,
    /// Mean score, 0–100, one decimal.
    pub score: f64,
}

/// The scores per person, unit and city (H-15 per-person assessment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rollup {
    pub reviews: u32,
    /// Mean over every review (null when none).
    pub score: Option<f64>,
    pub by_person: Vec<Average>,
    pub by_unit: Vec<Average>,
    pub by_city: Vec<Average>,
}

fn averages<'a>(items: impl Iterator<Item = (&'a str, u32)>) -> Vec<Average> {
    let mut sums: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    for (key, score) in items {
        let e = sums.entry(key).or_default();
        e.0 += u64::from(score);
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(key, (sum, n))| Average {
            key: key.to_owned(),
            reviews: n,
            score: mean(sum, n),
        })
        .collect()
}

/// Tenths summed over `n` → points with one decimal.
fn mean(sum: u64, n: u32) -> f64 {
    let tenths = (sum as f64 / f64::from(n.max(1))).round();
    tenths / 10.0
}

/// Averages of `scored`.
#[must_use]
pub fn rollup(scored: &[Scored]) -> Rollup {
    let n = u32::try_from(scored.len()).unwrap_or(u32::MAX);
    let total: u64 = scored.iter().map(|s| u64::from(s.score)).sum();
    Rollup {
        reviews: n,
        score: (n > 0).then(|| mean(total, n)),
        by_person: averages(scored.iter().map(|s| (s.person.as_str(), s.score))),
        by_unit: averages(scored.iter().map(|s| (s.unit.as_str(), s.score))),
        by_city: averages(scored.iter().map(|s| (s.city.as_str(), s.score))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn the_score_weighs_each_item_and_refuses_incomplete_marks() {
        let q = QualityConfig::default();
        let all = marks(&[
            ("attitude", 90),
            ("law", 80),
            ("no_paid_referral", 100),
            ("etiquette", 70),
        ]);
        // 0.3×90 + 0.4×80 + 0.2×100 + 0.1×70 = 86.0
        assert_eq!(q.score(&all), Ok(860));
        let mut missing = all.clone();
        missing.remove("law");
        assert_eq!(q.score(&missing), Err(ScoreError::Missing("law".into())));
        let mut extra = all.clone();
        extra.insert("speed".into(), 50);
        assert_eq!(q.score(&extra), Err(ScoreError::Unknown("speed".into())));
        let mut high = all;
        high.insert("law".into(), 101);
        assert_eq!(q.score(&high), Err(ScoreError::OutOfRange("law".into())));
        assert!(q.problems().is_empty());
        let bad = QualityConfig {
            rubric: vec![RubricItem {
                key: "a".into(),
                name: "A".into(),
                weight: f64::NAN,
            }],
            ..QualityConfig::default()
        };
        assert!(!bad.problems().is_empty());
    }

    fn call(id: &str, complaint: bool, dissatisfied: bool, talk_secs: u64) -> Candidate {
        Candidate {
            kind: SubjectKind::Call,
            id: id.to_owned(),
            complaint,
            dissatisfied,
            talk_secs,
        }
    }

    #[test]
    fn rules_pick_complaints_dissatisfied_and_long_calls_and_the_seed_draws_the_rest() {
        let rules = QualityConfig::default();
        let mut candidates = vec![
            call("c0", true, false, 60),
            call("c1", false, true, 60),
            call("c2", true, true, 900),
            call("c3", false, false, 600),
        ];
        candidates.extend((4..24).map(|i| call(&format!("c{i}"), false, false, 30)));
        let none = BTreeSet::new();
        let a = sample(&candidates, &rules, 3, 7, &none);
        assert_eq!(
            &a[..4],
            [
                (0, SampleReason::Complaint),
                (1, SampleReason::Dissatisfied),
                (2, SampleReason::Dissatisfied),
                (3, SampleReason::LongCall)
            ]
        );
        assert_eq!(a.len(), 7);
        assert!(
            a[4..]
                .iter()
                .all(|(i, r)| *i >= 4 && *r == SampleReason::Random)
        );
        // The same seed draws the same; another seed (almost surely) not.
        assert_eq!(sample(&candidates, &rules, 3, 7, &none), a);
        let draws: BTreeSet<Vec<(usize, SampleReason)>> = (0..5)
            .map(|seed| sample(&candidates, &rules, 3, seed, &none))
            .collect();
        assert!(draws.len() > 1);
        // Never more than there is; nothing sampled twice.
        let already: BTreeSet<String> = (0..24).map(|i| format!("c{i}")).collect();
        assert!(sample(&candidates, &rules, 3, 7, &already).is_empty());
        assert_eq!(sample(&candidates[..2], &rules, 10, 1, &none).len(), 2);
    }

    #[test]
    fn scores_roll_up_per_person_unit_and_city() {
        let s = |person: &str, unit: &str, city: &str, score: u32| Scored {
            person: person.into(),
            unit: unit.into(),
            city: city.into(),
            score,
        };
        let r = rollup(&[
            s("agent", "jinan", "jinan", 900),
            s("agent", "jinan", "jinan", 800),
            s("agent2", "qingdao", "qingdao", 705),
        ]);
        assert_eq!(r.reviews, 3);
        assert_eq!(r.score, Some(80.2));
        assert_eq!(r.by_person[0].key, "agent");
        assert_eq!((r.by_person[0].reviews, r.by_person[0].score), (2, 85.0));
        assert_eq!(r.by_city[1].score, 70.5);
        assert_eq!(rollup(&[]).score, None);
    }
}
