//! `hotline order …`: work orders through a running server's HTTP API with a bearer
//! token (`[[users]] api_token`), over [`crate::http_client`]. Prints the API's JSON
//! or a table; an error answer is shown as the API's `{code, message, field}`.
//!
//! ```text
//! hotline order --url http://127.0.0.1:8080 --token … create --category complaint --description "…" --city jinan
//! hotline order list --state pending_dispatch --sort deadline
//! hotline order get GD20261128…
//! hotline order dispatch GD20261128… --units jinan-legal-aid
//! hotline order return GD20261128… --reason "不属于本单位"
//! ```

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::http_client::{self, HttpError, HttpUrl, Request, UrlError};

/// Commands accepted after the order id: the API's order commands
/// (`POST /api/orders/{id}/{command}`) and `reveal_contact`.
fn is_command(name: &str) -> bool {
    crate::api::orders::COMMANDS.contains(&name) || name == "reveal_contact"
}

/// What went wrong, as shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The URL given.
    #[error("--url: {0}")]
    Url(#[from] UrlError),
    /// No token.
    #[error("no token: pass --token or set HOTLINE_TOKEN (a [[users]] api_token)")]
    NoToken,
    /// Bad arguments of an order command.
    #[error("{0}")]
    Usage(String),
    /// The exchange failed.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The API answered with an error body.
    #[error("{}", api_error_text(*.status, .code, .message, .field.as_deref()))]
    Api {
        /// HTTP status.
        status: u16,
        /// `code`.
        code: String,
        /// `message`.
        message: String,
        /// `field`, when the error is about one.
        field: Option<String>,
    },
    /// An answer that is not the API's JSON.
    #[error("HTTP {status}: unexpected answer: {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
}

fn api_error_text(status: u16, code: &str, message: &str, field: Option<&str>) -> String {
    match field {
        Some(field) => format!("HTTP {status} {code}: {message} (field: {field})"),
        None => format!("HTTP {status} {code}: {message}"),
    }
}

impl CliError {
    /// Process exit code: 2 for usage errors, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Url(_) | Self::NoToken | Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A client of one server as one user.
#[derive(Debug, Clone)]
pub struct OrderClient {
    base: HttpUrl,
    token: String,
    timeout: Duration,
}

impl OrderClient {
    /// `url` like `http://127.0.0.1:8080`; `token` the user's bearer token.
    ///
    /// # Errors
    /// A URL that is not `http://…`, or no token.
    pub fn new(url: &str, token: Option<&str>, timeout: Duration) -> Result<Self, CliError> {
        let base = HttpUrl::parse(url)?;
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(CliError::NoToken)?;
        Ok(Self {
            base,
            token: token.to_owned(),
            timeout,
        })
    }

    async fn call(&self, request: Request) -> Result<Value, CliError> {
        let request = request.header("Authorization", &format!("Bearer {}", self.token));
        let response = http_client::send(&request, self.timeout).await?;
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        if response.is_success() {
            return body.ok_or_else(|| CliError::Unexpected {
                status: response.status,
                body: response.text().chars().take(200).collect(),
            });
        }
        match body {
            Some(Value::Object(e)) if e.get("code").is_some_and(Value::is_string) => {
                let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
                Err(CliError::Api {
                    status: response.status,
                    code: text("code").unwrap_or_default(),
                    message: text("message").unwrap_or_default(),
                    field: text("field"),
                })
            }
            _ => Err(CliError::Unexpected {
                status: response.status,
                body: response.text().chars().take(200).collect(),
            }),
        }
    }

