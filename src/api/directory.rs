//! The directory of institutions and practitioners (W-6, W-8, DIR-LOOKUP).
//!
//! Public, no login (`/api/public/…`): search, an entry with its practitioners, an
//! institution's free slots, booking a slot (answered with a booking code), and the
//! citizen's look-up and cancellation by code + phone.
//!
//! Console: province administrators (`province_admin`) maintain the entries of the
//! cities their unit covers (the province's: all; a city's: its own): create, update
//! (optionally pinned to a version: 409 when it changed), delete and CSV import (rows
//! with problems are reported by row number and left out; the good rows are kept).
//! Every change is a line of the append-only change log (who, when, the entry as
//! written). The users of the unit an institution names (`unit`) see its appointments
//! and confirm them or mark a no-show.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::error::{ApiError, ErrorBody};
use crate::calendar::shanghai;
use crate::directory::csv_import::{self, RowProblem};
use crate::directory::{
    Entry, EntryInput, InputError, SearchParams, ServiceHours, Slot, booking_code, plausible_code,
    valid_mobile,
};
use crate::domain::{AppointmentStatus, UnitId};
use crate::store::directory::{
    AppointmentRow, BookingError, ChangeStamp, EntryRow, EntryWriteError, NewBooking,
};
use crate::ticket::Role;

/// Largest CSV import accepted.
pub const MAX_IMPORT_BYTES: usize = 8 * 1024 * 1024;
/// Live bookings one phone may hold at once.
pub const MAX_BOOKINGS_PER_PHONE: i64 = 3;
/// Practitioners listed with an institution.
pub const MAX_PRACTITIONERS_SHOWN: i64 = 50;
/// A reminder goes out this long before the slot (or at once when the slot is sooner).
pub const REMIND_BEFORE: Duration = Duration::hours(24);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(show))
        .routes(routes!(slots))
        .routes(routes!(book))
        .routes(routes!(lookup_appointment))
        .routes(routes!(cancel_appointment))
        .routes(routes!(create))
        .routes(routes!(update, remove))
        .merge(
            // Imports are larger than the API's other bodies.
            OpenApiRouter::new()
                .routes(routes!(import))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .routes(routes!(changes))
        .routes(routes!(institution_appointments))
        .routes(routes!(confirm_appointment))
        .routes(routes!(mark_no_show))
}

fn input_error(e: InputError) -> ApiError {
    ApiError::unprocessable("invalid_field", e.to_string()).with_field(e.field)
}

fn entry_view(row: EntryRow, from: Option<(f64, f64)>) -> Result<Entry, ApiError> {
    Entry::from_row(row, from).map_err(|e| ApiError::internal(&e))
}

fn now(state: &AppState) -> DateTime<FixedOffset> {
    state.orders.clock.now()
}

fn at_text(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&shanghai()).to_rfc3339())
        .unwrap_or_default()
}

