//! City resolution (`CALL-ENTRY`): which city answers a call.
//!
//! Order: the dialled number (`053112348`) → the carrier header value configured for
//! the trunk (`P-Called-City`, or the original called number from `Diversion` /
//! `History-Info`) → the caller's fixed-line area code → the mobile number segment
//! (号段) table → otherwise the IVR asks the caller ([`CityLookup::NeedsMenu`]); if
//! the menu fails too, the province center answers ([`ResolvedBy::ProvinceFallback`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::domain::CityId;

/// One `[[cities]]` entry (same fields as the server config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityEntry {
    /// Id, e.g. `jinan`.
    pub id: CityId,
    /// Display name, e.g. `济南`.
    pub name: String,
    /// Fixed-line area codes, e.g. `["0531", "0634"]` (with or without the leading 0).
    pub area_codes: Vec<String>,
    /// Numbers dialled to reach this city, e.g. `["053112348"]`.
    #[serde(default)]
    pub numbers: Vec<String>,
}

/// How the city of a call was found (goes into the CDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// The Request-URI number, e.g. `053112348`.
    DialledNumber,
    /// A header value the carrier sets on the trunk.
    CarrierHeader,
    /// The caller's fixed-line area code.
    AreaCode,
    /// The caller's mobile number segment (号段).
    MobilePrefix,
    /// The caller chose in the IVR city menu.
    Menu,
    /// Nothing worked: the province center answers.
    ProvinceFallback,
}

/// The city that answers a call, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CityResolution {
    /// The city.
    pub city: CityId,
    /// How it was resolved.
    pub how: ResolvedBy,
}

/// Result of [`CityResolver::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CityLookup {
    /// Found without asking the caller.
    Resolved(CityResolution),
    /// Nothing identified the city: the IVR must ask (then [`CityResolver::fallback`]).
    NeedsMenu,
}

/// Errors of city configuration.
#[derive(Debug, thiserror::Error)]
pub enum CityError {
    /// The mobile prefix file could not be read.
    #[error("cannot read mobile prefix table {path}: {source}")]
    Io {
        /// File being read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line of the mobile prefix CSV is not `prefix,city_id` with a 7-digit prefix.
    #[error("mobile prefix table line {line}: expected `1xxxxxx,city_id`, got {text:?}")]
    BadPrefixLine {
        /// 1-based line number.
        line: usize,
        /// The line as read.
        text: String,
    },
    /// The same prefix twice with different cities.
    #[error("mobile prefix table line {line}: prefix {prefix} already maps to another city")]
    ConflictingPrefix {
        /// 1-based line number.
        line: usize,
        /// The prefix.
        prefix: String,
    },
    /// A city id (in the prefix table or as province center) that is not configured.
    #[error("unknown city {city:?} in {place}")]
    UnknownCity {
        /// The id.
        city: String,
        /// Where it was found.
        place: String,
    },
    /// No cities configured.
    #[error("no cities configured")]
    NoCities,
}

/// Mobile number segments: the first 7 digits of a mobile number → city.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MobilePrefixTable {
    prefixes: HashMap<String, CityId>,
}

/// Length of a mobile number segment (号段 + HLR code), e.g. `1380531`.
pub const MOBILE_PREFIX_LEN: usize = 7;

impl MobilePrefixTable {
    /// Parses CSV `prefix,city_id`: `#` comments and blank lines are skipped, as is a
    /// header line starting with `prefix`.
    ///
    /// # Errors
    /// [`CityError::BadPrefixLine`] for a malformed line,
    /// [`CityError::ConflictingPrefix`] for a prefix mapped to two cities.
    pub fn from_csv_str(text: &str) -> Result<Self, CityError> {
        let mut prefixes = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if prefixes.is_empty() && trimmed.to_ascii_lowercase().starts_with("prefix") {
                continue;
            }
            let bad = || CityError::BadPrefixLine {
                line,
                text: raw.to_owned(),
            };
            let mut fields = trimmed.split(',').map(str::trim);
            let (Some(prefix), Some(city), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            if prefix.len() != MOBILE_PREFIX_LEN
                || !prefix.starts_with('1')
                || !prefix.bytes().all(|b| b.is_ascii_digit())
                || city.is_empty()
            {
                return Err(bad());
            }
            let city = CityId::new(city);
            match prefixes.get(prefix) {
                Some(existing) if *existing != city => {
                    return Err(CityError::ConflictingPrefix {
                        line,
                        prefix: prefix.to_owned(),
                    });
                }
                _ => {
                    prefixes.insert(prefix.to_owned(), city);
                }
            }
        }
        Ok(Self { prefixes })
    }

