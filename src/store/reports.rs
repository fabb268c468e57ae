//! Published reports (`migrations/*/0040_reports.sql`): one row per period, written
//! once by the report scheduler after its files are on disk.

use super::{Pool, Store, StoreError};

/// One stored report.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredReport {
    /// The period: `2026-11`, `2026-Q4` or `2026`.
    pub id: String,
    /// `month`, `quarter` or `year`.
    pub kind: String,
    pub period_from_ms: i64,
    pub period_to_ms: i64,
    pub generated_ms: i64,
    /// The report's JSON.
    pub data: String,
    /// The XLSX file, relative to the reports directory.
    pub xlsx_file: String,
    /// The HTML page, relative to the reports directory.
    pub html_file: String,
}

impl Store {
    /// Records a report. Returns `false` (nothing written) when the period already
    /// has one: a report is made once.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_report(&self, report: &StoredReport) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO reports (id, kind, period_from_ms, period_to_ms, \
            generated_ms, data, xlsx_file, html_file) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
            ON CONFLICT (id) DO NOTHING";
        let written = on_pool!(self, |p| sqlx::query(SQL)
            .bind(&report.id)
            .bind(&report.kind)
            .bind(report.period_from_ms)
            .bind(report.period_to_ms)
            .bind(report.generated_ms)
            .bind(&report.data)
            .bind(&report.xlsx_file)
            .bind(&report.html_file)
            .execute(p)
            .await?
            .rows_affected());
        Ok(written == 1)
    }

    /// The ids of every stored report.
    ///
    /// # Errors
    /// Database errors.
    pub async fn report_ids(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT id FROM reports";
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Every stored report without its data, latest period first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_reports(&self) -> Result<Vec<StoredReport>, StoreError> {
        const SQL: &str = "SELECT id, kind, period_from_ms, period_to_ms, generated_ms, \
            '' AS data, xlsx_file, html_file FROM reports \
            ORDER BY period_to_ms DESC, period_from_ms DESC";
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredReport>(SQL)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// One report with its data.
    ///
    /// # Errors
    /// Database errors.
    pub async fn report(&self, id: &str) -> Result<Option<StoredReport>, StoreError> {
        const SQL: &str = "SELECT id, kind, period_from_ms, period_to_ms, generated_ms, data, \
            xlsx_file, html_file FROM reports WHERE id = $1";
        let row = on_pool!(self, |p| sqlx::query_as::<_, StoredReport>(SQL)
            .bind(id)
            .fetch_optional(p)
            .await?);
        Ok(row)
    }
}
