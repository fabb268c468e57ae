//! Published reports (H-15, W-19, W-20): monthly, quarterly and yearly reports made by
//! the server without anyone's input, once after each period ends (by the server's
//! clock): the period's order figures, the rankings of each group with every level
//! ranked separately, the sign-in rate, transfer timeliness, satisfaction, special
//! flags, hot topics and the quality review scores per person, unit and city. Every figure is computed by the same functions that answer
//! `GET /api/stats/orders`, `GET /api/rankings` and `GET /api/analysis/topics` for
//! that period, so the report and the API cannot disagree.
//!
//! Each report is a database row (its JSON) and two files under
//! `<data_dir>/reports/`: an XLSX workbook (what bureaus open) and a printable Chinese
//! HTML page with charts (inline SVG). Listed and downloaded by supervisors and
//! province administrators: `GET /api/reports`, `/api/reports/{id}`,
//! `/api/reports/{id}/xlsx`, `/api/reports/{id}/html`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, TimeZone};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::analysis::compute_topics;
use super::auth::{CurrentUser, User};
use super::error::{ApiError, ErrorBody};
use super::orders::{RankedBy, RankingAsk, compute_rankings};
use super::stats::{OrderStatsView, compute_order_stats};
use super::views::{Level, Rankings};
use crate::analysis::{Period as TopicPeriod, TopicTrend};
use crate::assessment::periods::{ReportKind, ReportPeriod, due};
use crate::calendar::shanghai;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::store::reports::StoredReport;
use crate::ticket::{Period, RankBy, RankGroup, Role, UnitId};

/// How often the scheduler looks for a period that has ended.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Hot topics printed in a report.
pub const REPORT_TOPICS: usize = 20;
/// The groups ranked separately (W-19), in the report's order.
pub const GROUPS: [(RankGroup, &str); 3] = [
    (RankGroup::Consultation, "咨询类"),
    (RankGroup::ComplaintSuggestion, "投诉建议类"),
    (RankGroup::BusinessHandling, "业务办理类"),
];

/// Where the report files live (`<data_dir>/reports`); none: reports cannot be
/// downloaded (a router built without a data directory).
#[derive(Clone, Debug)]
pub struct ReportsDir(pub Option<PathBuf>);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reports))
        .routes(routes!(report_data))
        .routes(routes!(report_xlsx))
        .routes(routes!(report_html))
}

/// Why a report could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("computing the figures: {} {}", .0.code, .0.message)]
    Figures(ApiError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("writing the report files: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the period {0} has no local midnight")]
    Period(String),
}

/// One published report's content (its JSON, `GET /api/reports/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportData {
    /// The period: 2026-11, 2026-Q4 or 2026 (the `period` the API takes).
    pub id: String,
    pub kind: ReportKind,
    /// The title, in Chinese.
    pub title: String,
    /// The period's first day.
    pub period_from: String,
    /// The period's last day.
    pub period_to: String,
    /// When the figures were computed (RFC 3339, Asia/Shanghai); overdue is judged then.
    pub generated_at: String,
    /// `GET /api/stats/orders?period=<id>` of the province (every order).
    #[schema(value_type = Object)]
    pub stats: OrderStatsView,
    /// `GET /api/rankings?period=<id>&group=<g>&metric=combined` for each group.
    #[schema(value_type = Vec<Object>)]
    pub rankings: Vec<Rankings>,
    /// The periods of the hot-topic analysis, the report's period last.
    #[schema(value_type = Vec<Object>)]
    pub topic_periods: Vec<TopicPeriod>,
    /// Orders analysed for topics.
    pub topic_orders: usize,
    /// The period's topics, most asked about first.
    #[schema(value_type = Vec<Object>)]
    pub topics: Vec<TopicTrend>,
    /// Why the report has no topics (the analysis word lists could not be read).
    pub topics_unavailable: Option<String>,
    /// `GET /api/quality/scores?period=<id>` of the province: quality review scores
    /// per person, unit and city (H-15).
    pub quality: crate::assessment::quality::Rollup,
}

/// One report in the list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportItem {
    pub id: String,
    pub kind: String,
    pub title: String,
    /// When it was made (RFC 3339).
    pub generated_at: String,
    pub xlsx_url: String,
    pub html_url: String,
}

/// `GET /api/reports`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportList {
    /// Latest period first.
    pub reports: Vec<ReportItem>,
}

fn title(period: ReportPeriod) -> String {
    format!(
        "12348公共法律服务热线{}{}运行报告",
        period.chinese(),
        if period.kind == ReportKind::Year {
            "度"
        } else {
            ""
        }
    )
}

fn require_reader(user: &User) -> Result<(), ApiError> {
    if user.has(Role::Supervisor) || user.has(Role::ProvinceAdmin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "reports are for supervisors and province administrators",
        ))
    }
}

fn midnight(day: chrono::NaiveDate) -> Option<DateTime<FixedOffset>> {
    shanghai()
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .single()
}

