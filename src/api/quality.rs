//! Quality review of answers (H-15, H-17-3/4, H-12): supervisors draw a sample of the
//! period's recorded calls and web answers (by rule — dissatisfied callers,
//! complaints, long calls — and at random with a seed, `crate::assessment::quality`),
//! score each on the rubric of `[quality]` with a comment, beside the call's
//! recording (`/api/recordings/{call_id}`); the reviewed person sees their own scores
//! and may appeal once (a second appeal is 409); scores roll up per person, unit and
//! city (`GET /api/quality/scores`, and the published reports).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::error::{ApiError, ErrorBody};
use super::orders::{decode_query, parse_body, parse_period};
use crate::assessment::quality::{
    Candidate, Rollup, RubricItem, SampleReason, Scored, SubjectKind, rollup, sample,
};
use crate::ivr::flow::{CallCategory, SurveyResult};
use crate::store::orders::{OrderFilter, OrderSort};
use crate::store::quality::{ReviewFilter, StoredReview};
use crate::ticket::{Channel, Period, Role};

/// At most this many web orders are read for one sample.
const MAX_ORDERS: i64 = 100_000;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(draw_sample))
        .routes(routes!(list_reviews))
        .routes(routes!(score_review))
        .routes(routes!(appeal_review))
        .routes(routes!(scores))
        .routes(routes!(rubric))
}

fn require_reviewer(user: &User) -> Result<(), ApiError> {
    if user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "quality review is for supervisors and province administrators",
        ))
    }
}

fn period_of(text: Option<&str>) -> Result<Option<Period>, ApiError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => parse_period(t).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "period must look like 2026-11, 2026-Q4 or 2026",
            )
            .with_field("period")
        }),
    }
}

/// One review as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewView {
    pub id: String,
    pub subject_kind: SubjectKind,
    /// The call id (its recording: `recording_url`) or the order id.
    pub subject_id: String,
    /// When the call arrived or the order was received (RFC 3339).
    pub subject_at: String,
    /// The reviewed person (user id; `agent:<ext>` when no user works as the agent).
    pub person: String,
    pub person_name: String,
    pub unit: String,
    pub city: String,
    pub reason: SampleReason,
    pub sampled_by: String,
    /// The recording to play beside the form (calls).
    pub recording_url: Option<String>,
    /// The order's written answer (web answers).
    pub answer: Option<String>,
    pub reviewer: Option<String>,
    /// Marks per rubric item (0–100).
    pub marks: Option<BTreeMap<String, u32>>,
    /// 0–100, one decimal.
    pub score: Option<f64>,
    pub comment: Option<String>,
    pub appeal: Option<String>,
    pub appealed_at: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    use chrono::TimeZone;
    crate::calendar::shanghai()
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn review_view(state: &AppState, r: StoredReview, answer: Option<String>) -> ReviewView {
    let kind = if r.subject_kind == "call" {
        SubjectKind::Call
    } else {
        SubjectKind::WebAnswer
    };
    let reason = match r.reason.as_str() {
        "dissatisfied" => SampleReason::Dissatisfied,
        "complaint" => SampleReason::Complaint,
        "long_call" => SampleReason::LongCall,
        _ => SampleReason::Random,
    };
    ReviewView {
        person_name: state
            .auth
            .user(&r.person)
            .map_or_else(|| r.person.clone(), |u| u.name.clone()),
        recording_url: (kind == SubjectKind::Call)
            .then(|| format!("/api/recordings/{}", r.subject_id)),
        answer,
        subject_at: rfc3339(r.subject_ms),
        marks: r
            .marks
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
        score: r.score_tenths.map(|t| t as f64 / 10.0),
        appealed_at: r.appealed_ms.map(rfc3339),
        id: r.id,
        subject_kind: kind,
        subject_id: r.subject_id,
        person: r.person,
        unit: r.unit,
        city: r.city,
        reason,
        sampled_by: r.sampled_by,
        reviewer: r.reviewer,
        comment: r.comment,
        appeal: r.appeal,
    }
}

/// `POST /api/quality/samples`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    /// 2026-11 | 2026-Q4 | 2026: the calls and orders of this period.
    pub period: String,
    /// Drawn at random besides the rule's picks (default `[quality] random_per_draw`).
    pub random: Option<usize>,
    /// The random draw's seed (default: a fresh one, answered).
    pub seed: Option<u64>,
}

