//! Work-order HTTP API (`/api/orders`, ledger, units, rankings, login) as specified in
//! `API.md`: the shell around the pure ticket core. Every handler reads the order,
//! decides with [`apply`], and commits events + projection in one transaction before
//! answering.
//!
//! Callers' contacts (TK-PRIVACY, H-12-4): masked (`mask_phone`, `mask_name`) for every
//! role but dispatch, handling units and callback staff; an answer that shows one in
//! full (list, read, create, command, events) is first written to the audit log as
//! `orders.read` / `order.events.read` naming the order ids it returns, and is masked
//! when that line cannot be written (so is the 202 of a create queued while the
//! database is down). `reveal_contact` shows one order's contact to any reader, audited.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{Auth, CurrentUser, LoginError, SESSION_COOKIE, User, UserView};
use super::error::{ApiError, ErrorBody};
mod ledger_words;

use super::views::{
    DeadlinesView, DissatisfactionReportView, EventView, Level, OrderFieldsView, OrderPage,
    OrderView, QueuedOrderView, RankingRow, Rankings, ReminderShown, SignIn, UnitSignIn,
    VoiceMessageLink,
};
use crate::calendar::{Calendar, shanghai};
use crate::orders::context::parse_enum;
use crate::orders::notify::notices;
pub use crate::orders::{OrdersContext, dispatch_gaps, new_order_id};
use crate::queue::{ShiftAttendance, shift_attendance};
use crate::store::orders::AppendError;
use crate::store::orders::{IdempotencyRecord, OrderFilter, OrderSort, StoredEvent};
use crate::ticket::deadlines::running_deadline;
use crate::ticket::{
    Actor, BusinessArea, CallId, CallbackOutcome, Category, Channel, Command, Contact,
    DeadlineKind, Decision, Event, Order, OrderFields, OrderId, Period, RankBy, RankGroup,
    ReminderLevel, Role, State as OrderState, UnitId, UnitKind, Urgency, apply, can_see_contact,
    contact_for, is_overdue, mask_name, mask_phone, may_search_by_number, rank, transfer_on_time,
    unit_scores,
};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes of this module (mounted by [`super::router`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_events))
        .routes(routes!(reveal_contact))
        .routes(routes!(order_command))
        .routes(routes!(ledger_verify))
        .routes(routes!(ledger_csv))
        .routes(routes!(rankings))
        .routes(routes!(units))
        .routes(routes!(special_flags))
        .routes(routes!(reveals))
        .routes(routes!(openapi))
}

/// Parse a JSON body: not JSON → 400, wrong shapes or types → 422. Every body is a JSON
/// object: serde would otherwise also read a struct from an array, by position.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("request body is not JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("invalid request body: {e}")))
}

/// Bytes of the body, with the size limit answered as JSON.
pub(super) fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("unreadable_body", "cannot read the request body")
        }
    })
}

// ---------------------------------------------------------------- auth

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    user: String,
    password: String,
}

/// Decode a `POST /api/login` body (what the handler does before checking the password).
///
/// # Errors
/// Not JSON → 400 `malformed_json`; wrong shape or types → 422 `invalid_body`.
pub fn decode_login(body: &[u8]) -> Result<(String, String), ApiError> {
    let body: LoginBody = parse_body(body)?;
    Ok((body.user, body.password))
}

/// Only `application/json` logins: a form or `text/plain` POST is what another site
/// can make a browser send without a preflight (login CSRF).
fn require_json(parts: &Parts) -> Result<(), ApiError> {
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the login as Content-Type: application/json",
        ))
    }
}

/// What a successful `POST /api/login` answers (with the session cookie).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct LoginReply {
    user: UserView,
    /// Send it back as `X-CSRF-Token` on every write.
    csrf_token: String,
}

#[utoipa::path(post, path = "/api/login", tag = "auth",
    summary = "Log in (Content-Type: application/json only, else 415): session cookie + CSRF token; 401 bad_credentials, 429 with Retry-After (per user and address, and per address)",
    request_body = LoginBody,
    responses(
        (status = 200, description = "signed in; Set-Cookie carries the session", body = LoginReply),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    require_json(&parts)?;
    let body = decode_login(&body_bytes(body)?)?;
    let source = state.auth.client_ip(&parts);
    let (body_user, body_password) = body;
    let checked_user = body_user.clone();
    let auth = state.auth.clone();
    // argon2 takes tens of milliseconds: not on the executor's threads.
    let checked = tokio::task::spawn_blocking(move || {
        auth.login(&checked_user, &body_password, source, Instant::now())
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let ctx = &state.orders;
    match checked {
        Ok((session, csrf, user)) => {
            let _ = state
                .store
                .audit(
                    state.orders.clock.now().timestamp_millis(),
                    &user.id,
                    "login",
                    &user.id,
                    "",
                )
                .await;
            let secure = if state.auth.secure_cookie(&parts) {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                super::auth::SESSION_TTL.as_secs()
            );
            let mut response = Json(LoginReply {
                user: UserView::of(&user, ctx.unit_name(&user.unit), ctx.clock.now()),
                csrf_token: csrf,
            })
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(LoginError::BadCredentials) => {
            let detail = source.map(|ip| ip.to_string()).unwrap_or_default();
            let _ = state
                .store
                .audit(
                    state.orders.clock.now().timestamp_millis(),
                    &body_user,
                    "login.failed",
                    &body_user,
                    &detail,
                )
                .await;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "unknown user or wrong password",
            ))
        }
        Err(LoginError::Throttled { retry_after_secs }) => {
            tracing::warn!(user = %body_user, source = %crate::logfmt::word(&source), "login throttled");
            state
                .metrics
                .api_throttled(crate::metrics::ApiThrottle::Login);
            Err(ApiError::too_many_attempts(
                format!("too many failed logins; retry in {retry_after_secs} s"),
                retry_after_secs,
            ))
        }
    }
}

#[utoipa::path(post, path = "/api/logout", tag = "auth", summary = "Log out",
    responses((status = 204, description = "the session is ended")))]
async fn logout(State(state): State<AppState>, parts: Parts) -> StatusCode {
    if let Some(session) = super::auth::session_cookie(&parts) {
        state.auth.logout(&session);
    }
    StatusCode::NO_CONTENT
}

