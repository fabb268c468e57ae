//! The public intake (W-2, W-9, H-6; WEB-INTAKE): what the 12348 web page, the app and
//! the WeChat mini-program call without logging in. A citizen's consultation,
//! complaint or suggestion becomes a pending work order (channel `web`, `app` or
//! `wechat`), received at submission and routed by the same rules as a call's order,
//! committed — or, while the database is unavailable, queued in the same fsync'd
//! outbox as the API's creates — before the answer. The answer is a query code; with
//! the code and the phone the citizen reads the progress and the reply (contact masked,
//! no internal notes) and rates the answer, which the ticket core records as a callback
//! outcome (TK-SATISFACTION: satisfied → closed; dissatisfied → second callback by the
//! supervising unit).
//!
//! Abuse controls ([`crate::orders::intake`]): a signed proof-of-work challenge per
//! submission, rate limits per source address and per phone, duplicate detection (the
//! same phone with a near-identical description within a day gets the earlier code),
//! and look-ups that answer the same for an unknown code and a wrong phone.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::orders::{body_bytes, parse_body};
use crate::domain::CallCategory;
use crate::orders::intake::{Limited, PowError, near_duplicate, phone_digits};
use crate::orders::new_order_id;
use crate::store::orders::{AppendError, OrderFilter};
use crate::ticket::{
    Actor, BusinessArea, CallbackOutcome, Category, Channel, Command, Contact, Order, OrderFields,
    OrderId, Role, Satisfaction, State as OrderState, UnitId, UnitKind, Urgency, UserId, apply,
    mask_name, mask_phone,
};

/// The user id the ledger names for a public submission.
pub const PUBLIC_ACTOR: &str = "public";
/// The user id the ledger names for a citizen's own rating.
pub const CITIZEN_ACTOR: &str = "citizen";

/// The routes of this module (mounted by [`super::router`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(challenge))
        .routes(routes!(cities))
        .routes(routes!(submit))
        .routes(routes!(order_status))
        .routes(routes!(rate))
}

fn limited(what: &str, e: Limited) -> ApiError {
    ApiError::too_many_attempts(
        format!("too many {what}: try again later"),
        e.retry_after_secs,
    )
}

/// Only `application/json`: a form POST is what another site can make a browser send
/// without a preflight.
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
            "send Content-Type: application/json",
        ))
    }
}

fn source_key(state: &AppState, parts: &Parts) -> String {
    state
        .auth
        .client_ip(parts)
        .map_or_else(|| "-".to_owned(), |ip| ip.to_string())
}

// ---------------------------------------------------------------- challenge

/// A proof-of-work challenge: find `nonce` such that SHA-256(`challenge` + ":" +
/// `nonce`) starts with `difficulty_bits` zero bits, then send both with the
/// submission before `expires_at`. Each challenge is accepted once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChallengeView {
    pub challenge: String,
    pub difficulty_bits: u8,
    pub expires_at: DateTime<FixedOffset>,
}

