//! CSV import of directory entries (UTF-8, a header row; a BOM is skipped). Columns are
//! named in English or Chinese, in any order; unknown columns are refused so that a
//! misspelt one is not silently dropped:
//!
//! | column | 列名 | content |
//! |---|---|---|
//! | kind | 类别 | `notary_office` or `公证处`, … (required) |
//! | name | 名称 | required |
//! | city | 城市 | `jinan`, `济南市` or `济南` (required) |
//! | county | 区县 | |
//! | address | 地址 | |
//! | lat, lon | 纬度, 经度 | decimal degrees, both or neither |
//! | phone | 电话 | |
//! | service_hours | 服务时间 | `09:00-12:00,13:30-17:30` |
//! | specialties | 专长 | separated by `、` or `;` |
//! | licence_no | 执业证号 | |
//! | licence_status | 执业状态 | `active` / `正常执业`, … (default active) |
//! | institution_id | 所属机构 | an entry id |
//! | unit | 管理单位 | console unit id |
//! | integrity | 诚信记录 | `表彰|2025-03-01|优秀公证处|济南市司法局`, records separated by `;` |
//! | intro | 简介 | |
//!
//! Rows are numbered as a spreadsheet shows them: the header is row 1. A row with a
//! problem is reported (row number, column, reason) and left out; the good rows are
//! kept (the import is not all-or-nothing).

use crate::domain::{DirectoryKind, IntegrityKind, IntegrityRecord, LicenceStatus};
use crate::store::directory::EntryWrite;

use super::EntryInput;

/// Most data rows in one import.
pub const MAX_ROWS: usize = 20_000;

/// A row left out and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RowProblem {
    /// The row as a spreadsheet numbers it (header = 1).
    pub row: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    pub reason: String,
}

/// What an import file holds.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The good rows: (row number, the entry to store, the input as logged).
    pub rows: Vec<(u64, EntryWrite, EntryInput)>,
    pub problems: Vec<RowProblem>,
}

/// Why the file as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file has no header row")]
    NoHeader,
    #[error("unknown column {0:?}")]
    UnknownColumn(String),
    #[error("column {0:?} appears twice")]
    DuplicateColumn(String),
    #[error("missing column {0:?}")]
    MissingColumn(&'static str),
    #[error("more than {MAX_ROWS} rows")]
    TooManyRows,
    #[error("the file is not CSV: {0}")]
    Csv(String),
}

const COLUMNS: [(&str, &str); 16] = [
    ("kind", "类别"),
    ("name", "名称"),
    ("city", "城市"),
    ("county", "区县"),
    ("address", "地址"),
    ("lat", "纬度"),
    ("lon", "经度"),
    ("phone", "电话"),
    ("service_hours", "服务时间"),
    ("specialties", "专长"),
    ("licence_no", "执业证号"),
    ("licence_status", "执业状态"),
    ("institution_id", "所属机构"),
    ("unit", "管理单位"),
    ("integrity", "诚信记录"),
    ("intro", "简介"),
];

fn column_of(header: &str) -> Option<&'static str> {
    let h = header.trim().trim_start_matches('\u{feff}');
    COLUMNS
        .iter()
        .find(|(en, zh)| h.eq_ignore_ascii_case(en) || h == *zh)
        .map(|(en, _)| *en)
}

