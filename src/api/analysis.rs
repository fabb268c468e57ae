//! `GET /api/analysis/topics`: hot, difficult and focal issues (H-11, H-6) over the
//! work orders of the user's unit subtree, per week or month, for supervisors and
//! province administrators. The rules are [`crate::analysis`]'s, printed with every
//! answer.

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::TimeZone;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ErrorBody};
use crate::analysis::{self, Granularity, OrderFacts, Period, TopicTrend};
use crate::calendar::shanghai;
use crate::store::orders::{OrderFilter, OrderSort};
use crate::ticket::{Role, UnitId, is_overdue};

/// At most this many orders are read for one analysis (nine months of a province's
/// calls are far fewer); more is refused rather than answered from a part.
const MAX_ORDERS: i64 = 200_000;
/// Topics answered by default and at most.
const DEFAULT_TOPICS: usize = 30;
const MAX_TOPICS: usize = 200;

/// How the flags are decided, printed with every answer.
pub const RULES: &str = "Topics of an order: its 3 words of highest TF-IDF (legal terms of config/analysis/legal-terms.txt weigh double; nouns of 2+ characters, stop words dropped). Hot: at least 3 orders in the current period and z = (current - mean of the 8 periods before) / max(their standard deviation, 1) >= 2. Difficult: at least 2 of its orders, and a quarter of them, returned or past a limit. Focal: asked about in 3 or more cities, or 2 or more of its orders involve several units.";

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(topics))
        .routes(routes!(summary))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TopicsQuery {
    /// `week` (default) or `month`.
    period: Option<Granularity>,
    /// Only orders of this city (unit id) within the user's scope.
    city: Option<String>,
    /// How many topics (default 30, at most 200).
    limit: Option<usize>,
}

/// The analysis.
#[derive(Serialize, utoipa::ToSchema)]
struct TopicsView {
    granularity: Granularity,
    /// The periods, oldest first; the last is the current one.
    periods: Vec<Period>,
    /// The city analysed, if one was asked for.
    city: Option<String>,
    /// Orders analysed.
    orders: usize,
    /// Most asked about in the current period first.
    topics: Vec<TopicTrend>,
    /// How topics and flags are decided.
    rules: &'static str,
}

#[utoipa::path(get, path = "/api/analysis/topics", tag = "assessment",
    summary = "Hot, difficult and focal issues per week or month in the user's unit subtree (H-11)",
    params(TopicsQuery),
    responses((status = 200, description = "the topics", body = TopicsView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody), (status = 503, description = "the database or the word lists are unavailable", body = ErrorBody)))]
async fn topics(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<TopicsView>, ApiError> {
    if !(user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin)) {
        return Err(ApiError::forbidden(
            "the analysis is for supervisors and province administrators",
        ));
    }
    let q: TopicsQuery = match raw.as_deref() {
        None | Some("") => TopicsQuery::default(),
        Some(text) => super::orders::decode_query(text)?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_TOPICS);
    if limit == 0 || limit > MAX_TOPICS {
        return Err(
            ApiError::bad_request("invalid_query", "limit must be 1 to 200").with_field("limit"),
        );
    }
    let ctx = &state.orders;
    if let Some(city) = &q.city
        && ctx.units.get(&UnitId::new(city.as_str())).is_none()
    {
        return Err(ApiError::bad_request("invalid_query", "no such city").with_field("city"));
    }
    let now = ctx.clock.now();
    let granularity = q.period.unwrap_or_default();
    let periods = analysis::periods(now.date_naive(), granularity);
    let (orders, topics) = compute_topics(
        &state,
        ctx.scope_of(&user.unit),
        Some(user.unit.as_str().to_owned()),
        q.city.clone(),
        periods.clone(),
        now,
        limit,
    )
    .await?;
    Ok(Json(TopicsView {
        granularity,
        periods,
        city: q.city,
        orders,
        topics,
        rules: RULES,
    }))
}