/// The topic periods of a report: its own period last, the 8 of the same length
/// before it as the baseline.
fn topic_periods(period: ReportPeriod) -> Vec<TopicPeriod> {
    let mut out = vec![period];
    while out.len() <= crate::analysis::BASELINE_PERIODS {
        match out.last().and_then(|p| p.previous()) {
            Some(p) => out.push(p),
            None => break,
        }
    }
    out.iter()
        .rev()
        .map(|p| TopicPeriod {
            start: p.start,
            end: p.end,
        })
        .collect()
}

/// Computes the report of `period` at `now`.
///
/// # Errors
/// The figures could not be computed.
pub async fn compute_report(
    state: &AppState,
    period: ReportPeriod,
    now: DateTime<FixedOffset>,
) -> Result<ReportData, PublishError> {
    let id = period.label();
    let (Some(from), Some(to)) = (midnight(period.start), midnight(period.end)) else {
        return Err(PublishError::Period(id));
    };
    let span = Period { from, to };
    let root = state
        .orders
        .units
        .units()
        .find(|u| u.parent.is_none())
        .map_or_else(|| UnitId::new("province"), |u| u.id.clone());
    let scope = state.orders.scope_of(&root);
    let stats = compute_order_stats(
        state,
        scope.clone(),
        root.clone(),
        Some(id.clone()),
        Some(span),
        now,
    )
    .await
    .map_err(PublishError::Figures)?;
    let mut rankings = Vec::new();
    for (group, _) in GROUPS {
        let ask = RankingAsk {
            period_text: id.clone(),
            period: span,
            group,
            metric: RankBy::Combined,
            metric_name: Some("combined".to_owned()),
            only_level: None,
            by: RankedBy::Unit,
            only_area: None,
        };
        rankings.push(
            compute_rankings(state, ask, now)
                .await
                .map_err(PublishError::Figures)?,
        );
    }
    let quality = super::quality::compute_scores(state, scope.clone(), Some(span))
        .await
        .map_err(PublishError::Figures)?;
    let periods = topic_periods(period);
    // Without the word lists the report is still published, saying why it has no
    // topics, rather than never.
    let (topic_orders, topics, topics_unavailable) = match compute_topics(
        state,
        scope,
        Some(root.as_str().to_owned()),
        None,
        periods.clone(),
        now,
        REPORT_TOPICS,
    )
    .await
    {
        Ok((n, topics)) => (n, topics, None),
        Err(e) if e.code == "analysis_unavailable" => (0, Vec::new(), Some(e.message)),
        Err(e) => return Err(PublishError::Figures(e)),
    };
    let last_day = period.end.pred_opt().unwrap_or(period.end);
    Ok(ReportData {
        id,
        kind: period.kind,
        title: title(period),
        period_from: period.start.to_string(),
        period_to: last_day.to_string(),
        generated_at: now.to_rfc3339(),
        stats,
        rankings,
        topic_periods: periods,
        topic_orders,
        topics,
        topics_unavailable,
        quality,
    })
}

/// Makes, stores and files the report of `period` unless it exists. Returns whether
/// this call published it.
///
/// # Errors
/// See [`PublishError`].
pub async fn publish(
    state: &AppState,
    dir: &Path,
    period: ReportPeriod,
    now: DateTime<FixedOffset>,
) -> Result<bool, PublishError> {
    if state.store.report(&period.label()).await?.is_some() {
        return Ok(false);
    }
    let data = compute_report(state, period, now).await?;
    let json = serde_json::to_string(&data)?;
    let html = render::html(&data);
    let xlsx = tokio::task::spawn_blocking({
        let data = data.clone();
        move || render::xlsx(&data)
    })
    .await
    .map_err(std::io::Error::other)??;
    let stamp = now.timestamp_millis();
    let xlsx_file = format!("{}-{stamp}.xlsx", data.id);
    let html_file = format!("{}-{stamp}.html", data.id);
    tokio::fs::create_dir_all(dir).await?;
    write_file(&dir.join(&xlsx_file), &xlsx).await?;
    write_file(&dir.join(&html_file), html.as_bytes()).await?;
    let (Some(from), Some(to)) = (midnight(period.start), midnight(period.end)) else {
        return Err(PublishError::Period(data.id));
    };
    let written = state
        .store
        .insert_report(&StoredReport {
            id: data.id.clone(),
            kind: period.kind.as_str().to_owned(),
            period_from_ms: from.timestamp_millis(),
            period_to_ms: to.timestamp_millis(),
            generated_ms: stamp,
            data: json,
            xlsx_file: xlsx_file.clone(),
            html_file: html_file.clone(),
        })
        .await?;
    if !written {
        // Another node published it first: its files are the report's (unless it
        // chose the same names in the same millisecond).
        let theirs = state.store.report(&data.id).await?;
        if theirs.is_some_and(|r| r.xlsx_file != xlsx_file) {
            let _ = tokio::fs::remove_file(dir.join(&xlsx_file)).await;
            let _ = tokio::fs::remove_file(dir.join(&html_file)).await;
        }
    }
    Ok(written)
}

