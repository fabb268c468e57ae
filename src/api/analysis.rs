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
    OpenApiRouter::new().routes(routes!(topics))
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