/// The sample drawn.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SampleAnswer {
    /// The seed of the random draw: the same seed over the same data draws the same.
    pub seed: u64,
    /// Calls and answers considered.
    pub candidates: usize,
    /// The new reviews.
    pub sampled: Vec<ReviewView>,
}

struct Subject {
    candidate: Candidate,
    at_ms: i64,
    person: String,
    unit: String,
    city: String,
}

#[utoipa::path(post, path = "/api/quality/samples", tag = "assessment",
    summary = "Draw a quality-review sample of a period's recorded calls and web answers: dissatisfied, complaints, long calls, and a seeded random draw (H-15, H-17)",
    request_body = SampleRequest,
    responses((status = 201, description = "the reviews opened", body = SampleAnswer), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn draw_sample(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Bytes,
) -> Result<(StatusCode, Json<SampleAnswer>), ApiError> {
    require_reviewer(&user)?;
    let ask: SampleRequest = parse_body(&body)?;
    let period = period_of(Some(&ask.period))?.ok_or_else(|| {
        ApiError::bad_request("invalid_body", "period is required").with_field("period")
    })?;
    let ctx = &state.orders;
    let random = ask.random.unwrap_or(ctx.quality.random_per_draw);
    if random > 1000 {
        return Err(
            ApiError::bad_request("invalid_body", "random must be at most 1000")
                .with_field("random"),
        );
    }
    let seed = ask.seed.unwrap_or_else(rand::random);
    let scope = ctx.scope_of(&user.unit);
    let in_scope = |unit: &str| scope.as_ref().is_none_or(|s| s.iter().any(|u| u == unit));
    let (from, to) = (period.from.timestamp_millis(), period.to.timestamp_millis());
    let mut subjects: Vec<Subject> = Vec::new();
    for call in state.store.answered_calls(from, to).await? {
        let city = call
            .city
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        if !in_scope(&city) {
            continue;
        }
        let Some(agent) = call.agent.clone() else {
            continue;
        };
        let (person, unit) = match state.auth.user_of_agent(&agent) {
            Some(u) => (u.id.clone(), u.unit.as_str().to_owned()),
            None => (format!("agent:{agent}"), city.clone()),
        };
        let talk_secs = match (call.agent_answer, call.end) {
            (Some(a), Some(e)) => u64::try_from((e - a).num_seconds()).unwrap_or(0),
            _ => 0,
        };
        subjects.push(Subject {
            candidate: Candidate {
                kind: SubjectKind::Call,
                id: format!("call:{}", call.call_id),
                complaint: call.category == Some(CallCategory::Complaint),
                dissatisfied: call.survey == Some(SurveyResult::Dissatisfied),
                talk_secs,
            },
            at_ms: call.arrival.timestamp_millis(),
            person,
            unit,
            city,
        });
    }
    let filter = OrderFilter {
        scope: scope.clone(),
        scope_unit: Some(user.unit.as_str().to_owned()),
        received_from_ms: Some(from),
        received_until_ms: Some(to),
        now_ms: ctx.clock.now().timestamp_millis(),
        sort: OrderSort::Created,
        limit: MAX_ORDERS,
        ..OrderFilter::default()
    };
    let (orders, _) = state
        .store
        .list_orders(&filter)
        .await
        .map_err(|e| ApiError::database_unavailable(&e))?;
    for order in orders
        .iter()
        .filter(|o| o.fields.channel == Channel::Web && o.reply.is_some())
    {
        // The person who wrote the answer: the actor of the answering event.
        let events = state.store.order_events(order.id.0.as_str()).await?;
        let Some(answer) = events.iter().rev().find(|e| {
            let kind = serde_json::from_str::<serde_json::Value>(&e.kind)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_else(|| e.kind.clone());
            kind == "answered_directly" || kind == "replied"
        }) else {
            continue;
        };
        subjects.push(Subject {
            candidate: Candidate {
                kind: SubjectKind::WebAnswer,
                id: format!("web_answer:{}", order.id.0),
                complaint: order.fields.category == crate::ticket::Category::Complaint,
                dissatisfied: order.satisfaction == Some(crate::ticket::Satisfaction::Dissatisfied),
                talk_secs: 0,
            },
            at_ms: order.fields.received_at.timestamp_millis(),
            person: answer.actor.clone(),
            unit: answer.unit.clone(),
            city: order.fields.city.as_str().to_owned(),
        });
    }
    let already: BTreeSet<String> = state.store.review_ids().await?.into_iter().collect();
    let candidates: Vec<Candidate> = subjects.iter().map(|s| s.candidate.clone()).collect();
    let picked = sample(&candidates, &ctx.quality, random, seed, &already);
    let now_ms = ctx.clock.now().timestamp_millis();
    let mut sampled = Vec::new();
    for (i, reason) in picked {
        let s = &subjects[i];
        let (kind, subject_id) = s
            .candidate
            .id
            .split_once(':')
            .unwrap_or(("call", s.candidate.id.as_str()));
        let row = StoredReview {
            id: s.candidate.id.clone(),
            subject_kind: kind.to_owned(),
            subject_id: subject_id.to_owned(),
            subject_ms: s.at_ms,
            person: s.person.clone(),
            unit: s.unit.clone(),
            city: s.city.clone(),
            reason: reason.as_str().to_owned(),
            sampled_by: user.id.clone(),
            sampled_ms: now_ms,
            reviewer: None,
            scored_ms: None,
            marks: None,
            score_tenths: None,
            comment: None,
            appeal: None,
            appealed_ms: None,
        };
        if state.store.insert_review(&row).await? {
            sampled.push(review_view(&state, row, None));
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(SampleAnswer {
            seed,
            candidates: candidates.len(),
            sampled,
        }),
    ))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReviewsQuery {
    /// 2026-11 | 2026-Q4 | 2026 (the subject's time); default: every review.
    period: Option<String>,
    /// `true`: only the user's own reviews (what an agent sees; the default for
    /// users who are not reviewers).
    mine: Option<String>,
}

/// `GET /api/quality/reviews`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReviewList {
    /// The rubric the marks are for.
    pub rubric: Vec<RubricItem>,
    pub reviews: Vec<ReviewView>,
}

#[utoipa::path(get, path = "/api/quality/reviews", tag = "assessment",
    summary = "Quality reviews: a reviewer's of their cities, or the user's own scores",
    params(ReviewsQuery),
    responses((status = 200, description = "the reviews", body = ReviewList), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn list_reviews(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<ReviewList>, ApiError> {
    let q: ReviewsQuery = match raw.as_deref() {
        None | Some("") => ReviewsQuery::default(),
        Some(text) => decode_query(text)?,
    };
    let reviewer = user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin);
    let mine = match q.mine.as_deref() {
        None | Some("") => !reviewer,
        Some("true") => true,
        Some("false") if reviewer => false,
        Some("false") => return Err(ApiError::forbidden("only your own reviews")),
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_query", "mine must be true or false")
                    .with_field("mine"),
            );
        }
    };
    let period = period_of(q.period.as_deref())?;
    let filter = ReviewFilter {
        person: mine.then(|| user.id.clone()),
        cities: if mine {
            None
        } else {
            state.orders.scope_of(&user.unit)
        },
        subject: period.map(|p| (p.from.timestamp_millis(), p.to.timestamp_millis())),
        // The reviewed person sees a review once it is scored.
        scored: mine,
    };
    let mut reviews = Vec::new();
    for r in state.store.reviews(&filter).await? {
        let answer = if r.subject_kind == "web_answer" {
            state
                .store
                .load_order(&r.subject_id)
                .await?
                .and_then(|o| o.reply)
        } else {
            None
        };
        reviews.push(review_view(&state, r, answer));
    }
    Ok(Json(ReviewList {
        rubric: state.orders.quality.rubric.clone(),
        reviews,
    }))
}