    /// Reads a prefix table file.
    ///
    /// # Errors
    /// [`CityError::Io`] when the file cannot be read, otherwise as
    /// [`MobilePrefixTable::from_csv_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CityError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_csv_str(&text)
    }

    /// The city of a national mobile number (11 digits starting with 1).
    #[must_use]
    pub fn lookup(&self, mobile: &str) -> Option<&CityId> {
        self.prefixes.get(mobile.get(..MOBILE_PREFIX_LEN)?)
    }

    /// Number of prefixes loaded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether no prefix is loaded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    fn cities(&self) -> impl Iterator<Item = &CityId> {
        self.prefixes.values()
    }
}

/// A telephone number in national form, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NationalNumber {
    /// 11-digit mobile number `1[3-9]xxxxxxxxx`.
    Mobile(String),
    /// Number with trunk prefix 0 and area code: `05318xxxxxxx`.
    FixedLine(String),
    /// Anything else (short codes, local numbers without area code, foreign numbers).
    Other(String),
}

/// Normalises a caller or called number to national form: strips separators and the
/// +86 / 0086 / 86 country code, and the 0 some switches put before a mobile number.
#[must_use]
pub fn national_number(raw: &str) -> NationalNumber {
    let trimmed = raw.trim();
    let international = trimmed.starts_with('+');
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let without_country = if international {
        digits.strip_prefix("86").map(str::to_owned)
    } else if let Some(rest) = digits.strip_prefix("0086") {
        Some(rest.to_owned())
    } else {
        // A bare "86" is a country code only when what follows is a full national
        // number (mobile 11 digits, or area code + subscriber ≥ 9 digits).
        digits
            .strip_prefix("86")
            .filter(|rest| rest.len() >= 9 && !rest.starts_with('0'))
            .map(str::to_owned)
    };
    let national = match without_country {
        Some(rest) if is_mobile(&rest) => return NationalNumber::Mobile(rest),
        Some(rest) => format!("0{rest}"),
        None if international => return NationalNumber::Other(digits),
        None => digits,
    };
    if is_mobile(&national) {
        return NationalNumber::Mobile(national);
    }
    if let Some(mobile) = national.strip_prefix('0').filter(|rest| is_mobile(rest)) {
        return NationalNumber::Mobile(mobile.to_owned());
    }
    if national.starts_with('0') && !national.starts_with("00") && national.len() >= 10 {
        return NationalNumber::FixedLine(national);
    }
    NationalNumber::Other(national)
}

fn is_mobile(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    bytes.len() == 11
        && bytes.first() == Some(&b'1')
        && matches!(bytes.get(1), Some(b'3'..=b'9'))
        && bytes.iter().all(u8::is_ascii_digit)
}

fn area_code_with_zero(code: &str) -> String {
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    if digits.starts_with('0') {
        digits
    } else {
        format!("0{digits}")
    }
}

/// The service number every city shares.
pub const SERVICE_NUMBER: &str = "12348";

/// Resolves the city of a call from configuration.
#[derive(Debug, Clone)]
pub struct CityResolver {
    cities: Vec<CityEntry>,
    /// (number digits, city); exact match.
    numbers: Vec<(String, CityId)>,
    /// (area code with leading 0, city), longest first.
    area_codes: Vec<(String, CityId)>,
    mobile: MobilePrefixTable,
    province_center: CityId,
}