/// A page of search results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchAnswer {
    pub items: Vec<Entry>,
    /// The next page's `offset`, when there is more.
    pub next_offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/public/directory", operation_id = "search_directory", tag = "directory", security(()),
    summary = "Search institutions and practitioners: any substring of name, area, address or specialty; filters; near me (W-8)",
    params(SearchParams),
    responses((status = 200, description = "one page", body = SearchAnswer), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn search(
    State(state): State<AppState>,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchAnswer>, ApiError> {
    let mut query = params.query().map_err(input_error)?;
    let limit = query.limit;
    query.limit = limit + 1;
    let from = params.lat.zip(params.lon);
    let mut rows = state.store.search_directory(&query).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let items = rows
        .into_iter()
        .map(|r| entry_view(r, from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(SearchAnswer {
        items,
        next_offset: more.then_some(query.offset + limit),
    }))
}

/// One entry with its institution or its practitioners.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryDetail {
    pub entry: Entry,
    /// A practitioner's institution.
    pub institution: Option<Entry>,
    /// An institution's practitioners (at most 50).
    pub practitioners: Vec<Entry>,
}

#[utoipa::path(get, path = "/api/public/directory/{id}", operation_id = "show_directory_entry", tag = "directory", security(()),
    summary = "One institution or practitioner: basic and integrity information, location, hours (W-8)",
    params(("id" = i64, Path, description = "entry id")),
    responses((status = 200, description = "the entry", body = EntryDetail), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<EntryDetail>, ApiError> {
    let row = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    let institution = match row.institution_id {
        Some(i) => match state.store.directory_entry(i).await? {
            Some(r) => Some(entry_view(r, None)?),
            None => None,
        },
        None => None,
    };
    let practitioners = state
        .store
        .directory_practitioners(id, MAX_PRACTITIONERS_SHOWN)
        .await?
        .into_iter()
        .map(|r| entry_view(r, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(EntryDetail {
        entry: entry_view(row, None)?,
        institution,
        practitioners,
    }))
}

/// Which days of slots to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlotsParams {
    /// First day (YYYY-MM-DD, Asia/Shanghai); default today.
    pub from: Option<NaiveDate>,
    /// How many days (default 7, at most 31).
    pub days: Option<i64>,
}

/// One slot and whether it can still be booked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotView {
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
    pub free: bool,
}

/// An institution's slots.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotsAnswer {
    pub institution_id: i64,
    /// The hours the slots come from.
    pub service_hours: String,
    pub slots: Vec<SlotView>,
}

/// A bookable institution: its row and hours; 404 / 422 otherwise.
async fn bookable(state: &AppState, id: i64) -> Result<(EntryRow, ServiceHours), ApiError> {
    let row = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    let entry = entry_view(row.clone(), None)?;
    if !entry.bookable {
        return Err(ApiError::unprocessable(
            "not_bookable",
            "this entry takes no appointments (not an institution in practice with published hours)",
        ));
    }
    let hours = ServiceHours::parse(&row.service_hours).map_err(|e| ApiError::internal(&e))?;
    Ok((row, hours))
}

#[utoipa::path(get, path = "/api/public/directory/{id}/slots", operation_id = "directory_slots", tag = "directory", security(()),
    summary = "An institution's appointment slots from its service hours on working days (W-8)",
    params(("id" = i64, Path, description = "institution id"), SlotsParams),
    responses((status = 200, description = "the slots", body = SlotsAnswer), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn slots(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(params): Query<SlotsParams>,
) -> Result<Json<SlotsAnswer>, ApiError> {
    let (row, hours) = bookable(&state, id).await?;
    let now = now(&state);
    let days = params.days.unwrap_or(7);
    if !(1..=31).contains(&days) {
        return Err(
            ApiError::bad_request("invalid_field", "days: between 1 and 31").with_field("days"),
        );
    }
    let from = params.from.unwrap_or_else(|| now.date_naive());
    let calendar = state.orders.calendar.current();
    let slots = hours.slots(&calendar, now, from, days);
    let (lo, hi) = match (slots.first(), slots.last()) {
        (Some(a), Some(b)) => (a.start.timestamp_millis(), b.end.timestamp_millis()),
        _ => (0, 0),
    };
    let held = if slots.is_empty() {
        Vec::new()
    } else {
        state.store.held_slots(id, lo, hi).await?
    };
    Ok(Json(SlotsAnswer {
        institution_id: id,
        service_hours: row.service_hours,
        slots: slots
            .into_iter()
            .map(|Slot { start, end }| SlotView {
                start,
                end,
                free: !held.contains(&start.timestamp_millis()),
            })
            .collect(),
    }))
}

/// A citizen's booking.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    /// The slot's start, as `slots` lists it.
    #[schema(value_type = String, format = DateTime)]
    pub slot_start: DateTime<FixedOffset>,
    pub name: String,
    /// Mainland mobile number (the reminder goes to it; with the code it cancels).
    pub phone: String,
    /// What it is about (optional).
    #[serde(default)]
    pub matter: String,
}

/// An appointment as the citizen and the institution see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppointmentView {
    pub id: i64,
    /// The booking code.
    pub code: String,
    pub institution_id: i64,
    pub institution_name: String,
    pub institution_address: String,
    #[schema(value_type = String, format = DateTime)]
    pub slot_start: String,
    #[schema(value_type = String, format = DateTime)]
    pub slot_end: String,
    pub name: String,
    pub phone: String,
    pub matter: String,
    pub status: AppointmentStatus,
    #[schema(value_type = String, format = DateTime)]
    pub booked_at: String,
}

