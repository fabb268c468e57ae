//! Partner hotlines' machine interface (12345 and others, H-6; WEB-INTAKE): a partner
//! hands an order over with a signed request and an idempotency key, and reads only its
//! own orders. Authentication, the replay window and the callbacks are
//! [`crate::orders::partners`]'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::orders::{body_bytes, parse_body};
use crate::orders::new_order_id;
use crate::orders::outbox::{QueuedCreate, QueuedKey};
use crate::orders::partners::{Partner, status_of};
use crate::store::orders::{AppendError, IdempotencyRecord};
use crate::ticket::{
    Actor, BusinessArea, Category, Channel, Command, Contact, Order, OrderFields, OrderId, Role,
    State as OrderState, UnitId, UnitKind, Urgency, UserId, apply,
};

/// The routes of this module (mounted by [`super::router`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(partner_create))
        .routes(routes!(partner_order))
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "partner_unauthenticated",
        "unknown partner, bad signature, or X-Timestamp outside the replay window",
    )
}

/// The partner a signed request comes from.
fn authenticate(state: &AppState, parts: &Parts, body: &[u8]) -> Result<Partner, ApiError> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let id = header("x-partner-id");
    let Some(partner) = state.orders.partners.get(id) else {
        tracing::warn!(partner = %id, "partner request refused: unknown partner");
        return Err(unauthenticated());
    };
    let now = state.orders.clock.now().timestamp();
    partner
        .verify(
            header("x-timestamp"),
            header("x-signature"),
            parts.method.as_str(),
            parts.uri.path(),
            body,
            now,
        )
        .map_err(|e| {
            tracing::warn!(partner = %id, %e, "partner request refused");
            unauthenticated()
        })?;
    Ok(partner.clone())
}

/// An order handed over by a partner hotline.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerOrderRequest {
    /// The partner's own ticket number (1-64 characters), kept in the remarks.
    pub external_id: String,
    pub contact_name: String,
    /// Digits, `+`, `-` and spaces (at most 32).
    pub contact_phone: String,
    /// City unit id.
    pub city: UnitId,
    pub category: Category,
    #[serde(default)]
    pub urgency: Urgency,
    #[serde(default)]
    pub business_area: BusinessArea,
    /// The matter (1-4000 characters).
    pub description: String,
    /// When the partner received the demand: its limits run from here (TK-INTAKE).
    pub received_at: DateTime<FixedOffset>,
}

/// A partner's order as the partner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerOrderView {
    pub id: OrderId,
    pub number: Option<String>,
    pub state: OrderState,
    /// `dispatched`, `replied` or `closed` once reached; null before dispatch.
    pub status: Option<String>,
    pub received_at: DateTime<FixedOffset>,
    pub reply: Option<String>,
    /// Accepted while the database was unavailable, written once it answers.
    pub queued: bool,
}

fn view(order: &Order, queued: bool) -> PartnerOrderView {
    let status = match order.state {
        OrderState::Draft | OrderState::PendingDispatch => None,
        OrderState::Dispatched | OrderState::Signed | OrderState::InProgress => Some("dispatched"),
        OrderState::ReplyDrafted | OrderState::Reviewed => Some("dispatched"),
        s => status_of(s.as_str()).or(Some("replied")),
    };
    PartnerOrderView {
        id: order.id.clone(),
        number: order.number.clone(),
        state: order.state,
        status: status.map(str::to_owned),
        received_at: order.fields.received_at,
        reply: order
            .reply
            .clone()
            .filter(|_| status.is_some_and(|s| s != "dispatched")),
        queued,
    }
}

fn valid_phone(phone: &str) -> bool {
    !phone.trim().is_empty()
        && phone.len() <= 32
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '))
}