    /// `POST /api/orders`.
    ///
    /// # Errors
    /// [`CliError`].
    pub async fn create(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Value, CliError> {
        let mut request = Request::post_json(self.base.join("/api/orders"), body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.call(request).await
    }

    /// `GET /api/orders?…`.
    ///
    /// # Errors
    /// [`CliError`].
    pub async fn list(&self, query: &[(&str, String)]) -> Result<Value, CliError> {
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let path = if query.is_empty() {
            "/api/orders".to_owned()
        } else {
            format!("/api/orders?{}", query.join("&"))
        };
        self.call(Request::get(self.base.join(&path))).await
    }

    /// `GET /api/orders/{id}`.
    ///
    /// # Errors
    /// [`CliError`].
    pub async fn get(&self, id: &str) -> Result<Value, CliError> {
        let path = format!("/api/orders/{}", percent_encode(id));
        self.call(Request::get(self.base.join(&path))).await
    }

    /// `GET /api/orders/{id}/events`.
    ///
    /// # Errors
    /// [`CliError`].
    pub async fn events(&self, id: &str) -> Result<Value, CliError> {
        let path = format!("/api/orders/{}/events", percent_encode(id));
        self.call(Request::get(self.base.join(&path))).await
    }

    /// `POST /api/orders/{id}/{command}`.
    ///
    /// # Errors
    /// [`CliError`].
    pub async fn command(&self, id: &str, command: &str, body: &Value) -> Result<Value, CliError> {
        let path = format!(
            "/api/orders/{}/{}",
            percent_encode(id),
            percent_encode(command)
        );
        self.call(Request::post_json(self.base.join(&path), body))
            .await
    }
}

/// Everything but unreserved characters (RFC 3986) percent-encoded.
#[must_use]
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// An order command parsed from `<command> <id> [--field value]…`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandCall {
    /// The command (`sign`, `dispatch`, …).
    pub command: String,
    /// The order.
    pub id: String,
    /// The JSON body.
    pub body: Value,
}

/// Fields given to the callback outcome object rather than to the body.
const OUTCOME_FIELDS: [&str; 3] = ["satisfaction", "ground", "target"];

/// Parses `<command> <id> [--field value | --field=value]…`. Field names take `-` or
/// `_`. `--units a,b` (or `--unit a --unit b`) is a list; `--extra-working-days` and
/// `--version` are numbers; `--outcome redo --target unit` builds the callback outcome;
/// `--json '{…}'` adds raw fields; every other value is a string.
///
/// # Errors
/// [`CliError::Usage`] naming the problem.
pub fn parse_command_call(args: &[String]) -> Result<CommandCall, CliError> {
    let usage = |m: String| CliError::Usage(m);
    let command = args
        .first()
        .ok_or_else(|| usage("an order command is needed".into()))?
        .replace('-', "_");
    if !is_command(&command) {
        return Err(usage(format!(
            "unknown order command {command:?}; one of: create, list, get, events, {}, \
             reveal_contact",
            crate::api::orders::COMMANDS.join(", ")
        )));
    }
    let id = args
        .get(1)
        .filter(|id| !id.starts_with("--"))
        .ok_or_else(|| usage(format!("{command}: the order id is needed")))?
        .clone();
    let mut body = Map::new();
    let mut outcome = Map::new();
    let mut units: Vec<Value> = Vec::new();
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let Some(name) = flag.strip_prefix("--") else {
            return Err(usage(format!("{command}: unexpected argument {flag:?}")));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.replace('-', "_"), v.to_owned()),
            None => (
                name.replace('-', "_"),
                rest.next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{command}: --{name} needs a value")))?,
            ),
        };
        match name.as_str() {
            "units" | "unit" => units.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| Value::String(u.to_owned())),
            ),
            "extra_working_days" | "version" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| usage(format!("--{name} must be a whole number")))?;
                body.insert(name, Value::from(n));
            }
            "outcome" => {
                outcome.insert("outcome".into(), Value::String(value));
            }
            n if OUTCOME_FIELDS.contains(&n) => {
                outcome.insert(name, Value::String(value));
            }
            "url" | "token" | "output" | "timeout" => {
                return Err(usage(format!(
                    "--{name} goes before the order command: hotline order --{name} … {command} {id}"
                )));
            }
            "json" => match serde_json::from_str(&value) {
                Ok(Value::Object(extra)) => body.extend(extra),
                _ => return Err(usage("--json must be a JSON object".into())),
            },
            _ => {
                body.insert(name, Value::String(value));
            }
        }
    }
    if !units.is_empty() {
        body.insert("units".into(), Value::Array(units));
    }
    if !outcome.is_empty() {
        if !outcome.contains_key("outcome") {
            return Err(usage(
                "--satisfaction, --ground and --target go with --outcome".into(),
            ));
        }
        body.insert("outcome".into(), Value::Object(outcome));
    }
    Ok(CommandCall {
        command,
        id,
        body: Value::Object(body),
    })
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Columns for people.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn units_text(order: &Value) -> String {
    let units: Vec<String> = order["units"]
        .as_array()
        .map(|a| a.iter().map(|u| text(&u["unit"])).collect())
        .unwrap_or_default();
    if units.is_empty() {
        "-".into()
    } else {
        units.join(",")
    }
}

