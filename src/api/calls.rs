//! `GET /api/calls`: call detail records with filters.
//!
//! Query parameters (all optional): `city`, `category` (consultation / complaint /
//! suggestion), `caller`, `path` (a stage: ivr, after_hours, queue, duty_list,
//! voice_message, abandoned), `from` / `to` (RFC 3339 arrival range, `to` exclusive),
//! `limit` (default 100, at most 1000). Newest first.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::store::calls::CallFilter;

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

pub async fn list(State(state): State<AppState>, Query(query): Query<CallsQuery>) -> Response {
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
        Ok(calls) => Json(calls).into_response(),
        Err(e) => {
            tracing::warn!(%e, "listing calls failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
