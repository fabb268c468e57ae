//! Draft work orders of live calls (`migrations/*/0010_call_drafts.sql`): the agent
//! console autosaves its order form here, keyed by the call id, until the order is
//! created.

use super::{Pool, Store, StoreError};

/// How long an abandoned draft is kept (purged on the next save).
pub const DRAFT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// One stored draft.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallDraft {
    pub call_id: String,
    pub user_id: String,
    /// The form as JSON text.
    pub fields: String,
    pub updated_ms: i64,
}

impl Store {
    /// The draft of `call_id`, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn call_draft(&self, call_id: &str) -> Result<Option<CallDraft>, StoreError> {
        const SQL: &str =
            "SELECT call_id, user_id, fields, updated_ms FROM call_drafts WHERE call_id = $1";
        let row = on_pool!(self, |p| sqlx::query_as::<_, CallDraft>(SQL)
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row)
    }

    /// Save the draft of `call_id` for `user_id`. Returns `false` (nothing written) when
    /// another user's draft holds that call. Drafts older than [`DRAFT_TTL_MS`] are
    /// purged.
    ///
    /// # Errors
    /// Database errors.
    pub async fn save_call_draft(
        &self,
        call_id: &str,
        user_id: &str,
        fields: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const PURGE: &str = "DELETE FROM call_drafts WHERE updated_ms < $1";
        const UPSERT: &str = "INSERT INTO call_drafts (call_id, user_id, fields, updated_ms) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (call_id) DO UPDATE \
            SET fields = excluded.fields, updated_ms = excluded.updated_ms \
            WHERE call_drafts.user_id = excluded.user_id";
        let written = on_pool!(self, |p| {
            sqlx::query(PURGE)
                .bind(now_ms.saturating_sub(DRAFT_TTL_MS))
                .execute(p)
                .await?;
            sqlx::query(UPSERT)
                .bind(call_id)
                .bind(user_id)
                .bind(fields)
                .bind(now_ms)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(written == 1)
    }

    /// How many live (not expired at `now_ms`) drafts `user_id` holds, besides the one
    /// of `except_call`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_user_call_drafts(
        &self,
        user_id: &str,
        except_call: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM call_drafts \
            WHERE user_id = $1 AND call_id <> $2 AND updated_ms >= $3";
        let (count,): (i64,) = on_pool!(self, |p| sqlx::query_as(SQL)
            .bind(user_id)
            .bind(except_call)
            .bind(now_ms.saturating_sub(DRAFT_TTL_MS))
            .fetch_one(p)
            .await?);
        Ok(count)
    }

    /// Delete `user_id`'s draft of `call_id` (the order was created, or the agent
    /// cleared the form). Returns whether one was deleted.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_call_draft(
        &self,
        call_id: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM call_drafts WHERE call_id = $1 AND user_id = $2";
        let done = on_pool!(self, |p| sqlx::query(SQL)
            .bind(call_id)
            .bind(user_id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: &Store) {
        assert!(store.call_draft("c1").await.expect("read").is_none());
        assert!(
            store
                .save_call_draft("c1", "agent", r#"{"description":"a"}"#, 1_000)
                .await
                .expect("save")
        );
        assert!(
            store
                .save_call_draft("c1", "agent", r#"{"description":"ab"}"#, 2_000)
                .await
                .expect("save again")
        );
        // Another user cannot overwrite it.
        assert!(
            !store
                .save_call_draft("c1", "other", r#"{"description":"x"}"#, 3_000)
                .await
                .expect("refused")
        );
        let draft = store.call_draft("c1").await.expect("read").expect("draft");
        assert_eq!(draft.user_id, "agent");
        assert_eq!(draft.fields, r#"{"description":"ab"}"#);
        assert_eq!(draft.updated_ms, 2_000);
        // A save a week later purges the old one.
        assert!(
            store
                .save_call_draft("c2", "agent", "{}", 2_000 + DRAFT_TTL_MS + 1)
                .await
                .expect("save")
        );
        assert!(store.call_draft("c1").await.expect("read").is_none());
        assert!(!store.delete_call_draft("c2", "other").await.expect("del"));
        assert!(store.delete_call_draft("c2", "agent").await.expect("del"));
        assert!(store.call_draft("c2").await.expect("read").is_none());
    }

    #[tokio::test]
    async fn call_drafts_are_saved_per_call_and_owner_sqlite() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        exercise(&store).await;
    }

    #[tokio::test]
    async fn call_drafts_are_saved_per_call_and_owner_postgres() {
        let store = crate::store::test_support::postgres().await;
        exercise(&store).await;
    }
}