fn plan(
    state: &AppState,
    partner: &Partner,
    request: PartnerOrderRequest,
    at: DateTime<FixedOffset>,
) -> Result<(Order, Vec<crate::ticket::Event>), ApiError> {
    let field = |name: &str, why: &str| {
        ApiError::unprocessable("invalid_field", format!("{name}: {why}")).with_field(name)
    };
    let external = request.external_id.trim();
    if external.is_empty() || external.chars().count() > 64 {
        return Err(field("external_id", "1-64 characters"));
    }
    if !valid_phone(&request.contact_phone) {
        return Err(field(
            "contact_phone",
            "digits, +, - and spaces (at most 32)",
        ));
    }
    let length = request.description.trim().chars().count();
    if length == 0 || length > 4000 {
        return Err(field("description", "1-4000 characters"));
    }
    if state
        .orders
        .units
        .get(&request.city)
        .is_none_or(|u| u.kind != UnitKind::City)
    {
        return Err(field("city", "not a city of the province"));
    }
    if request.received_at > at + chrono::Duration::minutes(5) {
        return Err(field("received_at", "in the future"));
    }
    let fields = OrderFields {
        contact: Contact {
            name: request.contact_name.trim().to_owned(),
            phone: request.contact_phone.trim().to_owned(),
        },
        category: request.category,
        urgency: request.urgency,
        area: request.business_area,
        units_involved: Vec::new(),
        description: request.description.trim().to_owned(),
        remarks: format!("转自{}，对方工单号 {external}", partner.name),
        channel: Channel::Hotline12345,
        city: request.city.clone(),
        call_id: None,
        recordings: Vec::new(),
        received_at: request.received_at,
    };
    let actor = Actor {
        user_id: UserId(partner.actor()),
        roles: vec![Role::System],
        unit: request.city,
    };
    let calendar = state.orders.calendar.current();
    let context = state.orders.ctx(&calendar);
    let (created, mut events) = apply(
        &Order::new(new_order_id(at)),
        Command::Create { fields },
        &actor,
        at,
        &context,
    )?;
    let (order, submitted) = apply(&created, Command::Submit, &actor, at, &context)?;
    events.extend(submitted);
    Ok((order, events))
}

fn key_reused() -> ApiError {
    ApiError::unprocessable(
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request body",
    )
    .with_field("Idempotency-Key")
}

