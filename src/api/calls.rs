//! `GET /api/calls`: call detail records with filters.
//!
//! Query parameters (all optional): `city`, `category` (consultation / complaint /
//! suggestion), `caller`, `path` (a stage: ivr, after_hours, queue, duty_list,
//! voice_message, abandoned), `from` / `to` (RFC 3339 arrival range, `to` exclusive),
//! `limit` (default 100, 1..=1000). Newest first. A value outside its type (not a city
//! id, an unknown category or stage, a caller with other than digits, letters and
//! `+ - . _`, a bad time or limit) is a 400 naming the field: no filter reaches the SQL
//! unchecked, and `path` cannot smuggle LIKE wildcards.
//!
//! Logged-in users only (TK-PRIVACY): callers' numbers are masked for roles that do not
//! need them, searching by number needs a role that may see it, and every answer that
//! shows full numbers is written to the audit log.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::CurrentUser;
use super::error::ApiError;
use super::orders::{filter_enum, filter_number, filter_unit, parse_query};
use crate::ivr::cdr::CallPath;
use crate::ivr::flow::CallCategory;
use crate::store::calls::CallFilter;
use crate::ticket::privacy::{can_see_contact, mask_phone};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    city: Option<String>,
    category: Option<String>,
    caller: Option<String>,
    path: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

fn millis(text: Option<String>, field: &'static str) -> Result<Option<i64>, ApiError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| d.timestamp_millis())
                .map_err(|_| {
                    ApiError::bad_request("invalid_filter", format!("not an RFC 3339 time: {t:?}"))
                        .with_field(field)
                })
        })
        .transpose()
}

/// A caller's number as stored: digits, `+`, and the letters, dots and dashes of a SIP
/// user name; nothing a LIKE or a quote could use.
fn filter_caller(value: Option<String>) -> Result<Option<String>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v)
            if v.len() <= 64
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_')
                }) =>
        {
            Ok(Some(v))
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_filter",
            "caller must be a number or SIP user name (letters, digits, + - . _)",
        )
        .with_field("caller")),
    }
}

/// Decode the query of `GET /api/calls` into the store's filter as the handler does.
/// Every filter is checked against its type (city id, category, path stage, number,
/// RFC 3339 times, limit 1..=1000), so nothing else reaches the SQL.
///
/// # Errors
/// 400 `invalid_query` / `invalid_filter` naming the field; 403 for a search by number
/// when `sees_numbers` is false.
pub fn decode_calls_query(raw: Option<&str>, sees_numbers: bool) -> Result<CallFilter, ApiError> {
    let query: CallsQuery = parse_query(raw)?;
    if query.caller.as_deref().is_some_and(|c| !c.is_empty()) && !sees_numbers {
        return Err(ApiError::forbidden(
            "searching calls by number needs a role that may see callers' numbers",
        ));
    }
    Ok(CallFilter {
        city: filter_unit(query.city, "city")?,
        category: filter_enum::<CallCategory>(query.category, "category")?,
        caller: filter_caller(query.caller)?,
        path: filter_enum::<CallPath>(query.path, "path")?,
        from_ms: millis(query.from, "from")?,
        to_ms: millis(query.to, "to")?,
        limit: Some(filter_number(query.limit, "limit", 100, 1000)?),
    })
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Response {
    let actor = user.actor();
    let sees_numbers = can_see_contact(&actor);
    let filter = match decode_calls_query(raw.as_deref(), sees_numbers) {
        Ok(filter) => filter,
        Err(e) => return e.into_response(),
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