impl CityResolver {
    /// Builds a resolver over the configured cities.
    ///
    /// # Errors
    /// [`CityError::NoCities`] for an empty list, [`CityError::UnknownCity`] when the
    /// province center or a prefix-table city is not configured.
    pub fn new(
        cities: &[CityEntry],
        mobile: MobilePrefixTable,
        province_center: CityId,
    ) -> Result<Self, CityError> {
        if cities.is_empty() {
            return Err(CityError::NoCities);
        }
        let known = |id: &CityId| cities.iter().any(|c| c.id == *id);
        if !known(&province_center) {
            return Err(CityError::UnknownCity {
                city: province_center.0,
                place: "province_center".to_owned(),
            });
        }
        if let Some(unknown) = mobile.cities().find(|id| !known(id)) {
            return Err(CityError::UnknownCity {
                city: unknown.0.clone(),
                place: "mobile prefix table".to_owned(),
            });
        }
        let numbers = cities
            .iter()
            .flat_map(|c| {
                c.numbers.iter().map(|n| {
                    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
                    (digits, c.id.clone())
                })
            })
            .collect();
        let mut area_codes: Vec<(String, CityId)> = cities
            .iter()
            .flat_map(|c| {
                c.area_codes
                    .iter()
                    .map(|code| (area_code_with_zero(code), c.id.clone()))
            })
            .collect();
        area_codes.sort_by_key(|entry| std::cmp::Reverse(entry.0.len()));
        Ok(Self {
            cities: cities.to_vec(),
            numbers,
            area_codes,
            mobile,
            province_center,
        })
    }

    /// The configured cities, in config order (the order of the IVR city menu).
    #[must_use]
    pub fn cities(&self) -> &[CityEntry] {
        &self.cities
    }

    /// Resolves without asking the caller.
    /// `dialled` is the Request-URI user part, `carrier_header` the value of the
    /// trunk's configured header (if present), `caller` the From/PAI user part.
    #[must_use]
    pub fn resolve(&self, dialled: &str, carrier_header: Option<&str>, caller: &str) -> CityLookup {
        let found = |city: CityId, how| CityLookup::Resolved(CityResolution { city, how });
        if let Some(city) = self.by_called_number(dialled) {
            return found(city, ResolvedBy::DialledNumber);
        }
        if let Some(city) = carrier_header.and_then(|value| self.by_header(value)) {
            return found(city, ResolvedBy::CarrierHeader);
        }
        match national_number(caller) {
            NationalNumber::FixedLine(number) => {
                if let Some(city) = self.by_area_code(&number) {
                    return found(city, ResolvedBy::AreaCode);
                }
            }
            NationalNumber::Mobile(number) => {
                if let Some(city) = self.mobile.lookup(&number) {
                    return found(city.clone(), ResolvedBy::MobilePrefix);
                }
            }
            NationalNumber::Other(_) => {}
        }
        CityLookup::NeedsMenu
    }

    /// The resolution after the caller chose `city` in the menu; `None` if not configured.
    #[must_use]
    pub fn from_menu(&self, city: &CityId) -> Option<CityResolution> {
        self.cities
            .iter()
            .any(|c| c.id == *city)
            .then(|| CityResolution {
                city: city.clone(),
                how: ResolvedBy::Menu,
            })
    }

    /// The province center, when the menu failed.
    #[must_use]
    pub fn fallback(&self) -> CityResolution {
        CityResolution {
            city: self.province_center.clone(),
            how: ResolvedBy::ProvinceFallback,
        }
    }

    /// A called number: configured exactly, or `<area code>12348`.
    fn by_called_number(&self, raw: &str) -> Option<CityId> {
        // National form, so `+8653112348` and `053112348` are the same number.
        let digits = match national_number(sip_user_part(raw)) {
            NationalNumber::Mobile(n) | NationalNumber::FixedLine(n) | NationalNumber::Other(n) => {
                n
            }
        };
        if digits.is_empty() {
            return None;
        }
        if let Some((_, city)) = self.numbers.iter().find(|(n, _)| *n == digits) {
            return Some(city.clone());
        }
        let area = digits.strip_suffix(SERVICE_NUMBER)?;
        if area.is_empty() {
            return None;
        }
        let area = area_code_with_zero(area);
        self.area_codes
            .iter()
            .find(|(code, _)| *code == area)
            .map(|(_, city)| city.clone())
    }