/// The order an earlier request with this key made, if any.
async fn replayed(
    state: &AppState,
    actor: &str,
    key: &str,
    body_hash: &str,
) -> Result<Option<Response>, ApiError> {
    let Some((stored_hash, order_id)) = state.store.idempotent_order(actor, key).await? else {
        return Ok(None);
    };
    if stored_hash != body_hash {
        return Err(key_reused());
    }
    let order = state
        .store
        .load_order(&order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(Some(
        (StatusCode::OK, Json(view(&order, false))).into_response(),
    ))
}

#[utoipa::path(post, path = "/api/partner/orders", tag = "partner",
    summary = "A partner hotline (12345 …) hands an order over (H-6): signed (X-Partner-Id, X-Timestamp within 300 s, X-Signature = hex HMAC-SHA256 of \"{timestamp}\\n{METHOD}\\n{path}\\n{body}\"), Idempotency-Key required: a retry answers the first order, never a second",
    security(()),
    request_body = PartnerOrderRequest,
    params(
        ("X-Partner-Id" = String, Header, description = "the partner's id ([[partners]] id)"),
        ("X-Timestamp" = String, Header, description = "unix seconds"),
        ("X-Signature" = String, Header, description = "hex HMAC-SHA256 under the partner's secret"),
        ("Idempotency-Key" = String, Header, description = "1-128 characters, unique per order handed over"),
    ),
    responses(
        (status = 201, description = "a new order, routed like a call's", body = PartnerOrderView),
        (status = 200, description = "a retry: the order this Idempotency-Key made", body = PartnerOrderView),
        (status = 202, description = "accepted while the database is unavailable: kept in the fsync'd outbox journal, written once it answers", body = PartnerOrderView),
        (status = 401, description = "partner_unauthenticated", body = ErrorBody),
        (status = 422, description = "a field refused, or idempotency_key_reused with another body", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn partner_create(
    State(state): State<AppState>,
    server: Option<axum::Extension<super::ServerHealth>>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let partner = authenticate(&state, &parts, &body)?;
    let key = parts
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_header",
                "Idempotency-Key (1-128 characters) is required",
            )
            .with_field("Idempotency-Key")
        })?
        .to_owned();
    let request: PartnerOrderRequest = parse_body(&body)?;
    let actor = partner.actor();
    let body_hash = hex::encode(Sha256::digest(&body));
    let outbox = server.and_then(|axum::Extension(s)| s.outbox);
    if let Some(queued) = outbox.as_ref().and_then(|o| o.queued_key(&actor, &key)) {
        if queued
            .idempotency
            .as_ref()
            .is_some_and(|k| k.body_hash != body_hash)
        {
            return Err(key_reused());
        }
        return Ok((StatusCode::ACCEPTED, Json(view(&queued.order, true))).into_response());
    }
    match replayed(&state, &actor, &key, &body_hash).await {
        Ok(Some(response)) => return Ok(response),
        Ok(None) => {}
        Err(e) if outbox.is_some() && e.code == ApiError::DATABASE_UNAVAILABLE => {}
        Err(e) => return Err(e),
    }
    let at = state.orders.clock.now();
    let (mut order, events) = plan(&state, &partner, request, at)?;
    let queue = |order: Order, events| {
        let outbox = outbox.clone();
        let (actor, key, body_hash) = (actor.clone(), key.clone(), body_hash.clone());
        async move {
            let Some(outbox) = outbox else {
                return Err(ApiError::unavailable(
                    ApiError::DATABASE_UNAVAILABLE,
                    "the database is unavailable: retry later",
                ));
            };
            let create = QueuedCreate {
                order: order.clone(),
                events,
                actor,
                idempotency: Some(QueuedKey { key, body_hash }),
                at_ms: at.timestamp_millis(),
            };
            match tokio::task::spawn_blocking(move || outbox.append(create)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ApiError::database_unavailable(&e)),
                Err(e) => return Err(ApiError::internal(&e)),
            }
            Ok((StatusCode::ACCEPTED, Json(view(&order, true))).into_response())
        }
    };
    if outbox.as_ref().is_some_and(|o| o.depth() > 0) {
        return queue(order, events).await;
    }
    let record = IdempotencyRecord {
        actor: &actor,
        key: &key,
        body_hash: &body_hash,
    };
    match state
        .store
        .append_order_events_numbered(&order, 0, &events, Some(record), at.timestamp_millis())
        .await
    {
        Ok(number) => order.number = number,
        Err(AppendError::IdempotencyKeyTaken) => {
            // A concurrent retry won: answer its order.
            if let Some(response) = replayed(&state, &actor, &key, &body_hash).await? {
                return Ok(response);
            }
            return Err(AppendError::IdempotencyKeyTaken.into());
        }
        Err(AppendError::Store(e)) if e.is_unavailable() && outbox.is_some() => {
            tracing::warn!(%e, order = %order.id, "database unavailable: queueing the partner's order");
            return queue(order, events).await;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order = %order.id, partner = %partner.id, state = %order.state, "partner order created");
    state.orders.wake_scheduler_for(&order, at);
    Ok((StatusCode::CREATED, Json(view(&order, false))).into_response())
}

#[utoipa::path(get, path = "/api/partner/orders/{id}", tag = "partner",
    summary = "One of the partner's own orders (signed like a create, empty body); another's is 404",
    security(()),
    params(
        ("id" = String, Path, description = "order id"),
        ("X-Partner-Id" = String, Header, description = "the partner's id"),
        ("X-Timestamp" = String, Header, description = "unix seconds"),
        ("X-Signature" = String, Header, description = "hex HMAC-SHA256 under the partner's secret"),
    ),
    responses(
        (status = 200, description = "the order", body = PartnerOrderView),
        (status = 401, description = "partner_unauthenticated", body = ErrorBody),
        (status = 404, description = "not this partner's order", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn partner_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Json<PartnerOrderView>, ApiError> {
    let partner = authenticate(&state, &parts, b"")?;
    if id.len() > 64 || !state.store.partner_owns(&partner.actor(), &id).await? {
        return Err(ApiError::not_found("order"));
    }
    let order = state
        .store
        .load_order(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(Json(view(&order, false)))
}