#[utoipa::path(get, path = "/api/public/challenge", tag = "public",
    summary = "A signed proof-of-work challenge for one public submission (no login; 429 with Retry-After per source address)",
    security(()),
    responses(
        (status = 200, description = "the challenge", body = ChallengeView),
        (status = 429, description = "too many challenges from this address", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn challenge(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Json<ChallengeView>, ApiError> {
    let intake = &state.orders.public;
    intake
        .challenges_per_source
        .hit(&source_key(&state, &parts), Instant::now())
        .map_err(|e| limited("challenges", e))?;
    let now = state.orders.clock.now();
    let (challenge, expires_ms) = intake.pow.issue(now.timestamp_millis(), rand::random());
    let expires_at = chrono::DateTime::from_timestamp_millis(expires_ms)
        .map_or(now, |t| t.with_timezone(now.offset()));
    Ok(Json(ChallengeView {
        challenge,
        difficulty_bits: intake.pow.bits,
        expires_at,
    }))
}

// ---------------------------------------------------------------- cities

/// A unit's name as a place (`济南市司法局` → `济南市`): the citizen picks where they
/// live, not a bureau.
fn place_name(unit_name: &str) -> String {
    unit_name.trim_end_matches("司法局").to_owned()
}

/// A place a citizen can choose: a city, with its counties.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicCity {
    pub id: UnitId,
    pub name: String,
    pub counties: Vec<PublicCounty>,
}

/// A county of a city.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicCounty {
    pub id: UnitId,
    pub name: String,
}

#[utoipa::path(get, path = "/api/public/cities", tag = "public",
    summary = "The cities and counties a public submission may name (no login)",
    security(()),
    responses(
        (status = 200, description = "cities by id, each with its counties", body = Vec<PublicCity>),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn cities(State(state): State<AppState>) -> Json<Vec<PublicCity>> {
    let units = &state.orders.units;
    let mut cities: Vec<PublicCity> = units
        .units()
        .filter(|u| u.kind == UnitKind::City)
        .map(|city| {
            let mut counties: Vec<PublicCounty> = units
                .units()
                .filter(|u| u.kind == UnitKind::County && units.city_of(&u.id) == Some(&city.id))
                .map(|u| PublicCounty {
                    id: u.id.clone(),
                    name: place_name(&u.name),
                })
                .collect();
            counties.sort_by(|a, b| a.id.cmp(&b.id));
            PublicCity {
                id: city.id.clone(),
                name: place_name(&city.name),
                counties,
            }
        })
        .collect();
    cities.sort_by(|a, b| a.id.cmp(&b.id));
    Json(cities)
}

// ---------------------------------------------------------------- submit

/// The channel the citizen used (the 12345 link has its own, authenticated intake).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublicChannel {
    /// 12348山东法网 (the web page).
    #[default]
    Web,
    /// The mobile app.
    App,
    /// The WeChat mini-program / official account.
    Wechat,
}

impl From<PublicChannel> for Channel {
    fn from(channel: PublicChannel) -> Self {
        match channel {
            PublicChannel::Web => Self::Web,
            PublicChannel::App => Self::App,
            PublicChannel::Wechat => Self::Wechat,
        }
    }
}

/// A citizen's consultation, complaint or suggestion.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicSubmission {
    /// `web` (default), `app` or `wechat`.
    #[serde(default)]
    pub channel: PublicChannel,
    /// Contact person (1-50 characters).
    pub name: String,
    /// Contact phone: 7-15 digits (spaces, `-` and a leading `+` allowed; stored as
    /// its digits).
    pub phone: String,
    /// City unit id (`jinan`, `qingdao`, … as `GET /api/units` lists them).
    pub city: UnitId,
    /// County unit id within the city, when the citizen knows it.
    #[serde(default)]
    pub county: Option<UnitId>,
    /// Business area; `unknown` when the citizen cannot tell (a dispatcher decides).
    #[serde(default)]
    pub business_area: BusinessArea,
    /// `consultation`, `complaint` or `suggestion`.
    pub category: CallCategory,
    /// The matter (1-2000 characters).
    pub description: String,
    /// From `GET /api/public/challenge`.
    pub challenge: String,
    /// Its solution.
    pub nonce: String,
}

/// What a submission answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Submitted {
    /// Keep it: with the phone it shows the progress and the reply.
    pub query_code: OrderId,
    /// The order's short number (null while queued).
    pub number: Option<String>,
    /// When the demand was received (its limits run from here).
    pub received_at: DateTime<FixedOffset>,
    /// An earlier submission from this phone with a near-identical description: this
    /// is its code, and no new order was made.
    pub duplicate: bool,
    /// Accepted while the database was unavailable: kept durably and written once it
    /// answers (the code works from then on).
    pub queued: bool,
}

/// Longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 2000;

struct Valid {
    name: String,
    phone: String,
    city: UnitId,
    county: Option<UnitId>,
}

