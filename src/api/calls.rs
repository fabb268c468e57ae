//! Calls: `GET /api/calls` (call detail records with filters) and
//! `POST /api/calls/{call_id}/transfer` (blind transfer of a bridged caller from the
//! agent console).
//!
//! `GET /api/calls` query parameters (all optional): `city`, `category` (consultation /
//! complaint / suggestion), `caller`, `path` (a stage: ivr, after_hours, queue,
//! duty_list, voice_message, abandoned), `from` / `to` (RFC 3339 arrival range, `to`
//! exclusive), `limit` (default 100, at most 1000). Newest first.
//!
//! Logged-in users only (TK-PRIVACY): callers' numbers are masked for roles that do not
//! need them, searching by number needs a role that may see it, and every answer that
//! shows full numbers is written to the audit log.
//!
//! The transfer takes `{"to": "survey" | "queue:<city>" | "unit:<unit id>"}` and does
//! what the agent's REFER does (one shared function in the call task). Only the agent
//! bridged to the call, or a supervisor / province administrator whose subtree holds
//! the call's queue, may transfer it. `unit:` answers 422 `transfer_unavailable` until
//! the server places outbound legs to units' numbers.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::error::ApiError;
use super::orders::OrdersContext;
use super::queues::AcdApi;
use crate::server::transfer::{TargetError, TransferError, parse_target};
use crate::store::calls::CallFilter;
use crate::ticket::UnitId;
use crate::ticket::model::CallId;
use crate::ticket::privacy::{can_see_contact, mask_phone};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/calls", get(list))
        .route("/api/calls/{call_id}/transfer", post(transfer))
}

/// Whether a call id from a URL may be used at all: 1–256 bytes, no path separator,
/// no `..`, no control character (NUL …). SIP Call-IDs are printable words; ids the
/// server makes are alphanumeric.
#[must_use]
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && !id.contains("..")
        && !id.chars().any(|c| c.is_control() || c == '/' || c == '\\')
}

/// Whether `user`'s unit subtree holds the city `city` (the root unit holds every
/// call, also those whose city is unknown).
#[must_use]
pub fn oversees_city(ctx: &OrdersContext, user: &User, city: Option<&str>) -> bool {
    let root = ctx
        .units
        .get(&user.unit)
        .is_some_and(|u| u.parent.is_none());
    root || city.is_some_and(|c| ctx.units.covers(&user.unit, &UnitId::new(c.to_owned())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    city: Option<String>,
    category: Option<String>,
    caller: Option<String>,
    path: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

fn millis(text: Option<&str>) -> Result<Option<i64>, String> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .map_err(|_| format!("not an RFC 3339 time: {t:?}"))
    })
    .transpose()
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<CallsQuery>,
) -> Response {
    let actor = user.actor();
    let sees_numbers = can_see_contact(&actor);
    if query.caller.is_some() && !sees_numbers {
        return super::error::ApiError::forbidden(
            "searching calls by number needs a role that may see callers' numbers",
        )
        .into_response();
    }
    let range = millis(query.from.as_deref())
        .and_then(|from| millis(query.to.as_deref()).map(|to| (from, to)));
    let (from_ms, to_ms) = match range {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let filter = CallFilter {
        city: query.city,
        category: query.category,
        caller: query.caller,
        path: query.path,
        from_ms,
        to_ms,
        limit: query.limit,
    };
    match state.store.list_calls(&filter).await {
        Ok(mut calls) => {
            if sees_numbers {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let detail = format!("{} call records with callers' numbers", calls.len());
                if let Err(e) = state
                    .store
                    .audit(now_ms, &user.id, "calls.read", "calls", &detail)
                    .await
                {
                    tracing::warn!(%e, "audit of a calls read failed");
                    return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
                        .into_response();
                }
            } else {
                for call in &mut calls {
                    call.record.caller = mask_phone(&call.record.caller);
                    if let Some(vm) = call.voice_message.as_mut() {
                        vm.caller = mask_phone(&vm.caller);
                    }
                }
            }
            Json(calls).into_response()
        }
        Err(e) => {
            tracing::warn!(%e, "listing calls failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
}

/// How long the API waits for the call task to carry a transfer out.
const TRANSFER_WAIT: Duration = Duration::from_secs(5);

async fn transfer(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<AcdApi>>,
    Path(call_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !valid_call_id(&call_id) {
        return Err(ApiError::bad_request(
            "invalid_call_id",
            "a call id has no path separators, no '..', no control characters and at most 256 bytes",
        ));
    }
    let body: TransferBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::unprocessable("invalid_body", format!("expected {{\"to\": …}}: {e}"))
    })?;
    let to = parse_target(&body.to).map_err(|e| match e {
        TargetError::UnitNotAvailable(_) => {
            ApiError::unprocessable("transfer_unavailable", e.to_string()).with_field("to")
        }
        TargetError::Unknown(_) => {
            ApiError::unprocessable("invalid_field", e.to_string()).with_field("to")
        }
    })?;
    let acd = ext
        .and_then(|Extension(AcdApi(acd))| acd)
        .ok_or_else(|| ApiError::not_found("call"))?;
    let call = CallId(call_id.clone());
    let (city, agent) = acd
        .call_parties(&call)
        .ok_or_else(|| ApiError::not_found("call"))?;
    let own_call = agent.as_ref().is_some_and(|a| user.is_agent(a.as_str()));
    let oversees =
        user.oversees_calls() && oversees_city(&state.orders, &user, Some(city.as_str()));
    if !own_call && !oversees {
        return Err(ApiError::forbidden(
            "only the agent on the call, or a supervisor of its city, may transfer it",
        ));
    }
    if agent.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_bridged",
            "the call is not bridged to an agent",
        ));
    }
    let rx = acd
        .request_transfer(&call, to)
        .ok_or_else(|| ApiError::not_found("call"))?;
    let result = tokio::time::timeout(TRANSFER_WAIT, rx)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "transfer_timeout",
                "the call did not answer the transfer in time",
            )
        })?
        .unwrap_or(Err(TransferError::CallGone));
    match result {
        Ok(()) => {
            tracing::info!(call_id = %call_id, user = %user.id, to = %body.to, "call transferred from the console");
            Ok(Json(serde_json::json!({"call_id": call_id, "to": body.to.trim()})).into_response())
        }
        Err(TransferError::NotBridged) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_bridged",
            "the call is not bridged to an agent",
        )),
        Err(TransferError::CallGone) => Err(ApiError::not_found("call")),
        Err(e @ TransferError::Refused(_)) => {
            Err(ApiError::unprocessable("transfer_refused", e.to_string()))
        }
    }
}