    /// A carrier header: a city id or name, or a number (called number or area code).
    fn by_header(&self, value: &str) -> Option<CityId> {
        let value = value.trim();
        if let Some(city) = self
            .cities
            .iter()
            .find(|c| c.id.0.eq_ignore_ascii_case(value) || c.name == value)
        {
            return Some(city.id.clone());
        }
        if let Some(city) = self.by_called_number(value) {
            return Some(city);
        }
        let digits: String = sip_user_part(value)
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            return None;
        }
        let area = area_code_with_zero(&digits);
        if let Some((_, city)) = self.area_codes.iter().find(|(code, _)| *code == area) {
            return Some(city.clone());
        }
        match national_number(value) {
            NationalNumber::FixedLine(number) => self.by_area_code(&number),
            _ => None,
        }
    }

    /// Longest configured area code that prefixes a national fixed-line number.
    fn by_area_code(&self, national: &str) -> Option<CityId> {
        self.area_codes
            .iter()
            .find(|(code, _)| national.starts_with(code.as_str()))
            .map(|(_, city)| city.clone())
    }
}

/// The user part of a SIP/tel URI inside a header value (`<sip:053112348@host>;…`),
/// or the value itself when it is not a URI.
fn sip_user_part(value: &str) -> &str {
    let value = value.trim();
    let after_scheme = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|scheme| {
            value
                .to_ascii_lowercase()
                .find(scheme)
                .and_then(|at| value.get(at + scheme.len()..))
        })
        .unwrap_or(value);
    let end = after_scheme
        .find(['@', ';', '>', '?'])
        .unwrap_or(after_scheme.len());
    after_scheme.get(..end).unwrap_or(after_scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_PREFIXES: &str = include_str!("../../config/mobile-prefixes.csv");

    fn entry(id: &str, name: &str, codes: &[&str], numbers: &[&str]) -> CityEntry {
        CityEntry {
            id: CityId::new(id),
            name: name.to_owned(),
            area_codes: codes.iter().map(|s| (*s).to_owned()).collect(),
            numbers: numbers.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn cities() -> Vec<CityEntry> {
        vec![
            entry("jinan", "济南", &["0531", "0634"], &["053112348"]),
            entry("qingdao", "青岛", &["0532"], &["053212348"]),
            entry("heze", "菏泽", &["530"], &[]),
        ]
    }

    fn resolver() -> CityResolver {
        let table = match MobilePrefixTable::from_csv_str(
            "prefix,city_id\n# comment\n1380531,jinan\n1390532,qingdao\n",
        ) {
            Ok(table) => table,
            Err(e) => panic!("{e}"),
        };
        match CityResolver::new(&cities(), table, CityId::new("jinan")) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn resolved(city: &str, how: ResolvedBy) -> CityLookup {
        CityLookup::Resolved(CityResolution {
            city: CityId::new(city),
            how,
        })
    }

    #[test]
    fn dialled_city_number_wins_over_everything() {
        let r = resolver();
        assert_eq!(
            r.resolve("053212348", Some("jinan"), "053188889999"),
            resolved("qingdao", ResolvedBy::DialledNumber)
        );
        // Area code + 12348 that is not listed in `numbers` still names the city.
        assert_eq!(
            r.resolve("053012348", None, ""),
            resolved("heze", ResolvedBy::DialledNumber)
        );
        assert_eq!(
            r.resolve("sip:053112348@12348.sd.local", None, ""),
            resolved("jinan", ResolvedBy::DialledNumber)
        );
        assert_eq!(
            r.resolve("+86-531-12348", None, ""),
            resolved("jinan", ResolvedBy::DialledNumber)
        );
    }

    #[test]
    fn plain_12348_falls_through_to_the_carrier_header() {
        let r = resolver();
        assert_eq!(
            r.resolve("12348", Some("qingdao"), "13800000000"),
            resolved("qingdao", ResolvedBy::CarrierHeader)
        );
        assert_eq!(
            r.resolve(
                "12348",
                Some("<sip:053212348@carrier.example>;reason=unconditional"),
                ""
            ),
            resolved("qingdao", ResolvedBy::CarrierHeader)
        );
        assert_eq!(
            r.resolve("12348", Some("0532"), ""),
            resolved("qingdao", ResolvedBy::CarrierHeader)
        );
        assert_eq!(
            r.resolve("12348", Some("青岛"), ""),
            resolved("qingdao", ResolvedBy::CarrierHeader)
        );
    }

    #[test]
    fn fixed_line_caller_is_resolved_by_area_code_in_any_notation() {
        let r = resolver();
        for caller in [
            "053188889999",
            "0531-88889999",
            "+8653188889999",
            "008653188889999",
        ] {
            assert_eq!(
                r.resolve("12348", None, caller),
                resolved("jinan", ResolvedBy::AreaCode),
                "{caller}"
            );
        }
        // 莱芜 (0634) belongs to 济南 since 2019.
        assert_eq!(
            r.resolve("12348", Some("unknown-city"), "063412345678"),
            resolved("jinan", ResolvedBy::AreaCode)
        );
        // Area code configured without its leading 0.
        assert_eq!(
            r.resolve("12348", None, "05306666777"),
            resolved("heze", ResolvedBy::AreaCode)
        );
    }

    #[test]
    fn mobile_caller_is_resolved_by_segment_with_any_country_prefix() {
        let r = resolver();
        for caller in [
            "13805310000",
            "+8613805310000",
            "008613805310000",
            "8613805310000",
            "013805310000",
        ] {
            assert_eq!(
                r.resolve("12348", None, caller),
                resolved("jinan", ResolvedBy::MobilePrefix),
                "{caller}"
            );
        }
    }

    #[test]
    fn unknown_caller_needs_the_menu_then_falls_back_to_the_province_center() {
        let r = resolver();
        assert_eq!(
            r.resolve("12348", None, "13700000000"),
            CityLookup::NeedsMenu
        );
        assert_eq!(
            r.resolve("12348", None, "01088889999"),
            CityLookup::NeedsMenu
        );
        assert_eq!(r.resolve("12348", None, "anonymous"), CityLookup::NeedsMenu);
        assert_eq!(r.resolve("12348", None, ""), CityLookup::NeedsMenu);
        assert_eq!(
            r.fallback(),
            CityResolution {
                city: CityId::new("jinan"),
                how: ResolvedBy::ProvinceFallback
            }
        );
        assert_eq!(
            r.from_menu(&CityId::new("heze")).map(|c| c.how),
            Some(ResolvedBy::Menu)
        );
        assert_eq!(r.from_menu(&CityId::new("beijing")), None);
    }

    #[test]
    fn national_number_classifies_without_eating_local_numbers() {
        assert_eq!(
            national_number("86123456"),
            NationalNumber::Other("86123456".to_owned())
        );
        assert_eq!(
            national_number("+86 138 0531 0000"),
            NationalNumber::Mobile("13805310000".to_owned())
        );
        assert_eq!(
            national_number("+1 415 555 0100"),
            NationalNumber::Other("14155550100".to_owned())
        );
    }

    #[test]
    fn resolution_serialises_snake_case_for_the_cdr() {
        let value = serde_json::to_value(CityResolution {
            city: CityId::new("jinan"),
            how: ResolvedBy::ProvinceFallback,
        });
        assert_eq!(
            value.ok(),
            Some(serde_json::json!({"city": "jinan", "how": "province_fallback"}))
        );
    }

    #[test]
    fn prefix_table_rejects_bad_lines_and_unknown_cities() {
        assert!(matches!(
            MobilePrefixTable::from_csv_str("prefix,city_id\n138053,jinan\n"),
            Err(CityError::BadPrefixLine { line: 2, .. })
        ));
        assert!(matches!(
            MobilePrefixTable::from_csv_str("1380531,jinan\n1380531,qingdao\n"),
            Err(CityError::ConflictingPrefix { line: 2, .. })
        ));
        let table = MobilePrefixTable::from_csv_str("1380531,atlantis\n");
        let Ok(table) = table else {
            panic!("syntactically fine");
        };
        assert!(matches!(
            CityResolver::new(&cities(), table, CityId::new("jinan")),
            Err(CityError::UnknownCity { .. })
        ));
        assert!(matches!(
            CityResolver::new(&cities(), MobilePrefixTable::default(), CityId::new("x")),
            Err(CityError::UnknownCity { .. })
        ));
    }

    #[test]
    fn shipped_example_prefix_table_loads() {
        let table = MobilePrefixTable::from_csv_str(EXAMPLE_PREFIXES);
        let Ok(table) = table else {
            panic!("example table must parse: {table:?}");
        };
        assert!(table.len() >= 16);
        assert!(table.lookup("13805310000").is_some());
    }
}