#[utoipa::path(get, path = "/api/me", tag = "auth", summary = "The current user",
    responses((status = 200, description = "the signed-in user", body = UserView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn me(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> Json<UserView> {
    Json(UserView::of(
        &user,
        state.orders.unit_name(&user.unit),
        state.orders.clock.now(),
    ))
}

// ---------------------------------------------------------------- rendering

fn enum_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The commands a console may offer, with placeholder arguments for the dry run.
fn candidate_commands(order: &Order) -> Vec<Command> {
    let text = || "-".to_owned();
    let dispatch_unit = order
        .dispatch_unit
        .clone()
        .unwrap_or_else(|| order.fields.city.clone());
    let deadline = running_deadline(order).map_or(DeadlineKind::Feedback, |(k, _)| k);
    vec![
        Command::Submit,
        Command::AnswerDirectly { answer: text() },
        Command::ExplainOutsideRemit {
            explanation: text(),
        },
        Command::Dispatch {
            units: vec![dispatch_unit.clone()],
            category: None,
            area: None,
            urgency: None,
            contact_name: None,
            contact_phone: None,
        },
        Command::ReturnUpward { reason: text() },
        Command::AddHelpingUnits {
            units: vec![dispatch_unit.clone()],
            reason: text(),
        },
        Command::Sign,
        Command::Return { reason: text() },
        Command::Start,
        Command::RequestExtension {
            extra_working_days: 1,
            reason: text(),
        },
        Command::DecideExtension {
            decision: Decision::Approve,
            reason: text(),
        },
        Command::DraftReply { text: text() },
        Command::Review {
            decision: Decision::Approve,
            reason: text(),
        },
        Command::Reply { text: text() },
        Command::SendReviewedReply,
        Command::FeedBack { note: text() },
        Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: text(),
        },
        Command::Remind {
            deadline,
            level: ReminderLevel::Yellow,
            note: text(),
        },
        Command::Supervise { note: text() },
        Command::AddNote { note: text() },
        Command::StudyNote { note: text() },
        Command::ConcludeStudy { result: text() },
        Command::ReportDissatisfaction { note: text() },
        Command::Withdraw {
            reason: text(),
            // Offered when a call is on record for the caller to confirm on (or to a
            // supervisor, who may approve without).
            call_id: order
                .fields
                .call_id
                .clone()
                .or_else(|| order.caller_calls.last().cloned()),
        },
    ]
}

/// What `actor` may do now: each candidate dry-run through the pure core.
fn allowed_commands(
    order: &Order,
    actor: &Actor,
    at: DateTime<FixedOffset>,
    ctx: &OrdersContext,
) -> Vec<&'static str> {
    let calendar = ctx.calendar.current();
    let context = ctx.ctx(&calendar);
    candidate_commands(order)
        .into_iter()
        .filter_map(|command| {
            let name = command.name();
            apply(order, command, actor, at, &context)
                .ok()
                .map(|_| name)
        })
        .collect()
}

/// The commands of those who answer the caller on an order: the agent answering
/// directly, the unit drafting, replying or giving feedback, the callback clerk
/// recording the callback (H-11, H-12-3).
const ANSWERING_COMMANDS: [&str; 6] = [
    "answer_directly",
    "draft_reply",
    "reply",
    "send_reviewed_reply",
    "feed_back",
    "record_callback",
];

/// Whether `user` answers the caller of `order` now — the roles, scope and step the
/// core allows for one of [`ANSWERING_COMMANDS`] — and so may call them back from the
/// order (`POST /api/orders/{id}/call_back`).
pub(super) fn may_answer_caller(
    order: &Order,
    user: &User,
    at: DateTime<FixedOffset>,
    ctx: &OrdersContext,
) -> bool {
    allowed_commands(order, &user.actor(), at, ctx)
        .iter()
        .any(|c| ANSWERING_COMMANDS.contains(c))
}

/// The order's limits: each instant, its display (`24:00` of a day), its span (working
/// days, or hours for the urgent transfer, H-8/H-9/H-11) and, for working-day limits,
/// the working days left at `at` by the calendar ([`Calendar::working_days_left`]).
fn deadlines_view(
    order: &Order,
    at: DateTime<FixedOffset>,
    calendar: &Calendar,
) -> Option<DeadlinesView> {
    use crate::ticket::deadlines::{
        TRANSFER_WORKING_DAYS, URGENT_CALLBACK_WORKING_DAYS, URGENT_TRANSFER_HOURS,
    };
    let d = order.deadlines?;
    let urgent = order.fields.urgency == Urgency::Urgent;
    let left = |due: &crate::calendar::Deadline| calendar.working_days_left(due, at);
    Some(DeadlinesView {
        transfer_due: d.transfer.due.at,
        transfer_due_display: d.transfer.due.display().to_string(),
        transfer_working_days: (!urgent).then_some(TRANSFER_WORKING_DAYS),
        transfer_hours: urgent.then_some(URGENT_TRANSFER_HOURS),
        transfer_working_days_left: (!urgent).then(|| left(&d.transfer.due)),
        feedback_due: d.feedback.due.at,
        feedback_due_display: d.feedback.due.display().to_string(),
        feedback_working_days: d.feedback_working_days,
        feedback_working_days_left: left(&d.feedback.due),
        feedback_cap: d.feedback_cap.at,
        callback_due: d.callback.map(|c| c.due.at),
        callback_due_display: d.callback.map(|c| c.due.display().to_string()),
        callback_working_days: d.callback.map(|_| URGENT_CALLBACK_WORKING_DAYS),
        callback_working_days_left: d.callback.map(|c| left(&c.due)),
        provisional: d.provisional(),
    })
}

fn reminder_level(order: &Order, at: DateTime<FixedOffset>) -> ReminderShown {
    match running_deadline(order) {
        Some((_, window)) if at >= window.due.at => ReminderShown::Red,
        Some((_, window)) if at >= window.warn_from => ReminderShown::Yellow,
        _ => ReminderShown::Quiet,
    }
}

fn fields_view(fields: &OrderFields, contact: Contact) -> OrderFieldsView {
    OrderFieldsView {
        contact_name: contact.name,
        contact_phone: contact.phone,
        category: fields.category,
        urgency: fields.urgency,
        business_area: fields.area,
        units: fields.units_involved.clone(),
        description: fields.description.clone(),
        remarks: fields.remarks.clone(),
        channel: fields.channel,
        city: fields.city.clone(),
        call_id: fields.call_id.clone(),
        received_at: fields.received_at,
    }
}

// ---------------------------------------------------------------- callers' contacts

/// Whether one answer shows callers' contacts in full or masked (H-12-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContactView {
    /// As the user's roles allow (in full for [`can_see_contact`]).
    Full,
    /// Masked whatever the roles.
    Masked,
}

/// How `user` sees the callers' contacts in one answer holding the records `ids`
/// (those that have a contact). Masked for roles that may not see contacts; in full for
/// the others only once the read is in the audit log as `action` naming every record
/// id it returns, so that each full-number read can be traced to its records. If the
/// audit line cannot be written the answer is masked rather than refused (a command
/// has already been applied when its answer is made).
pub(super) async fn audited_contact_view(
    state: &AppState,
    user: &User,
    action: &str,
    ids: &[&str],
) -> ContactView {
    if !can_see_contact(&user.actor()) {
        return ContactView::Masked;
    }
    if ids.is_empty() {
        return ContactView::Full;
    }
    let subject = match ids {
        [one] => (*one).to_owned(),
        many => format!("{} records", many.len()),
    };
    let detail = json!({"records": ids, "roles": user.roles}).to_string();
    match state
        .store
        .audit(
            state.orders.clock.now().timestamp_millis(),
            &user.id,
            action,
            &subject,
            &detail,
        )
        .await
    {
        Ok(()) => ContactView::Full,
        Err(e) => {
            tracing::warn!(%e, action, user = %user.id, "audit of a full-number read failed: answered masked");
            ContactView::Masked
        }
    }
}

/// [`audited_contact_view`] for an answer holding `orders`.
async fn orders_contact_view<'a>(
    state: &AppState,
    user: &User,
    action: &str,
    orders: impl IntoIterator<Item = &'a Order>,
) -> ContactView {
    let ids: Vec<&str> = orders
        .into_iter()
        .filter(|o| !o.fields.contact.phone.is_empty() || !o.fields.contact.name.is_empty())
        .map(|o| o.id.0.as_str())
        .collect();
    audited_contact_view(state, user, action, &ids).await
}

/// The audit action of answers that show orders (list, read, create, commands).
const ORDERS_READ: &str = "orders.read";

fn order_view(
    order: &Order,
    user: &User,
    at: DateTime<FixedOffset>,
    ctx: &OrdersContext,
    view: ContactView,
) -> OrderView {
    let actor = user.actor();
    let masked = view == ContactView::Masked || !can_see_contact(&actor);
    let contact = if masked {
        Contact {
            name: mask_name(&order.fields.contact.name),
            phone: mask_phone(&order.fields.contact.phone),
        }
    } else {
        contact_for(&actor, &order.fields.contact)
    };
    let calendar = ctx.calendar.current();
    OrderView {
        id: order.id.clone(),
        number: order.number.clone(),
        version: order.version,
        state: order.state,
        fields: fields_view(&order.fields, contact),
        units: order.assignments.clone(),
        lead_unit: order.lead_unit.clone(),
        helping_units: order
            .assignments
            .iter()
            .filter(|a| order.lead_unit.as_ref() != Some(&a.unit))
            .cloned()
            .collect(),
        dispatch_unit: order.dispatch_unit.clone(),
        deadlines: deadlines_view(order, at, &calendar),
        reminder: reminder_level(order, at),
        overdue: is_overdue(order, at),
        special_flag: order.special_flag,
        closing: order.closing.clone(),
        pending_extension: order.pending_extension.clone(),
        draft_reply: order.draft_reply.clone(),
        reply: order.reply.clone(),
        satisfaction: order.satisfaction,
        call_survey: order.call_survey,
        callbacks: order.callbacks.clone(),
        returned_by: order.returned_by.clone(),
        redo_count: order.redo_count,
        supervisions: order.supervisions,
        second_callback_unit: order.second_callback_unit.clone(),
        completed_at: order.completed_at,
        updated_at: order.last_event_at,
        contact_masked: masked,
        dissatisfaction_report: report_view(order, at, &calendar),
        transfer_on_time: transfer_on_time(order, at),
        dispatched_by: order.dispatched_by.clone(),
        missed_limits: order.missed_limits.clone(),
        leader_alerts: order.leader_alerts.clone(),
        voice_message: voice_message_link(order),
        allowed_commands: allowed_commands(order, &actor, at, ctx)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

/// The report of the caller's dissatisfaction to the unit (H-9): to whom, by when
/// (1 working day from the callback), whether made, whether late.
fn report_view(
    order: &Order,
    at: DateTime<FixedOffset>,
    calendar: &Calendar,
) -> Option<DissatisfactionReportView> {
    let report = order.dissatisfaction_report.as_ref()?;
    let due = report.window.due;
    let overdue = match report.reported_at {
        Some(done) => done > due.at,
        None => order.state != OrderState::Closed && at > due.at,
    };
    Some(DissatisfactionReportView {
        unit: report.unit.clone(),
        due: due.at,
        due_display: due.display().to_string(),
        working_days: crate::ticket::deadlines::REPORT_WORKING_DAYS,
        working_days_left: calendar.working_days_left(&due, at),
        provisional: due.provisional,
        reported_at: report.reported_at,
        reported_by: report.reported_by.clone(),
        overdue,
    })
}

/// An order opened from a voice message: the URL its player reads (the server's file
/// path stays on the server).
fn voice_message_link(order: &Order) -> Option<VoiceMessageLink> {
    match (&order.fields.call_id, order.fields.recordings.is_empty()) {
        (Some(call_id), false) => Some(VoiceMessageLink {
            call_id: call_id.clone(),
            play_url: super::recordings::voice_message_url(&order.id.0),
        }),
        _ => None,
    }
}

/// Load an order the user may read; 404 otherwise (existence is not revealed).
pub(crate) async fn visible_order(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<Order, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("order"));
    }
    let order = match state.store.load_order(id).await? {
        Some(order) => order,
        // The short number read out on the phone (`鲁12348-20261207-0042`) names it too.
        None => match state.store.order_id_by_number(id).await? {
            Some(found) => state.store.load_order(&found).await?,
            None => None,
        }
        .ok_or_else(|| ApiError::not_found("order"))?,
    };
    let ctx = &state.orders;
    let involved = state.store.order_units(&order.id.0).await?;
    let visible = ctx.scope_of(&user.unit).is_none()
        || involved
            .iter()
            .any(|u| ctx.units.covers(&user.unit, &UnitId::new(u.clone())));
    if visible {
        Ok(order)
    } else {
        Err(ApiError::not_found("order"))
    }
}

