//! Checks real responses against the OpenAPI document: the status must be documented for the
//! operation, the content type must be one it lists, and a JSON body must fit its schema.
//!
//! The schema check covers the JSON Schema keywords the document uses and fails on any other, so the
//! document cannot grow a rule this checker silently ignores.

use std::collections::BTreeSet;

use serde_json::Value;

/// Keywords the checker understands; the rest of a schema is an error.
const KNOWN_KEYWORDS: &[&str] = &[
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
    "minLength",
    "pattern",
    "oneOf",
    "maxProperties",
    "propertyNames",
    "example",
    "examples",
    "default",
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
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
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
        if let Some(options) = rules.get("oneOf").and_then(Value::as_array) {
            let matching = options.iter().filter(|option| self.validate(option, value, at).is_ok()).count();
            if matching != 1 {
                return Err(format!("{at}: {value} matches {matching} of the oneOf schemas, not one"));
            }
        }
        if let Some(text) = value.as_str() {
            let length = text.chars().count() as u64;
            if rules.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
                return Err(format!("{at}: {text:?} is shorter than minLength"));
            }
            if rules.get("maxLength").and_then(Value::as_u64).is_some_and(|max| length > max) {
                return Err(format!("{at}: {text:?} is longer than maxLength"));
            }
            if let Some(pattern) = rules.get("pattern").and_then(Value::as_str) {
                let regex = regex::Regex::new(pattern).map_err(|e| format!("{at}: bad pattern {pattern:?}: {e}"))?;
                if !regex.is_match(text) {
                    return Err(format!("{at}: {text:?} does not match {pattern:?}"));
                }
            }
        }
        if let (Some(max), Some(object)) = (rules.get("maxProperties").and_then(Value::as_u64), value.as_object())
            && object.len() as u64 > max
        {
            return Err(format!("{at}: more than {max} properties"));
        }
        if let (Some(names), Some(object)) = (rules.get("propertyNames"), value.as_object()) {
            for name in object.keys() {
                self.validate(names, &Value::String(name.clone()), &format!("{at} (property name {name:?})"))?;
            }
        }
        match (rules.get("format").and_then(Value::as_str), value.as_str()) {
            (Some("uuid"), Some(text)) if uuid::Uuid::parse_str(text).is_err() => {
                return Err(format!("{at}: {text:?} is not a UUID"));
            }
            (Some("date-time"), Some(text))
                if time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_err() =>
            {
                return Err(format!("{at}: {text:?} is not an RFC 3339 date-time"));
            }
            _ => {}
        }
        if let Some(object) = value.as_object() {
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
        if let (Some(items), Some(array)) = (rules.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{index}]"))?;
            }
        }
        Ok(())
    }
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