/// `POST /api/quality/reviews/{id}/score`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// A mark 0–100 for every rubric item, by its key.
    pub marks: BTreeMap<String, u32>,
    /// The reviewer's comment.
    #[serde(default)]
    pub comment: String,
}

async fn review_in_scope(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<StoredReview, ApiError> {
    let review = state
        .store
        .review(id)
        .await?
        .ok_or_else(|| ApiError::not_found("review"))?;
    let scope = state.orders.scope_of(&user.unit);
    if scope.is_some_and(|s| !s.contains(&review.city)) {
        return Err(ApiError::not_found("review"));
    }
    Ok(review)
}

#[utoipa::path(post, path = "/api/quality/reviews/{id}/score", tag = "assessment",
    summary = "Score a sampled call or answer on the rubric, with a comment (again after an appeal)",
    params(("id" = String, Path, description = "call:<call id> or web_answer:<order id>")),
    request_body = ScoreRequest,
    responses((status = 200, description = "the scored review", body = ReviewView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn score_review(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Json<ReviewView>, ApiError> {
    require_reviewer(&user)?;
    let ask: ScoreRequest = parse_body(&body)?;
    let review = review_in_scope(&state, &user, &id).await?;
    if review.person == user.id {
        return Err(ApiError::forbidden("nobody scores their own answers"));
    }
    let score =
        state.orders.quality.score(&ask.marks).map_err(|e| {
            ApiError::unprocessable("invalid_marks", e.to_string()).with_field("marks")
        })?;
    if ask.comment.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the comment is at most 2000 characters",
        )
        .with_field("comment"));
    }
    let marks = serde_json::to_string(&ask.marks).map_err(|e| ApiError::internal(&e))?;
    let now = state.orders.clock.now().timestamp_millis();
    state
        .store
        .score_review(&id, &user.id, &marks, i64::from(score), &ask.comment, now)
        .await?;
    let stored = review_in_scope(&state, &user, &review.id).await?;
    Ok(Json(review_view(&state, stored, None)))
}

/// `POST /api/quality/reviews/{id}/appeal`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealRequest {
    /// Why the score is wrong.
    pub reason: String,
}