// ---------------------------------------------------------------- create

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    contact_phone: String,
    category: Category,
    #[serde(default)]
    urgency: Urgency,
    #[serde(default)]
    business_area: BusinessArea,
    #[serde(default)]
    units: Vec<UnitId>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    remarks: String,
    #[serde(default)]
    channel: Channel,
    #[serde(default)]
    city: Option<UnitId>,
    #[serde(default)]
    call_id: Option<CallId>,
    #[serde(default)]
    recordings: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    received_at: Option<DateTime<FixedOffset>>,
    /// Set by the server from the call record, never by the client: the caller's city
    /// when this agent answered the call there (an overflowed call, W-7); the agent
    /// registers the order for that city.
    #[serde(skip)]
    answered_for: Option<UnitId>,
}

fn valid_phone(phone: &str) -> bool {
    phone.len() <= 32
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '))
}

async fn replay_idempotent(
    state: &AppState,
    user: &User,
    key: &str,
    body_hash: &str,
) -> Result<Option<Response>, ApiError> {
    let Some((stored_hash, order_id)) = state.store.idempotent_order(&user.id, key).await? else {
        return Ok(None);
    };
    if stored_hash != body_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
        .with_field("Idempotency-Key"));
    }
    let order = state
        .store
        .load_order(&order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let view = orders_contact_view(state, user, ORDERS_READ, [&order]).await;
    Ok(Some(
        (
            StatusCode::CREATED,
            Json(order_view(
                &order,
                user,
                state.orders.clock.now(),
                &state.orders,
                view,
            )),
        )
            .into_response(),
    ))
}

#[utoipa::path(post, path = "/api/orders", tag = "orders",
    summary = "Create and submit an order (auto-routed when the area is clear)",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "at most 128 characters; a repeat answers the first order")),
    responses(
        (status = 201, description = "created", body = OrderView),
        (status = 202, body = QueuedOrderView, description = "accepted while the database is unavailable: the create is queued durably (fsync'd outbox journal in the data directory) and written, in order, once the database answers; the body is the order as it will be stored, with \"queued\": true. A repeat with the same Idempotency-Key answers the same queued order. Until it lands, GET /api/orders/{id} does not find it and commands on it get 503."),
        (status = 503, description = "database_unavailable and the outbox journal cannot be written either (disk): retry after Retry-After", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn create_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    server: Option<axum::Extension<super::ServerHealth>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    // While the database is unavailable creates are queued durably (202).
    let outbox = server.and_then(|axum::Extension(s)| s.outbox);
    let body = body_bytes(body)?;
    let request: CreateOrder = parse_body(&body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 128)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_header",
                        "Idempotency-Key must be 1-128 characters",
                    )
                    .with_field("Idempotency-Key")
                })?
                .to_owned(),
        ),
    };
    let body_hash = hex::encode(Sha256::digest(&body));
    if let Some(key) = &key {
        if let Some(queued) = outbox.as_ref().and_then(|o| o.queued_key(&user.id, key)) {
            return queued_again(&queued, &body_hash, &user, &state.orders);
        }
        match replay_idempotent(&state, &user, key, &body_hash).await {
            Ok(Some(response)) => return Ok(response),
            Ok(None) => {}
            // Checked again when the queued create is written.
            Err(e) if outbox.is_some() && e.code == ApiError::DATABASE_UNAVAILABLE => {}
            Err(e) => return Err(e),
        }
    }
    let mut request = request;
    if let Some(call) = request.call_id.as_ref() {
        // The call record (written at the answer) is the order's receipt: the demand
        // was received when the call arrived, not when the agent saved the form (H-8,
        // H-9, H-13-2), so every limit counts from the arrival. And the agent on the
        // call sees the caller's number masked: an order opened from a call without a
        // phone gets the number that called in.
        match state.store.call_record(&call.0).await {
            Ok(Some(record)) => {
                request.received_at = Some(record.arrival);
                if request.contact_phone.trim().is_empty() && valid_phone(&record.caller) {
                    request.contact_phone = record.caller;
                }
                // W-7: a call overflowed from another city (or taken by the province)
                // is registered under the caller's city, the one the call resolved,
                // by the agent who answered it, acting for that city.
                let call_city = record
                    .city
                    .map(|city| UnitId::new(city.0))
                    .filter(|unit| state.orders.units.get(unit).is_some());
                if request.city.is_none() {
                    request.city = call_city.clone();
                }
                let own_agent = user.agent.as_deref().unwrap_or(&user.id);
                if record.agent.as_deref() == Some(own_agent) && request.city == call_city {
                    request.answered_for = call_city;
                }
            }
            Ok(None) => {}
            Err(e) if outbox.is_some() => {
                tracing::warn!(%e, "call record not read: the order keeps the given receipt time and phone");
            }
            Err(e) => return Err(ApiError::database_unavailable(&e)),
        }
    }
    let at = state.orders.clock.now();
    let (mut order, events) = plan_create(request, &user, &state.orders, at, new_order_id(at))?;
    let ctx = &state.orders;
    if let Some(outbox) = outbox.clone().filter(|o| o.depth() > 0) {
        // Creates are waiting: join them, in order, rather than overtake them.
        return queue_create(outbox, order, events, &user, key, body_hash, at, ctx).await;
    }
    let record = key.as_deref().map(|key| IdempotencyRecord {
        actor: &user.id,
        key,
        body_hash: &body_hash,
    });
    match state
        .store
        .append_order_events_numbered(&order, 0, &events, record, at.timestamp_millis())
        .await
    {
        Ok(number) => order.number = number,
        Err(AppendError::Store(e)) if e.is_unavailable() && outbox.is_some() => {
            tracing::warn!(%e, order = %order.id, "database unavailable: queueing the create");
            if let Some(outbox) = outbox {
                return queue_create(outbox, order, events, &user, key, body_hash, at, ctx).await;
            }
        }
        Err(AppendError::IdempotencyKeyTaken) => {
            if let Some(key) = &key
                && let Some(response) = replay_idempotent(&state, &user, key, &body_hash).await?
            {
                return Ok(response);
            }
            return Err(AppendError::IdempotencyKeyTaken.into());
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order = %order.id, user = %user.id, state = %order.state, "order created");
    ctx.wake_scheduler_for(&order, at);
    if let Some(call) = &order.fields.call_id {
        // The call's autosaved draft (agent console) has become this order.
        if let Err(e) = state.store.delete_call_draft(&call.0, &user.id).await {
            tracing::warn!(%e, "call draft not deleted");
        }
    }
    let view = orders_contact_view(&state, &user, ORDERS_READ, [&order]).await;
    Ok((
        StatusCode::CREATED,
        Json(order_view(&order, &user, at, ctx, view)),
    )
        .into_response())
}

/// Append a create to the outbox (fsync'd) and answer 202 Accepted with the order and
/// `"queued": true`; it is written to the database once that answers.
#[allow(clippy::too_many_arguments)]
async fn queue_create(
    outbox: std::sync::Arc<crate::orders::outbox::OrderOutbox>,
    order: Order,
    events: Vec<crate::ticket::Event>,
    user: &User,
    key: Option<String>,
    body_hash: String,
    at: DateTime<FixedOffset>,
    ctx: &OrdersContext,
) -> Result<Response, ApiError> {
    let create = crate::orders::outbox::QueuedCreate {
        order: order.clone(),
        events,
        actor: user.id.clone(),
        idempotency: key.map(|key| crate::orders::outbox::QueuedKey { key, body_hash }),
        at_ms: at.timestamp_millis(),
    };
    match tokio::task::spawn_blocking(move || outbox.append(create)).await {
        Ok(Ok(())) => {}
        // Neither the database nor the journal can take it: the client must retry.
        Ok(Err(e)) => return Err(ApiError::database_unavailable(&e)),
        Err(e) => return Err(ApiError::internal(&e)),
    }
    Ok(queued_response(&order, user, at, ctx))
}

/// A create repeated with the `Idempotency-Key` of a create still queued.
fn queued_again(
    queued: &crate::orders::outbox::QueuedCreate,
    body_hash: &str,
    user: &User,
    ctx: &OrdersContext,
) -> Result<Response, ApiError> {
    if queued
        .idempotency
        .as_ref()
        .is_some_and(|k| k.body_hash != body_hash)
    {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
        .with_field("Idempotency-Key"));
    }
    Ok(queued_response(&queued.order, user, ctx.clock.now(), ctx))
}