fn appointment_view(
    a: AppointmentRow,
    institution: Option<&EntryRow>,
) -> Result<AppointmentView, ApiError> {
    let status = AppointmentStatus::parse(&a.status).ok_or_else(|| {
        ApiError::internal(&std::io::Error::other(format!(
            "appointment {} has an unknown status",
            a.id
        )))
    })?;
    Ok(AppointmentView {
        id: a.id,
        code: a.code,
        institution_id: a.institution_id,
        institution_name: institution.map(|i| i.name.clone()).unwrap_or_default(),
        institution_address: institution.map(|i| i.address.clone()).unwrap_or_default(),
        slot_start: at_text(a.slot_start_ms),
        slot_end: at_text(a.slot_end_ms),
        name: a.citizen_name,
        phone: a.phone,
        matter: a.matter,
        status,
        booked_at: at_text(a.created_ms),
    })
}

#[utoipa::path(post, path = "/api/public/directory/{id}/appointments", operation_id = "book_appointment", tag = "directory", security(()),
    summary = "Book a slot at an institution: answered with a booking code; one booking per slot (W-8)",
    params(("id" = i64, Path, description = "institution id")),
    request_body = BookRequest,
    responses((status = 201, description = "booked", body = AppointmentView), (status = 409, description = "the slot was taken meanwhile", body = ErrorBody), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn book(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(req): Json<BookRequest>,
) -> Result<(StatusCode, Json<AppointmentView>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 50 || name.chars().any(char::is_control) {
        return Err(
            ApiError::unprocessable("invalid_field", "name: 1 to 50 characters").with_field("name"),
        );
    }
    let phone = req.phone.trim();
    if !valid_mobile(phone) {
        return Err(
            ApiError::unprocessable("invalid_field", "phone: an 11-digit mobile number")
                .with_field("phone"),
        );
    }
    let matter = req.matter.trim();
    if matter.chars().count() > 500 || matter.chars().any(|c| c.is_control() && c != '\n') {
        return Err(
            ApiError::unprocessable("invalid_field", "matter: at most 500 characters")
                .with_field("matter"),
        );
    }
    let (row, hours) = bookable(&state, id).await?;
    let now = now(&state);
    let calendar = state.orders.calendar.current();
    let slot = hours
        .offers(&calendar, now, req.slot_start)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "not_a_slot",
                "slot_start is not one of the institution's future slots (see /slots)",
            )
            .with_field("slot_start")
        })?;
    let now_ms = now.timestamp_millis();
    let start_ms = slot.start.timestamp_millis();
    let remind_at_ms = (slot.start - REMIND_BEFORE).timestamp_millis().max(now_ms);
    // A new code for each try; a clash of codes (31^8) is retried.
    for _ in 0..3 {
        let code = booking_code();
        let booking = NewBooking {
            code: &code,
            institution_id: id,
            slot_start_ms: start_ms,
            slot_end_ms: slot.end.timestamp_millis(),
            citizen_name: name,
            phone,
            matter,
            remind_at_ms,
            now_ms,
            max_per_phone: MAX_BOOKINGS_PER_PHONE,
        };
        match state.store.book_appointment(&booking).await {
            Ok(a) => return Ok((StatusCode::CREATED, Json(appointment_view(a, Some(&row))?))),
            Err(BookingError::CodeTaken) => {}
            Err(BookingError::SlotTaken) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "slot_taken",
                    "this slot has just been booked; choose another",
                ));
            }
            Err(BookingError::TooManyForPhone) => {
                return Err(ApiError::unprocessable(
                    "too_many_bookings",
                    format!(
                        "this phone already holds {MAX_BOOKINGS_PER_PHONE} bookings still to come"
                    ),
                )
                .with_field("phone"));
            }
            Err(BookingError::Store(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::unavailable(
        "code_clash",
        "no free booking code; retry",
    ))
}