/// Written to a temporary name, synced and renamed: a crash leaves no half file
/// under the report's name.
async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    let partial = path.with_extension("partial");
    let file = {
        let mut f = tokio::fs::File::create(&partial).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, bytes).await?;
        f
    };
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, path).await
}

/// Publishes every report due at `now` ([`due`]). Returns the ids published.
///
/// # Errors
/// The first report that failed.
pub async fn publish_due(
    state: &AppState,
    dir: &Path,
    now: DateTime<FixedOffset>,
) -> Result<Vec<String>, PublishError> {
    let done = state.store.report_ids().await?;
    let mut published = Vec::new();
    for period in due(now.date_naive(), &done) {
        if publish(state, dir, period, now).await? {
            tracing::info!(report = %period.label(), "report published");
            published.push(period.label());
        }
    }
    Ok(published)
}

/// The report scheduler: at start and every [`CHECK_INTERVAL`], the reports due by the
/// server's clock are made.
pub async fn report_loop(state: AppState, dir: PathBuf, shutdown: Shutdown) {
    loop {
        let now = state.orders.clock.now();
        if let Err(e) = publish_due(&state, &dir, now).await {
            tracing::warn!(%e, "publishing reports failed; trying again later");
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[utoipa::path(get, path = "/api/reports", tag = "assessment",
    summary = "Published monthly, quarterly and yearly reports (H-15, W-19, W-20), latest first",
    responses((status = 200, description = "the reports", body = ReportList), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn list_reports(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<ReportList>, ApiError> {
    require_reader(&user)?;
    let rows = state.store.list_reports().await?;
    let reports = rows
        .into_iter()
        .map(|r| {
            let period = ReportPeriod::parse(&r.id);
            ReportItem {
                title: period.map(title).unwrap_or_default(),
                generated_at: shanghai()
                    .timestamp_millis_opt(r.generated_ms)
                    .single()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                xlsx_url: format!("/api/reports/{}/xlsx", r.id),
                html_url: format!("/api/reports/{}/html", r.id),
                kind: r.kind,
                id: r.id,
            }
        })
        .collect();
    Ok(Json(ReportList { reports }))
}

async fn stored(state: &AppState, id: &str) -> Result<StoredReport, ApiError> {
    if ReportPeriod::parse(id).is_none() {
        return Err(ApiError::bad_request(
            "invalid_id",
            "a report id looks like 2026-11, 2026-Q4 or 2026",
        )
        .with_field("id"));
    }
    state
        .store
        .report(id)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))
}

#[utoipa::path(get, path = "/api/reports/{id}", tag = "assessment",
    summary = "One published report's figures (JSON)",
    params(("id" = String, Path, description = "2026-11, 2026-Q4 or 2026")),
    responses((status = 200, description = "the report", body = ReportData), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn report_data(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    require_reader(&user)?;
    let report = stored(&state, &id).await?;
    let value: Value = serde_json::from_str(&report.data).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(value))
}

async fn file_answer(
    state: &AppState,
    dir: Option<Extension<ReportsDir>>,
    id: &str,
    xlsx: bool,
) -> Result<Response, ApiError> {
    let report = stored(state, id).await?;
    let Some(dir) = dir.and_then(|Extension(ReportsDir(dir))| dir) else {
        return Err(ApiError::not_found("report file"));
    };
    let name = if xlsx {
        &report.xlsx_file
    } else {
        &report.html_file
    };
    // Names are the server's own (`<id>-<ms>.xlsx`); anything else is not served.
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(ApiError::not_found("report file"));
    }
    let bytes = tokio::fs::read(dir.join(name))
        .await
        .map_err(|_| ApiError::not_found("report file"))?;
    let (content_type, download) = if xlsx {
        (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            format!("attachment; filename=\"report-{id}.xlsx\""),
        )
    } else {
        (
            "text/html; charset=utf-8",
            format!("inline; filename=\"report-{id}.html\""),
        )
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, download),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/reports/{id}/xlsx", tag = "assessment",
    summary = "One published report as an XLSX workbook",
    params(("id" = String, Path, description = "2026-11, 2026-Q4 or 2026")),
    responses((status = 200, description = "the workbook", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn report_xlsx(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    dir: Option<Extension<ReportsDir>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    require_reader(&user)?;
    file_answer(&state, dir, &id, true).await
}

#[utoipa::path(get, path = "/api/reports/{id}/html", tag = "assessment",
    summary = "One published report as a printable Chinese HTML page",
    params(("id" = String, Path, description = "2026-11, 2026-Q4 or 2026")),
    responses((status = 200, description = "the page", content_type = "text/html", body = String), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn report_html(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    dir: Option<Extension<ReportsDir>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    require_reader(&user)?;
    file_answer(&state, dir, &id, false).await
}

/// The level names of a report.
#[must_use]
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Province => "省级",
        Level::City => "市级",
        Level::County => "县级",
        Level::Township => "乡镇（街道）",
        Level::Institution => "服务机构",
    }
}

pub mod render;
