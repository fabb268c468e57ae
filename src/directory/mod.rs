//! The directory of legal-service institutions and practitioners (W-6, W-8,
//! DIR-LOOKUP): checking what maintainers write, the search query, service hours and
//! the appointment slots they give on the working-day calendar, booking codes, CSV
//! import and generated sample data. Pure: the API and the CLI hand the results to
//! `store::directory`.

pub mod csv_import;
pub mod reminders;
pub mod seed;
pub mod slots;

use serde::{Deserialize, Serialize};

use crate::domain::{DirectoryKind, IntegrityRecord, LicenceStatus};
use crate::store::directory::{EntryRow, EntryWrite, Near, SearchQuery};

pub use slots::{ServiceHours, Slot};

/// Longest name, address, phone or licence number accepted.
pub const MAX_SHORT_TEXT: usize = 200;
/// Longest introduction accepted.
pub const MAX_INTRO: usize = 4000;
/// Most specialties on one entry.
pub const MAX_SPECIALTIES: usize = 20;
/// Most integrity records on one entry.
pub const MAX_INTEGRITY_RECORDS: usize = 100;
/// Largest page of a search.
pub const MAX_PAGE: i64 = 50;
/// Furthest page start of a search.
pub const MAX_OFFSET: i64 = 1000;
/// "Near me" without a radius: this many kilometres.
pub const DEFAULT_RADIUS_KM: f64 = 20.0;
/// Largest "near me" radius.
pub const MAX_RADIUS_KM: f64 = 200.0;
/// Most search terms.
pub const MAX_TERMS: usize = 5;

/// Shandong's cities: (unit id, name).
#[must_use]
pub fn cities() -> &'static [(String, String)] {
    static CITIES: std::sync::LazyLock<Vec<(String, String)>> = std::sync::LazyLock::new(|| {
        let tree = crate::ticket::units::UnitTree::shandong_default();
        tree.units()
            .filter(|u| u.kind == crate::ticket::units::UnitKind::City)
            .map(|u| (u.id.as_str().to_owned(), u.name.clone()))
            .collect()
    });
    &CITIES
}

/// The city's unit id from its id or its Chinese name (`济南市` or `济南`).
#[must_use]
pub fn city_id(text: &str) -> Option<&'static str> {
    let text = text.trim();
    cities()
        .iter()
        .find(|(id, name)| id == text || name == text || name.trim_end_matches('市') == text)
        .map(|(id, _)| id.as_str())
}

/// The city's Chinese name.
#[must_use]
pub fn city_name(id: &str) -> Option<&'static str> {
    cities()
        .iter()
        .find(|(c, _)| c == id)
        .map(|(_, name)| name.as_str())
}

/// An entry as maintainers write it (API body, a CSV row, generated data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    pub kind: DirectoryKind,
    pub name: String,
    /// The city's unit id (`jinan`) or name (`济南市`).
    pub city: String,
    /// County / district (`历下区`).
    #[serde(default)]
    pub county: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub phone: String,
    /// Working-day hours, `09:00-12:00,13:30-17:30`; institutions that take
    /// appointments need them.
    #[serde(default)]
    pub service_hours: String,
    #[serde(default)]
    pub specialties: Vec<String>,
    #[serde(default)]
    pub licence_no: String,
    pub licence_status: LicenceStatus,
    /// A practitioner's institution (an entry id).
    #[serde(default)]
    pub institution_id: Option<i64>,
    /// The console unit whose users see and confirm the institution's appointments.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub integrity: Vec<IntegrityRecord>,
    #[serde(default)]
    pub intro: String,
}

/// Why an entry was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InputError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> InputError {
    InputError {
        field,
        reason: reason.into(),
    }
}

