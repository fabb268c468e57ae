//! Violations and rectification (H-16, H-17): supervisors register a fault of a unit
//! (or one of its people) — unreachable line, agent absent from duty, paid referral,
//! poor service, concealment — with a rectification deadline (限期整改) counted on the
//! working-day calendar like an order's limits; the unit records its rectification
//! once; the state (整改中 / 逾期未整改 / 已整改 / 逾期整改) is judged at the server's
//! clock. Praise and criticism circulars (通报) are written from the register and the
//! quality review scores: `GET /api/circulars`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, FixedOffset, TimeZone};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::error::{ApiError, ErrorBody};
use super::orders::{decode_query, parse_body, parse_period};
use crate::assessment::violations::{
    Fault, MAX_RECTIFICATION_DAYS, Praise, RectificationState, ViolationKind, circular_text,
    rectification_due, rectification_state,
};
use crate::calendar::shanghai;
use crate::store::violations::StoredViolation;
use crate::ticket::{Role, UnitId};

/// Rectification days when none are given.
pub const DEFAULT_RECTIFICATION_DAYS: u32 = 5;
/// A quality average at least this high earns praise.
pub const PRAISE_SCORE: f64 = 90.0;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_violation, list_violations))
        .routes(routes!(rectified))
        .routes(routes!(circulars))
}

fn is_reviewer(user: &User) -> bool {
    user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin)
}

fn at_ms(ms: i64) -> DateTime<FixedOffset> {
    shanghai()
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(|| {
            shanghai()
                .timestamp_millis_opt(0)
                .single()
                .unwrap_or_default()
                .fixed_offset()
        })
}

/// `3月9日 24:00`: the day the deadline ends, as a bureau writes it.
fn bureau_due(due: DateTime<FixedOffset>) -> String {
    let last = due - chrono::TimeDelta::seconds(1);
    format!("{}月{}日 24:00", last.month(), last.day())
}

/// `POST /api/violations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterViolation {
    /// The unit at fault.
    pub unit: String,
    /// The person at fault (user id), if one.
    pub person: Option<String>,
    pub kind: ViolationKind,
    /// What happened.
    pub description: String,
    /// Working days to rectify (default 5, at most 30).
    pub working_days: Option<u32>,
}

/// One registered fault.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ViolationView {
    pub id: String,
    pub unit: String,
    pub unit_name: String,
    pub person: Option<String>,
    pub person_name: Option<String>,
    pub kind: ViolationKind,
    pub kind_name: &'static str,
    pub description: String,
    pub registered_by: String,
    pub registered_at: String,
    pub working_days: i64,
    /// RFC 3339 (24:00 of the last day is 00:00 of the next).
    pub due: String,
    /// As a bureau writes it: `3月9日 24:00（5个工作日）`.
    pub due_text: String,
    pub state: RectificationState,
    pub state_name: &'static str,
    pub rectified_at: Option<String>,
    pub rectified_by: Option<String>,
    pub rectification: Option<String>,
}

fn view(state: &AppState, v: StoredViolation, now: DateTime<FixedOffset>) -> ViolationView {
    let due = at_ms(v.due_ms);
    let done = v.done_ms.map(at_ms);
    let st = rectification_state(due, done, now);
    let kind = ViolationKind::parse(&v.kind).unwrap_or(ViolationKind::Other);
    ViolationView {
        unit_name: state
            .orders
            .unit_name(&UnitId::new(v.unit.as_str()))
            .unwrap_or_default()
            .to_owned(),
        person_name: v
            .person
            .as_deref()
            .and_then(|p| state.auth.user(p).map(|u| u.name.clone())),
        kind,
        kind_name: kind.chinese(),
        registered_at: at_ms(v.registered_ms).to_rfc3339(),
        due: due.to_rfc3339(),
        due_text: v.due_text,
        state: st,
        state_name: st.chinese(),
        rectified_at: done.map(|d| d.to_rfc3339()),
        id: v.id,
        unit: v.unit,
        person: v.person,
        description: v.description,
        registered_by: v.registered_by,
        working_days: v.working_days,
        rectified_by: v.done_by,
        rectification: v.rectification,
    }
}

