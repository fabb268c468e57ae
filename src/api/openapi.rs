//! The OpenAPI 3.1 document served at `/api/openapi.json`, written by hand. A test
//! checks that every route of [`super::orders::routes`] is listed.

use serde_json::{Value, json};

fn error_ref() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn op(summary: &str, tag: &str) -> Value {
    json!({
        "summary": summary,
        "tags": [tag],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "4XX": error_ref(),
        }
    })
}

fn with_body(mut operation: Value, schema: Value) -> Value {
    operation["requestBody"] =
        json!({"required": true, "content": {"application/json": {"schema": schema}}});
    operation
}

/// Every route served by the work-order API, `(method, path)`.
pub const ROUTES: [(&str, &str); 28] = [
    ("post", "/api/login"),
    ("post", "/api/logout"),
    ("get", "/api/me"),
    ("post", "/api/orders"),
    ("get", "/api/orders"),
    ("get", "/api/orders/{id}"),
    ("get", "/api/orders/{id}/events"),
    ("post", "/api/orders/{id}/reveal_contact"),
    ("get", "/api/orders/{id}/voice_message"),
    ("post", "/api/orders/{id}/{command}"),
    ("get", "/api/ledger/verify"),
    ("get", "/api/ledger/{unit}.csv"),
    ("get", "/api/rankings"),
    ("get", "/api/units"),
    ("get", "/api/special_flags"),
    ("get", "/api/reveals"),
    ("get", "/api/openapi.json"),
    ("get", "/api/cities"),
    ("get", "/api/calls"),
    ("post", "/api/calls/{call_id}/transfer"),
    ("get", "/api/recordings/{call_id}"),
    ("get", "/api/drafts/{call_id}"),
    ("put", "/api/drafts/{call_id}"),
    ("delete", "/api/drafts/{call_id}"),
    ("get", "/api/stats/orders"),
    ("get", "/api/queues"),
    ("get", "/api/events"),
    ("post", "/api/agents/{id}/{action}"),
];

/// How the sign-in rate is computed (AS-METRICS; `src/queue/attendance.rs`).
pub const SIGN_IN_RATE: &str = "Sign-in rate (签到率) of a unit's agents (an agent belongs to the unit of its \
    [[queues.agent]] city) over the period: duty shifts signed in on time / duty shifts scheduled. \
    A scheduled shift is a roster shift ([[queues.roster]]) starting in the period whose check moment \
    (start + [queues] absent_grace_secs, when the ACD reports absence) has passed; it is signed in on \
    time when at that moment the agent's latest sign_in/sign_out row in queue_log is a sign_in and no \
    absent row was logged for it. null when the unit had no scheduled shift (no roster data): never \
    a made-up 100 %.";