fn validate(request: &PublicSubmission, state: &AppState) -> Result<Valid, ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return Err(
            ApiError::unprocessable("invalid_field", "name: 1-50 characters").with_field("name"),
        );
    }
    let phone = request.phone.trim();
    let digits = phone_digits(phone);
    let shape_ok = phone
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_digit() || matches!(c, '-' | ' ') || (c == '+' && i == 0));
    if !shape_ok || !(7..=15).contains(&digits.len()) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "phone: 7-15 digits (spaces, - and a leading + allowed)",
        )
        .with_field("phone"));
    }
    let units = &state.orders.units;
    if units
        .get(&request.city)
        .is_none_or(|u| u.kind != UnitKind::City)
    {
        return Err(
            ApiError::unprocessable("invalid_field", "city: not a city of the province")
                .with_field("city"),
        );
    }
    if let Some(county) = &request.county
        && (units.get(county).is_none_or(|u| u.kind != UnitKind::County)
            || units.city_of(county) != Some(&request.city))
    {
        return Err(
            ApiError::unprocessable("invalid_field", "county: not a county of that city")
                .with_field("county"),
        );
    }
    let length = request.description.trim().chars().count();
    if length == 0 || length > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("description: 1-{MAX_DESCRIPTION_CHARS} characters"),
        )
        .with_field("description"));
    }
    Ok(Valid {
        name: name.to_owned(),
        // Digits only: one number, one spelling (duplicates and limits by phone).
        phone: digits,
        city: request.city.clone(),
        county: request.county.clone(),
    })
}

fn pow_refused(e: &PowError) -> ApiError {
    let code = match e {
        PowError::Invalid => "invalid_challenge",
        PowError::Expired => "challenge_expired",
        PowError::Unsolved => "challenge_unsolved",
        PowError::Spent => "challenge_spent",
    };
    ApiError::unprocessable(code, e.to_string()).with_field("nonce")
}

/// The public actor: the system registering a submission for the citizen's city.
fn public_actor(user: &str, city: &UnitId) -> Actor {
    Actor {
        user_id: UserId(user.to_owned()),
        roles: vec![Role::System],
        unit: city.clone(),
    }
}

/// An earlier order from this phone, received within the window, whose description is
/// near-identical.
async fn earlier_duplicate(
    state: &AppState,
    phone: &str,
    description: &str,
    at: DateTime<FixedOffset>,
) -> Result<Option<Order>, ApiError> {
    let window = i64::try_from(state.orders.public.duplicate_window.as_millis()).unwrap_or(0);
    let filter = OrderFilter {
        phone: Some(phone.to_owned()),
        received_from_ms: Some(at.timestamp_millis().saturating_sub(window)),
        now_ms: at.timestamp_millis(),
        limit: 50,
        ..OrderFilter::default()
    };
    let (orders, _) = state.store.list_orders(&filter).await?;
    Ok(orders
        .into_iter()
        .find(|o| near_duplicate(&o.fields.description, description)))
}