#[utoipa::path(post, path = "/api/violations", tag = "assessment",
    summary = "Register a fault of a unit or person with its rectification deadline in working days (H-16, H-17)",
    request_body = RegisterViolation,
    responses((status = 201, description = "the registered fault", body = ViolationView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn register_violation(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Bytes,
) -> Result<(StatusCode, Json<ViolationView>), ApiError> {
    if !is_reviewer(&user) {
        return Err(ApiError::forbidden(
            "faults are registered by supervisors and province administrators",
        ));
    }
    let ask: RegisterViolation = parse_body(&body)?;
    let ctx = &state.orders;
    let unit = UnitId::new(ask.unit.as_str());
    if ctx.units.get(&unit).is_none() || !ctx.units.covers(&user.unit, &unit) {
        return Err(
            ApiError::unprocessable("no_such_unit", "no such unit in your scope")
                .with_field("unit"),
        );
    }
    if let Some(person) = &ask.person
        && state.auth.user(person).is_none()
    {
        return Err(ApiError::unprocessable("no_such_person", "no such user").with_field("person"));
    }
    let description = ask.description.trim();
    if description.is_empty() || description.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the description is 1 to 2000 characters",
        )
        .with_field("description"));
    }
    let days = ask.working_days.unwrap_or(DEFAULT_RECTIFICATION_DAYS);
    if days == 0 || days > MAX_RECTIFICATION_DAYS {
        return Err(
            ApiError::bad_request("invalid_body", "working_days is 1 to 30")
                .with_field("working_days"),
        );
    }
    let now = ctx.clock.now();
    let due = rectification_due(&ctx.calendar.current(), now, days);
    let row = StoredViolation {
        id: format!(
            "WG{}{:04}",
            now.format("%Y%m%d%H%M%S%3f"),
            rand::random::<u16>() % 10_000
        ),
        unit: ask.unit,
        person: ask.person,
        kind: ask.kind.as_str().to_owned(),
        description: description.to_owned(),
        registered_by: user.id.clone(),
        registered_ms: now.timestamp_millis(),
        working_days: i64::from(days),
        due_ms: due.at.timestamp_millis(),
        due_text: format!("{}（{days}个工作日）", bureau_due(due.at)),
        done_ms: None,
        done_by: None,
        rectification: None,
    };
    state.store.insert_violation(&row).await?;
    Ok((StatusCode::CREATED, Json(view(&state, row, now))))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ViolationsQuery {
    /// 2026-11 | 2026-Q4 | 2026 (registered in it); default: every fault.
    period: Option<String>,
}

fn period_range(text: Option<&str>) -> Result<(i64, i64), ApiError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok((i64::MIN, i64::MAX)),
        Some(t) => parse_period(t)
            .map(|p| (p.from.timestamp_millis(), p.to.timestamp_millis()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "period must look like 2026-11, 2026-Q4 or 2026",
                )
                .with_field("period")
            }),
    }
}

/// `GET /api/violations`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ViolationList {
    pub violations: Vec<ViolationView>,
}

