//! Draft work orders of live calls: the agent console autosaves its order form
//! (TK-FIELDS) while the call goes on, keyed by the call id, so a reload or another
//! browser of the same user finds it again. `GET|PUT|DELETE /api/drafts/{call_id}`;
//! the body of PUT is the form as a JSON object (at most 16 KiB). A call's draft is
//! written only by the agent on it (offered or bridged, as the ACD says while the call
//! is up; afterwards the agent its record names) or by a supervisor of its city; a call
//! the server does not know gets 404, so nobody can take call ids in advance. A draft
//! belongs to the user who saved it first (others get 404 / 409) and is deleted when
//! that user creates the order with this `call_id`. A user holds at most
//! [`MAX_DRAFTS_PER_USER`] drafts (429 beyond).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::calls::{oversees_city, valid_call_id};
use super::error::{ApiError, ErrorBody};
use super::queues::AcdApi;
use crate::queue::AgentId;
use crate::ticket::model::CallId;

/// Largest draft accepted.
pub const MAX_DRAFT_BYTES: usize = 16 * 1024;
/// Drafts one user may hold at once (an agent has one call at a time; drafts go when
/// the order is created, or after a week).
pub const MAX_DRAFTS_PER_USER: i64 = 20;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, save, remove))
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

#[utoipa::path(get, path = "/api/drafts/{call_id}", operation_id = "read_draft", tag = "calls",
    summary = "The user's autosaved draft order of a call (404 when none)",
    params(("call_id" = String, Path, description = "the call")),
    responses((status = 200, description = "the draft", body = DraftView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(call_id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    checked(&call_id)?;
    let draft = state
        .store
        .call_draft(&call_id)
        .await?
        .filter(|d| d.user_id == user.id)
        .ok_or_else(|| ApiError::not_found("draft"))?;
    let fields: Value = serde_json::from_str(&draft.fields).unwrap_or(Value::Null);
    Ok(Json(DraftView {
        call_id: draft.call_id,
        fields,
        updated_at: at_text(draft.updated_ms),
    }))
}

/// A saved draft as `GET /api/drafts/{call_id}` answers it.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct DraftView {
    call_id: String,
    /// The form as the console saved it.
    #[schema(value_type = Object)]
    fields: Value,
    /// When saved (RFC 3339, Asia/Shanghai).
    #[schema(value_type = Option<String>)]
    updated_at: Value,
}

/// What `PUT /api/drafts/{call_id}` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct DraftSaved {
    call_id: String,
    /// When saved (RFC 3339, Asia/Shanghai).
    #[schema(value_type = Option<String>)]
    updated_at: Value,
}

/// Whether `user` may write the draft of `call_id`: their agent is offered or bridged
/// the call (ACD), or was the agent who answered it (its record); or they supervise its
/// city. `Err(404)` for a call neither the ACD nor the call records know.
async fn may_write(
    state: &AppState,
    acd: Option<&crate::server::acd::AcdShell>,
    user: &User,
    call_id: &str,
) -> Result<(), ApiError> {
    let call = CallId(call_id.to_owned());
    let own_agent = AgentId::new(user.agent.clone().unwrap_or_else(|| user.id.clone()));
    let live_city = acd
        .and_then(|a| a.call_parties(&call))
        .map(|(city, _)| city);
    let offered = acd
        .and_then(|a| a.agent_state(&own_agent))
        .is_some_and(|s| s.leg_call() == Some(&call));
    let (known, on_the_call, city) = if let Some(city) = live_city {
        (true, offered, Some(city.as_str().to_owned()))
    } else {
        let record = state.store.call_record(call_id).await?;
        (
            record.is_some() || offered,
            offered
                || record
                    .as_ref()
                    .and_then(|r| r.agent.as_deref())
                    .is_some_and(|a| user.is_agent(a)),
            record.and_then(|r| r.city).map(|c| c.as_str().to_owned()),
        )
    };
    if !known {
        return Err(ApiError::not_found("call"));
    }
    let supervises = user.oversees_calls() && oversees_city(&state.orders, user, city.as_deref());
    if on_the_call || supervises {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the agent on the call, or a supervisor of its city, writes its order",
        ))
    }
}

#[utoipa::path(put, path = "/api/drafts/{call_id}", operation_id = "save_draft", tag = "calls",
    summary = "Autosave the draft order of a call (the form as a JSON object, at most 16 KiB; only the agent on the call or a supervisor of its city, 403 else; 404 for a call the server does not know; 409 draft_taken when another user writes it; 429 draft_quota beyond 20 drafts per user)",
    params(("call_id" = String, Path, description = "the call")),
    request_body(content = Object, description = "the console's form, as it stands"),
    responses((status = 200, description = "saved", body = DraftSaved), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn save(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<AcdApi>>,
    Path(call_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    checked(&call_id)?;
    let acd = ext.and_then(|Extension(AcdApi(acd))| acd);
    may_write(&state, acd.as_deref(), &user, &call_id).await?;
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
    let now_ms = state.orders.clock.now().timestamp_millis();
    let held = state
        .store
        .count_user_call_drafts(&user.id, &call_id, now_ms)
        .await?;
    if held >= MAX_DRAFTS_PER_USER {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "draft_quota",
            format!(
                "at most {MAX_DRAFTS_PER_USER} drafts at once: create or clear the others first"
            ),
        ));
    }
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
    Ok(Json(DraftSaved {
        call_id,
        updated_at: at_text(now_ms),
    })
    .into_response())
}

#[utoipa::path(delete, path = "/api/drafts/{call_id}", operation_id = "delete_draft", tag = "calls",
    summary = "Delete the user's draft of a call",
    params(("call_id" = String, Path, description = "the call")),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
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