#[utoipa::path(post, path = "/api/public/orders", tag = "public",
    summary = "A citizen's consultation, complaint or suggestion from the web page, the app or WeChat (no login; Content-Type: application/json, else 415): becomes a pending work order received now and routed like a call's; answers its query code",
    security(()),
    request_body = PublicSubmission,
    responses(
        (status = 201, description = "a new order", body = Submitted),
        (status = 200, description = "a duplicate: the same phone sent a near-identical description within a day; the earlier order's code", body = Submitted),
        (status = 202, description = "accepted while the database is unavailable: kept in the fsync'd outbox journal and written, in order, once it answers", body = Submitted),
        (status = 422, description = "a field, or the proof of work (invalid_challenge, challenge_expired, challenge_unsolved, challenge_spent), refused: the reason in the body", body = ErrorBody),
        (status = 429, description = "too many submissions from this address or for this phone: Retry-After", body = ErrorBody),
        (status = 503, description = "neither the database nor the outbox journal can take it: retry", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn submit(
    State(state): State<AppState>,
    server: Option<axum::Extension<super::ServerHealth>>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    require_json(&parts)?;
    let intake = &state.orders.public;
    let now = Instant::now();
    intake
        .per_source
        .hit(&source_key(&state, &parts), now)
        .map_err(|e| limited("submissions from this address", e))?;
    let body = body_bytes(body)?;
    let request: PublicSubmission = parse_body(&body)?;
    let valid = validate(&request, &state)?;
    let ctx = &state.orders;
    let at = ctx.clock.now();
    intake
        .pow
        .verify(&request.challenge, &request.nonce, at.timestamp_millis())
        .map_err(|e| pow_refused(&e))?;
    intake
        .per_phone
        .hit(&phone_digits(&valid.phone), now)
        .map_err(|e| limited("submissions for this phone", e))?;
    let outbox = server.and_then(|axum::Extension(s)| s.outbox);
    match earlier_duplicate(&state, &valid.phone, &request.description, at).await {
        Ok(Some(earlier)) => {
            tracing::info!(order = %earlier.id, "public submission: duplicate of an earlier order");
            return Ok((
                StatusCode::OK,
                Json(Submitted {
                    query_code: earlier.id.clone(),
                    number: earlier.number.clone(),
                    received_at: earlier.fields.received_at,
                    duplicate: true,
                    queued: false,
                }),
            )
                .into_response());
        }
        Ok(None) => {}
        // Unchecked while the database is away: the order is kept all the same.
        Err(e) if outbox.is_some() && e.code == ApiError::DATABASE_UNAVAILABLE => {}
        Err(e) => return Err(e),
    }
    let fields = OrderFields {
        contact: Contact {
            name: valid.name,
            phone: valid.phone,
        },
        category: Category::from(request.category),
        urgency: Urgency::Normal,
        area: request.business_area,
        units_involved: valid.county.into_iter().collect(),
        description: request.description.trim().to_owned(),
        remarks: String::new(),
        channel: request.channel.into(),
        city: valid.city.clone(),
        call_id: None,
        recordings: Vec::new(),
        received_at: at,
    };
    let actor = public_actor(PUBLIC_ACTOR, &valid.city);
    let calendar = ctx.calendar.current();
    let context = ctx.ctx(&calendar);
    let id = new_order_id(at);
    let (created, mut events) = apply(
        &Order::new(id),
        Command::Create { fields },
        &actor,
        at,
        &context,
    )?;
    let (mut order, submitted) = apply(&created, Command::Submit, &actor, at, &context)?;
    events.extend(submitted);
    let queue = |order: Order, events| {
        let outbox = outbox.clone();
        async move {
            let Some(outbox) = outbox else {
                return Err(ApiError::unavailable(
                    ApiError::DATABASE_UNAVAILABLE,
                    "the database is unavailable: retry later",
                ));
            };
            let create = crate::orders::outbox::QueuedCreate {
                order: order.clone(),
                events,
                actor: PUBLIC_ACTOR.to_owned(),
                idempotency: None,
                at_ms: at.timestamp_millis(),
            };
            match tokio::task::spawn_blocking(move || outbox.append(create)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ApiError::database_unavailable(&e)),
                Err(e) => return Err(ApiError::internal(&e)),
            }
            tracing::info!(order = %order.id, "public submission queued: database unavailable");
            Ok((
                StatusCode::ACCEPTED,
                Json(Submitted {
                    query_code: order.id.clone(),
                    number: None,
                    received_at: at,
                    duplicate: false,
                    queued: true,
                }),
            )
                .into_response())
        }
    };
    if outbox.as_ref().is_some_and(|o| o.depth() > 0) {
        // Creates are waiting: join them, in order, rather than overtake them.
        return queue(order, events).await;
    }
    match state
        .store
        .append_order_events_numbered(&order, 0, &events, None, at.timestamp_millis())
        .await
    {
        Ok(number) => order.number = number,
        Err(AppendError::Store(e)) if e.is_unavailable() && outbox.is_some() => {
            tracing::warn!(%e, order = %order.id, "database unavailable: queueing the public submission");
            return queue(order, events).await;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order = %order.id, channel = ?order.fields.channel, state = %order.state, "public submission: order created");
    ctx.wake_scheduler_for(&order, at);
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            query_code: order.id.clone(),
            number: order.number.clone(),
            received_at: at,
            duplicate: false,
            queued: false,
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------- status and rating

/// The query code and the phone given at submission.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenQuery {
    pub query_code: String,
    pub phone: String,
}

/// Where the matter stands, in the citizen's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// 已受理: waiting to be transferred.
    Received,
    /// 已转办: sent to the competent unit.
    Dispatched,
    /// 办理中.
    Handling,
    /// 已答复.
    Replied,
    /// 已办结.
    Closed,
}

impl Progress {
    fn of(state: OrderState) -> Self {
        match state {
            OrderState::Draft | OrderState::PendingDispatch => Self::Received,
            OrderState::Dispatched => Self::Dispatched,
            OrderState::Signed
            | OrderState::InProgress
            | OrderState::ReplyDrafted
            | OrderState::Reviewed
            | OrderState::SecondCallback
            | OrderState::SpecialStudy => Self::Handling,
            OrderState::Replied | OrderState::FedBack => Self::Replied,
            OrderState::Closed => Self::Closed,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Received => "已受理，等待转办",
            Self::Dispatched => "已转交承办单位",
            Self::Handling => "承办单位办理中",
            Self::Replied => "已答复",
            Self::Closed => "已办结",
        }
    }
}

/// An order as its citizen sees it: contact masked, no internal notes, no staff.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CitizenOrderView {
    pub query_code: OrderId,
    pub number: Option<String>,
    pub channel: Channel,
    pub category: Category,
    pub business_area: BusinessArea,
    /// The city's name (`济南市`).
    pub city: String,
    pub received_at: DateTime<FixedOffset>,
    pub progress: Progress,
    /// The progress in words (Chinese).
    pub progress_text: String,
    /// Masked (张*).
    pub contact_name: String,
    /// Masked (138****1234).
    pub contact_phone: String,
    pub description: String,
    /// The reply, once given.
    pub reply: Option<String>,
    /// The citizen's (or a callback's) latest satisfaction.
    pub satisfaction: Option<Satisfaction>,
    /// Whether a rating is taken now (closed, not yet rated since it closed).
    pub can_rate: bool,
}

