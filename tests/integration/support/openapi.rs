//! Checks real responses against the OpenAPI document: the status must be documented for the
//! operation, the content type must be one it lists, and a JSON body must fit its schema.
//!
//! The schema check covers the JSON Schema keywords the document uses and fails on any other, so the
//! document cannot grow a rule this checker silently ignores.

use std::collections::BTreeSet;

use serde_json::Value;

/// Keywords the checker understands; the rest of a schema is an error.
const KNOWN_KEYWORDS: &[&str] = &[
    "x-data-dependent",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "$ref",
    "format",
    "description",
    "minimum",
    "maximum",
    "maxLength",
    "default",
    "minLength",
    "pattern",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "const",
    "allOf",
    "anyOf",
    "oneOf",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "minItems",
    "maxItems",
    "formatMinimum",
    "formatMaximum",
    "title",
    "example",
    "examples",
];

pub struct Spec {
    pub doc: Value,
    /// `(method, path template, status)` of every response checked so far.
    pub seen: BTreeSet<(String, String, u16)>,
}

impl Spec {
    pub fn new(doc: Value) -> Spec {
        Spec { doc, seen: BTreeSet::new() }
    }

    /// Every operation in the document, as `(METHOD, path template)`.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
        operations
    }

    /// Checks one real response of `method` on `template`.
    pub fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let context = format!("{method} {template} -> {status}");
        let operation = &self.doc["paths"][template][method.to_lowercase()];
        if operation.is_null() {
            return Err(format!("{context}: operation not documented"));
        }
        let response = self.resolve(&operation["responses"][status.to_string()]);
        if response.is_null() {
            return Err(format!("{context}: status not documented"));
        }
        if let Some(documented) = response["headers"].as_object() {
            for name in documented.keys() {
                if !headers.contains_key(name.as_str()) {
                    return Err(format!("{context}: documented header {name} missing"));
                }
            }
        }
        let result = self.check_response(&context, response, headers, body);
        self.seen.insert((method.to_uppercase(), template.to_owned(), status));
        result
    }

    fn check_response(
        &self,
        context: &str,
        response: &Value,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let Some(content) = response["content"].as_object() else { return Ok(()) };
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        let Some(media) = content.get(media_type) else {
            return Err(format!("{context}: content type {content_type:?} not documented"));
        };
        if media_type == "application/json" {
            let value: Value = serde_json::from_slice(body).map_err(|e| format!("{context}: body is not JSON: {e}"))?;
            self.validate(&media["schema"], &value, "$").map_err(|e| format!("{context}: {e}\n{value}"))?;
        }
        Ok(())
    }

    /// Follows a local `$ref` (`#/components/...`), or returns the value itself.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("local $ref");
                self.resolve(self.doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}")))
            }
            None => value,
        }
    }

    /// Validates `value` against `schema`; `at` names the place for the message.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let Some(rules) = schema.as_object() else { return Err(format!("{at}: schema is not an object")) };
        if let Some(unknown) = rules.keys().find(|key| !KNOWN_KEYWORDS.contains(&key.as_str())) {
            return Err(format!("{at}: the checker does not know the keyword {unknown:?}"));
        }
        if let Some(types) = rules.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{at}: bad type keyword")),
            };
            if !allowed.iter().any(|kind| type_matches(kind, value)) {
                return Err(format!("{at}: {value} is not of type {allowed:?}"));
            }
        }
        if let Some(options) = rules.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
        if let Some(minimum) = rules.get("minimum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v < minimum)
        {
            return Err(format!("{at}: {value} is below {minimum}"));
        }
        if let Some(maximum) = rules.get("maximum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v > maximum)
        {
            return Err(format!("{at}: {value} is above {maximum}"));
        }
        if let Some(expected) = rules.get("const")
            && expected != value
        {
            return Err(format!("{at}: {value} is not {expected}"));
        }
        if let Some(bound) = rules.get("exclusiveMinimum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v <= bound)
        {
            return Err(format!("{at}: {value} is not above {bound}"));
        }
        if let Some(bound) = rules.get("exclusiveMaximum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|v| v >= bound)
        {
            return Err(format!("{at}: {value} is not below {bound}"));
        }
        if let Some(text) = value.as_str() {
            check_string(rules, text).map_err(|problem| format!("{at}: {text:?} {problem}"))?;
        }
        self.validate_combinators(rules, value, at)?;
        match (rules.get("format").and_then(Value::as_str), value.as_str()) {
            (Some("uuid"), Some(text)) if uuid::Uuid::parse_str(text).is_err() => {
                return Err(format!("{at}: {text:?} is not a UUID"));
            }
            (Some("date-time"), Some(text)) if parse_time(text).is_none() => {
                return Err(format!("{at}: {text:?} is not an RFC 3339 date-time"));
            }
            _ => {}
        }
        if let Some(object) = value.as_object() {
            check_size(rules, "Properties", object.len()).map_err(|problem| format!("{at}: {problem}"))?;
            if let Some(names) = rules.get("propertyNames") {
                for name in object.keys() {
                    self.validate(names, &Value::String(name.clone()), &format!("{at} (property name {name:?})"))?;
                }
            }
            let properties = rules.get("properties").and_then(Value::as_object);
            for name in rules.get("required").and_then(Value::as_array).into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    return Err(format!("{at}: required property {name:?} missing"));
                }
            }
            for (name, field) in object {
                let place = format!("{at}.{name}");
                match (properties.and_then(|p| p.get(name)), rules.get("additionalProperties")) {
                    (Some(property), _) => self.validate(property, field, &place)?,
                    (None, Some(Value::Bool(false))) => return Err(format!("{place}: property not documented")),
                    (None, Some(Value::Bool(true)) | None) => {}
                    (None, Some(extra)) => self.validate(extra, field, &place)?,
                }
            }
        }
        if let Some(array) = value.as_array() {
            check_size(rules, "Items", array.len()).map_err(|problem| format!("{at}: {problem}"))?;
        }
        if let (Some(items), Some(array)) = (rules.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{index}]"))?;
            }
        }
        Ok(())
    }

    /// `allOf` (every one), `anyOf` (at least one), `oneOf` (exactly one).
    fn validate_combinators(
        &self,
        rules: &serde_json::Map<String, Value>,
        value: &Value,
        at: &str,
    ) -> Result<(), String> {
        let branches = |keyword: &str| rules.get(keyword).and_then(Value::as_array).map(Vec::as_slice);
        for branch in branches("allOf").unwrap_or_default() {
            self.validate(branch, value, at)?;
        }
        let matching =
            |options: &[Value]| options.iter().filter(|branch| self.validate(branch, value, at).is_ok()).count();
        if let Some(options) = branches("anyOf")
            && matching(options) == 0
        {
            return Err(format!("{at}: {value} matches none of anyOf"));
        }
        if let Some(options) = branches("oneOf")
            && matching(options) != 1
        {
            return Err(format!("{at}: {value} matches {} of oneOf, not exactly one", matching(options)));
        }
        Ok(())
    }
}