/// The topics of the orders of `scope` (`None`: every order; `scope_unit` the unit
/// it is of) and `city` over `periods` (the last the current one), judged at `now`:
/// what `GET /api/analysis/topics` answers and what the published reports print.
/// Returns the number of orders analysed and the topics.
///
/// # Errors
/// 503 when the word lists or the database are unavailable, 422 for too many orders.
pub(crate) async fn compute_topics(
    state: &AppState,
    scope: Option<Vec<String>>,
    scope_unit: Option<String>,
    city: Option<String>,
    periods: Vec<Period>,
    now: chrono::DateTime<chrono::FixedOffset>,
    limit: usize,
) -> Result<(usize, Vec<TopicTrend>), ApiError> {
    let ctx = &state.orders;
    let segmenter = ctx.analysis.segmenter().map_err(|e| {
        tracing::warn!(%e, "analysis word lists not loaded");
        ApiError::unavailable(
            "analysis_unavailable",
            format!("the analysis word lists are not loaded: {e}"),
        )
    })?;
    let start_ms = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .and_then(|t| shanghai().from_local_datetime(&t).single())
            .map(|t| t.timestamp_millis())
    };
    let (Some(from), Some(until)) = (
        periods.first().and_then(|p| start_ms(p.start)),
        periods.last().and_then(|p| start_ms(p.end)),
    ) else {
        return Err(ApiError::bad_request("invalid_query", "no such period"));
    };
    let filter = OrderFilter {
        city,
        scope,
        scope_unit,
        received_from_ms: Some(from),
        received_until_ms: Some(until),
        now_ms: now.timestamp_millis(),
        sort: OrderSort::Created,
        limit: MAX_ORDERS + 1,
        ..OrderFilter::default()
    };
    let (orders, _) = state
        .store
        .list_orders(&filter)
        .await
        .map_err(|e| ApiError::database_unavailable(&e))?;
    if orders.len() as i64 > MAX_ORDERS {
        return Err(ApiError::unprocessable(
            "too_many_orders",
            "more than 200000 orders in the periods: ask for one city",
        )
        .with_field("city"));
    }
    let facts: Vec<OrderFacts> = orders
        .iter()
        .map(|o| OrderFacts {
            city: o.fields.city.as_str().to_owned(),
            received: o.fields.received_at,
            text: o.fields.description.clone(),
            troubled: !o.returned_by.is_empty() || o.redo_count > 0 || is_overdue(o, now),
            units: o.assignments.len().max(o.fields.units_involved.len()),
        })
        .collect();
    // Segmenting a few thousand descriptions takes a while: not on the executor.
    let analysed =
        tokio::task::spawn_blocking(move || analysis::analyse(&segmenter, &facts, &periods, limit))
            .await
            .map_err(|e| ApiError::internal(&e))?;
    Ok((orders.len(), analysed))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    /// 2026-11 | 2026-Q4 | 2026 (required).
    period: Option<String>,
    /// Only this city (unit id) within the user's scope.
    city: Option<String>,
    /// json (default) | csv.
    format: Option<String>,
}

/// One topic of a summary.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SummaryTopic {
    topic: String,
    /// Orders in the period.
    count: u32,
    /// Orders in the period before.
    previous: u32,
    /// count − previous.
    change: i64,
    hot: bool,
    /// Up to 2 of its orders' descriptions, numbers and names masked.
    samples: Vec<String>,
}

/// One urgent order of the period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct UrgentEvent {
    order: String,
    received_at: String,
    city: String,
    /// Masked.
    description: String,
}

/// `GET /api/analysis/summary` (H-6).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SentimentSummary {
    period: String,
    city: Option<String>,
    /// Orders received in the period.
    orders: usize,
    topics: Vec<SummaryTopic>,
    urgent: Vec<UrgentEvent>,
}

/// Topics in a summary.
const SUMMARY_TOPICS: usize = 10;