/// The citizen's rating of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CitizenRating {
    /// 满意: stays closed, satisfaction recorded.
    Satisfied,
    /// 不满意: the order reopens for a second callback by the supervising unit (W-14).
    Dissatisfied,
}

/// A rating with its comment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenRate {
    pub query_code: String,
    pub phone: String,
    pub rating: CitizenRating,
    /// Why (at most 500 characters).
    #[serde(default)]
    pub comment: String,
}

fn not_found() -> ApiError {
    ApiError::not_found("an order with this query code and phone")
}

fn rating_command(rating: CitizenRating, comment: &str) -> Command {
    let comment = comment.trim();
    match rating {
        CitizenRating::Satisfied => Command::RecordCallback {
            outcome: CallbackOutcome::Satisfied,
            note: if comment.is_empty() {
                "市民网上评价：满意".to_owned()
            } else {
                format!("市民网上评价：满意。{comment}")
            },
        },
        CitizenRating::Dissatisfied => Command::RecordCallback {
            outcome: CallbackOutcome::Dissatisfied,
            note: if comment.is_empty() {
                "市民网上评价：不满意".to_owned()
            } else {
                format!("市民网上评价：不满意。{comment}")
            },
        },
    }
}

/// Whether the citizen may rate `order` now: it is closed and the core takes a
/// callback on it (once per closing, H-11/W-14).
fn ratable(state: &AppState, order: &Order, at: DateTime<FixedOffset>) -> bool {
    if order.state != OrderState::Closed {
        return false;
    }
    let calendar = state.orders.calendar.current();
    let context = state.orders.ctx(&calendar);
    apply(
        order,
        rating_command(CitizenRating::Satisfied, ""),
        &public_actor(CITIZEN_ACTOR, &order.fields.city),
        at,
        &context,
    )
    .is_ok()
}

fn citizen_view(state: &AppState, order: &Order, at: DateTime<FixedOffset>) -> CitizenOrderView {
    let progress = Progress::of(order.state);
    let city = place_name(
        state
            .orders
            .unit_name(&order.fields.city)
            .unwrap_or(order.fields.city.as_str()),
    );
    // The reply is shown once given (a redo keeps the earlier one until replaced).
    let replied = !matches!(progress, Progress::Received | Progress::Dispatched);
    CitizenOrderView {
        query_code: order.id.clone(),
        number: order.number.clone(),
        channel: order.fields.channel,
        category: order.fields.category,
        business_area: order.fields.area,
        city,
        received_at: order.fields.received_at,
        progress,
        progress_text: progress.words().to_owned(),
        contact_name: mask_name(&order.fields.contact.name),
        contact_phone: mask_phone(&order.fields.contact.phone),
        description: order.fields.description.clone(),
        reply: order.reply.clone().filter(|_| replied),
        satisfaction: order.satisfaction,
        can_rate: ratable(state, order, at),
    }
}