#[utoipa::path(post, path = "/api/quality/reviews/{id}/appeal", tag = "assessment",
    summary = "The reviewed person appeals their score, once (a second appeal is 409)",
    params(("id" = String, Path, description = "call:<call id> or web_answer:<order id>")),
    request_body = AppealRequest,
    responses((status = 200, description = "the review with its appeal", body = ReviewView), (status = 409, description = "already appealed", body = ErrorBody), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn appeal_review(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Json<ReviewView>, ApiError> {
    let ask: AppealRequest = parse_body(&body)?;
    let reason = ask.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(
            ApiError::bad_request("invalid_body", "the reason is 1 to 2000 characters")
                .with_field("reason"),
        );
    }
    let review = state
        .store
        .review(&id)
        .await?
        .filter(|r| r.person == user.id)
        .ok_or_else(|| ApiError::not_found("review"))?;
    if review.score_tenths.is_none() {
        return Err(ApiError::unprocessable(
            "not_scored",
            "the review has no score to appeal yet",
        ));
    }
    let now = state.orders.clock.now().timestamp_millis();
    if !state.store.appeal_review(&id, reason, now).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_appealed",
            "a score is appealed once",
        ));
    }
    let stored = state
        .store
        .review(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("review"))?;
    Ok(Json(review_view(&state, stored, None)))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ScoresQuery {
    /// 2026-11 | 2026-Q4 | 2026 (the subject's time); default: every review.
    period: Option<String>,
}

/// The scores of a period of the user's cities, rolled up.
///
/// # Errors
/// Database errors.
pub(crate) async fn compute_scores(
    state: &AppState,
    cities: Option<Vec<String>>,
    period: Option<Period>,
) -> Result<Rollup, ApiError> {
    let filter = ReviewFilter {
        person: None,
        cities,
        subject: period.map(|p| (p.from.timestamp_millis(), p.to.timestamp_millis())),
        scored: true,
    };
    let scored: Vec<Scored> = state
        .store
        .reviews(&filter)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(Scored {
                score: u32::try_from(r.score_tenths?).ok()?,
                person: r.person,
                unit: r.unit,
                city: r.city,
            })
        })
        .collect();
    Ok(rollup(&scored))
}

#[utoipa::path(get, path = "/api/quality/scores", tag = "assessment",
    summary = "Quality scores rolled up per person, unit and city (H-15 per-person assessment)",
    params(ScoresQuery),
    responses((status = 200, description = "the averages", body = Rollup), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn scores(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<Rollup>, ApiError> {
    require_reviewer(&user)?;
    let q: ScoresQuery = match raw.as_deref() {
        None | Some("") => ScoresQuery::default(),
        Some(text) => decode_query(text)?,
    };
    let period = period_of(q.period.as_deref())?;
    let cities = state.orders.scope_of(&user.unit);
    compute_scores(&state, cities, period).await.map(Json)
}

#[utoipa::path(get, path = "/api/quality/rubric", tag = "assessment",
    summary = "The rubric of `[quality]`: items, names and weights",
    responses((status = 200, description = "the rubric", body = Vec<RubricItem>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn rubric(
    State(state): State<AppState>,
    CurrentUser(_user): CurrentUser,
) -> Json<Vec<RubricItem>> {
    Json(state.orders.quality.rubric.clone())
}