fn clean(
    field: &'static str,
    text: &str,
    max: usize,
    required: bool,
) -> Result<String, InputError> {
    let text = text.trim();
    if required && text.is_empty() {
        return Err(refuse(field, "required"));
    }
    if text.chars().count() > max {
        return Err(refuse(field, format!("longer than {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(refuse(field, "contains control characters"));
    }
    Ok(text.to_owned())
}

impl EntryInput {
    /// The row to store, checked: required fields, lengths, a known city, coordinates in
    /// range and given together, readable service hours, dated integrity records.
    ///
    /// # Errors
    /// The first field at fault.
    pub fn checked(&self) -> Result<EntryWrite, InputError> {
        let name = clean("name", &self.name, MAX_SHORT_TEXT, true)?;
        let city = city_id(&self.city)
            .ok_or_else(|| refuse("city", format!("not a Shandong city: {:?}", self.city)))?
            .to_owned();
        let county = clean("county", &self.county, MAX_SHORT_TEXT, false)?;
        let address = clean("address", &self.address, MAX_SHORT_TEXT, false)?;
        let phone = clean("phone", &self.phone, 40, false)?;
        let licence_no = clean("licence_no", &self.licence_no, MAX_SHORT_TEXT, false)?;
        let intro = clean("intro", &self.intro, MAX_INTRO, false)?;
        let (lat, lon) = match (self.lat, self.lon) {
            (None, None) => (None, None),
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(refuse("lat", "coordinates out of range"));
                }
                (Some(lat), Some(lon))
            }
            _ => return Err(refuse("lat", "lat and lon go together")),
        };
        let hours = ServiceHours::parse(&self.service_hours)
            .map_err(|e| refuse("service_hours", e.to_string()))?;
        if self.specialties.len() > MAX_SPECIALTIES {
            return Err(refuse(
                "specialties",
                format!("more than {MAX_SPECIALTIES}"),
            ));
        }
        let mut specialties = Vec::with_capacity(self.specialties.len());
        for s in &self.specialties {
            let s = clean("specialties", s, 40, true)?;
            if s.contains('、') {
                return Err(refuse("specialties", "one specialty per item (no 、)"));
            }
            specialties.push(s);
        }
        if self.integrity.len() > MAX_INTEGRITY_RECORDS {
            return Err(refuse(
                "integrity",
                format!("more than {MAX_INTEGRITY_RECORDS} records"),
            ));
        }
        for r in &self.integrity {
            clean("integrity", &r.text, MAX_SHORT_TEXT, true)?;
            clean("integrity", &r.authority, MAX_SHORT_TEXT, false)?;
        }
        if self.institution_id.is_some() && self.kind.is_institution() {
            return Err(refuse(
                "institution_id",
                "an institution belongs to no institution",
            ));
        }
        let unit = match &self.unit {
            Some(u) => Some(clean("unit", u, 100, true)?),
            None => None,
        };
        let mut integrity = self.integrity.clone();
        integrity.sort_by_key(|r| std::cmp::Reverse(r.date));
        let specialties_text = specialties.join("、");
        let search_text = search_text(self.kind, &name, &city, &county, &address, &specialties);
        let grams = grams(&search_text);
        Ok(EntryWrite {
            kind: self.kind.as_str().to_owned(),
            name,
            city,
            county,
            address,
            lat,
            lon,
            phone,
            service_hours: hours.to_string(),
            specialties: specialties_text,
            licence_no,
            licence_status: self.licence_status.as_str().to_owned(),
            institution_id: self.institution_id,
            unit,
            integrity: serde_json::to_string(&integrity).unwrap_or_else(|_| "[]".to_owned()),
            intro,
            search_text,
            grams,
            cell: lat
                .zip(lon)
                .map(|(a, b)| crate::store::directory::cell_of(a, b)),
        })
    }
}

/// The words a one- or two-character search looks up: every single character and
/// every pair of neighbouring characters of each word of `text` (lower case, letters
/// and digits only, each once), space-separated.
#[must_use]
pub fn grams(text: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let chars: Vec<char> = word.chars().flat_map(char::to_lowercase).collect();
        for (i, c) in chars.iter().enumerate() {
            for gram in [
                Some(c.to_string()),
                chars.get(i + 1).map(|d| format!("{c}{d}")),
            ]
            .into_iter()
            .flatten()
            {
                if seen.insert(gram.clone()) {
                    out.push(gram);
                }
            }
        }
    }
    out.join(" ")
}

