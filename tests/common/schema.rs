//! Checks a live JSON answer against the schema `/api/openapi.json` documents for it:
//! the subset of JSON Schema that utoipa generates (`$ref`, `allOf`, `oneOf`, `anyOf`,
//! `type` alone or as a list, `enum`, `properties`, `required`, `items`,
//! `additionalProperties`). Objects are closed: a key the schema does not name is an
//! error unless the schema allows additional properties or names none at all (a free
//! `Object`), so an answer cannot carry a field the document leaves out.

use serde_json::Value;

/// The problems of `value` against the documented answer of `method path status`
/// (empty when it conforms).
pub fn answer_problems(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    value: &Value,
) -> Vec<String> {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    if !schema.is_object() {
        return vec![format!(
            "{method} {path} {status}: no JSON schema documented"
        )];
    }
    let mut problems = Vec::new();
    check(doc, schema, value, "$", true, &mut problems);
    problems
}

/// Panics listing every problem of `value` against the documented answer.
pub fn assert_answer(doc: &Value, method: &str, path: &str, status: u16, value: &Value) {
    let problems = answer_problems(doc, method, path, status, value);
    assert!(
        problems.is_empty(),
        "{method} {path} {status} does not match its schema:\n  {}\nanswer: {value}",
        problems.join("\n  ")
    );
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The property names an object schema documents, through `allOf` and `$ref`.
fn documented_keys(doc: &Value, schema: &Value, out: &mut Vec<String>) -> bool {
    let schema = resolve(doc, schema);
    let mut open = match &schema["additionalProperties"] {
        Value::Bool(b) => *b,
        Value::Object(_) => true,
        _ => false,
    };
    if let Some(props) = schema["properties"].as_object() {
        out.extend(props.keys().cloned());
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            open |= documented_keys(doc, part, out);
        }
    }
    open
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

fn check(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    closed: bool,
    problems: &mut Vec<String>,
) {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            check(doc, part, value, at, false, problems);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let fits = alternatives.iter().any(|alt| {
                let mut mine = Vec::new();
                check(doc, alt, value, at, closed, &mut mine);
                mine.is_empty()
            });
            if !fits {
                problems.push(format!(
                    "{at}: {value} matches none of {key} {}",
                    schema[key]
                ));
            }
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} not in {allowed:?}"));
    }
    match &schema["type"] {
        Value::String(t) if !type_matches(t, value) => {
            problems.push(format!("{at}: {value} is not {t}"));
            return;
        }
        Value::Array(ts)
            if !ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, value)) =>
        {
            problems.push(format!("{at}: {value} is none of {ts:?}"));
            return;
        }
        _ => {}
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), true, problems);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(key) {
                problems.push(format!("{at}: required {key} missing"));
            }
        }
    }
    let props = schema["properties"].as_object();
    for (key, field) in object {
        let path = format!("{at}.{key}");
        if let Some(field_schema) = props.and_then(|p| p.get(key)) {
            check(doc, field_schema, field, &path, true, problems);
        } else if let Some(extra) = schema["additionalProperties"].as_object() {
            check(
                doc,
                &Value::Object(extra.clone()),
                field,
                &path,
                true,
                problems,
            );
        }
    }
    if closed {
        let mut keys = Vec::new();
        let open = documented_keys(doc, schema, &mut keys);
        let free = keys.is_empty() && schema["allOf"].is_null();
        if !open && !free {
            for key in object.keys().filter(|k| !keys.contains(k)) {
                problems.push(format!("{at}.{key}: not in the documented schema"));
            }
        }
    }
}