#[utoipa::path(get, path = "/api/violations", tag = "assessment",
    summary = "The register of faults in the user's unit subtree, each with its rectification state now",
    params(ViolationsQuery),
    responses((status = 200, description = "the faults", body = ViolationList), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn list_violations(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<ViolationList>, ApiError> {
    let q: ViolationsQuery = match raw.as_deref() {
        None | Some("") => ViolationsQuery::default(),
        Some(text) => decode_query(text)?,
    };
    let (from, to) = period_range(q.period.as_deref())?;
    let now = state.orders.clock.now();
    let units = &state.orders.units;
    let violations = state
        .store
        .violations(from, to)
        .await?
        .into_iter()
        .filter(|v| units.covers(&user.unit, &UnitId::new(v.unit.as_str())))
        .map(|v| view(&state, v, now))
        .collect();
    Ok(Json(ViolationList { violations }))
}

/// `POST /api/violations/{id}/rectified`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rectified {
    /// What was done.
    pub note: String,
}

#[utoipa::path(post, path = "/api/violations/{id}/rectified", tag = "assessment",
    summary = "The unit records its rectification, once (a second is 409)",
    params(("id" = String, Path, description = "the fault's id")),
    request_body = Rectified,
    responses((status = 200, description = "the fault, rectified", body = ViolationView), (status = 409, description = "already rectified", body = ErrorBody), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn rectified(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Result<Json<ViolationView>, ApiError> {
    let ask: Rectified = parse_body(&body)?;
    let note = ask.note.trim();
    if note.is_empty() || note.chars().count() > 2000 {
        return Err(
            ApiError::bad_request("invalid_body", "the note is 1 to 2000 characters")
                .with_field("note"),
        );
    }
    let units = &state.orders.units;
    let found = state
        .store
        .violation(&id)
        .await?
        .filter(|v| units.covers(&user.unit, &UnitId::new(v.unit.as_str())))
        .ok_or_else(|| ApiError::not_found("violation"))?;
    let now = state.orders.clock.now();
    if !state
        .store
        .rectify_violation(&found.id, &user.id, note, now.timestamp_millis())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_rectified",
            "the rectification is recorded once",
        ));
    }
    let stored = state
        .store
        .violation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("violation"))?;
    Ok(Json(view(&state, stored, now)))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CircularQuery {
    /// 2026-11 | 2026-Q4 | 2026.
    period: String,
    /// text (default) | html.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/circulars", tag = "assessment",
    summary = "Praise and criticism circulars (通报) of a period, written from the register of faults and the quality scores (text or printable HTML)",
    params(CircularQuery),
    responses((status = 200, description = "the circular", content((String = "text/plain"), (String = "text/html"))), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn circulars(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if !is_reviewer(&user) {
        return Err(ApiError::forbidden(
            "circulars are for supervisors and province administrators",
        ));
    }
    let q: CircularQuery = decode_query(raw.as_deref().unwrap_or_default())?;
    let html = match q.format.as_deref() {
        None | Some("" | "text") => false,
        Some("html") => true,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_query", "format must be text or html")
                    .with_field("format"),
            );
        }
    };
    let period = parse_period(&q.period).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            "period must look like 2026-11, 2026-Q4 or 2026",
        )
        .with_field("period")
    })?;
    let period_name = crate::assessment::periods::ReportPeriod::parse(&q.period)
        .map_or_else(|| q.period.clone(), |p| p.chinese());
    let now = state.orders.clock.now();
    let units = &state.orders.units;
    let in_scope: Vec<StoredViolation> = state
        .store
        .violations(period.from.timestamp_millis(), period.to.timestamp_millis())
        .await?
        .into_iter()
        .filter(|v| units.covers(&user.unit, &UnitId::new(v.unit.as_str())))
        .collect();
    let faults: Vec<Fault> = in_scope
        .iter()
        .cloned()
        .map(|v| {
            let shown = view(&state, v, now);
            Fault {
                unit_name: shown.unit_name,
                person_name: shown.person_name,
                kind: shown.kind,
                description: shown.description,
                due: shown.due_text,
                state: shown.state,
            }
        })
        .collect();
    // Praise: units and people whose quality reviews average at least 90 points in the
    // period and who have no fault registered in it.
    let scores =
        super::quality::compute_scores(&state, state.orders.scope_of(&user.unit), Some(period))
            .await?;
    let faulted = |key: &str| {
        in_scope
            .iter()
            .any(|v| v.unit == key || v.person.as_deref() == Some(key))
    };
    let mut praise = Vec::new();
    for a in scores
        .by_unit
        .iter()
        .filter(|a| a.score >= PRAISE_SCORE && !faulted(&a.key))
    {
        praise.push(Praise {
            name: state
                .orders
                .unit_name(&UnitId::new(a.key.as_str()))
                .unwrap_or(&a.key)
                .to_owned(),
            merit: format!("服务质量评查平均 {:.1} 分（{} 件）", a.score, a.reviews),
        });
    }
    for a in scores
        .by_person
        .iter()
        .filter(|a| a.score >= PRAISE_SCORE && !faulted(&a.key))
    {
        praise.push(Praise {
            name: state
                .auth
                .user(&a.key)
                .map_or_else(|| a.key.clone(), |u| u.name.clone()),
            merit: format!("服务质量评查平均 {:.1} 分（{} 件）", a.score, a.reviews),
        });
    }
    let text = circular_text(&period_name, &praise, &faults);
    if html {
        let mut page = String::from(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>通报</title>\
             <style>body{font-family:\"Noto Sans CJK SC\",sans-serif;margin:2em;line-height:1.8}\
             h1{font-size:20px;text-align:center}</style></head><body>",
        );
        for block in text.split("\n\n") {
            let escaped = block
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            if escaped.starts_with("关于") && !escaped.contains('\n') {
                page.push_str(&format!("<h1>{escaped}</h1>"));
            } else {
                page.push_str(&format!("<p>{}</p>", escaped.replace('\n', "<br>")));
            }
        }
        page.push_str("</body></html>\n");
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