/// What substring search reads: name, city, county, address, specialties and the
/// kind's name, space-separated.
#[must_use]
pub fn search_text(
    kind: DirectoryKind,
    name: &str,
    city: &str,
    county: &str,
    address: &str,
    specialties: &[String],
) -> String {
    let mut parts = vec![name, city_name(city).unwrap_or(city), county, address];
    parts.extend(specialties.iter().map(String::as_str));
    parts.push(kind.label());
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// An entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub kind: DirectoryKind,
    /// The kind's Chinese name.
    pub kind_label: &'static str,
    pub name: String,
    pub city: String,
    pub city_name: String,
    pub county: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub phone: String,
    /// `09:00-12:00,13:30-17:30` on working days (empty: none published).
    pub service_hours: String,
    pub specialties: Vec<String>,
    pub licence_no: String,
    pub licence_status: LicenceStatus,
    pub licence_status_label: &'static str,
    pub institution_id: Option<i64>,
    /// Integrity records, newest first.
    pub integrity: Vec<IntegrityRecord>,
    pub intro: String,
    /// Takes appointments (an institution with service hours and a console unit).
    pub bookable: bool,
    /// Kilometres from the point searched near, when one was given.
    pub distance_km: Option<f64>,
    pub version: i64,
    /// When last changed (RFC 3339, Asia/Shanghai).
    pub updated_at: String,
}

/// Why a stored row could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("entry {0} has an unknown kind")]
    Kind(i64),
    #[error("entry {0} has an unknown licence status")]
    Licence(i64),
}

impl Entry {
    /// The API's view of a stored row; `from` gives the distance.
    ///
    /// # Errors
    /// A row with a kind or status this build does not know.
    pub fn from_row(row: EntryRow, from: Option<(f64, f64)>) -> Result<Self, RowError> {
        let kind = DirectoryKind::parse(&row.kind).ok_or(RowError::Kind(row.id))?;
        let licence_status =
            LicenceStatus::parse(&row.licence_status).ok_or(RowError::Licence(row.id))?;
        let distance_km = match (from, row.lat, row.lon) {
            (Some((lat, lon)), Some(a), Some(b)) => {
                Some((distance_km(lat, lon, a, b) * 100.0).round() / 100.0)
            }
            _ => None,
        };
        let bookable = kind.is_institution()
            && row.unit.is_some()
            && !row.service_hours.is_empty()
            && licence_status == LicenceStatus::Active;
        Ok(Self {
            id: row.id,
            kind,
            kind_label: kind.label(),
            city_name: city_name(&row.city).unwrap_or_default().to_owned(),
            name: row.name,
            city: row.city,
            county: row.county,
            address: row.address,
            lat: row.lat,
            lon: row.lon,
            phone: row.phone,
            service_hours: row.service_hours,
            specialties: row
                .specialties
                .split('、')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            licence_no: row.licence_no,
            licence_status,
            licence_status_label: licence_status.label(),
            institution_id: row.institution_id,
            integrity: serde_json::from_str(&row.integrity).unwrap_or_default(),
            intro: row.intro,
            bookable,
            distance_km,
            version: row.version,
            updated_at: chrono::DateTime::from_timestamp_millis(row.updated_ms)
                .map(|t| t.with_timezone(&crate::calendar::shanghai()).to_rfc3339())
                .unwrap_or_default(),
        })
    }
}

/// Great-circle distance in kilometres (haversine).
#[must_use]
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_KM: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_KM * a.sqrt().asin()
}

