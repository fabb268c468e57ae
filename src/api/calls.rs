//! Calls: `GET /api/calls` (call detail records with filters) and
//! `POST /api/calls/{call_id}/transfer` (blind transfer of a bridged caller from the
//! agent console).
//!
//! `GET /api/calls` query parameters (all optional): `city`, `category` (consultation / complaint /
//! suggestion), `caller`, `path` (a stage: ivr, after_hours, queue, duty_list,
//! voice_message, abandoned), `from` / `to` (RFC 3339 arrival range, `to` exclusive),
//! `limit` (default 100, 1..=1000). Newest first. A value outside its type (not a city
//! id, an unknown category or stage, a caller with other than digits, letters and
//! `+ - . _`, a bad time or limit) is a 400 naming the field: no filter reaches the SQL
//! unchecked, and `path` cannot smuggle LIKE wildcards.
//!
//! Logged-in users only (TK-PRIVACY), each seeing the calls of their unit subtree:
//! callers' numbers are masked (`mask_phone`) for roles that do not need them, agents
//! included; searching by number needs a role that may see numbers or an agent (who then
//! gets the matches masked); and every answer that shows full numbers is first written
//! to the audit log as `calls.read` naming the call ids it returns (else it is masked).
//!
//! The transfer takes `{"to": "survey" | "queue:<city>" | "unit:<unit id>"}` and does
//! what the agent's REFER does (one shared function in the call task). Only the agent
//! bridged to the call, or a supervisor / province administrator whose subtree holds
//! the call's queue, may transfer it. `unit:` answers 422 `transfer_unavailable` until
//! the server places outbound legs to units' numbers.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::error::{ApiError, ErrorBody};
use super::orders::{ContactView, OrdersContext, audited_contact_view};
use super::orders::{filter_enum, filter_number, filter_unit, parse_query};
use super::queues::AcdApi;
use super::views::CallView;
use crate::domain::CallCategory;
use crate::ivr::cdr::CallPath;
use crate::server::outbound::TransferRefused;
use crate::server::transfer::{TransferError, refer_user};
use crate::store::calls::CallFilter;
use crate::ticket::UnitId;
use crate::ticket::model::CallId;
use crate::ticket::privacy::{mask_phone, may_search_by_number};

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(transfer))
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// City unit id.
    city: Option<String>,
    /// The caller's category from the IVR.
    category: Option<String>,
    /// Caller number (roles that see numbers only).
    caller: Option<String>,
    /// The call's path through the IVR.
    path: Option<String>,
    /// RFC 3339.
    from: Option<String>,
    /// RFC 3339.
    to: Option<String>,
    /// 1..=1000, default 100.
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
/// when `may_search` is false.
pub fn decode_calls_query(raw: Option<&str>, may_search: bool) -> Result<CallFilter, ApiError> {
    let query: CallsQuery = parse_query(raw)?;
    if query.caller.as_deref().is_some_and(|c| !c.is_empty()) && !may_search {
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
        cities: None,
    })
}

#[utoipa::path(get, path = "/api/calls", operation_id = "list_calls", tag = "calls",
    summary = "Call detail records. Each item is {record, voice_message, in_progress}: a record is written when the call is answered (in_progress true) and completed at its end; record.end_reason is shutdown, server-restart or crash when the server closed it itself; record.agent_failures lists the agents offered the call who did not answer or whose phone vanished mid-call (the caller was re-queued). Callers' numbers are masked (138****5678, ****5678) except for dispatch, handling units and callback staff, whose answers are audited (calls.read, naming the call ids)",
    params(CallsQuery),
    responses((status = 200, description = "the calls, newest first", body = Vec<CallView>), (status = 503, description = "database unavailable"), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut filter = match decode_calls_query(raw.as_deref(), may_search_by_number(&user.actor())) {
        Ok(filter) => filter,
        Err(e) => return e.into_response(),
    };
    // A user sees the calls of their unit subtree only (a city's supervisor or agent
    // their city; the province every call, as `oversees_city`). The scope goes into the
    // query, before the limit, so a page holds the newest `limit` calls of the scope.
    filter.cities = state.orders.scope_of(&user.unit);
    match state.store.list_calls(&filter).await {
        Ok(mut calls) => {
            let ids: Vec<&str> = calls
                .iter()
                .filter(|c| {
                    !c.record.caller.is_empty()
                        || c.voice_message
                            .as_ref()
                            .is_some_and(|vm| !vm.caller.is_empty())
                })
                .map(|c| c.record.call_id.as_str())
                .collect();
            let view = audited_contact_view(&state, &user, "calls.read", &ids).await;
            if view == ContactView::Masked {
                for call in &mut calls {
                    call.record.caller = mask_phone(&call.record.caller);
                    if let Some(vm) = call.voice_message.as_mut() {
                        vm.caller = mask_phone(&vm.caller);
                    }
                }
            }
            // Who answered, by name (`[[users]] agent`), beside the extension.
            let items: Vec<CallView> = calls
                .into_iter()
                .map(|call| {
                    let agent_name = call
                        .record
                        .agent
                        .as_deref()
                        .and_then(|a| state.auth.agent_name(a));
                    CallView { call, agent_name }
                })
                .collect();
            Json(items).into_response()
        }
        Err(e) => {
            tracing::warn!(%e, "listing calls failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    /// survey, queue:<city>, or unit:<unit id>.
    #[schema(examples("survey", "queue:qingdao", "unit:jinan-legal-aid"))]
    to: String,
}

/// What a carried-out transfer answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct TransferReply {
    call_id: String,
    /// Where the call went, as asked.
    to: String,
}

/// How long the API waits for the call task to carry a transfer out.
const TRANSFER_WAIT: Duration = Duration::from_secs(5);

#[utoipa::path(post, path = "/api/calls/{call_id}/transfer", operation_id = "transfer_call", tag = "calls",
    summary = "Blind transfer of a bridged call, as the agent's REFER: survey, queue:<city>, or unit:<unit id> (422 transfer_unavailable for now); only the agent on the call or a supervisor of its city",
    params(("call_id" = String, Path, description = "the call")),
    request_body = TransferBody,
    responses((status = 200, description = "transferred", body = TransferReply), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
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
    let refer_user = refer_user(&body.to)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()).with_field("to"))?;
    let acd = ext
        .and_then(|Extension(AcdApi(acd))| acd)
        .ok_or_else(|| ApiError::not_found("call"))?;
    let to = acd.transfer_target(&refer_user).map_err(|e| match e {
        TransferRefused::Outbound(_) => {
            ApiError::unprocessable("transfer_unavailable", e.to_string()).with_field("to")
        }
        TransferRefused::Target(_) => {
            ApiError::unprocessable("invalid_field", e.to_string()).with_field("to")
        }
    })?;
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
            let to = body.to.trim().to_owned();
            Ok(Json(TransferReply { call_id, to }).into_response())
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