/// A citizen's code and phone.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeAndPhone {
    pub code: String,
    pub phone: String,
}

/// The appointment of a code, when the phone matches (404 otherwise: the same answer
/// for a wrong code and a wrong phone).
async fn citizens(state: &AppState, req: &CodeAndPhone) -> Result<AppointmentRow, ApiError> {
    let code = req.code.trim().to_ascii_uppercase();
    if !plausible_code(&code) {
        return Err(ApiError::not_found("appointment"));
    }
    state
        .store
        .appointment_by_code(&code)
        .await?
        .filter(|a| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                a.phone.as_bytes(),
                req.phone.trim().as_bytes(),
            ))
        })
        .ok_or_else(|| ApiError::not_found("appointment"))
}

#[utoipa::path(post, path = "/api/public/appointments/lookup", operation_id = "lookup_appointment", tag = "directory", security(()),
    summary = "A citizen's appointment by booking code and phone",
    request_body = CodeAndPhone,
    responses((status = 200, description = "the appointment", body = AppointmentView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn lookup_appointment(
    State(state): State<AppState>,
    Json(req): Json<CodeAndPhone>,
) -> Result<Json<AppointmentView>, ApiError> {
    let a = citizens(&state, &req).await?;
    let institution = state.store.directory_entry(a.institution_id).await?;
    Ok(Json(appointment_view(a, institution.as_ref())?))
}

#[utoipa::path(post, path = "/api/public/appointments/cancel", operation_id = "cancel_appointment", tag = "directory", security(()),
    summary = "The citizen cancels by booking code and phone; the slot is free again (recorded)",
    request_body = CodeAndPhone,
    responses((status = 200, description = "cancelled", body = AppointmentView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn cancel_appointment(
    State(state): State<AppState>,
    Json(req): Json<CodeAndPhone>,
) -> Result<Json<AppointmentView>, ApiError> {
    let a = citizens(&state, &req).await?;
    let now_ms = now(&state).timestamp_millis();
    if a.slot_start_ms <= now_ms {
        return Err(ApiError::unprocessable(
            "too_late",
            "the appointment has begun or passed",
        ));
    }
    if !state
        .store
        .set_appointment_status(
            a.id,
            &["booked", "confirmed"],
            "cancelled",
            "citizen",
            now_ms,
        )
        .await?
    {
        return Err(ApiError::unprocessable(
            "not_cancellable",
            "the appointment is no longer booked",
        ));
    }
    let a = state
        .store
        .appointment(a.id)
        .await?
        .ok_or_else(|| ApiError::not_found("appointment"))?;
    let institution = state.store.directory_entry(a.institution_id).await?;
    Ok(Json(appointment_view(a, institution.as_ref())?))
}

/// Whether `user` maintains the entries of `city`: a province administrator whose unit
/// covers the city.
fn maintains(state: &AppState, user: &User, city: &str) -> bool {
    user.has(Role::ProvinceAdmin) && state.orders.units.covers(&user.unit, &UnitId::new(city))
}

fn must_maintain(state: &AppState, user: &User, city: &str) -> Result<(), ApiError> {
    if maintains(state, user, city) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the directory of this city is maintained by province administrators covering it",
        ))
    }
}

/// A practitioner's institution must exist and be of the practitioner's kind.
async fn check_institution(state: &AppState, input: &EntryInput) -> Result<(), ApiError> {
    if let Some(i) = input.institution_id {
        let row = state.store.directory_entry(i).await?;
        let ok = row.is_some_and(|r| r.kind == input.kind.institution_kind().as_str());
        if !ok {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "institution_id: no institution of the practitioner's kind with this id",
            )
            .with_field("institution_id"));
        }
    }
    if let Some(unit) = &input.unit
        && !state.orders.units.contains(&UnitId::new(unit.clone()))
    {
        return Err(
            ApiError::unprocessable("invalid_field", "unit: not a configured unit")
                .with_field("unit"),
        );
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/directory", operation_id = "create_directory_entry", tag = "directory",
    summary = "Add an institution or practitioner (province administrators, W-6); logged",
    request_body = EntryInput,
    responses((status = 201, description = "created", body = Entry), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(input): Json<EntryInput>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let write = input.checked().map_err(input_error)?;
    must_maintain(&state, &user, &write.city)?;
    check_institution(&state, &input).await?;
    let stamp = ChangeStamp {
        actor: &user.id,
        at_ms: now(&state).timestamp_millis(),
        action: "created",
    };
    let detail = serde_json::to_string(&input).unwrap_or_default();
    let id = state
        .store
        .insert_directory_entries(&[(write, detail)], stamp)
        .await?[0];
    let row = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    Ok((StatusCode::CREATED, Json(entry_view(row, None)?)))
}

/// The version an update is pinned to.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionParam {
    /// Refuse (409) when the entry's version is no longer this.
    pub version: Option<i64>,
}