#[utoipa::path(get, path = "/api/analysis/summary", tag = "assessment",
    summary = "Public-sentiment summary of a city and period (H-6): top topics with counts and change, masked sample descriptions, urgent events; format=csv exports it",
    params(SummaryQuery),
    responses((status = 200, description = "the summary (CSV: one row per topic and urgent event)", content((SentimentSummary = "application/json"), (String = "text/csv"))), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn summary(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if !(user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin)) {
        return Err(ApiError::forbidden(
            "the analysis is for supervisors and province administrators",
        ));
    }
    let q: SummaryQuery = match raw.as_deref() {
        None | Some("") => SummaryQuery::default(),
        Some(text) => super::orders::decode_query(text)?,
    };
    let period_text = q.period.clone().unwrap_or_default();
    let bad_period = || {
        ApiError::bad_request(
            "invalid_query",
            "period must look like 2026-11, 2026-Q4 or 2026",
        )
        .with_field("period")
    };
    let current =
        crate::assessment::periods::ReportPeriod::parse(&period_text).ok_or_else(bad_period)?;
    let previous = current.previous().ok_or_else(bad_period)?;
    let csv = match q.format.as_deref() {
        None | Some("" | "json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_query", "format must be json or csv")
                    .with_field("format"),
            );
        }
    };
    let ctx = &state.orders;
    if let Some(city) = &q.city
        && ctx.units.get(&UnitId::new(city.as_str())).is_none()
    {
        return Err(ApiError::bad_request("invalid_query", "no such city").with_field("city"));
    }
    let now = ctx.clock.now();
    let periods = vec![
        Period {
            start: previous.start,
            end: previous.end,
        },
        Period {
            start: current.start,
            end: current.end,
        },
    ];
    let scope = ctx.scope_of(&user.unit);
    let (_, topics) = compute_topics(
        &state,
        scope.clone(),
        Some(user.unit.as_str().to_owned()),
        q.city.clone(),
        periods,
        now,
        SUMMARY_TOPICS,
    )
    .await?;
    let start_ms = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .and_then(|t| shanghai().from_local_datetime(&t).single())
            .map(|t| t.timestamp_millis())
    };
    let filter = OrderFilter {
        city: q.city.clone(),
        scope,
        scope_unit: Some(user.unit.as_str().to_owned()),
        received_from_ms: start_ms(current.start),
        received_until_ms: start_ms(current.end),
        now_ms: now.timestamp_millis(),
        sort: OrderSort::Created,
        limit: MAX_ORDERS,
        ..OrderFilter::default()
    };
    let (orders, _) = state
        .store
        .list_orders(&filter)
        .await
        .map_err(|e| ApiError::database_unavailable(&e))?;
    let masked = |o: &crate::ticket::Order| {
        analysis::mask_description(&o.fields.description, &o.fields.contact.name)
    };
    let topics: Vec<SummaryTopic> = topics
        .into_iter()
        .filter(|t| t.current > 0)
        .map(|t| {
            let previous = t.counts.first().copied().unwrap_or(0);
            SummaryTopic {
                samples: orders
                    .iter()
                    .filter(|o| o.fields.description.contains(t.topic.as_str()))
                    .take(2)
                    .map(masked)
                    .collect(),
                change: i64::from(t.current) - i64::from(previous),
                count: t.current,
                previous,
                hot: t.hot,
                topic: t.topic,
            }
        })
        .collect();
    let urgent: Vec<UrgentEvent> = orders
        .iter()
        .filter(|o| o.fields.urgency == crate::ticket::Urgency::Urgent)
        .map(|o| UrgentEvent {
            order: o.number.clone().unwrap_or_else(|| o.id.0.clone()),
            received_at: o.fields.received_at.to_rfc3339(),
            city: ctx.unit_name(&o.fields.city).unwrap_or_default().to_owned(),
            description: masked(o),
        })
        .collect();
    let answer = SentimentSummary {
        period: period_text,
        city: q.city,
        orders: orders.len(),
        topics,
        urgent,
    };
    if csv {
        let cell = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
        let mut out = String::from("类型,话题或工单,本期,上期,变化,样例或时间\n");
        for t in &answer.topics {
            out.push_str(&format!(
                "话题,{},{},{},{},{}\n",
                cell(&t.topic),
                t.count,
                t.previous,
                t.change,
                cell(&t.samples.join(" / "))
            ));
        }
        for u in &answer.urgent {
            out.push_str(&format!(
                "紧急事件,{},,,,{}\n",
                cell(&u.order),
                cell(&format!("{} {} {}", u.received_at, u.city, u.description))
            ));
        }
        return Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"sentiment-{}.csv\"", answer.period),
                ),
            ],
            out,
        )
            .into_response());
    }
    Ok(Json(answer).into_response())
}