/// The document.
#[must_use]
pub fn document() -> Value {
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let mut list = op("List orders in the caller's scope", "orders");
    list["responses"]["200"] = json!({"description": "one page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderPage"}}}});
    list["parameters"] = json!([
        query("state", "lifecycle state"),
        query("city", "city unit id"),
        query("category", "consultation|complaint|suggestion|case"),
        query("business_area", "business area"),
        query("urgency", "normal|urgent"),
        query("unit", "unit that had a part in the order"),
        query("overdue", "true|false"),
        query("phone", "caller number (roles that see contacts only)"),
        query("special_flag", "true|false"),
        query(
            "flagged",
            "open (flagged, under study, W-14) | concluded | all"
        ),
        query("page", "from 1"),
        query("per_page", "1..200, default 50"),
        query("sort", "deadline|created"),
    ]);
    let mut create = with_body(
        op(
            "Create and submit an order (auto-routed when the area is clear)",
            "orders",
        ),
        json!({"$ref": "#/components/schemas/CreateOrder"}),
    );
    create["parameters"] = json!([{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 128}}]);
    create["responses"]["201"] = json!({"description": "created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}});
    create["responses"]["202"] = json!({
        "description": "accepted while the database is unavailable: the create is queued durably (fsync'd outbox journal in the data directory) and written, in order, once the database answers; the body is the order as it will be stored, with \"queued\": true. A repeat with the same Idempotency-Key answers the same queued order. Until it lands, GET /api/orders/{id} does not find it and commands on it get 503.",
        "content": {"application/json": {"schema": {"allOf": [
            {"$ref": "#/components/schemas/Order"},
            {"type": "object", "properties": {"queued": {"type": "boolean", "enum": [true]}}, "required": ["queued"]}
        ]}}}
    });
    create["responses"]["503"] = json!({"description": "database_unavailable and the outbox journal cannot be written either (disk): retry after Retry-After"});
    let mut command = with_body(
        op(
            "Run a command on an order (409 version_conflict, 422 illegal_transition, 403 role/scope, 503 database_unavailable with Retry-After: not queued, a command is decided on the stored order)",
            "orders",
        ),
        json!({"type": "object", "description": "the command's fields (src/ticket/command.rs, snake_case) plus optional version"}),
    );
    command["parameters"] = json!([path_param("id"), {"name": "command", "in": "path", "required": true, "schema": {"type": "string", "enum": [
        "submit","answer_directly","dispatch","add_helping_units","return_upward","sign","return","start","request_extension","decide_extension",
        "draft_reply","review","reply","send_reviewed_reply","feed_back","record_callback","remind","supervise","add_note",
        "recompute_deadlines","withdraw","explain_outside_remit","study_note","conclude_study"]}}, {"name": "If-Match", "in": "header", "required": false, "schema": {"type": "integer"}}]);
    let with_id = |mut v: Value| {
        v["parameters"] = json!([path_param("id")]);
        v
    };
    let mut rankings = op(
        "Unit rankings per period (AS-RANK); format=csv for CSV",
        "assessment",
    );
    rankings["parameters"] = json!([
        query("period", "2026-11 | 2026-Q4 | 2026"),
        query(
            "by",
            "unit|category|area (area: 法律服务需求类型, the business areas of the order fields)"
        ),
        query("group", "case|consultation|complaint_suggestion"),
        query(
            "business_area",
            "legal_aid|lawyer|notary|…|all: rank on the orders of one business area only"
        ),
        query(
            "metric",
            "completion_rate|on_time_rate|satisfaction_rate|sign_in_rate|transfer_rate|combined"
        ),
        query(
            "level",
            "province|city|county|township|institution|all (default: all, each level ranked separately)"
        ),
        query("format", "json|csv")
    ]);
    rankings["responses"]["200"] = json!({"description": "ranked rows (CSV: the same columns)", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Rankings"}},
        "text/csv": {"schema": {"type": "string"}}}});
    let mut ledger_csv = op(
        "Per-unit ledger export (CSV; supervisors, province admins)",
        "ledger",
    );
    ledger_csv["parameters"] = json!([path_param("unit")]);
    let with_call = |mut v: Value| {
        v["parameters"] = json!([path_param("call_id")]);
        v
    };
    let transfer = with_body(
        with_call(op(
            "Blind transfer of a bridged call, as the agent's REFER: survey, queue:<city>, or unit:<unit id> (422 transfer_unavailable for now); only the agent on the call or a supervisor of its city",
            "calls",
        )),
        json!({"type": "object", "required": ["to"], "additionalProperties": false, "properties": {"to": {"type": "string", "examples": ["survey", "queue:qingdao", "unit:jinan-legal-aid"]}}}),
    );
    let mut recording = with_call(op(
        "The call's recording (audio/wav) with HTTP Range (206/416); supervisors and province admins of the call's city and the agent who took it (others 403); every request audited",
        "calls",
    ));
    recording["parameters"] = json!([path_param("call_id"), {"name": "Range", "in": "header", "required": false, "schema": {"type": "string", "examples": ["bytes=0-1023"]}}]);
    recording["responses"]["200"] =
        json!({"description": "the whole file", "content": {"audio/wav": {}}});
    recording["responses"]["206"] =
        json!({"description": "a byte range", "content": {"audio/wav": {}}});
    let mut stats = op(
        "Order KPIs counted by the server in the user's unit subtree: per state, open, overdue, due today, special flags, satisfaction",
        "assessment",
    );
    stats["parameters"] = json!([query(
        "period",
        "2026-11 | 2026-Q4 | 2026; default: every order"
    )]);
    let mut agent_action = op(
        "Agent state: sign_in, sign_out, pause ({\"reason\"}), unpause, end_wrap_up; the agent's own user or a supervisor of the agent's city (403 else)",
        "queues",
    );
    agent_action["parameters"] = json!([path_param("id"), {"name": "action", "in": "path", "required": true, "schema": {"type": "string", "enum": ["sign_in", "sign_out", "pause", "unpause", "end_wrap_up"]}}]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "12348 hotline work-order API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "hotline_session", "description": "writes also need X-CSRF-Token"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
                "CreateOrder": {"type": "object", "required": ["category", "description"], "additionalProperties": false, "properties": {
                    "contact_name": {"type": "string"}, "contact_phone": {"type": "string"},
                    "category": {"enum": ["consultation", "complaint", "suggestion", "case"]},
                    "urgency": {"enum": ["normal", "urgent"]},
                    "business_area": {"enum": ["legal_aid", "lawyer", "notary", "judicial_appraisal", "mediation", "grassroots_legal_service", "legal_education", "other", "unknown"]},
                    "units": {"type": "array", "items": {"type": "string"}}, "description": {"type": "string"}, "remarks": {"type": "string"},
                    "channel": {"enum": ["phone", "web", "app", "wechat", "hotline_12345"]}, "city": {"type": "string"},
                    "call_id": {"type": ["string", "null"]}, "recordings": {"type": "array", "items": {"type": "string"}},
                    "received_at": {"type": "string", "format": "date-time"}}},
                "SignIn": {"type": "object", "description": SIGN_IN_RATE, "properties": {
                    "sign_in_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                    "shifts_scheduled": {"type": ["integer", "null"]},
                    "shifts_signed_in": {"type": ["integer", "null"]}}},
                "Rankings": {"type": "object", "properties": {
                    "period": {"type": "string"}, "group": {"type": "string"}, "by": {"enum": ["unit", "category", "area"]},
                    "rows": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/SignIn"}, {"type": "object", "properties": {
                        "rank": {"type": "integer"}, "unit": {"type": "string"}, "unit_name": {"type": "string"},
                        "orders": {"type": "integer"}, "completed": {"type": "integer"},
                        "completion_rate": {"type": ["number", "null"]}, "on_time_rate": {"type": ["number", "null"]},
                        "satisfaction_rate": {"type": ["number", "null"]}, "returns": {"type": "integer"},
                        "overdue": {"type": "integer", "description": "finished (completed or withdrawn) after the limit, or open past it now: as /api/stats/orders counts"},
                        "withdrawn": {"type": "integer", "description": "withdrawn orders, still counted in the period received"},
                        "level": {"enum": ["province", "city", "county", "township", "institution"], "description": "rank is the position within this level"}}}]}},
                    "level": {"type": "string", "description": "the level filter: all or one level"},
                    "levels": {"type": "object", "description": "the rows by unit level (by=unit)", "additionalProperties": {"type": "array"}},
                    "sign_in": {"type": "array", "description": "every unit whose agents had duty shifts due in the period",
                        "items": {"allOf": [{"$ref": "#/components/schemas/SignIn"}, {"type": "object", "properties": {
                            "unit": {"type": "string"}, "unit_name": {"type": "string"}}}]}}}},
                "OrderPage": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
                    "total": {"type": "integer", "description": "exact number of orders matching the filters in the caller's scope"},
                    "page": {"type": "integer"}, "per_page": {"type": "integer"}}},
                "Order": {"type": "object", "properties": {
                    "id": {"type": "string"}, "version": {"type": "integer"}, "state": {"type": "string"}, "fields": {"type": "object"},
                    "units": {"type": "array"}, "lead_unit": {"type": ["string", "null"]}, "deadlines": {"type": "object"},
                    "reminder": {"enum": ["none", "yellow", "red"]}, "overdue": {"type": "boolean"}, "special_flag": {"type": "boolean"},
                    "closing": {"type": ["object", "null"]}, "allowed_commands": {"type": "array", "items": {"type": "string"}}}}
            }
        },
        "security": [{"session": []}, {"bearer": []}],
        "paths": {
            "/api/login": {"post": with_body(op("Log in (Content-Type: application/json only, else 415): session cookie + CSRF token; 401 bad_credentials, 429 with Retry-After (per user and address, and per address)", "auth"),
                json!({"type": "object", "required": ["user", "password"], "properties": {"user": {"type": "string"}, "password": {"type": "string"}}}))},
            "/api/logout": {"post": op("Log out (204)", "auth")},
            "/api/me": {"get": op("The current user", "auth")},
            "/api/orders": {"post": create, "get": list},
            "/api/orders/{id}": {"get": with_id(op("One order (by id, or by its short number), contact masked per role (agents included), allowed_commands for this user; a full contact is audited (orders.read, naming the order)", "orders"))},
            "/api/orders/{id}/events": {"get": with_id(op("The order's ledger timeline", "orders"))},
            "/api/orders/{id}/reveal_contact": {"post": with_body(with_id(op("Unmasked contact for a reason (422 missing_field reason without one); audited and recorded in the order's history as contact_revealed (H-12-4)", "orders")),
                json!({"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}))},
            "/api/orders/{id}/voice_message": {"get": with_id(op("The caller's voice message of the order (audio/wav, Range), for dispatch, units, callback staff, agents and supervisors who may read the order (404 otherwise; 403 for reviewers); audited as voice_message.play naming the order and the call. The order's voice_message.play_url points here", "orders"))},
            "/api/orders/{id}/{command}": {"post": command},
            "/api/ledger/verify": {"get": op("Recompute the hash chain; first broken event", "ledger")},
            "/api/ledger/{unit}.csv": {"get": ledger_csv},
            "/api/rankings": {"get": rankings},
            "/api/units": {"get": op("Unit tree", "assessment")},
            "/api/special_flags": {"get": op("Orders with the special flag (W-14); GET /api/orders?flagged=open lists those still under study, flagged=concluded those closed by conclude_study", "orders")},
            "/api/reveals": {"get": op("Contact reveals (H-12-4): user, order_id, at, reason, roles, unit; newest first; filters order, limit (1..=1000, default 200); supervisors (orders in their scope) and province administrators only", "orders")},
            "/api/openapi.json": {"get": op("This document", "meta")},
            "/api/cities": {"get": op("Each city's published answering hours and whether it is staffed now (H-7)", "calls")},
            "/api/calls": {"get": op("Call detail records (filters: city, category, caller, path, from, to, limit). Each item is {record, voice_message, in_progress}: a record is written when the call is answered (in_progress true) and completed at its end; record.end_reason is shutdown, server-restart or crash when the server closed it itself; record.agent_failures lists the agents offered the call who did not answer or whose phone vanished mid-call (the caller was re-queued). Callers' numbers are masked (138****5678, ****5678) except for dispatch, handling units and callback staff, whose answers are audited (calls.read, naming the call ids)", "calls")},
            "/api/calls/{call_id}/transfer": {"post": transfer},
            "/api/recordings/{call_id}": {"get": recording},
            "/api/drafts/{call_id}": {
                "get": with_call(op("The user's autosaved draft order of a call (404 when none)", "calls")),
                "put": with_body(with_call(op("Autosave the draft order of a call (the form as a JSON object, at most 16 KiB; only the agent on the call or a supervisor of its city, 403 else; 404 for a call the server does not know; 409 draft_taken when another user writes it; 429 draft_quota beyond 20 drafts per user)", "calls")), json!({"type": "object"})),
                "delete": with_call(op("Delete the user's draft of a call (204)", "calls"))
            },
            "/api/stats/orders": {"get": stats},
            "/api/queues": {"get": op("Live queue snapshot of each city in the user's unit subtree: waiting calls, agents with state, call and wrap-up left", "queues")},
            "/api/events": {"get": op("Server-sent events of the cities in the user's unit subtree (and of the user's own agent): agent_state, call_offered (screen-pops, only to the offered agent and the supervisors of its city), queue, lagged", "queues")},
            "/api/agents/{id}/{action}": {"post": agent_action}
        }
    });
    let schemas = &mut doc["components"]["schemas"];
    schemas["Rankings"]["properties"]["metric"] =
        json!({"type": "string", "description": "what rank orders by"});
    schemas["Rankings"]["properties"]["weights"] = json!({"type": "object",
        "description": "the [ranking.weights] the combined score used (W-19: nothing else is set by hand)",
        "properties": {
            "completion_rate": {"type": "number"}, "on_time_rate": {"type": "number"},
            "satisfaction_rate": {"type": "number"}, "sign_in_rate": {"type": "number"},
            "transfer_rate": {"type": "number"}}});
    if let Some(row) =
        schemas["Rankings"]["properties"]["rows"]["items"]["allOf"][1]["properties"].as_object_mut()
    {
        for (key, schema) in [
            (
                "transfer_rate",
                json!({"type": ["number", "null"], "description": "first dispatch within 1 working day (urgent: 1 hour) of receipt, over the orders whose transfer is decided; counted for the city whose center received them"}),
            ),
            ("transfers_on_time", json!({"type": "integer"})),
            (
                "transfers_late",
                json!({"type": "integer", "description": "dispatched late, or waiting (or withdrawn) past the limit"}),
            ),
            (
                "combined_score",
                json!({"type": ["number", "null"], "description": "Σ weight × rate / Σ weight over the figures the unit has data for"}),
            ),
            (
                "business_area",
                json!({"type": "string", "description": "by=area: the area (unit_name is its Chinese name)"}),
            ),
        ] {
            row.insert(key.to_owned(), schema);
        }
    }
    schemas["Order"]["properties"]["number"] = json!({"type": ["string", "null"],
        "description": "short number read out on the phone, 鲁12348-20261207-0042 (prefix, day of receipt in Asia/Shanghai, sequence per day); null on orders created before numbering"});
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
    }
}