fn write_error(e: EntryWriteError) -> ApiError {
    match e {
        EntryWriteError::NotFound => ApiError::not_found("entry"),
        EntryWriteError::VersionConflict => ApiError::new(
            StatusCode::CONFLICT,
            "version_conflict",
            "the entry was changed by someone else; reload it",
        ),
        EntryWriteError::HasAppointments => ApiError::new(
            StatusCode::CONFLICT,
            "has_appointments",
            "the institution has appointments still to come",
        ),
        EntryWriteError::Store(e) => e.into(),
    }
}

#[utoipa::path(put, path = "/api/directory/{id}", operation_id = "update_directory_entry", tag = "directory",
    summary = "Replace an entry (province administrators of its city, old and new); logged",
    params(("id" = i64, Path, description = "entry id"), VersionParam),
    request_body = EntryInput,
    responses((status = 200, description = "updated", body = Entry), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
    Query(version): Query<VersionParam>,
    Json(input): Json<EntryInput>,
) -> Result<Json<Entry>, ApiError> {
    let write = input.checked().map_err(input_error)?;
    let old = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    must_maintain(&state, &user, &old.city)?;
    must_maintain(&state, &user, &write.city)?;
    if input.institution_id == Some(id) {
        return Err(
            ApiError::unprocessable("invalid_field", "institution_id: not itself")
                .with_field("institution_id"),
        );
    }
    check_institution(&state, &input).await?;
    let stamp = ChangeStamp {
        actor: &user.id,
        at_ms: now(&state).timestamp_millis(),
        action: "updated",
    };
    let detail = serde_json::to_string(&input).unwrap_or_default();
    state
        .store
        .update_directory_entry(id, version.version, &write, &detail, stamp)
        .await
        .map_err(write_error)?;
    let row = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    Ok(Json(entry_view(row, None)?))
}

