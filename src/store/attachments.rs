//! The attachments of public submissions (issue 17): one row per file, the file itself
//! under `<data_dir>/attachments/` named by the row's id.

use super::{Pool, Store, StoreError};

/// An attachment's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// Random id, also the file's name.
    pub id: String,
    pub order_id: String,
    /// As sniffed from the content (`image/jpeg`, `image/png`, `application/pdf`).
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    pub created_ms: i64,
}

type Row = (String, String, String, i64, String, i64);

impl Store {
    /// Link an attachment (its file already written) to its order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_attachment(&self, a: &StoredAttachment) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO order_attachments \
            (id, order_id, content_type, size, sha256, created_ms) VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, |p| {
            sqlx::query(SQL)
                .bind(&a.id)
                .bind(&a.order_id)
                .bind(&a.content_type)
                .bind(a.size)
                .bind(&a.sha256)
                .bind(a.created_ms)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The attachments of an order, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn attachments_of(
        &self,
        order_id: &str,
    ) -> Result<Vec<StoredAttachment>, StoreError> {
        const SQL: &str = "SELECT id, order_id, content_type, size, sha256, created_ms \
            FROM order_attachments WHERE order_id = $1 ORDER BY created_ms, id";
        let rows: Vec<Row> = on_pool!(self, |p| {
            sqlx::query_as(SQL).bind(order_id).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, order_id, content_type, size, sha256, created_ms)| StoredAttachment {
                    id,
                    order_id,
                    content_type,
                    size,
                    sha256,
                    created_ms,
                },
            )
            .collect())
    }
}