fn integrity(text: &str) -> Result<Vec<IntegrityRecord>, String> {
    let mut out = Vec::new();
    for record in text
        .split([';', '；'])
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        let parts: Vec<&str> = record.split('|').map(str::trim).collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(format!("a record is 类型|日期|内容[|机关]: {record:?}"));
        }
        let kind = match parts[0] {
            "表彰" | "commendation" => IntegrityKind::Commendation,
            "处罚" | "penalty" => IntegrityKind::Penalty,
            other => return Err(format!("a record's kind is 表彰 or 处罚: {other:?}")),
        };
        let date = chrono::NaiveDate::parse_from_str(parts[1], "%Y-%m-%d")
            .map_err(|_| format!("a record's date is YYYY-MM-DD: {:?}", parts[1]))?;
        out.push(IntegrityRecord {
            kind,
            date,
            text: parts[2].to_owned(),
            authority: parts.get(3).copied().unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}

fn row_input(get: &dyn Fn(&str) -> String) -> Result<EntryInput, (&'static str, String)> {
    let kind_text = get("kind");
    let kind =
        DirectoryKind::parse(&kind_text).ok_or(("kind", format!("unknown kind {kind_text:?}")))?;
    let status_text = get("licence_status");
    let licence_status = if status_text.trim().is_empty() {
        LicenceStatus::Active
    } else {
        LicenceStatus::parse(&status_text).ok_or((
            "licence_status",
            format!("unknown licence status {status_text:?}"),
        ))?
    };
    let number = |col: &'static str| -> Result<Option<f64>, (&'static str, String)> {
        let t = get(col);
        let t = t.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or((col, format!("not a number: {t:?}")))
    };
    let institution_id = {
        let t = get("institution_id");
        let t = t.trim();
        if t.is_empty() {
            None
        } else {
            Some(
                t.parse::<i64>()
                    .map_err(|_| ("institution_id", format!("not an entry id: {t:?}")))?,
            )
        }
    };
    let unit = Some(get("unit").trim().to_owned()).filter(|u| !u.is_empty());
    Ok(EntryInput {
        kind,
        name: get("name"),
        city: get("city"),
        county: get("county"),
        address: get("address"),
        lat: number("lat")?,
        lon: number("lon")?,
        phone: get("phone"),
        service_hours: get("service_hours"),
        specialties: get("specialties")
            .split(['、', ';', '；'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        licence_no: get("licence_no"),
        licence_status,
        institution_id,
        unit,
        integrity: integrity(&get("integrity")).map_err(|e| ("integrity", e))?,
        intro: get("intro"),
    })
}

/// Reads an import file: its good rows and the problems of the others.
///
/// # Errors
/// The file as a whole is unusable (no header, unknown or missing columns, too many
/// rows, not CSV).
pub fn parse(text: &str) -> Result<Parsed, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Csv(e.to_string()))?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
        return Err(ImportError::NoHeader);
    }
    let mut index: Vec<(&'static str, usize)> = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let col = column_of(h).ok_or_else(|| ImportError::UnknownColumn(h.to_owned()))?;
        if index.iter().any(|(c, _)| *c == col) {
            return Err(ImportError::DuplicateColumn(h.to_owned()));
        }
        index.push((col, i));
    }
    for required in ["kind", "name", "city"] {
        if !index.iter().any(|(c, _)| *c == required) {
            return Err(ImportError::MissingColumn(required));
        }
    }
    let mut parsed = Parsed::default();
    for (n, record) in reader.records().enumerate() {
        if n >= MAX_ROWS {
            return Err(ImportError::TooManyRows);
        }
        let row = u64::try_from(n).unwrap_or(u64::MAX).saturating_add(2);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                parsed.problems.push(RowProblem {
                    row,
                    column: None,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() > headers.len() {
            parsed.problems.push(RowProblem {
                row,
                column: None,
                reason: format!("{} fields, the header has {}", record.len(), headers.len()),
            });
            continue;
        }
        let get = |col: &str| -> String {
            index
                .iter()
                .find(|(c, _)| *c == col)
                .and_then(|(_, i)| record.get(*i))
                .unwrap_or_default()
                .to_owned()
        };
        let input = match row_input(&get) {
            Ok(input) => input,
            Err((column, reason)) => {
                parsed.problems.push(RowProblem {
                    row,
                    column: Some(column.to_owned()),
                    reason,
                });
                continue;
            }
        };
        match input.checked() {
            Ok(write) => parsed.rows.push((row, write, input)),
            Err(e) => parsed.problems.push(RowProblem {
                row,
                column: Some(e.field.to_owned()),
                reason: e.reason,
            }),
        }
    }
    Ok(parsed)
}