/// A search as the public API takes it (query string).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words, each of which must occur in the name, city, county, address or
    /// specialties (any substring; Chinese needs no spaces).
    pub q: Option<String>,
    /// City unit id (`jinan`) or name.
    pub city: Option<String>,
    /// County / district name (`历下区`).
    pub county: Option<String>,
    /// Kinds, comma-separated (`notary_office,law_firm`).
    pub kind: Option<String>,
    /// A specialty (`婚姻家庭`).
    pub specialty: Option<String>,
    /// "Near me": latitude and longitude; results ordered by distance.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Radius in km for "near me" (default 20, at most 200).
    pub radius_km: Option<f64>,
    /// Page size (default 20, at most 50).
    pub limit: Option<i64>,
    /// Page start (at most 1000).
    pub offset: Option<i64>,
}

impl SearchParams {
    /// The store's query, checked.
    ///
    /// # Errors
    /// The parameter at fault.
    pub fn query(&self) -> Result<SearchQuery, InputError> {
        let terms: Vec<String> = self
            .q
            .as_deref()
            .unwrap_or_default()
            .split(|c: char| c.is_whitespace() || c == '，' || c == ',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if terms.len() > MAX_TERMS {
            return Err(refuse("q", format!("at most {MAX_TERMS} words")));
        }
        if terms
            .iter()
            .any(|t| t.chars().count() > 50 || t.chars().any(char::is_control))
        {
            return Err(refuse(
                "q",
                "a word is longer than 50 characters or has control characters",
            ));
        }
        let city = match self.city.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                city_id(c)
                    .ok_or_else(|| refuse("city", format!("not a Shandong city: {c:?}")))?
                    .to_owned(),
            ),
        };
        let mut kinds = Vec::new();
        for k in self
            .kind
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
        {
            let kind = DirectoryKind::parse(k)
                .ok_or_else(|| refuse("kind", format!("unknown kind {k:?}")))?;
            kinds.push(kind.as_str().to_owned());
        }
        let near = match (self.lat, self.lon) {
            (None, None) => None,
            (Some(lat), Some(lon)) => {
                if !(-89.0..=89.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    return Err(refuse("lat", "coordinates out of range"));
                }
                let radius = self.radius_km.unwrap_or(DEFAULT_RADIUS_KM);
                if !(radius > 0.0 && radius <= MAX_RADIUS_KM) {
                    return Err(refuse(
                        "radius_km",
                        format!("between 0 and {MAX_RADIUS_KM}"),
                    ));
                }
                let dlat = radius / 111.195;
                let lon_scale = lat.to_radians().cos();
                Some(Near {
                    lat,
                    lon,
                    dlat,
                    dlon: dlat / lon_scale,
                    lon_scale,
                })
            }
            _ => return Err(refuse("lat", "lat and lon go together")),
        };
        let limit = self.limit.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(refuse("limit", format!("between 1 and {MAX_PAGE}")));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(refuse("offset", format!("between 0 and {MAX_OFFSET}")));
        }
        Ok(SearchQuery {
            terms,
            city,
            county: self
                .county
                .clone()
                .filter(|c| !c.trim().is_empty())
                .map(|c| c.trim().to_owned()),
            kinds,
            specialty: self
                .specialty
                .clone()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            near,
            limit,
            offset,
        })
    }
}

/// The alphabet of booking codes: no 0/O, 1/I/L (read out on the phone).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Length of a booking code (31^8 ≈ 8.5e11).
pub const CODE_LEN: usize = 8;

/// A new random booking code.
#[must_use]
pub fn booking_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// Whether `code` could be a booking code (checked before any look-up).
#[must_use]
pub fn plausible_code(code: &str) -> bool {
    code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))
}

/// A mainland mobile number (the reminder goes to it): 11 digits starting 1[3-9].
#[must_use]
pub fn valid_mobile(phone: &str) -> bool {
    let b = phone.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// The phone as shown to institution staff: `138****5678`.
#[must_use]
pub fn masked_phone(phone: &str) -> String {
    if phone.len() == 11 && phone.is_ascii() {
        format!("{}****{}", &phone[..3], &phone[7..])
    } else {
        "****".to_owned()
    }
}

#[cfg(test)]
mod tests;