/// `minLength`, `maxLength` (in characters) and `pattern` (unanchored, as JSON Schema says).
fn check_string(rules: &serde_json::Map<String, Value>, text: &str) -> Result<(), String> {
    let chars = text.chars().count() as u64;
    if let Some(min) = rules.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        return Err(format!("is shorter than {min} characters"));
    }
    if let Some(max) = rules.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        return Err(format!("is longer than {max} characters"));
    }
    if let Some(pattern) = rules.get("pattern").and_then(Value::as_str) {
        let regex =
            regex::Regex::new(pattern).map_err(|e| format!("cannot be checked: bad pattern {pattern:?}: {e}"))?;
        if !regex.is_match(text) {
            return Err(format!("does not match {pattern:?}"));
        }
    }
    let bound = |keyword: &str| rules.get(keyword).and_then(Value::as_str).map(|b| (b, parse_time(b)));
    if let (Some((minimum, Some(min))), Some(time)) = (bound("formatMinimum"), parse_time(text))
        && time < min
    {
        return Err(format!("is before {minimum}"));
    }
    if let (Some((maximum, Some(max))), Some(time)) = (bound("formatMaximum"), parse_time(text))
        && time > max
    {
        return Err(format!("is after {maximum}"));
    }
    Ok(())
}

fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// `min{what}` and `max{what}` (`Properties`, `Items`) against a size.
fn check_size(rules: &serde_json::Map<String, Value>, what: &str, size: usize) -> Result<(), String> {
    let size = size as u64;
    if let Some(min) = rules.get(&format!("min{what}")).and_then(Value::as_u64)
        && size < min
    {
        return Err(format!("{size} {} is under min{what} {min}", what.to_lowercase()));
    }
    if let Some(max) = rules.get(&format!("max{what}")).and_then(Value::as_u64)
        && size > max
    {
        return Err(format!("{size} {} is over max{what} {max}", what.to_lowercase()));
    }
    Ok(())
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}