fn queued_response(
    order: &Order,
    user: &User,
    at: DateTime<FixedOffset>,
    ctx: &OrdersContext,
) -> Response {
    // The database is unavailable, so the read cannot be audited: masked.
    let body = QueuedOrderView {
        order: order_view(order, user, at, ctx, ContactView::Masked),
        queued: true,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// H-8: a 12348 call is registered as 咨询, 投诉 or 建议; 案件 (a case) is registered only
/// from another channel (website, app, WeChat, 12345).
fn hotline_case() -> ApiError {
    ApiError::unprocessable(
        "invalid_field",
        "H-8: a 12348 call is registered as consultation, complaint or suggestion; case is for orders from other channels",
    )
    .with_field("category")
}

/// The pure part of `POST /api/orders` after the body decoded: field checks, then the
/// core's Create and Submit. No store access.
fn plan_create(
    request: CreateOrder,
    user: &User,
    ctx: &OrdersContext,
    at: DateTime<FixedOffset>,
    id: OrderId,
) -> Result<(Order, Vec<Event>), ApiError> {
    if !valid_phone(&request.contact_phone) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "contact_phone may hold digits, +, - and spaces (at most 32)",
        )
        .with_field("contact_phone"));
    }
    if request.description.trim().is_empty() {
        return Err(
            ApiError::unprocessable("missing_field", "description is required")
                .with_field("description"),
        );
    }
    if request.channel == Channel::Phone && request.category == Category::Case {
        return Err(hotline_case());
    }
    if request.channel != Channel::Phone && request.received_at.is_none() {
        // A web, app, WeChat or 12345 demand was received when it was submitted there
        // (H-9, TK-INTAKE); registering it later must not restart its limits.
        return Err(ApiError::unprocessable(
            "missing_field",
            "received_at (the submission time on that channel) is required for channel other than phone",
        )
        .with_field("received_at"));
    }
    let city = match request.city {
        Some(city) => city,
        None => ctx.units.city_of(&user.unit).cloned().ok_or_else(|| {
            ApiError::unprocessable("missing_field", "city is required").with_field("city")
        })?,
    };
    let fields = OrderFields {
        contact: Contact {
            name: request.contact_name.trim().to_owned(),
            phone: request.contact_phone.trim().to_owned(),
        },
        category: request.category,
        urgency: request.urgency,
        area: request.business_area,
        units_involved: request.units,
        description: request.description,
        remarks: request.remarks,
        channel: request.channel,
        city,
        call_id: request.call_id,
        recordings: request.recordings,
        received_at: request.received_at.unwrap_or(at),
    };
    let actor = match request.answered_for {
        // The agent who answered an overflowed call registers it for the caller's city.
        Some(unit) if user.has(Role::Agent) => Actor {
            unit,
            ..user.actor()
        },
        _ => user.actor(),
    };
    let calendar = ctx.calendar.current();
    let context = ctx.ctx(&calendar);
    let (created, mut events) = apply(
        &Order::new(id),
        Command::Create { fields },
        &actor,
        at,
        &context,
    )?;
    let (order, submitted) = apply(&created, Command::Submit, &actor, at, &context)?;
    events.extend(submitted);
    Ok((order, events))
}

/// Decode and decide a `POST /api/orders` body as the handler does, without the store
/// (and without the `Idempotency-Key` replay, which needs it): the new order and its
/// events, or the 4xx the handler would answer.
///
/// # Errors
/// Not JSON → 400; wrong shape or types, bad fields, refused by the core → 4xx.
pub fn decide_create(
    body: &[u8],
    user: &User,
    ctx: &OrdersContext,
    at: DateTime<FixedOffset>,
    id: OrderId,
) -> Result<(Order, Vec<Event>), ApiError> {
    plan_create(parse_body(body)?, user, ctx, at, id)
}

// ---------------------------------------------------------------- list

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Lifecycle state.
    state: Option<String>,
    /// City unit id.
    city: Option<String>,
    /// consultation | complaint | suggestion | case.
    category: Option<String>,
    /// Business area.
    business_area: Option<String>,
    /// normal | urgent.
    urgency: Option<String>,
    /// A unit that had a part in the order.
    unit: Option<String>,
    /// true | false.
    overdue: Option<String>,
    /// Caller number (roles that see contacts only).
    phone: Option<String>,
    /// true | false.
    special_flag: Option<String>,
    /// `open`: flagged orders still under study (W-14); `concluded`: studied and
    /// closed; `all`: every flagged order.
    flagged: Option<String>,
    /// From 1.
    page: Option<String>,
    /// 1..200, default 50.
    per_page: Option<String>,
    /// deadline | created.
    sort: Option<String>,
}

pub(super) fn parse_query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(q) => decode_query(q),
    }
}

/// A query string decoded into `T` by axum's own parser (serde_urlencoded underneath):
/// 400 `invalid_query` with serde's reason otherwise.
pub(crate) fn decode_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_query", "unreadable query string"))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

pub(super) fn filter_enum<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: Option<String>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match parse_enum::<T>(&v) {
            Some(parsed) => Ok(Some(match enum_value(&parsed) {
                Value::String(s) => s,
                _ => v,
            })),
            None => Err(
                ApiError::bad_request("invalid_filter", format!("unknown {field} {v:?}"))
                    .with_field(field),
            ),
        },
    }
}

pub(super) fn filter_unit(
    value: Option<String>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v)
            if v.len() <= 64
                && v.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_')
                }) =>
        {
            Ok(Some(v))
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{field} must be a unit id (a-z, 0-9, - and _)"),
        )
        .with_field(field)),
    }
}

fn filter_bool(value: Option<String>, field: &'static str) -> Result<Option<bool>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{field} must be true or false"),
        )
        .with_field(field)),
    }
}

pub(super) fn filter_number(
    value: Option<String>,
    field: &'static str,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_filter", format!("{field} must be 1..={max}"))
                    .with_field(field)
            }),
    }
}

/// Decode the query of `GET /api/orders` into the store's filter as the handler does:
/// every filter is checked against its type (enum values, unit ids, digits, numbers in
/// range), so nothing else reaches the SQL. Returns the filter and the page number.
///
/// # Errors
/// 400 `invalid_query` / `invalid_filter` naming the field; 403 for a phone search by a
/// role that may not see callers' numbers.
pub fn decode_list_query(
    raw: Option<&str>,
    user: &User,
    ctx: &OrdersContext,
    at: DateTime<FixedOffset>,
) -> Result<(OrderFilter, i64), ApiError> {
    let q: ListQuery = parse_query(raw)?;
    let phone = match q.phone.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) if !valid_phone(&p) => {
            return Err(
                ApiError::bad_request("invalid_filter", "phone must be digits").with_field("phone"),
            );
        }
        Some(_) if !may_search_by_number(&user.actor()) => {
            return Err(ApiError::forbidden(
                "your roles may not search by the caller's number",
            ));
        }
        Some(p) => Some(p),
    };
    let page = filter_number(q.page, "page", 1, 1_000_000)?;
    let per_page = filter_number(q.per_page, "per_page", 50, 200)?;
    let sort = match q.sort.as_deref() {
        None | Some("" | "created") => OrderSort::Created,
        Some("deadline") => OrderSort::Deadline,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_filter",
                "sort must be deadline or created",
            )
            .with_field("sort"));
        }
    };
    let mut state_filter = match filter_enum::<OrderState>(q.state, "state")? {
        None => None,
        Some(s) => parse_enum::<OrderState>(&s),
    };
    let mut special_flag = filter_bool(q.special_flag, "special_flag")?;
    match q.flagged.as_deref() {
        None | Some("") => {}
        Some(which) => {
            let state = match which {
                "open" => Some(OrderState::SpecialStudy),
                "concluded" => Some(OrderState::Closed),
                "all" => None,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_filter",
                        "flagged must be open, concluded or all",
                    )
                    .with_field("flagged"));
                }
            };
            if state.is_some() && state_filter.is_some_and(|s| Some(s) != state) {
                return Err(
                    ApiError::bad_request("invalid_filter", "flagged contradicts state")
                        .with_field("flagged"),
                );
            }
            state_filter = state_filter.or(state);
            special_flag = Some(true);
        }
    }
    let filter = OrderFilter {
        state: state_filter,
        city: filter_unit(q.city, "city")?,
        category: filter_enum::<Category>(q.category, "category")?,
        area: filter_enum::<BusinessArea>(q.business_area, "business_area")?,
        urgency: filter_enum::<Urgency>(q.urgency, "urgency")?,
        unit: filter_unit(q.unit, "unit")?,
        overdue: filter_bool(q.overdue, "overdue")?,
        phone,
        special_flag,
        scope: ctx.scope_of(&user.unit),
        scope_unit: Some(user.unit.as_str().to_owned()),
        now_ms: at.timestamp_millis(),
        sort,
        offset: (page - 1).saturating_mul(per_page),
        limit: per_page,
        ..OrderFilter::default()
    };
    Ok((filter, page))
}

