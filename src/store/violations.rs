//! The register of violations (`migrations/*/0042_violations.sql`).

use super::{Pool, Store, StoreError};

/// One registered fault.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredViolation {
    pub id: String,
    pub unit: String,
    pub person: Option<String>,
    pub kind: String,
    pub description: String,
    pub registered_by: String,
    pub registered_ms: i64,
    pub working_days: i64,
    pub due_ms: i64,
    pub due_text: String,
    pub done_ms: Option<i64>,
    pub done_by: Option<String>,
    pub rectification: Option<String>,
}

const SELECT: &str = "SELECT id, unit, person, kind, description, registered_by, registered_ms, \
    working_days, due_ms, due_text, done_ms, done_by, rectification FROM violations";

impl Store {
    /// Registers a fault.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_violation(&self, v: &StoredViolation) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO violations (id, unit, person, kind, description, \
            registered_by, registered_ms, working_days, due_ms, due_text) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        on_pool!(self, |p| sqlx::query(SQL)
            .bind(&v.id)
            .bind(&v.unit)
            .bind(&v.person)
            .bind(&v.kind)
            .bind(&v.description)
            .bind(&v.registered_by)
            .bind(v.registered_ms)
            .bind(v.working_days)
            .bind(v.due_ms)
            .bind(&v.due_text)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The faults registered in `[from, to)` (unix ms), oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn violations(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredViolation>, StoreError> {
        let sql = format!(
            "{SELECT} WHERE registered_ms >= $1 AND registered_ms < $2 ORDER BY registered_ms, id"
        );
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredViolation>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }

    /// One fault.
    ///
    /// # Errors
    /// Database errors.
    pub async fn violation(&self, id: &str) -> Result<Option<StoredViolation>, StoreError> {
        let sql = format!("{SELECT} WHERE id = $1");
        let row = on_pool!(self, |p| sqlx::query_as::<_, StoredViolation>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// Records the rectification once. `false`: it was recorded before.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rectify_violation(
        &self,
        id: &str,
        by: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE violations SET done_ms = $2, done_by = $3, rectification = $4 \
            WHERE id = $1 AND done_ms IS NULL";
        let n = on_pool!(self, |p| sqlx::query(SQL)
            .bind(id)
            .bind(now_ms)
            .bind(by)
            .bind(note)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }
}
