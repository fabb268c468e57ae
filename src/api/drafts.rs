//! Draft work orders of live calls: the agent console autosaves its order form
//! (TK-FIELDS) while the call goes on, keyed by the call id, so a reload or another
//! browser of the same user finds it again. `GET|PUT|DELETE /api/drafts/{call_id}`;
//! the body of PUT is the form as a JSON object (at most 16 KiB). Only agents (who take
//! calls) save drafts; a draft belongs to the user who saved it first (others get 404 /
//! 409) and is deleted when that user creates the order with this `call_id`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::auth::CurrentUser;
use super::calls::valid_call_id;
use super::error::ApiError;
use crate::ticket::Role;

/// Largest draft accepted.
pub const MAX_DRAFT_BYTES: usize = 16 * 1024;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/drafts/{call_id}", get(read).put(save).delete(remove))
}

fn checked(call_id: &str) -> Result<(), ApiError> {
    if valid_call_id(call_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_call_id",
            "a call id has no path separators, no '..', no control characters and at most 256 bytes",
        ))
    }
}

fn at_text(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&crate::calendar::shanghai()).to_rfc3339())
        .map_or(Value::Null, Value::String)
}

async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    checked(&call_id)?;
    let draft = state
        .store
        .call_draft(&call_id)
        .await?
        .filter(|d| d.user_id == user.id)
        .ok_or_else(|| ApiError::not_found("draft"))?;
    let fields: Value = serde_json::from_str(&draft.fields).unwrap_or(Value::Null);
    Ok(Json(json!({
        "call_id": draft.call_id,
        "fields": fields,
        "updated_at": at_text(draft.updated_ms),
    })))
}

async fn save(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(call_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    checked(&call_id)?;
    if !user.has(Role::Agent) {
        return Err(ApiError::forbidden("only agents write the order of a call"));
    }
    if body.len() > MAX_DRAFT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a draft is at most {MAX_DRAFT_BYTES} bytes"),
        ));
    }
    let fields: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("request body is not JSON: {e}"))
    })?;
    if !fields.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "the draft must be a JSON object",
        ));
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let saved = state
        .store
        .save_call_draft(&call_id, &user.id, &fields.to_string(), now_ms)
        .await?;
    if !saved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "draft_taken",
            "another user is writing the order of this call",
        ));
    }
    Ok(Json(json!({"call_id": call_id, "updated_at": at_text(now_ms)})).into_response())
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    checked(&call_id)?;
    if state.store.delete_call_draft(&call_id, &user.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("draft"))
    }
}