#[utoipa::path(delete, path = "/api/directory/{id}", operation_id = "delete_directory_entry", tag = "directory",
    summary = "Remove an entry (logged with what it was); refused while an institution has appointments to come",
    params(("id" = i64, Path, description = "entry id")),
    responses((status = 204, description = "deleted"), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let old = state
        .store
        .directory_entry(id)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    must_maintain(&state, &user, &old.city)?;
    let detail = serde_json::to_string(&entry_view(old, None)?).unwrap_or_default();
    let stamp = ChangeStamp {
        actor: &user.id,
        at_ms: now(&state).timestamp_millis(),
        action: "deleted",
    };
    state
        .store
        .delete_directory_entry(id, &detail, stamp)
        .await
        .map_err(write_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One imported row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportedRow {
    /// The row as a spreadsheet numbers it (header = 1).
    pub row: u64,
    pub id: i64,
}

/// What an import did: the rows kept, the rows left out and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportAnswer {
    pub imported: Vec<ImportedRow>,
    pub problems: Vec<RowProblem>,
}

#[utoipa::path(post, path = "/api/directory/import", operation_id = "import_directory", tag = "directory",
    summary = "CSV import (UTF-8, header row, English or Chinese column names): good rows kept, bad rows reported by row number and reason; logged",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "what was imported and what was not", body = ImportAnswer), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    body: Bytes,
) -> Result<Json<ImportAnswer>, ApiError> {
    if !user.has(Role::ProvinceAdmin) {
        return Err(ApiError::forbidden(
            "the directory is maintained by province administrators",
        ));
    }
    if body.len() > MAX_IMPORT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "at most 8 MiB",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("not_utf8", "the file must be UTF-8"))?;
    let parsed = csv_import::parse(text)
        .map_err(|e| ApiError::unprocessable("invalid_file", e.to_string()))?;
    let mut problems = parsed.problems;
    let mut keep = Vec::new();
    for (row, write, input) in parsed.rows {
        if !maintains(&state, &user, &write.city) {
            problems.push(RowProblem {
                row,
                column: Some("city".to_owned()),
                reason: "outside the cities your unit maintains".to_owned(),
            });
            continue;
        }
        if let Err(e) = check_institution(&state, &input).await {
            problems.push(RowProblem {
                row,
                column: e.field.clone(),
                reason: e.message,
            });
            continue;
        }
        keep.push((
            row,
            write,
            serde_json::to_string(&input).unwrap_or_default(),
        ));
    }
    problems.sort_by_key(|p| p.row);
    let stamp = ChangeStamp {
        actor: &user.id,
        at_ms: now(&state).timestamp_millis(),
        action: "imported",
    };
    let mut imported = Vec::with_capacity(keep.len());
    for chunk in keep.chunks(crate::directory::seed::BATCH) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|(_, w, d)| (w.clone(), d.clone()))
            .collect();
        let ids = state.store.insert_directory_entries(&batch, stamp).await?;
        imported.extend(
            chunk
                .iter()
                .zip(ids)
                .map(|((row, _, _), id)| ImportedRow { row: *row, id }),
        );
    }
    Ok(Json(ImportAnswer { imported, problems }))
}

/// Which change-log lines.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// Of this entry only.
    pub entry: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One line of the change log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: String,
    pub actor: String,
    pub entry_id: i64,
    /// created, updated, deleted, imported, seeded.
    pub action: String,
    /// The entry as written (or as it was, when deleted).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[utoipa::path(get, path = "/api/directory/changes", operation_id = "directory_changes", tag = "directory",
    summary = "The directory's append-only change log, newest first (province administrators)",
    params(ChangesParams),
    responses((status = 200, description = "the lines", body = Vec<ChangeView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn changes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(params): Query<ChangesParams>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    if !user.has(Role::ProvinceAdmin) {
        return Err(ApiError::forbidden(
            "the change log is read by province administrators",
        ));
    }
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.directory_changes(params.entry, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| ChangeView {
                id: r.id,
                at: at_text(r.at_ms),
                actor: r.actor,
                entry_id: r.entry_id,
                action: r.action,
                detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    ))
}

/// Which appointments.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppointmentsParams {
    /// First day (YYYY-MM-DD); default today.
    pub from: Option<NaiveDate>,
    /// How many days (default 14, at most 62).
    pub days: Option<i64>,
}

