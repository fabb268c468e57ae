//! `GET /api/cities`: each city's published answering hours (H-7: hours are fixed,
//! published and filed with the province) and whether its line is staffed now.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use crate::ivr::hours::{OpenStatus, WorkingHours};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CityHours {
    pub id: String,
    pub name: String,
    pub area_codes: Vec<String>,
    pub numbers: Vec<String>,
    /// e.g. "工作日上午9:00至12:00，下午1:30至5:30".
    pub hours: String,
    /// Live answering right now, and the next opening when closed.
    pub status: OpenStatus,
    /// Agents rung for urgent calls after hours.
    pub after_hours_duty_agents: usize,
}

/// The routes of this module.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(list))
}

/// Public: published hours are not confidential.
#[utoipa::path(get, path = "/api/cities", operation_id = "list_cities", tag = "calls", security(()),
    summary = "Each city's published answering hours and whether it is staffed now (H-7)",
    responses((status = 200, description = "the cities", body = Vec<CityHours>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<CityHours>> {
    let now = state.orders.clock.now();
    let calendar = state.orders.calendar.current();
    let default_hours = WorkingHours::default();
    let cities = state
        .cities
        .iter()
        .map(|c| {
            let hours = c.hours.as_ref().unwrap_or(&default_hours);
            CityHours {
                id: c.id.clone(),
                name: c.name.clone(),
                area_codes: c.area_codes.clone(),
                numbers: c.numbers.clone(),
                hours: hours.describe(),
                status: hours.status(&calendar, now),
                after_hours_duty_agents: c.duty_list.len(),
            }
        })
        .collect();
    Json(cities)
}
