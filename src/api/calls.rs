//! `GET /api/calls`: call detail records with filters.
//!
//! Query parameters (all optional): `city`, `category` (consultation / complaint /
//! suggestion), `caller`, `path` (a stage: ivr, after_hours, queue, duty_list,
//! voice_message, abandoned), `from` / `to` (RFC 3339 arrival range, `to` exclusive),
//! `limit` (default 100, at most 1000). Newest first.
//!
//! Logged-in users only (TK-PRIVACY): callers' numbers are masked for roles that do not
//! need them, searching by number needs a role that may see it, and every answer that
//! shows full numbers is written to the audit log.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::CurrentUser;
use crate::store::calls::CallFilter;
use crate::ticket::privacy::{can_see_contact, mask_phone};

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