#[utoipa::path(get, path = "/api/orders", tag = "orders", summary = "List orders in the caller's scope",
    params(ListQuery),
    responses((status = 200, description = "one page", body = OrderPage), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn list_orders(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<OrderPage>, ApiError> {
    let ctx = &state.orders;
    let at = state.orders.clock.now();
    let (filter, page) = decode_list_query(raw.as_deref(), &user, ctx, at)?;
    let per_page = filter.limit;
    let (orders, total) = state.store.list_orders(&filter).await?;
    let view = orders_contact_view(&state, &user, ORDERS_READ, &orders).await;
    let items = orders
        .iter()
        .map(|o| order_view(o, &user, at, ctx, view))
        .collect();
    Ok(Json(OrderPage {
        items,
        total,
        page,
        per_page,
    }))
}

#[utoipa::path(get, path = "/api/special_flags", tag = "orders",
    summary = "Orders with the special flag (W-14); GET /api/orders?flagged=open lists those still under study, flagged=concluded those closed by conclude_study",
    responses((status = 200, description = "the flagged orders", body = Vec<OrderView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn special_flags(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let ctx = &state.orders;
    let at = state.orders.clock.now();
    let filter = OrderFilter {
        special_flag: Some(true),
        scope: ctx.scope_of(&user.unit),
        scope_unit: Some(user.unit.as_str().to_owned()),
        now_ms: at.timestamp_millis(),
        limit: 500,
        ..OrderFilter::default()
    };
    let (orders, _) = state.store.list_orders(&filter).await?;
    let view = orders_contact_view(&state, &user, ORDERS_READ, &orders).await;
    Ok(Json(
        orders
            .iter()
            .map(|o| order_view(o, &user, at, ctx, view))
            .collect(),
    ))
}

// ---------------------------------------------------------------- get / commands

#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders",
    summary = "One order (by id, or by its short number), contact masked per role (agents included), allowed_commands for this user; a full contact is audited (orders.read, naming the order)",
    params(("id" = String, Path, description = "order id or short number")),
    responses((status = 200, description = "the order", body = OrderView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn get_order(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = visible_order(&state, &user, &id).await?;
    let view = orders_contact_view(&state, &user, ORDERS_READ, [&order]).await;
    Ok(Json(order_view(
        &order,
        &user,
        state.orders.clock.now(),
        &state.orders,
        view,
    )))
}

/// Command names accepted on `POST /api/orders/{id}/{command}` (the CLI and the fuzzer
/// use the same list).
pub const COMMANDS: [&str; 25] = [
    "submit",
    "answer_directly",
    "dispatch",
    "add_helping_units",
    "return_upward",
    "sign",
    "return",
    "start",
    "request_extension",
    "decide_extension",
    "draft_reply",
    "review",
    "reply",
    "send_reviewed_reply",
    "feed_back",
    "record_callback",
    "remind",
    "supervise",
    "add_note",
    "recompute_deadlines",
    "withdraw",
    "explain_outside_remit",
    "study_note",
    "conclude_study",
    "report_dissatisfaction",
];

fn expected_version(
    headers: &HeaderMap,
    body: &mut Map<String, Value>,
) -> Result<Option<u64>, ApiError> {
    let from_body = match body.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::unprocessable("invalid_field", "version must be a non-negative integer")
                .with_field("version")
        })?),
    };
    let from_header = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_matches('"'))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_header", "If-Match must be the order version")
                        .with_field("If-Match")
                })?,
        ),
    };
    Ok(from_body.or(from_header))
}

/// 404 for a name that is not an order command.
fn check_command_name(name: &str) -> Result<(), ApiError> {
    if COMMANDS.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_command",
            format!("no command {name:?}; one of {COMMANDS:?}"),
        ))
    }
}

/// A command body: empty or a JSON object; its `version` (or `If-Match`) is taken out.
fn command_object(
    body: &[u8],
    headers: &HeaderMap,
) -> Result<(Map<String, Value>, Option<u64>), ApiError> {
    let mut object = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_body::<Map<String, Value>>(body)?
    };
    let expected = expected_version(headers, &mut object)?;
    Ok((object, expected))
}

/// The pure part of `POST /api/orders/{id}/{command}` once the order is loaded: the
/// command's defaults, its decoding, the version check and the core's decision.
fn plan_command(
    order: &Order,
    name: &str,
    mut object: Map<String, Value>,
    expected: Option<u64>,
    user: &User,
    ctx: &OrdersContext,
    at: DateTime<FixedOffset>,
) -> Result<(Order, Vec<Event>), ApiError> {
    if name == "remind" {
        // A manual 催办 presses the limit now running, at the colour it has reached.
        if let Some((kind, window)) = running_deadline(order) {
            object
                .entry("deadline")
                .or_insert_with(|| enum_value(&kind));
            let level = if at >= window.due.at {
                ReminderLevel::Red
            } else {
                ReminderLevel::Yellow
            };
            object.entry("level").or_insert_with(|| enum_value(&level));
        }
        object
            .entry("note")
            .or_insert_with(|| Value::String(String::new()));
    }
    if name == "dispatch"
        && let Some(Value::String(phone)) = object.get("contact_phone")
        && !valid_phone(phone)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "contact_phone may hold digits, +, - and spaces (at most 32)",
        )
        .with_field("contact_phone"));
    }
    object.insert("command".into(), Value::String(name.to_owned()));
    let command: Command = serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("invalid command: {e}")))?;
    if let Command::Dispatch {
        category: Some(Category::Case),
        ..
    } = &command
        && order.fields.channel == Channel::Phone
    {
        return Err(hotline_case());
    }
    if expected.is_some_and(|v| v != order.version) {
        return Err(ApiError::version_conflict());
    }
    let calendar = ctx.calendar.current();
    Ok(apply(
        order,
        command,
        &user.actor(),
        at,
        &ctx.ctx(&calendar),
    )?)
}

/// Decode and decide a command body against `order` as the handler does, without the
/// store: the next order and its events, or the 4xx the handler would answer.
///
/// # Errors
/// Unknown command → 404; not JSON → 400; not an object, wrong fields or types, or
/// refused by the core → 4xx.
pub fn decide_command(
    order: &Order,
    name: &str,
    body: &[u8],
    user: &User,
    ctx: &OrdersContext,
    at: DateTime<FixedOffset>,
) -> Result<(Order, Vec<Event>), ApiError> {
    check_command_name(name)?;
    let (object, expected) = command_object(body, &HeaderMap::new())?;
    plan_command(order, name, object, expected, user, ctx, at)
}

