//! `POST /api/orders/{id}/call_back` and `GET /api/orders/{id}/call_back`: the 回拨
//! button of an order (H-11, H-12-3 回拨解答). The hotline calls the order's contact back
//! for the person acting on it — their own registered phone first, then the order's
//! stored number through the outbound trunk, bridged and recorded
//! ([`crate::server::order_call`]); the outcome goes into the order's history.
//!
//! Who may: a user who may read the order (404 otherwise) and who answers its caller
//! now, by the orders' own role, scope and step rules (403 otherwise): the callback
//! clerk on the callback step, the unit replying, the agent answering directly. The
//! request carries nothing: the number is the order's, never one from the request (a
//! body with any field is 422).
//!
//! Refusals: 422 `no_number` (the order has no contact phone), `trunk_not_configured`,
//! `no_registered_phone` (the user's extension has no registered phone),
//! `number_refused` (a number callbacks never dial); 409 `call_in_progress`, or
//! `phone_busy` (the user's phone is ringing or talking on a queue call or another
//! order's callback call).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ErrorBody};
use super::orders::{body_bytes, may_answer_caller, parse_body, visible_order};
use crate::server::order_call::{CallProgress, OrderCallRefused, OrderCallRequest, OrderCalls};
use crate::ticket::privacy::{can_see_contact, mask_phone};

/// The server's order callback calls (an axum extension set by the server; without it
/// the hotline cannot call out: 422 `trunk_not_configured`).
#[derive(Debug, Clone, Default)]
pub struct OrderCallsApi(pub Option<Arc<OrderCalls>>);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(call_back, call_back_state))
}

/// The body of `POST /api/orders/{id}/call_back`: nothing (an empty body or `{}`); the
/// number called is the order's.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CallBackRequest {}

fn refused(e: &OrderCallRefused) -> ApiError {
    match e {
        OrderCallRefused::NoTrunk => ApiError::unprocessable("trunk_not_configured", e.to_string()),
        OrderCallRefused::Number(_) => {
            ApiError::unprocessable("number_refused", e.to_string()).with_field("contact_phone")
        }
        OrderCallRefused::NoPhone(_) => {
            ApiError::unprocessable("no_registered_phone", e.to_string())
        }
        OrderCallRefused::PhoneBusy(_) => {
            ApiError::new(StatusCode::CONFLICT, "phone_busy", e.to_string())
        }
        OrderCallRefused::InProgress(_) => {
            ApiError::new(StatusCode::CONFLICT, "call_in_progress", e.to_string())
        }
        OrderCallRefused::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "call_unavailable",
            e.to_string(),
        ),
    }
}

#[utoipa::path(post, path = "/api/orders/{id}/call_back", operation_id = "call_back_order", tag = "orders",
    summary = "回拨 (H-11, H-12-3): ring the user's own registered phone, then call the order's stored contact number through the outbound trunk, bridged and recorded; the outcome (answered / no_answer / busy / failed), seconds talked and recording go into the order's history as call_logged order_callback. For users who answer the order's caller now (callback clerk on the callback step, the replying unit, the agent answering directly); the body carries no number (any field: 422). 422 no_number / trunk_not_configured / no_registered_phone / number_refused, 409 call_in_progress / phone_busy; a queue agent is paused (order-callback) while it runs",
    params(("id" = String, Path, description = "order id")),
    request_body = CallBackRequest,
    responses((status = 202, description = "the user's phone rings", body = CallProgress), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn call_back(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<OrderCallsApi>>,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let CallBackRequest {} = parse_body(&body)?;
    }
    let order = visible_order(&state, &user, &id).await?;
    let at = state.orders.clock.now();
    if !may_answer_caller(&order, &user, at, &state.orders) {
        return Err(ApiError::forbidden(
            "only who answers this order's caller now (the callback clerk on the callback step, the replying unit, the agent answering directly) may call them back",
        ));
    }
    let number = order.fields.contact.phone.trim();
    if number.is_empty() {
        return Err(
            ApiError::unprocessable("no_number", "the order has no contact phone to call")
                .with_field("contact_phone"),
        );
    }
    let calls = ext
        .and_then(|Extension(OrderCallsApi(calls))| calls)
        .filter(|c| c.has_trunk())
        .ok_or_else(|| refused(&OrderCallRefused::NoTrunk))?;
    let display = if can_see_contact(&user.actor()) {
        number.to_owned()
    } else {
        mask_phone(number)
    };
    let phone = user.agent.clone().unwrap_or_else(|| user.id.clone());
    let request = OrderCallRequest {
        order: &order,
        user_id: &user.id,
        user_name: &user.name,
        phone: &phone,
        display: &display,
    };
    let progress = calls.start(request).await.map_err(|e| refused(&e))?;
    tracing::info!(order = %order.id, user = %user.id, call = %progress.call_id, "order callback call requested");
    Ok((StatusCode::ACCEPTED, Json(progress)).into_response())
}

#[utoipa::path(get, path = "/api/orders/{id}/call_back", operation_id = "call_back_state", tag = "orders",
    summary = "The order's running callback call, or its last one (an hour after its end): ringing_phone → calling_caller → connected → ended with its outcome; 404 when there is none",
    params(("id" = String, Path, description = "order id")),
    responses((status = 200, description = "the call's state", body = CallProgress), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn call_back_state(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ext: Option<Extension<OrderCallsApi>>,
    Path(id): Path<String>,
) -> Result<Json<CallProgress>, ApiError> {
    let order = visible_order(&state, &user, &id).await?;
    ext.and_then(|Extension(OrderCallsApi(calls))| calls)
        .and_then(|calls| calls.progress(&order.id))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("callback call"))
}
