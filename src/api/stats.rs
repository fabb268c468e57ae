//! `GET /api/stats/orders?period=2026-11|2026-Q4|2026`: the supervisor dashboard's
//! order KPIs, counted by the database over every order in the user's unit subtree
//! (not a page of the list): per state, open, overdue (open past the limit, and as
//! the list's `overdue` filter counts it), due today, special flags and the callers'
//! satisfaction, and the transfer timeliness (H-8, H-13-2) overall, per dispatch
//! center and per dispatcher (`transfer`). Without `period` every order counts; with it, the orders received in
//! the period. Overdue and due today are judged now.

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{Days, TimeZone};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ErrorBody};
use super::orders::parse_period;
use crate::calendar::shanghai;
use crate::store::stats::StatsFilter;
use crate::ticket::UnitId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(order_stats))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// 2026-11 | 2026-Q4 | 2026; default: every order.
    period: Option<String>,
}

#[utoipa::path(get, path = "/api/stats/orders", tag = "assessment",
    summary = "Order KPIs counted by the server in the user's unit subtree: per state, open, overdue, due today, special flags, satisfaction",
    params(StatsQuery),
    responses((status = 200, description = "the figures", body = OrderStatsView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn order_stats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<OrderStatsView>, ApiError> {
    let q: StatsQuery = match raw.as_deref() {
        None | Some("") => StatsQuery::default(),
        Some(text) => super::orders::decode_query(text)?,
    };
    let period_text = q.period.filter(|p| !p.is_empty());
    let period = match &period_text {
        None => None,
        Some(text) => Some(parse_period(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "period must look like 2026-11, 2026-Q4 or 2026",
            )
            .with_field("period")
        })?),
    };
    let now = state.orders.clock.now();
    let scope = state.orders.scope_of(&user.unit);
    compute_order_stats(&state, scope, user.unit.clone(), period_text, period, now)
        .await
        .map(Json)
}

/// The order figures of `scope` (`None`: every order) received in `period` (`None`:
/// any time), judged at `now`: what `GET /api/stats/orders` answers and what the
/// published reports print.
///
/// # Errors
/// Database errors.
pub(crate) async fn compute_order_stats(
    state: &AppState,
    scope: Option<Vec<String>>,
    unit: UnitId,
    period_text: Option<String>,
    period: Option<crate::ticket::Period>,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<OrderStatsView, ApiError> {
    let end_of_today = now
        .date_naive()
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| shanghai().from_local_datetime(&d).single())
        .map_or(now.timestamp_millis(), |t| t.timestamp_millis());
    let filter = StatsFilter {
        scope,
        received: period.map(|p| (p.from.timestamp_millis(), p.to.timestamp_millis())),
        now_ms: now.timestamp_millis(),
        end_of_today_ms: end_of_today,
    };
    let stats = state.store.order_stats(&filter).await?;
    let mut timeliness = crate::ticket::TransferTimeliness::default();
    for row in state.store.transfer_counts(&filter).await? {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        timeliness.add_counts(
            &row.unit,
            &row.dispatcher,
            (
                n(row.on_time),
                n(row.late),
                n(row.urgent_late),
                n(row.recorded_missed),
            ),
        );
    }
    let count = |key: &str| stats.satisfaction.get(key).copied().unwrap_or(0);
    let rated: i64 = stats.satisfaction.values().sum();
    let satisfied = count("satisfied") + count("basically_satisfied");
    // Per mille, rounded down, as the rankings do: no float noise in the API.
    let rate = (rated > 0).then(|| ((satisfied * 1000) / rated) as f64 / 1000.0);
    Ok(OrderStatsView {
        period: period_text,
        unit,
        as_of: now.to_rfc3339(),
        total: stats.total,
        by_state: stats.by_state,
        open: stats.open,
        overdue_open: stats.overdue_open,
        overdue: stats.overdue,
        due_today: stats.due_today,
        special_flag: stats.special_flag,
        satisfaction: SatisfactionView {
            rated,
            satisfied: count("satisfied"),
            basically_satisfied: count("basically_satisfied"),
            dissatisfied: count("dissatisfied"),
            rate,
        },
        transfer: timeliness,
    })
}

/// `GET /api/stats/orders`: the order figures of the user's unit subtree.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderStatsView {
    /// The period asked for (orders received in it); null: every order.
    pub period: Option<String>,
    /// The user's unit: the figures count its subtree.
    pub unit: UnitId,
    /// When counted (RFC 3339, Asia/Shanghai).
    pub as_of: String,
    pub total: i64,
    /// Count per lifecycle state.
    pub by_state: BTreeMap<String, i64>,
    /// Not closed.
    pub open: i64,
    /// Open and past the feedback limit now.
    pub overdue_open: i64,
    /// Open past the feedback limit, or completed after it (as `overdue=true` lists).
    pub overdue: i64,
    /// Open, the running limit ending today.
    pub due_today: i64,
    pub special_flag: i64,
    pub satisfaction: SatisfactionView,
    /// Transfer timeliness (H-8): overall, per dispatch center and per dispatcher.
    #[schema(value_type = Object)]
    pub transfer: crate::ticket::TransferTimeliness,
}

/// The latest satisfaction of the orders that have one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SatisfactionView {
    pub rated: i64,
    pub satisfied: i64,
    pub basically_satisfied: i64,
    pub dissatisfied: i64,
    /// (satisfied + basically satisfied) / rated, per mille rounded down; null when none rated.
    pub rate: Option<f64>,
}