/// The order behind a query code and phone; the same 404 for an unknown code and a
/// wrong phone (nothing tells which).
pub(super) async fn citizen_order(
    state: &AppState,
    parts: &Parts,
    code: &str,
    phone: &str,
) -> Result<Order, ApiError> {
    state
        .orders
        .public
        .lookups_per_source
        .hit(&source_key(state, parts), Instant::now())
        .map_err(|e| limited("look-ups from this address", e))?;
    let code = code.trim();
    let wanted = phone_digits(phone);
    if code.is_empty() || code.len() > 64 || wanted.is_empty() {
        return Err(not_found());
    }
    let order = state.store.load_order(code).await?;
    match order {
        Some(order) if phone_digits(&order.fields.contact.phone) == wanted => Ok(order),
        _ => Err(not_found()),
    }
}

#[utoipa::path(post, path = "/api/public/orders/status", tag = "public",
    summary = "A citizen's order by query code and phone (no login; the code and phone in the body, never in the URL): progress and reply, contact masked; 404 alike for an unknown code and a wrong phone; 429 per source address",
    security(()),
    request_body = CitizenQuery,
    responses(
        (status = 200, description = "the order", body = CitizenOrderView),
        (status = 404, description = "no order with this query code and phone", body = ErrorBody),
        (status = 429, description = "too many look-ups from this address: Retry-After", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn order_status(
    State(state): State<AppState>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<CitizenOrderView>, ApiError> {
    require_json(&parts)?;
    let body = body_bytes(body)?;
    let query: CitizenQuery = parse_body(&body)?;
    let order = citizen_order(&state, &parts, &query.query_code, &query.phone).await?;
    Ok(Json(citizen_view(&state, &order, state.orders.clock.now())))
}

#[utoipa::path(post, path = "/api/public/orders/rate", tag = "public",
    summary = "The citizen rates the answer of a closed order, once per closing (no login): satisfied keeps it closed; dissatisfied reopens it for the supervising unit's second callback (TK-SATISFACTION, W-14). 409 not_ratable before it closes or when already rated; 404 as for status",
    security(()),
    request_body = CitizenRate,
    responses(
        (status = 200, description = "the order after the rating", body = CitizenOrderView),
        (status = 404, description = "no order with this query code and phone", body = ErrorBody),
        (status = 409, description = "not_ratable: not closed yet, or already rated since it closed", body = ErrorBody),
        (status = 429, description = "too many look-ups from this address: Retry-After", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn rate(
    State(state): State<AppState>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<CitizenOrderView>, ApiError> {
    require_json(&parts)?;
    let body = body_bytes(body)?;
    let request: CitizenRate = parse_body(&body)?;
    if request.comment.chars().count() > 500 {
        return Err(
            ApiError::unprocessable("invalid_field", "comment: at most 500 characters")
                .with_field("comment"),
        );
    }
    let order = citizen_order(&state, &parts, &request.query_code, &request.phone).await?;
    let at = state.orders.clock.now();
    let not_ratable = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_ratable",
            "the answer can be rated once the order is closed, once per closing",
        )
    };
    if !ratable(&state, &order, at) {
        return Err(not_ratable());
    }
    let calendar = state.orders.calendar.current();
    let context = state.orders.ctx(&calendar);
    let (next, events) = apply(
        &order,
        rating_command(request.rating, &request.comment),
        &public_actor(CITIZEN_ACTOR, &order.fields.city),
        at,
        &context,
    )
    .map_err(|_| not_ratable())?;
    match state
        .store
        .append_order_events(&next, order.version, &events, None, at.timestamp_millis())
        .await
    {
        Ok(()) => {}
        Err(AppendError::Conflict) => return Err(not_ratable()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order = %next.id, rating = ?request.rating, state = %next.state, "citizen rated the answer");
    state.orders.wake_scheduler_for(&next, at);
    Ok(Json(citizen_view(&state, &next, at)))
}