#[utoipa::path(post, path = "/api/orders/{id}/{command}", tag = "orders",
    summary = "Run a command on an order (409 version_conflict, 422 illegal_transition, 403 role/scope, 503 database_unavailable with Retry-After: not queued, a command is decided on the stored order)",
    params(
        ("id" = String, Path, description = "order id"),
        ("command" = String, Path, description = "one of `COMMANDS`: submit, answer_directly, dispatch, add_helping_units, return_upward, sign, return, start, request_extension, decide_extension, draft_reply, review, reply, send_reviewed_reply, feed_back, record_callback, remind, supervise, add_note, recompute_deadlines, withdraw, explain_outside_remit, study_note, conclude_study, report_dissatisfaction"),
        ("If-Match" = Option<i64>, Header, description = "the order version the command was decided on"),
    ),
    request_body(content = Object, description = "the command's fields (src/ticket/command.rs, snake_case) plus optional version"),
    responses((status = 200, description = "the order after the command", body = OrderView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn order_command(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<OrderView>, ApiError> {
    check_command_name(&name)?;
    let body = body_bytes(body)?;
    let (object, expected) = command_object(&body, &headers)?;
    let ctx = &state.orders;
    // A command naming no version means "the order as it is now": when another write
    // lands between the read and the commit (the scheduler alerting an urgent order's
    // leaders, a reminder), the order is read and the command decided again instead of
    // refused. One naming a version still gets 409 when the order moved on.
    let mut attempts = 0;
    let (next, events, at) = loop {
        attempts += 1;
        let order = visible_order(&state, &user, &id).await?;
        let at = ctx.clock.now();
        let (next, events) = plan_command(&order, &name, object.clone(), expected, &user, ctx, at)?;
        match state
            .store
            .append_order_events(&next, order.version, &events, None, at.timestamp_millis())
            .await
        {
            Ok(()) => break (next, events, at),
            Err(AppendError::Conflict) if expected.is_none() && attempts < 3 => {}
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(order = %next.id, user = %user.id, command = %name, state = %next.state, "order command");
    ctx.wake_scheduler_for(&next, at);
    // Committed: reminders and supervision presses go out.
    if let Some(notifier) = &ctx.notifier {
        for notice in notices(&next, &events) {
            notifier.notify(&notice);
        }
    }
    let view = orders_contact_view(&state, &user, ORDERS_READ, [&next]).await;
    Ok(Json(order_view(&next, &user, at, ctx, view)))
}

/// Audit action of a contact reveal.
const REVEAL_ACTION: &str = "order.reveal_contact";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevealRequest {
    #[serde(default)]
    reason: String,
}

/// `POST /api/orders/{id}/reveal_contact {reason}`: the full contact, for a reason
/// (H-12-4). The reveal goes into the order's history (`contact_revealed`, with the
/// reason, never the number) and into the audit log that supervisors read at
/// `GET /api/reveals`.
#[utoipa::path(post, path = "/api/orders/{id}/reveal_contact", tag = "orders",
    summary = "Unmasked contact for a reason (422 missing_field reason without one); audited and recorded in the order's history as contact_revealed (H-12-4)",
    params(("id" = String, Path, description = "order id")),
    request_body = RevealRequest,
    responses((status = 200, description = "the contact", body = RevealedContact), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn reveal_contact(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RevealedContact>, ApiError> {
    let body = body_bytes(body)?;
    let request: RevealRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RevealRequest {
            reason: String::new(),
        }
    } else {
        parse_body(&body)?
    };
    let order = visible_order(&state, &user, &id).await?;
    let at = state.orders.clock.now();
    let command = Command::RevealContact {
        reason: request.reason,
    };
    let calendar = state.orders.calendar.current();
    let (next, events) = apply(
        &order,
        command,
        &user.actor(),
        at,
        &state.orders.ctx(&calendar),
    )?;
    let reason = events
        .iter()
        .find_map(|e| match &e.kind {
            crate::ticket::EventKind::ContactRevealed { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    state
        .store
        .append_order_events(&next, order.version, &events, None, at.timestamp_millis())
        .await?;
    let detail = json!({
        "reason": reason,
        "roles": user.roles,
        "unit": user.unit.as_str(),
    });
    state
        .store
        .audit(
            at.timestamp_millis(),
            &user.id,
            REVEAL_ACTION,
            &order.id.0,
            &detail.to_string(),
        )
        .await?;
    tracing::info!(order = %order.id, user = %user.id, %reason, "caller contact revealed");
    Ok(Json(RevealedContact {
        contact_name: order.fields.contact.name,
        contact_phone: order.fields.contact.phone,
        version: next.version,
    }))
}

/// The caller's contact, unmasked, as `POST /api/orders/{id}/reveal_contact` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RevealedContact {
    contact_name: String,
    contact_phone: String,
    /// The order's version after the reveal (recorded in its history).
    version: u64,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RevealsQuery {
    /// Only the reveals of this order.
    order: Option<String>,
    /// 1..=1000, default 200.
    limit: Option<String>,
}

/// `GET /api/reveals[?order=…&limit=…]`: who revealed which order's caller, when and
/// why (H-12-4), newest first; for supervisors (orders in their scope) and province
/// administrators.
#[utoipa::path(get, path = "/api/reveals", tag = "orders",
    summary = "Contact reveals (H-12-4): user, order_id, at, reason, roles, unit; newest first; supervisors (orders in their scope) and province administrators only",
    params(RevealsQuery),
    responses((status = 200, description = "the reveals", body = Vec<RevealRow>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn reveals(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<RevealRow>>, ApiError> {
    require_oversight(&user)?;
    let q: RevealsQuery = parse_query(raw.as_deref())?;
    let order = match q.order.filter(|o| !o.is_empty()) {
        None => None,
        Some(o)
            if o.len() <= 64
                && o.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) =>
        {
            Some(o)
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_filter", "order must be an order id")
                    .with_field("order"),
            );
        }
    };
    let limit = filter_number(q.limit, "limit", 200, 1000)?;
    let lines = state
        .store
        .audit_lines(REVEAL_ACTION, order.as_deref(), limit)
        .await?;
    let ctx = &state.orders;
    let scope = ctx.scope_of(&user.unit);
    let mut visible: BTreeMap<String, bool> = BTreeMap::new();
    let mut items = Vec::new();
    for line in lines {
        if scope.is_some() {
            let seen = match visible.get(&line.subject) {
                Some(seen) => *seen,
                None => {
                    let units = state.store.order_units(&line.subject).await?;
                    let seen = units
                        .iter()
                        .any(|u| ctx.units.covers(&user.unit, &UnitId::new(u.clone())));
                    visible.insert(line.subject.clone(), seen);
                    seen
                }
            };
            if !seen {
                continue;
            }
        }
        let detail: Value = serde_json::from_str(&line.detail).unwrap_or(Value::Null);
        let at = shanghai()
            .timestamp_millis_opt(line.at_ms)
            .single()
            .map(|t| t.to_rfc3339());
        items.push(RevealRow {
            user: line.actor.clone(),
            order_id: line.subject.clone(),
            at,
            // Reveals before reasons were asked for have none.
            reason: detail.get("reason").cloned().unwrap_or(Value::Null),
            roles: detail.get("roles").cloned().unwrap_or(Value::Null),
            unit: detail.get("unit").cloned().unwrap_or(Value::Null),
        });
    }
    Ok(Json(items))
}

/// One contact reveal as `GET /api/reveals` lists it.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RevealRow {
    user: String,
    order_id: String,
    /// RFC 3339, Asia/Shanghai.
    at: Option<String>,
    /// Null on reveals made before a reason was asked for.
    #[schema(value_type = Option<String>)]
    reason: Value,
    /// The revealing user's roles.
    #[schema(value_type = Option<Vec<String>>)]
    roles: Value,
    /// The revealing user's unit.
    #[schema(value_type = Option<String>)]
    unit: Value,
}

/// The name people know a ledger actor by (`[[users]] name`; the server's own acts are
/// 系统); `None` for an id no longer configured, which the console shows by role.
fn person_name(auth: &Auth, id: &str) -> Option<String> {
    if id == "system" {
        return Some("系统".to_owned());
    }
    auth.user(id).map(|u| u.name.clone())
}

/// The ledger row as shown; the caller's contact in the creation event is masked for
/// roles that may not see it.
fn event_view(row: &StoredEvent, mask: bool, auth: &Auth) -> EventView {
    let mut kind: Value = serde_json::from_str(&row.kind).unwrap_or(Value::Null);
    // A second-callback clerk recorded by id: named for people too.
    if let Some(object) = kind.as_object_mut()
        && let Some(by) = object.get("by").and_then(Value::as_str)
    {
        let name = person_name(auth, by);
        object.insert("by_name".to_owned(), json!(name));
    }
    // A logged call names its agents by extension: named for people too.
    if let Some(call) = kind.get_mut("call").and_then(Value::as_object_mut) {
        for key in ["agent", "from", "to"] {
            if let Some(agent) = call.get(key).and_then(Value::as_str) {
                let name = auth.agent_name(agent);
                call.insert(format!("{key}_name"), json!(name));
            }
        }
    }
    // The server's recording paths stay on the server (the order's voice_message
    // carries the play URL); the stored event and its hash keep them.
    if let Some(fields) = kind.get_mut("fields").and_then(Value::as_object_mut) {
        fields.remove("recordings");
    }
    // The creation's fields, and a dispatch correction's values after and before.
    for holder in ["fields", "before"] {
        if mask
            && let Some(contact) = kind
                .get_mut(holder)
                .and_then(|f| f.get_mut("contact"))
                .and_then(Value::as_object_mut)
        {
            for (key, masker) in [
                ("name", mask_name as fn(&str) -> String),
                ("phone", mask_phone),
            ] {
                if let Some(Value::String(s)) = contact.get_mut(key) {
                    *s = masker(s);
                }
            }
        }
    }
    EventView {
        seq: row.seq,
        at: row.at.clone(),
        actor: row.actor.clone(),
        actor_name: person_name(auth, &row.actor),
        role: row.role.clone(),
        unit: row.unit.clone(),
        state_before: row.state_before.clone(),
        state_after: row.state_after.clone(),
        kind,
        reason: row.reason.clone(),
        hash: row.hash.clone(),
    }
}

#[utoipa::path(get, path = "/api/orders/{id}/events", tag = "orders", summary = "The order's ledger timeline",
    params(("id" = String, Path, description = "order id")),
    responses((status = 200, description = "the events, oldest first", body = Vec<EventView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn order_events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let order = visible_order(&state, &user, &id).await?;
    let rows = state.store.order_events(&order.id.0).await?;
    // The creation and each correction carry a contact: one audited read of the order.
    let view =
        audited_contact_view(&state, &user, "order.events.read", &[order.id.0.as_str()]).await;
    let mask = view == ContactView::Masked;
    Ok(Json(
        rows.iter()
            .map(|r| event_view(r, mask, &state.auth))
            .collect(),
    ))
}

// ---------------------------------------------------------------- ledger

fn require_oversight(user: &User) -> Result<(), ApiError> {
    if user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the ledger is for supervisors and province administrators",
        ))
    }
}

#[utoipa::path(get, path = "/api/ledger/verify", tag = "ledger", summary = "Recompute the hash chain; first broken event",
    responses((status = 200, description = "the verification", body = crate::store::orders::LedgerReport), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn ledger_verify(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<crate::store::orders::LedgerReport>, ApiError> {
    require_oversight(&user)?;
    let report = state.store.verify_ledger().await?;
    if !report.ok {
        tracing::error!(broken_at = %crate::logfmt::word(&report.broken_at), "ledger verification failed");
    }
    Ok(Json(report))
}

/// One CSV cell: quoted, quotes doubled, and a leading `= + - @` neutralised so a
/// spreadsheet does not run it as a formula.
fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

fn csv_response(filename: &str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[utoipa::path(get, path = "/api/ledger/{file}", tag = "ledger",
    summary = "Per-unit ledger export (CSV; supervisors, province admins) in a bureau's words: people and units by name, states, roles, events and satisfaction by their Chinese labels, never enum values or login ids; the hash columns keep the chain checkable",
    params(("file" = String, Path, description = "the unit id followed by .csv, e.g. jinan.csv")),
    responses((status = 200, description = "the ledger", content_type = "text/csv", body = String), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn ledger_csv(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    require_oversight(&user)?;
    let unit = file
        .strip_suffix(".csv")
        .map(|u| UnitId::new(u.to_owned()))
        .filter(|u| state.orders.units.contains(u))
        .ok_or_else(|| ApiError::not_found("unit ledger"))?;
    if !state.orders.units.covers(&user.unit, &unit) {
        return Err(ApiError::forbidden("that unit is outside your subtree"));
    }
    let rows = state.store.unit_ledger(unit.as_str()).await?;
    let mut out = String::from(ledger_words::HEADER);
    for r in &rows {
        let names = ledger_words::Names {
            orders: &state.orders,
            auth: &state.auth,
        };
        let line = ledger_words::ledger_line(&names, r);
        let cells: Vec<String> = line.cells().iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(csv_response(&format!("ledger-{unit}.csv"), out))
}

// ---------------------------------------------------------------- units, rankings

#[utoipa::path(get, path = "/api/units", tag = "assessment", summary = "Unit tree",
    responses((status = 200, description = "the units", body = Vec<UnitView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn units(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
) -> Json<Vec<UnitView>> {
    Json(
        state
            .orders
            .units
            .units()
            .map(|u| UnitView {
                id: u.id.clone(),
                name: u.name.clone(),
                kind: u.kind,
                parent: u.parent.clone(),
            })
            .collect(),
    )
}

/// One unit of the tree as `GET /api/units` lists it.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct UnitView {
    id: UnitId,
    name: String,
    /// province | city | county | township | institution.
    #[schema(value_type = String)]
    kind: UnitKind,
    parent: Option<UnitId>,
}

/// `2026-11`, `2026-Q4` or `2026` as a half-open period in Asia/Shanghai; `None`
/// for anything else.
pub fn parse_period(text: &str) -> Option<Period> {
    let (year, first_month, months) = if let Some((y, q)) = text.split_once("-Q") {
        let quarter: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
        (y.parse::<i32>().ok()?, (quarter - 1) * 3 + 1, 3)
    } else if let Some((y, m)) = text.split_once('-') {
        let month: u32 = m.parse().ok().filter(|m| (1..=12).contains(m))?;
        (y.parse::<i32>().ok()?, month, 1)
    } else {
        (text.parse::<i32>().ok()?, 1, 12)
    };
    if !(2000..=2200).contains(&year) {
        return None;
    }
    let start = NaiveDate::from_ymd_opt(year, first_month, 1)?;
    let end = start.checked_add_months(chrono::Months::new(months))?;
    let tz = shanghai();
    let at = |d: NaiveDate| tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single();
    Some(Period {
        from: at(start)?,
        to: at(end)?,
    })
}

/// What one ranking row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RankedBy {
    Unit,
    Category,
    /// 法律服务需求类型: the business areas of the order fields.
    Area,
}

/// The business areas ranked by `by=area`, with their names.
const BUSINESS_AREAS: [(BusinessArea, &str); 9] = [
    (BusinessArea::LegalAid, "法律援助"),
    (BusinessArea::Lawyer, "律师"),
    (BusinessArea::Notary, "公证"),
    (BusinessArea::JudicialAppraisal, "司法鉴定"),
    (BusinessArea::Mediation, "人民调解"),
    (BusinessArea::GrassrootsLegalService, "基层法律服务"),
    (BusinessArea::LegalEducation, "法治宣传教育"),
    (BusinessArea::Other, "其他"),
    (BusinessArea::Unknown, "未确定"),
];

fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match enum_value(value) {
        Value::String(s) => s,
        _ => String::new(),
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RankingQuery {
    /// 2026-11 | 2026-Q4 | 2026.
    period: Option<String>,
    /// unit | category | area (area: 法律服务需求类型, the business areas of the order fields).
    by: Option<String>,
    /// case | consultation | complaint_suggestion.
    group: Option<String>,
    /// completion_rate | on_time_rate | satisfaction_rate | sign_in_rate | transfer_rate | combined.
    metric: Option<String>,
    /// json | csv.
    format: Option<String>,
    /// province | city | county | township | institution | all (default: all, each level
    /// ranked separately).
    level: Option<String>,
    /// Only the orders of this business area (法律服务需求类型): the units ranked
    /// within one area.
    business_area: Option<String>,
}

/// The unit levels ranked separately (W-19, H-15): a province, a city bureau, a
/// county bureau, a township office and a service institution are not compared.
const LEVELS: [UnitKind; 5] = [
    UnitKind::Province,
    UnitKind::City,
    UnitKind::County,
    UnitKind::Township,
    UnitKind::Institution,
];

fn rate_value(rate: crate::ticket::Rate) -> Option<f64> {
    rate.per_mille().map(|pm| f64::from(pm) / 1000.0)
}

fn level_of(kind: UnitKind) -> Level {
    match kind {
        UnitKind::Province => Level::Province,
        UnitKind::City => Level::City,
        UnitKind::County => Level::County,
        UnitKind::Township => Level::Township,
        UnitKind::Institution => Level::Institution,
    }
}

#[utoipa::path(get, path = "/api/rankings", tag = "assessment",
    summary = "Unit rankings per period (AS-RANK); format=csv for CSV",
    params(RankingQuery),
    responses((status = 200, description = "ranked rows (CSV: the same columns)", content((Rankings = "application/json"), (String = "text/csv"))), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn rankings(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: RankingQuery = parse_query(raw.as_deref())?;
    let at = state.orders.clock.now();
    let period_text = q
        .period
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("{}-{:02}", at.year(), at.month()));
    let period = parse_period(&period_text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            "period must look like 2026-11, 2026-Q4 or 2026",
        )
        .with_field("period")
    })?;
    let group = match q.group.as_deref() {
        None | Some("" | "consultation") => RankGroup::Consultation,
        Some("case" | "business_handling") => RankGroup::BusinessHandling,
        Some("complaint_suggestion") => RankGroup::ComplaintSuggestion,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "group must be case, consultation or complaint_suggestion",
            )
            .with_field("group"));
        }
    };
    let metric = match q.metric.as_deref() {
        None | Some("" | "completion_rate") => RankBy::CompletionRate,
        Some("on_time_rate") => RankBy::OnTimeRate,
        Some("satisfaction_rate") => RankBy::SatisfactionRate,
        Some("sign_in_rate") => RankBy::SignInRate,
        Some("transfer_rate") => RankBy::TransferRate,
        Some("combined") => RankBy::Combined,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "metric must be completion_rate, on_time_rate, satisfaction_rate, \
                 sign_in_rate, transfer_rate or combined",
            )
            .with_field("metric"));
        }
    };
    let only_level =
        match q.level.as_deref() {
            None | Some("" | "all") => None,
            Some(text) => Some(LEVELS.into_iter().find(|k| k.as_str() == text).ok_or_else(
                || {
                    ApiError::bad_request(
                        "invalid_query",
                        "level must be province, city, county, township, institution or all",
                    )
                    .with_field("level")
                },
            )?),
        };
    let by = match q.by.as_deref() {
        None | Some("" | "unit") => RankedBy::Unit,
        Some("category") => RankedBy::Category,
        Some("area" | "business_area") => RankedBy::Area,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "by must be unit, category or area",
            )
            .with_field("by"));
        }
    };
    let only_area = match q.business_area.as_deref() {
        None | Some("" | "all") => None,
        Some(text) => Some(
            BUSINESS_AREAS
                .iter()
                .map(|(area, _)| *area)
                .find(|area| enum_text(area) == text)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        "business_area must be one of the order fields' business areas or all",
                    )
                    .with_field("business_area")
                })?,
        ),
    };
    let ask = RankingAsk {
        period_text,
        period,
        group,
        metric,
        metric_name: q.metric.filter(|m| !m.is_empty()),
        only_level,
        by,
        only_area,
    };
    let ranked = compute_rankings(&state, ask, at).await?;
    if q.format.as_deref() == Some("csv") {
        let mut out = String::from(
            "rank,unit,unit_name,orders,completion_rate,on_time_rate,satisfaction_rate,returns,overdue,\
             sign_in_rate,shifts_scheduled,shifts_signed_in,level,withdrawn,transfer_rate,\
             transfers_on_time,transfers_late,combined_score,weights\n",
        );
        let weights_cell = ranked
            .weights
            .named()
            .iter()
            .map(|(k, w)| format!("{k}={w}"))
            .collect::<Vec<_>>()
            .join(";");
        for row in &ranked.rows {
            let row = serde_json::to_value(row).unwrap_or_default();
            let cell = |k: &str| match row.get(k) {
                Some(Value::String(s)) => csv_cell(s),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            let line: Vec<String> = [
                "rank",
                "unit",
                "unit_name",
                "orders",
                "completion_rate",
                "on_time_rate",
                "satisfaction_rate",
                "returns",
                "overdue",
                "sign_in_rate",
                "shifts_scheduled",
                "shifts_signed_in",
                "level",
                "withdrawn",
                "transfer_rate",
                "transfers_on_time",
                "transfers_late",
                "combined_score",
            ]
            .iter()
            .map(|k| cell(k))
            .chain([weights_cell.clone()])
            .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        return Ok(csv_response(
            &format!("rankings-{}-{}.csv", ranked.period, ranked.group),
            out,
        ));
    }
    Ok(Json(ranked).into_response())
}

/// What a ranking is asked for: the parsed `GET /api/rankings` query.
#[derive(Debug, Clone)]
pub(crate) struct RankingAsk {
    pub period_text: String,
    pub period: Period,
    pub group: RankGroup,
    pub metric: RankBy,
    /// As asked (default `completion_rate`).
    pub metric_name: Option<String>,
    pub only_level: Option<UnitKind>,
    pub by: RankedBy,
    pub only_area: Option<BusinessArea>,
}

/// The ranking of `ask` at `at`: what `GET /api/rankings` answers, and what the
/// published reports print (one computation, so their figures are the API's).
///
/// # Errors
/// Database errors.
pub(crate) async fn compute_rankings(
    state: &AppState,
    ask: RankingAsk,
    at: DateTime<FixedOffset>,
) -> Result<Rankings, ApiError> {
    let RankingAsk {
        period_text,
        period,
        group,
        metric,
        metric_name,
        only_level,
        by,
        only_area,
    } = ask;
    let by_category = by != RankedBy::Unit;
    let weights = state.orders.ranking_weights;
    let mut orders = state
        .store
        .orders_received_between(period.from.timestamp_millis(), period.to.timestamp_millis())
        .await?;
    if let Some(area) = only_area {
        orders.retain(|o| o.fields.area == area);
    }
    let ctx = &state.orders;
    let sign_in = sign_in_by_unit(state, period, at).await?;
    let mut rows: Vec<RankingRow> = Vec::new();
    if by_category {
        // One row per category (or business area, 法律服务需求类型) of the group: all
        // its orders scored as one "unit", named by the enum value.
        let mut scores = Vec::new();
        let kinds: Vec<(String, String)> = match by {
            RankedBy::Area => BUSINESS_AREAS
                .iter()
                .map(|(area, label)| (enum_text(area), (*label).to_owned()))
                .collect(),
            _ => [
                Category::Consultation,
                Category::Complaint,
                Category::Suggestion,
                Category::Case,
            ]
            .iter()
            .filter(|c| RankGroup::of(**c) == group)
            .map(|c| (enum_text(c), enum_text(c)))
            .collect(),
        };
        let mut labels = BTreeMap::new();
        for (kind, label) in kinds {
            let mut of_kind: Vec<Order> = orders
                .iter()
                .filter(|o| match by {
                    RankedBy::Area => enum_text(&o.fields.area) == kind,
                    _ => enum_text(&o.fields.category) == kind,
                })
                .map(|o| {
                    let mut o = o.clone();
                    // Scored as one: the kind stands for every unit and city.
                    o.lead_unit = Some(UnitId::new(kind.clone()));
                    o.fields.city = UnitId::new(kind.clone());
                    o.returned_by.clear();
                    o
                })
                .collect();
            of_kind.retain(|o| RankGroup::of(o.fields.category) == group);
            let mut score = unit_scores(&of_kind, period, at);
            if score.is_empty() {
                continue;
            }
            labels.insert(kind, label);
            scores.append(&mut score);
        }
        for score in &mut scores {
            score.combined = weights.combine(score);
        }
        for r in rank(&scores, group, metric) {
            let kind = r.score.unit.as_str();
            let mut row = ranking_row(&r, kind, None);
            if by == RankedBy::Area {
                row.business_area = parse_enum(kind);
                row.unit_name = labels.get(kind).cloned().unwrap_or_default();
            }
            rows.push(row);
        }
    } else {
        // Each level ranked on its own (positions restart at 1); `rows` lists the
        // levels in order, province first, each row naming its `level`.
        let mut scores = unit_scores(&orders, period, at);
        // The sign-in rate joins the unit's figures; ranked by sign-in rate, a unit
        // with shifts but no orders in the group is ranked too.
        for (unit, attendance) in &sign_in {
            let id = UnitId::new(unit.clone());
            if metric == RankBy::SignInRate
                && !scores.iter().any(|s| s.unit == id && s.group == group)
            {
                scores.push(crate::ticket::UnitScore::empty(id.clone(), group));
            }
            for score in scores.iter_mut().filter(|s| s.unit == id) {
                score.sign_in_rate = crate::ticket::Rate {
                    numerator: attendance.signed_in,
                    denominator: attendance.scheduled,
                };
            }
        }
        for score in &mut scores {
            score.combined = weights.combine(score);
        }
        for kind in LEVELS {
            if only_level.is_some_and(|only| only != kind) {
                continue;
            }
            let of_level: Vec<_> = scores
                .iter()
                .filter(|s| ctx.units.get(&s.unit).map(|u| u.kind) == Some(kind))
                .cloned()
                .collect();
            for r in rank(&of_level, group, metric) {
                let name = ctx.unit_name(&r.score.unit).unwrap_or_default().to_owned();
                let mut row = ranking_row(&r, &name, sign_in.get(r.score.unit.as_str()).copied());
                row.level = Some(level_of(kind));
                rows.push(row);
            }
        }
    }
    let mut levels = BTreeMap::new();
    if !by_category {
        for kind in LEVELS {
            if only_level.is_none_or(|only| only == kind) {
                let of_level: Vec<RankingRow> = rows
                    .iter()
                    .filter(|r| r.level == Some(level_of(kind)))
                    .cloned()
                    .collect();
                levels.insert(level_of(kind), of_level);
            }
        }
    }
    let group_name = match group {
        RankGroup::BusinessHandling => "case",
        RankGroup::Consultation => "consultation",
        RankGroup::ComplaintSuggestion => "complaint_suggestion",
    };
    Ok(Rankings {
        period: period_text,
        group: group_name.to_owned(),
        by: match by {
            RankedBy::Unit => "unit",
            RankedBy::Category => "category",
            RankedBy::Area => "area",
        }
        .to_owned(),
        metric: metric_name.unwrap_or_else(|| "completion_rate".to_owned()),
        business_area: only_area.map_or_else(|| "all".to_owned(), |a| enum_text(&a)),
        // W-19: the ranking is automatic; the only setting is the weights of the
        // combined score, printed with every ranking.
        weights,
        level: only_level.map_or("all", UnitKind::as_str).to_owned(),
        rows,
        levels,
        sign_in: sign_in
            .iter()
            .map(|(unit, attendance)| UnitSignIn {
                unit: unit.clone(),
                unit_name: ctx
                    .unit_name(&UnitId::new(unit.clone()))
                    .unwrap_or_default()
                    .to_owned(),
                sign_in: sign_in_view(Some(*attendance)),
            })
            .collect(),
    })
}

/// The sign-in rate of every unit whose agents had duty shifts due in the period
/// (AS-METRICS; the definition is in [`crate::queue::attendance`]). Units without any
/// are absent: their rate is null, never a made-up 100 %.
async fn sign_in_by_unit(
    state: &AppState,
    period: Period,
    at: DateTime<FixedOffset>,
) -> Result<BTreeMap<String, ShiftAttendance>, ApiError> {
    let mut by_unit: BTreeMap<String, ShiftAttendance> = BTreeMap::new();
    let Some(queues) = &state.orders.queues else {
        return Ok(by_unit);
    };
    let grace = chrono::TimeDelta::seconds(i64::try_from(queues.absent_grace_secs).unwrap_or(0));
    let until = (period.to + grace).min(at);
    for agent in &queues.agents {
        if !queues.roster.iter().any(|e| e.agent == agent.id) {
            continue;
        }
        let log = state
            .store
            .agent_attendance_log(&agent.id, until.timestamp_millis())
            .await?;
        let attendance = shift_attendance(
            &queues.roster,
            &state.orders.calendar.current(),
            &agent.id,
            &log,
            period.from,
            period.to,
            at,
            grace,
        );
        if attendance.scheduled > 0 {
            let unit = by_unit.entry(agent.city.as_str().to_owned()).or_default();
            *unit = unit.plus(attendance);
        }
    }
    Ok(by_unit)
}

/// `sign_in_rate` (0..1 or null), `shifts_scheduled`, `shifts_signed_in` (null without
/// roster data).
fn sign_in_view(attendance: Option<ShiftAttendance>) -> SignIn {
    match attendance {
        Some(a) => SignIn {
            sign_in_rate: a.per_mille().map(|pm| f64::from(pm) / 1000.0),
            shifts_scheduled: Some(a.scheduled),
            shifts_signed_in: Some(a.signed_in),
        },
        None => SignIn::default(),
    }
}

fn ranking_row(
    r: &crate::ticket::Ranked,
    name: &str,
    sign_in: Option<ShiftAttendance>,
) -> RankingRow {
    let s = &r.score;
    RankingRow {
        rank: r.position,
        unit: s.unit.clone(),
        unit_name: name.to_owned(),
        orders: s.handled,
        completed: s.completed,
        completion_rate: rate_value(s.completion_rate),
        on_time_rate: rate_value(s.on_time_rate),
        satisfaction_rate: rate_value(s.satisfaction_rate),
        returns: s.returns,
        overdue: s.overdue,
        withdrawn: s.withdrawn,
        transfer_rate: rate_value(s.transfer_rate),
        transfers_on_time: s.transfer_on_time,
        transfers_late: s.transfer_late,
        combined_score: s.combined.map(|pm| f64::from(pm) / 1000.0),
        sign_in: sign_in_view(sign_in),
        level: None,
        business_area: None,
    }
}

#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi_document", tag = "meta", summary = "This document",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_auth() -> Auth {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotline.toml");
        let config =
            crate::config::Config::load(&path).unwrap_or_else(|e| panic!("shipped config: {e}"));
        Auth::from_config(&config.users)
    }

    fn row(actor: &str, kind: Value) -> StoredEvent {
        StoredEvent {
            global_seq: 1,
            order_id: "o1".into(),
            seq: 1,
            at: "2026-12-07T10:00:00+08:00".into(),
            at_ms: 0,
            actor: actor.into(),
            role: "agent".into(),
            unit: "jinan".into(),
            kind: kind.to_string(),
            state_before: "pending_dispatch".into(),
            state_after: "pending_dispatch".into(),
            reason: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The row as the answer's JSON carries it.
    fn event_json(row: &StoredEvent, mask: bool, auth: &Auth) -> Value {
        serde_json::to_value(event_view(row, mask, auth)).unwrap_or_default()
    }

    #[test]
    fn the_events_view_names_people_and_agents_never_only_their_ids() {
        let auth = shipped_auth();
        let logged = event_json(
            &row(
                "agent",
                json!({"type": "call_logged", "note": "",
                       "call": {"what": "transferred_to_agent", "call_id": "c1", "from": "1001", "to": "9999"}}),
            ),
            false,
            &auth,
        );
        assert_eq!(logged["actor_name"], "值班员 张明", "{logged}");
        assert_eq!(
            logged["kind"]["call"]["from_name"], "值班员 张明",
            "{logged}"
        );
        assert_eq!(
            logged["kind"]["call"]["to_name"],
            Value::Null,
            "no user works as 9999: {logged}"
        );
        let callback = event_json(
            &row(
                "callback",
                json!({"type": "callback_recorded", "round": "second", "satisfaction": "dissatisfied", "note": "", "by": "callback"}),
            ),
            false,
            &auth,
        );
        assert_eq!(callback["actor_name"], "回访员 吴静", "{callback}");
        assert_eq!(callback["kind"]["by_name"], "回访员 吴静", "{callback}");
        let system = event_json(&row("system", json!({"type": "reminded"})), false, &auth);
        assert_eq!(system["actor_name"], "系统");
        let gone = event_json(&row("left-2025", json!({"type": "started"})), false, &auth);
        assert_eq!(gone["actor_name"], Value::Null, "{gone}");
    }
}
