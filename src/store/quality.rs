//! Quality reviews (`migrations/*/0041_quality_reviews.sql`): sampled calls and web
//! answers, their scores and appeals; and the answered calls a sample is drawn from.

use super::{Pool, Store, StoreError};
use crate::ivr::cdr::CallDetailRecord;

/// One review.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredReview {
    pub id: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub subject_ms: i64,
    pub person: String,
    pub unit: String,
    pub city: String,
    pub reason: String,
    pub sampled_by: String,
    pub sampled_ms: i64,
    pub reviewer: Option<String>,
    pub scored_ms: Option<i64>,
    /// JSON: item key → 0..100.
    pub marks: Option<String>,
    pub score_tenths: Option<i64>,
    pub comment: Option<String>,
    pub appeal: Option<String>,
    pub appealed_ms: Option<i64>,
}

/// Which reviews to list.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Only this person's.
    pub person: Option<String>,
    /// Only these cities; `None`: every city.
    pub cities: Option<Vec<String>>,
    /// Subject time in `[from, to)`, unix ms.
    pub subject: Option<(i64, i64)>,
    /// Only scored ones.
    pub scored: bool,
}

const COLUMNS: &str = "SELECT id, subject_kind, subject_id, subject_ms, person, unit, city, \
    reason, sampled_by, sampled_ms, reviewer, scored_ms, marks, score_tenths, comment, appeal, \
    appealed_ms FROM quality_reviews";

/// At most this many answered calls are read for one sample.
pub const MAX_CANDIDATE_CALLS: i64 = 100_000;

impl Store {
    /// Records a sampled subject. `false`: it was sampled before.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_review(&self, r: &StoredReview) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO quality_reviews (id, subject_kind, subject_id, \
            subject_ms, person, unit, city, reason, sampled_by, sampled_ms) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING";
        let n = on_pool!(self, |p| sqlx::query(SQL)
            .bind(&r.id)
            .bind(&r.subject_kind)
            .bind(&r.subject_id)
            .bind(r.subject_ms)
            .bind(&r.person)
            .bind(&r.unit)
            .bind(&r.city)
            .bind(&r.reason)
            .bind(&r.sampled_by)
            .bind(r.sampled_ms)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// The ids of every review (to sample nothing twice).
    ///
    /// # Errors
    /// Database errors.
    pub async fn review_ids(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT id FROM quality_reviews";
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// One review.
    ///
    /// # Errors
    /// Database errors.
    pub async fn review(&self, id: &str) -> Result<Option<StoredReview>, StoreError> {
        let sql = format!("{COLUMNS} WHERE id = $1");
        let row = on_pool!(self, |p| sqlx::query_as::<_, StoredReview>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// The reviews of `filter`, newest subject first (filtered in memory after the
    /// period: a period holds few reviews).
    ///
    /// # Errors
    /// Database errors.
    pub async fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<StoredReview>, StoreError> {
        let (from, to) = filter.subject.unwrap_or((i64::MIN, i64::MAX));
        let sql = format!(
            "{COLUMNS} WHERE subject_ms >= $1 AND subject_ms < $2 \
             ORDER BY subject_ms DESC, id"
        );
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredReview>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .filter(|r| filter.person.as_ref().is_none_or(|p| *p == r.person))
            .filter(|r| {
                filter
                    .cities
                    .as_ref()
                    .is_none_or(|cities| cities.contains(&r.city))
            })
            .filter(|r| !filter.scored || r.score_tenths.is_some())
            .collect())
    }

    /// Scores a review (again: a rescore after an appeal replaces the score).
    ///
    /// # Errors
    /// Database errors.
    pub async fn score_review(
        &self,
        id: &str,
        reviewer: &str,
        marks: &str,
        score_tenths: i64,
        comment: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE quality_reviews SET reviewer = $2, marks = $3, \
            score_tenths = $4, comment = $5, scored_ms = $6 WHERE id = $1";
        let n = on_pool!(self, |p| sqlx::query(SQL)
            .bind(id)
            .bind(reviewer)
            .bind(marks)
            .bind(score_tenths)
            .bind(comment)
            .bind(now_ms)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Records the one appeal of a scored review. `false`: not scored, or already
    /// appealed (the condition is in the UPDATE, so two appeals at once make one).
    ///
    /// # Errors
    /// Database errors.
    pub async fn appeal_review(
        &self,
        id: &str,
        text: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE quality_reviews SET appeal = $2, appealed_ms = $3 \
            WHERE id = $1 AND appeal IS NULL AND score_tenths IS NOT NULL";
        let n = on_pool!(self, |p| sqlx::query(SQL)
            .bind(id)
            .bind(text)
            .bind(now_ms)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// The finished calls that arrived in `[from, to)` and were answered by an agent.
    ///
    /// # Errors
    /// Database errors.
    pub async fn answered_calls(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CallDetailRecord>, StoreError> {
        const SQL: &str = "SELECT record FROM calls WHERE arrival_ms >= $1 AND arrival_ms < $2 \
            AND in_progress = $3 ORDER BY arrival_ms LIMIT $4";
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(SQL)
            .bind(from_ms)
            .bind(to_ms)
            .bind(false)
            .bind(MAX_CANDIDATE_CALLS)
            .fetch_all(p)
            .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(json,)| serde_json::from_str::<CallDetailRecord>(&json).ok())
            .filter(|r| r.agent.is_some())
            .collect())
    }
}