/// The running limit shown in lists: transfer before dispatch, else feedback.
fn due_text(order: &Value) -> String {
    let d = &order["deadlines"];
    let key = match order["state"].as_str() {
        Some("draft" | "pending_dispatch") => "transfer_due_display",
        Some("closed") => return "-".into(),
        _ => "feedback_due_display",
    };
    let mut due = text(&d[key]);
    if d["provisional"] == Value::Bool(true) {
        due.push_str(" (provisional)");
    }
    due
}

/// Rows padded to the widest cell of each column (by characters).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(width(cell)) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// What each subcommand printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `GET /api/orders`.
    List,
    /// One order.
    Order,
    /// `GET /api/orders/{id}/events`.
    Events,
    /// Anything else (contact reveal…).
    Other,
}

/// Renders an API answer.
#[must_use]
pub fn render(value: &Value, shape: Shape, output: Output) -> String {
    if output == Output::Json {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
    match shape {
        Shape::List => {
            let rows: Vec<Vec<String>> = value["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|o| {
                            vec![
                                text(&o["id"]),
                                text(&o["state"]),
                                text(&o["fields"]["category"]),
                                text(&o["fields"]["urgency"]),
                                text(&o["fields"]["city"]),
                                units_text(o),
                                due_text(o),
                                text(&o["reminder"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut out = table(
                &[
                    "ID", "STATE", "CATEGORY", "URGENCY", "CITY", "UNITS", "DUE", "REMINDER",
                ],
                &rows,
            );
            let _ = writeln!(
                out,
                "page {} of {} per page, {} in total",
                text(&value["page"]),
                text(&value["per_page"]),
                text(&value["total"])
            );
            out
        }
        Shape::Order => {
            let f = &value["fields"];
            let allowed: Vec<String> = value["allowed_commands"]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default();
            let rows = [
                ("id", text(&value["id"])),
                ("number", text(&value["number"])),
                ("version", text(&value["version"])),
                ("state", text(&value["state"])),
                ("category", text(&f["category"])),
                ("urgency", text(&f["urgency"])),
                ("business area", text(&f["business_area"])),
                ("city", text(&f["city"])),
                ("units", units_text(value)),
                ("lead unit", text(&value["lead_unit"])),
                (
                    "contact",
                    format!("{} {}", text(&f["contact_name"]), text(&f["contact_phone"])),
                ),
                ("received", text(&f["received_at"])),
                ("due", due_text(value)),
                ("reminder", text(&value["reminder"])),
                ("overdue", text(&value["overdue"])),
                ("description", text(&f["description"])),
                ("allowed", allowed.join(" ")),
            ];
            let mut out = String::new();
            for (k, v) in rows {
                let _ = writeln!(out, "{k:<14}{v}");
            }
            out
        }
        Shape::Events => {
            let rows: Vec<Vec<String>> = value
                .as_array()
                .map(|events| {
                    events
                        .iter()
                        .map(|e| {
                            vec![
                                text(&e["seq"]),
                                text(&e["at"]),
                                text(&e["actor"]),
                                text(&e["role"]),
                                text(&e["kind"]["type"]),
                                format!(
                                    "{} → {}",
                                    text(&e["state_before"]),
                                    text(&e["state_after"])
                                ),
                                text(&e["reason"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(
                &["SEQ", "AT", "ACTOR", "ROLE", "EVENT", "STATE", "REASON"],
                &rows,
            )
        }
        Shape::Other => {
            let mut out = String::new();
            if let Some(map) = value.as_object() {
                for (k, v) in map {
                    let _ = writeln!(out, "{k:<14}{}", text(v));
                }
            } else {
                out = format!("{value}\n");
            }
            out
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Table => "table",
            Self::Json => "json",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn command_arguments_become_the_json_body() {
        let call = parse_command_call(&args(&[
            "dispatch",
            "GD1",
            "--units",
            "a, b",
            "--unit=c",
            "--area",
            "legal_aid",
        ]))
        .unwrap();
        assert_eq!(call.command, "dispatch");
        assert_eq!(call.id, "GD1");
        assert_eq!(
            call.body,
            json!({"units": ["a", "b", "c"], "area": "legal_aid"})
        );
        let call = parse_command_call(&args(&[
            "request-extension",
            "GD1",
            "--extra-working-days",
            "5",
            "--reason",
            "123",
            "--version",
            "7",
        ]))
        .unwrap();
        assert_eq!(call.command, "request_extension");
        assert_eq!(
            call.body,
            json!({"extra_working_days": 5, "reason": "123", "version": 7})
        );
        let call = parse_command_call(&args(&[
            "record_callback",
            "GD1",
            "--outcome",
            "redo",
            "--target",
            "unit",
            "--note",
            "答复错误",
        ]))
        .unwrap();
        assert_eq!(
            call.body,
            json!({"outcome": {"outcome": "redo", "target": "unit"}, "note": "答复错误"})
        );
        let call =
            parse_command_call(&args(&["sign", "GD1", "--json", r#"{"version": 3}"#])).unwrap();
        assert_eq!(call.body, json!({"version": 3}));
    }

    #[test]
    fn bad_command_arguments_are_usage_errors() {
        for bad in [
            &["fly", "GD1"][..],
            &["sign"],
            &["sign", "--reason", "x"],
            &["return", "GD1", "--reason"],
            &["return", "GD1", "reason"],
            &["request_extension", "GD1", "--extra-working-days", "five"],
            &["sign", "GD1", "--json", "[1]"],
            &["record_callback", "GD1", "--target", "unit"],
            &["sign", "GD1", "--token", "secret"],
        ] {
            let e = parse_command_call(&args(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn api_errors_show_code_message_and_field() {
        let e = CliError::Api {
            status: 422,
            code: "missing_field".into(),
            message: "description is required".into(),
            field: Some("description".into()),
        };
        assert_eq!(
            e.to_string(),
            "HTTP 422 missing_field: description is required (field: description)"
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn tables_line_up_with_chinese_text() {
        let page = json!({"items": [
            {"id": "GD1", "state": "dispatched", "fields": {"category": "complaint", "urgency": "normal", "city": "jinan"},
             "units": [{"unit": "jinan-legal-aid"}], "deadlines": {"feedback_due_display": "2025-10-15T24:00+08:00", "provisional": false},
             "reminder": "none"}],
            "page": 1, "per_page": 50, "total": 1});
        let out = render(&page, Shape::List, Output::Table);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID   STATE       CATEGORY"), "{out}");
        assert!(
            lines[1].contains("jinan-legal-aid  2025-10-15T24:00+08:00  none"),
            "{out}"
        );
        assert_eq!(lines[2], "page 1 of 50 per page, 1 in total");
        assert_eq!(percent_encode("济南 a&b"), "%E6%B5%8E%E5%8D%97%20a%26b");
    }
}