#[utoipa::path(get, path = "/api/directory/appointments", operation_id = "institution_appointments", tag = "directory",
    summary = "The appointments at the institutions the user's unit handles, by slot",
    params(AppointmentsParams),
    responses((status = 200, description = "the appointments", body = Vec<AppointmentView>), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn institution_appointments(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(params): Query<AppointmentsParams>,
) -> Result<Json<Vec<AppointmentView>>, ApiError> {
    let days = params.days.unwrap_or(14).clamp(1, 62);
    let from = params.from.unwrap_or_else(|| now(&state).date_naive());
    let start = from
        .and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(shanghai()).single())
        .ok_or_else(|| ApiError::bad_request("invalid_field", "from").with_field("from"))?;
    let end = start + Duration::days(days);
    let ids = state
        .store
        .directory_entries_of_units(&[user.unit.as_str().to_owned()])
        .await?;
    let rows = state
        .store
        .appointments_of(&ids, start.timestamp_millis(), end.timestamp_millis(), 2000)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut names: std::collections::HashMap<i64, Option<EntryRow>> =
        std::collections::HashMap::new();
    for a in rows {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(a.institution_id) {
            slot.insert(state.store.directory_entry(a.institution_id).await?);
        }
        let institution = names.get(&a.institution_id).and_then(Option::as_ref);
        out.push(appointment_view(a, institution)?);
    }
    Ok(Json(out))
}

/// The appointment `id` when the user's unit handles its institution.
async fn handled(
    state: &AppState,
    user: &User,
    id: i64,
) -> Result<(AppointmentRow, EntryRow), ApiError> {
    let a = state
        .store
        .appointment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("appointment"))?;
    let institution = state
        .store
        .directory_entry(a.institution_id)
        .await?
        .ok_or_else(|| ApiError::not_found("appointment"))?;
    let covers = institution.unit.as_ref().is_some_and(|u| {
        state
            .orders
            .units
            .covers(&user.unit, &UnitId::new(u.clone()))
    });
    if !covers {
        return Err(ApiError::not_found("appointment"));
    }
    Ok((a, institution))
}

async fn move_appointment(
    state: &AppState,
    user: &User,
    id: i64,
    from: &[&str],
    to: AppointmentStatus,
    refusal: &'static str,
) -> Result<Json<AppointmentView>, ApiError> {
    let (a, institution) = handled(state, user, id).await?;
    let now_ms = now(state).timestamp_millis();
    if to == AppointmentStatus::NoShow && a.slot_start_ms > now_ms {
        return Err(ApiError::unprocessable(
            "too_early",
            "a no-show is marked once the slot has begun",
        ));
    }
    if !state
        .store
        .set_appointment_status(id, from, to.as_str(), &user.id, now_ms)
        .await?
    {
        return Err(ApiError::unprocessable("illegal_transition", refusal));
    }
    let a = state
        .store
        .appointment(a.id)
        .await?
        .ok_or_else(|| ApiError::not_found("appointment"))?;
    Ok(Json(appointment_view(a, Some(&institution))?))
}

#[utoipa::path(post, path = "/api/directory/appointments/{id}/confirm", operation_id = "confirm_appointment", tag = "directory",
    summary = "The institution confirms a booked appointment (recorded)",
    params(("id" = i64, Path, description = "appointment id")),
    responses((status = 200, description = "confirmed", body = AppointmentView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn confirm_appointment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<AppointmentView>, ApiError> {
    move_appointment(
        &state,
        &user,
        id,
        &["booked"],
        AppointmentStatus::Confirmed,
        "only a booked appointment is confirmed",
    )
    .await
}

#[utoipa::path(post, path = "/api/directory/appointments/{id}/no-show", operation_id = "mark_appointment_no_show", tag = "directory",
    summary = "The institution records that the citizen did not come",
    params(("id" = i64, Path, description = "appointment id")),
    responses((status = 200, description = "recorded", body = AppointmentView), (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody)))]
async fn mark_no_show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<AppointmentView>, ApiError> {
    move_appointment(
        &state,
        &user,
        id,
        &["booked", "confirmed"],
        AppointmentStatus::NoShow,
        "only a booked or confirmed appointment can be a no-show",
    )
    .await
}
