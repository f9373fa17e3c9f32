//! Property-based conformance: requests generated from the running server's `/openapi.json`, and
//! the server's answers checked against it, both ways.
//!
//! The document is read as JSON Schema, not as any one version of its text: `$ref`, `allOf`
//! (merged), `oneOf`/`anyOf`, `type` (one or a list, `null` included), `enum`, `const`, bounds,
//! lengths, `pattern`, `format` (`date-time` with `formatMinimum`/`formatMaximum`, `uuid`, `uri`),
//! `required`, `additionalProperties`, `maxProperties` and `propertyNames`.
//!
//! - **Valid requests.** For every operation a proptest strategy draws requests whose every value
//!   lies inside its schema, real ids and secrets ([`Fixtures`]) as well as random ones. The server
//!   must not call them invalid (400, 422) nor fail (5xx).
//! - **Invalid requests.** Each constraint is then broken alone, on a request the server accepted:
//!   the answer must be the documented refusal (400, or 422; a path parameter may also be a 404)
//!   with an `{"error": ...}` body that names the field.
//! - **Every answer** has a documented status, content type and body ([`Spec::check`]); a method a
//!   path lacks gets 405 with an `Allow` header listing the documented methods.
//!
//! Two extensions carry what a schema cannot: a value marked `x-data-dependent` (an event word,
//! valid by the offer's data) is drawn only from real values; an operation's `x-field-rules`
//! (`{"field": "event", "equals": "deposit", "requires": ["payout", "tid"]}`) make a request that
//! lacks a required field invalid, so it must be refused naming that field.
//!
//! What a request "as sent" means is decided in one place, [`Conformance::fits`]: query, path,
//! header and form values travel as text and are read back the way the schema allows, so a
//! violation that text cannot carry (a number for a string parameter) is not counted as one.
//!
//! The runner has a fixed seed and a bounded number of cases, so every run sends the same requests.
//! Nothing is shrunk: each case is an exchange with a live server whose state moves on, and one
//! example of every disagreement serves better than the smallest first one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::char::range;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use regex::Regex;
use reqwest::header::{ALLOW, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::openapi::Spec;
use super::{TestServer, click_id_of};

/// Valid requests drawn per operation.
const VALID_CASES: usize = 96;
/// The runner's seed: the same requests on every run.
const SEED: &[u8; 32] = b"casino-router conformance seed..";
/// Methods tried on every path; those a path does not document must get 405.
const PROBED_METHODS: [Method; 6] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
/// The keys of a path item that are methods.
const HTTP_METHODS: [&str; 8] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"];
/// Strings drawn for a `pattern` the generator cannot derive strings from (each checked against
/// the pattern first).
const KNOWN_GOOD: &[&str] = &["https://casino.example/r?aff=7", "USD", "ftd", "Offer one", "s3cret-postback-key"];
/// RFC 3339's range: 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z, as Unix seconds.
const RFC3339_SECONDS: (i64, i64) = (-62_167_219_200, 253_402_300_799);
/// Characters of a string drawn one by one; a longer one repeats them (drawing thousands one by
/// one is slow in a debug build).
const DRAWN_CHARS: usize = 64;
/// Longest value shown in a report.
const SHOWN_CHARS: usize = 48;

/// Generates requests for every operation of the server's document, sends them and returns every
/// disagreement found (one example each).
pub async fn run(server: &TestServer) -> Vec<Disagreement> {
    let response = server.http.get(server.url("/openapi.json")).send().await.expect("GET /openapi.json");
    let doc: Value = response.json().await.expect("/openapi.json is JSON");
    let fixtures = Fixtures::set_up(server).await;
    let runner = TestRunner::new_with_rng(
        Config { failure_persistence: None, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, SEED),
    );
    let mut conformance = Conformance { server, spec: Spec::new(doc), fixtures, runner, found: BTreeMap::new() };
    for operation in Operation::all(&conformance.spec) {
        let (accepted, succeeded) = conformance.valid_requests(&operation).await;
        conformance.invalid_requests(&operation, &accepted, succeeded).await;
    }
    conformance.unlisted_methods().await;
    conformance.found.into_values().collect()
}

/// One way the server and its document disagree.
#[derive(Debug, Clone)]
pub struct Disagreement {
    /// `METHOD /template`.
    pub operation: String,
    /// The request sent (long values shortened).
    pub request: String,
    /// What the document promises.
    pub expected: String,
    /// What the server did.
    pub got: String,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n    request:  {}\n    expected: {}\n    got:      {}",
            self.operation, self.request, self.expected, self.got
        )
    }
}

/// Real values, by field or parameter name, drawn alongside random ones so that requests reach
/// past "no such click" and "wrong secret".
pub struct Fixtures {
    hints: BTreeMap<&'static str, Vec<Value>>,
}

impl Fixtures {
    /// An active offer with clicks (every click goes to it) and an inactive one without.
    async fn set_up(server: &TestServer) -> Fixtures {
        let main = json!({"name": "Conformance", "casino_url": "https://casino.example/r?aff=7", "weight": 1.0,
                          "event_aliases": {"first_dep": "ftd"}});
        let idle = json!({"name": "Idle", "casino_url": "https://idle.example/", "active": false});
        let mut offers = Vec::new();
        for body in [main, idle] {
            let (status, offer) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "fixture offer: {offer}");
            offers.push(offer);
        }
        let mut click_ids = Vec::new();
        for _ in 0..6 {
            click_ids.push(json!(click_id_of(&server.click_location("?source=conformance").await).to_string()));
        }
        let secret = offers[0]["postback_secret"].clone();
        let ids: Vec<Value> = offers.iter().map(|offer| offer["id"].clone()).collect();
        let events = ["ftd", "reg", "deposit", "payout", "rejected", "first_dep"].map(|event| json!(event));
        let hints = BTreeMap::from([
            ("click_id", click_ids),
            ("secret", vec![secret.clone()]),
            ("X-Postback-Secret", vec![secret.clone()]),
            ("postback_secret", vec![secret]),
            ("id", ids.clone()),
            ("offer_id", ids),
            ("event", events.to_vec()),
            ("currency", vec![json!("USD"), json!("eur")]),
            ("casino_url", vec![json!("https://casino.example/r?aff=7&click_id={click_id}")]),
        ]);
        Fixtures { hints }
    }

    fn hints(&self, name: &str) -> &[Value] {
        self.hints.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum In {
    Path,
    Query,
    Header,
}

struct Parameter {
    name: String,
    location: In,
    required: bool,
    schema: Value,
}

/// One documented operation, read from the document.
struct Operation {
    method: Method,
    template: String,
    parameters: Vec<Parameter>,
    /// `(media type, schema)` of each documented request body.
    bodies: Vec<(String, Value)>,
    body_required: bool,
    /// Documented response statuses.
    statuses: BTreeSet<u16>,
    /// `x-field-rules`: fields a value of another field requires.
    field_rules: Vec<FieldRule>,
}

/// One of an operation's `x-field-rules`: when `field` equals `equals` (ignoring case), every field
/// of `requires` must be present.
#[derive(serde::Deserialize)]
struct FieldRule {
    field: String,
    equals: String,
    requires: Vec<String>,
}

impl Operation {
    /// Every operation, reads before writes (so the fixtures serve the postbacks before an update
    /// may change their offer), then by path.
    fn all(spec: &Spec) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (template, item) in spec.doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                if !PROBED_METHODS.contains(&method) {
                    continue;
                }
                let shared = item["parameters"].as_array().into_iter().flatten();
                let parameters = shared
                    .chain(operation["parameters"].as_array().into_iter().flatten())
                    .filter_map(|parameter| Parameter::read(spec.resolve(parameter)))
                    .collect();
                let body = spec.resolve(&operation["requestBody"]);
                let bodies = body["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(media, content)| (media.clone(), content["schema"].clone()))
                    .collect();
                let statuses = operation["responses"].as_object().into_iter().flatten();
                operations.push(Operation {
                    method,
                    template: template.clone(),
                    parameters,
                    bodies,
                    body_required: body["required"] == true,
                    statuses: statuses.filter_map(|(status, _)| status.parse().ok()).collect(),
                    field_rules: serde_json::from_value(operation["x-field-rules"].clone()).unwrap_or_default(),
                });
            }
        }
        let rank = |method: &Method| PROBED_METHODS.iter().position(|probed| probed == method);
        operations.sort_by(|a, b| (rank(&a.method), &a.template).cmp(&(rank(&b.method), &b.template)));
        operations
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// The first field `draft` lacks that one of the `x-field-rules` requires, with the rule's
    /// condition.
    fn missing_by_rule(&self, draft: &Draft) -> Option<(String, String)> {
        self.field_rules.iter().find_map(|rule| {
            let applies =
                draft.value(&rule.field).and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(&rule.equals));
            // Empty text is no value: the document says so of the fields a rule requires.
            let absent = |value: &Value| value.is_null() || value.as_str().is_some_and(str::is_empty);
            let missing = rule.requires.iter().find(|field| draft.value(field).is_none_or(absent))?;
            applies.then(|| (missing.clone(), format!("required when {} is {}", rule.field, rule.equals)))
        })
    }

    /// The statuses that may refuse a request the document calls invalid.
    fn refusals(&self, location: Option<In>) -> Vec<u16> {
        let mut refusals: Vec<u16> = [400, 422].into_iter().filter(|status| self.statuses.contains(status)).collect();
        if refusals.is_empty() {
            refusals.push(400);
        }
        // A path that names nothing is a 404, whatever the reason.
        if location == Some(In::Path) && self.statuses.contains(&404) {
            refusals.push(404);
        }
        refusals
    }
}

impl Parameter {
    /// A path, query or header parameter (cookies are not sent).
    fn read(parameter: &Value) -> Option<Parameter> {
        let location = match parameter["in"].as_str()? {
            "path" => In::Path,
            "query" => In::Query,
            "header" => In::Header,
            _ => return None,
        };
        Some(Parameter {
            name: parameter["name"].as_str()?.to_owned(),
            location,
            required: parameter["required"] == true,
            schema: parameter.get("schema").cloned().unwrap_or(Value::Bool(true)),
        })
    }
}

/// A request before it is sent: typed values, turned into text only by [`Conformance::send`].
#[derive(Debug, Clone)]
struct Draft {
    params: BTreeMap<(In, String), Value>,
    /// Media type and value.
    body: Option<(String, Value)>,
}

impl Draft {
    /// The value of a parameter or body field called `name`.
    fn value(&self, name: &str) -> Option<&Value> {
        let param = self.params.iter().find(|((_, param), _)| param == name).map(|(_, value)| value);
        param.or_else(|| self.body.as_ref().and_then(|(_, body)| body.get(name)))
    }
}

/// One constraint broken on an accepted request.
struct Mutation {
    /// The field or parameter the error must name.
    field: String,
    location: Option<In>,
    /// What was broken, for the report.
    what: String,
    change: Change,
}

enum Change {
    RemoveParam(In, String),
    SetParam(In, String, Value),
    RemoveField(String),
    SetField(String, Value),
}

impl Mutation {
    fn apply(&self, draft: &Draft) -> Draft {
        let mut draft = draft.clone();
        let body = draft.body.as_mut().and_then(|(_, body)| body.as_object_mut());
        match (&self.change, body) {
            (Change::RemoveParam(location, name), _) => {
                draft.params.remove(&(*location, name.clone()));
            }
            (Change::SetParam(location, name, value), _) => {
                draft.params.insert((*location, name.clone()), value.clone());
            }
            (Change::RemoveField(name), Some(object)) => {
                object.remove(name);
            }
            (Change::SetField(name, value), Some(object)) => {
                object.insert(name.clone(), value.clone());
            }
            // Bases for body changes are chosen with a body of the right media type.
            (Change::RemoveField(_) | Change::SetField(..), None) => {}
        }
        draft
    }
}

/// A response, read whole.
struct Exchange {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Exchange {
    fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        format!("{} {}", self.status.as_u16(), shorten(&body, 200))
    }
}

struct Conformance<'a> {
    server: &'a TestServer,
    spec: Spec,
    fixtures: Fixtures,
    runner: TestRunner,
    /// One example per distinct disagreement.
    found: BTreeMap<(String, String, String), Disagreement>,
}

impl Conformance<'_> {
    fn generator(&self) -> Generator<'_> {
        Generator { spec: &self.spec, fixtures: &self.fixtures }
    }

    /// Sends valid requests; returns those the server accepted, successes first, and how many
    /// succeeded.
    async fn valid_requests(&mut self, operation: &Operation) -> (Vec<Draft>, usize) {
        let strategy = match self.generator().drafts(operation) {
            Ok(strategy) => strategy,
            Err(why) => {
                self.record(operation, "(none)".into(), "requests can be drawn from the document", why);
                return (Vec::new(), 0);
            }
        };
        let mut accepted = Vec::new();
        for _ in 0..VALID_CASES {
            let draft = match strategy.new_tree(&mut self.runner) {
                Ok(tree) => tree.current(),
                Err(why) => {
                    self.record(operation, "(none)".into(), "requests can be drawn from the document", why.to_string());
                    break;
                }
            };
            let request = describe(operation, &draft);
            if let Err(why) = self.fits(operation, &draft) {
                self.record(operation, request, "the generator draws inside the schema", why);
                continue;
            }
            // Inside every schema but outside a rule across fields: not a valid request (the invalid
            // side breaks the rules on accepted requests instead).
            if operation.missing_by_rule(&draft).is_some() {
                continue;
            }
            let exchange = self.send(operation, &draft).await;
            let status = exchange.status.as_u16();
            if exchange.status.is_server_error() || status == 400 || status == 422 {
                self.record(
                    operation,
                    request.clone(),
                    "a success or a documented non-validation status",
                    exchange.summary(),
                );
            } else {
                accepted.push((!exchange.status.is_success(), draft));
            }
            self.check_documented(operation, request, &exchange);
        }
        accepted.sort_by_key(|(refused, _)| *refused);
        let succeeded = accepted.iter().filter(|(refused, _)| !refused).count();
        (accepted.into_iter().map(|(_, draft)| draft).collect(), succeeded)
    }

    /// Breaks one constraint at a time on an accepted request of the same shape (reported when
    /// there is none: those constraints went untested).
    async fn invalid_requests(&mut self, operation: &Operation, accepted: &[Draft], succeeded: usize) {
        // Not `self.generator()`: the runner is borrowed mutably alongside.
        let mutations = Generator { spec: &self.spec, fixtures: &self.fixtures }.mutations(operation, &mut self.runner);
        // A rule is broken on a request that succeeded, so no other refusal (a wrong secret) comes first.
        let (rule_mutations, untested) = self.rule_mutations(operation, &accepted[..succeeded]);
        for (base, mutation) in rule_mutations {
            let draft = mutation.apply(&base);
            self.check_refusal(operation, &mutation, &draft).await;
        }
        for rule in untested {
            let got = "no successful request it applies to, so it went untested".to_owned();
            self.record(operation, "(none)".into(), &rule, got);
        }
        for (media, mutation) in mutations {
            let base = accepted
                .iter()
                .find(|draft| media.is_none_or(|media| draft.body.as_ref().is_some_and(|(m, _)| m == media)));
            let Some(base) = base else {
                let shape = media.unwrap_or("parameter");
                let got = format!("no {shape} request was accepted, so its constraints went untested");
                self.record(operation, "(none)".into(), "an accepted request to break one constraint on", got);
                continue;
            };
            let draft = mutation.apply(base);
            // Text cannot carry every violation (a number for a string parameter): skip those.
            if self.fits(operation, &draft).is_ok() {
                continue;
            }
            self.check_refusal(operation, &mutation, &draft).await;
        }
    }

    /// For each of the operation's `x-field-rules`: a request that succeeded, switched to the rule's
    /// value, with one required field taken away. Rules with no successful request to start from
    /// come back second: they went untested.
    fn rule_mutations(&self, operation: &Operation, succeeded: &[Draft]) -> (Vec<(Draft, Mutation)>, Vec<String>) {
        let (mut found, mut untested) = (Vec::new(), Vec::new());
        for rule in &operation.field_rules {
            let Some(success) = succeeded.iter().find(|draft| draft.value(&rule.field).is_some()) else {
                untested.push(format!("x-field-rules: when {} is {}", rule.field, rule.equals));
                continue;
            };
            let switch = |field: &str, value: Value| match success
                .params
                .keys()
                .find(|(_, name)| name == field)
                .map(|(location, _)| *location)
            {
                Some(location) => Change::SetParam(location, field.to_owned(), value),
                None => Change::SetField(field.to_owned(), value),
            };
            let to_rule = Mutation {
                field: rule.field.clone(),
                location: None,
                what: String::new(),
                change: switch(&rule.field, json!(rule.equals)),
            };
            let base = to_rule.apply(success);
            for field in &rule.requires {
                let location = base.params.keys().find(|(_, name)| name == field).map(|(location, _)| *location);
                let change = match location {
                    Some(location) => Change::RemoveParam(location, field.clone()),
                    None => Change::RemoveField(field.clone()),
                };
                let what = format!("left out, though required when {} is {}", rule.field, rule.equals);
                found.push((base.clone(), Mutation { field: field.clone(), location, what, change }));
            }
        }
        (found, untested)
    }

    async fn check_refusal(&mut self, operation: &Operation, mutation: &Mutation, draft: &Draft) {
        let request = format!("{} [{}: {}]", describe(operation, draft), mutation.field, mutation.what);
        let exchange = self.send(operation, draft).await;
        let refusals = operation.refusals(mutation.location);
        let statuses = refusals.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ");
        let status = exchange.status.as_u16();
        if !refusals.contains(&status) {
            self.record(
                operation,
                request.clone(),
                &format!("{statuses} naming {}", mutation.field),
                exchange.summary(),
            );
        } else if status != 404 && operation.method != Method::HEAD {
            // A 404 says the resource does not exist; a refusal must say which field is wrong (in its
            // body: an answer to a HEAD has none, its status is all it says).
            let message = serde_json::from_slice::<Value>(&exchange.body)
                .ok()
                .and_then(|body| body["error"].as_str().map(str::to_owned));
            if !message.is_some_and(|message| message.to_lowercase().contains(&mutation.field.to_lowercase())) {
                let expected = format!("{{\"error\": ...}} naming {}", mutation.field);
                self.record(operation, request.clone(), &expected, exchange.summary());
            }
        }
        self.check_documented(operation, request, &exchange);
    }

    /// Every path answers a method it does not document with 405 and an `Allow` header listing the
    /// ones it does.
    async fn unlisted_methods(&mut self) {
        let paths: Vec<(String, Value)> = self.spec.doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(path, item)| (path.clone(), item.clone()))
            .collect();
        for (template, item) in paths {
            let documented: BTreeSet<String> = item
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, _)| key.to_uppercase())
                .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                .collect();
            let path = concrete_path(&template, &self.fixtures);
            for method in PROBED_METHODS.iter().filter(|method| !documented.contains(method.as_str())) {
                let response = self.server.admin(method.clone(), &path).send().await.expect("request");
                let allow = response.headers().get(ALLOW).and_then(|value| value.to_str().ok()).map(str::to_owned);
                let listed: Option<BTreeSet<String>> =
                    allow.as_deref().map(|allow| allow.split(',').map(|m| m.trim().to_uppercase()).collect());
                if response.status() != StatusCode::METHOD_NOT_ALLOWED || listed.as_ref() != Some(&documented) {
                    let expected =
                        format!("405 with Allow: {}", documented.iter().cloned().collect::<Vec<_>>().join(", "));
                    let got =
                        format!("{} with Allow: {}", response.status().as_u16(), allow.as_deref().unwrap_or("(none)"));
                    let disagreement = Disagreement {
                        operation: format!("{method} {template}"),
                        request: format!("{method} {path}"),
                        expected,
                        got,
                    };
                    self.found.insert(
                        (disagreement.operation.clone(), disagreement.expected.clone(), disagreement.got.clone()),
                        disagreement,
                    );
                }
            }
        }
    }

    /// Whether `draft`, as the server will read it, is inside the document: required parameters and
    /// body present, and every value (read back from text where it travels as text) valid.
    fn fits(&self, operation: &Operation, draft: &Draft) -> Result<(), String> {
        for parameter in &operation.parameters {
            let place = format!("{} parameter {}", location_name(parameter.location), parameter.name);
            match draft.params.get(&(parameter.location, parameter.name.clone())) {
                None if parameter.required => return Err(format!("{place} is required")),
                None => {}
                Some(value) => {
                    let sent = read_text(&self.spec, &parameter.schema, &text(value));
                    self.spec.validate(&parameter.schema, &sent, &place)?;
                }
            }
        }
        match (&draft.body, operation.body_required) {
            (None, true) => Err("the request body is required".into()),
            (None, false) => Ok(()),
            (Some((media, value)), _) => {
                let schema = &operation.bodies.iter().find(|(m, _)| m == media).expect("a documented media type").1;
                let sent = match media.as_str() {
                    "application/x-www-form-urlencoded" => {
                        read_form(&self.spec, &self.generator().flatten(schema), value)
                    }
                    _ => value.clone(),
                };
                self.spec.validate(schema, &sent, "body")
            }
        }
    }

    async fn send(&self, operation: &Operation, draft: &Draft) -> Exchange {
        let mut path = operation.template.clone();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for ((location, name), value) in &draft.params {
            let value = text(value);
            match location {
                In::Path => path = path.replace(&format!("{{{name}}}"), &encode(&value)),
                In::Query => query.push(format!("{}={}", encode(name), encode(&value))),
                In::Header => headers.push((name.clone(), value)),
            }
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let mut request = self.server.admin(operation.method.clone(), &path);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some((media, value)) = &draft.body {
            let body = match media.as_str() {
                "application/x-www-form-urlencoded" => form(value).into_bytes(),
                _ => serde_json::to_vec(value).expect("JSON"),
            };
            request = request.header(CONTENT_TYPE, media).body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{} {path}: {e}", operation.method));
        Exchange {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("response body").to_vec(),
        }
    }

    fn check_documented(&mut self, operation: &Operation, request: String, exchange: &Exchange) {
        let status = exchange.status.as_u16();
        let method = operation.method.as_str();
        if status == 405 && !exchange.headers.contains_key(ALLOW) {
            self.record(operation, request.clone(), "405 with an Allow header", exchange.summary());
        }
        if let Err(problem) = self.spec.check(method, &operation.template, status, &exchange.headers, &exchange.body) {
            self.record(operation, request, "a status, content type and body the document describes", problem);
        }
    }

    /// Keeps the first example of each disagreement; values in messages are blanked so that one
    /// cause is one entry.
    fn record(&mut self, operation: &Operation, request: String, expected: &str, got: String) {
        let key = (operation.name(), expected.to_owned(), cause(&got));
        let disagreement = Disagreement { operation: operation.name(), request, expected: expected.to_owned(), got };
        self.found.entry(key).or_insert(disagreement);
    }
}

/// Draws values inside a schema, and values just outside it.
struct Generator<'a> {
    spec: &'a Spec,
    fixtures: &'a Fixtures,
}

impl Generator<'_> {
    /// The schema with `$ref`s followed and `allOf` merged into one set of rules.
    fn flatten(&self, schema: &Value) -> Map<String, Value> {
        let mut rules = self.spec.resolve(schema).as_object().cloned().unwrap_or_default();
        let Some(Value::Array(parts)) = rules.remove("allOf") else { return rules };
        for part in parts {
            for (keyword, value) in self.flatten(&part) {
                match (rules.get_mut(&keyword), value) {
                    (Some(Value::Array(mine)), Value::Array(theirs)) if keyword == "required" => mine.extend(theirs),
                    (Some(Value::Object(mine)), Value::Object(theirs)) if keyword == "properties" => {
                        mine.extend(theirs)
                    }
                    (_, value) => {
                        rules.entry(keyword).or_insert(value);
                    }
                }
            }
        }
        rules
    }

    fn drafts(&self, operation: &Operation) -> Result<BoxedStrategy<Draft>, String> {
        let mut parameters = Vec::new();
        for parameter in &operation.parameters {
            let key = (parameter.location, parameter.name.clone());
            let values = self.valid(&parameter.schema, &parameter.name, parameter.location == In::Header)?;
            // A null parameter is one not sent.
            let present = values.prop_map(move |value| (!value.is_null()).then(|| (key.clone(), value)));
            parameters.push(if parameter.required {
                present.boxed()
            } else {
                prop_oneof![Just(None), present].boxed()
            });
        }
        let mut bodies = Vec::new();
        for (media, schema) in &operation.bodies {
            let media = media.clone();
            bodies.push(self.valid(schema, "body", false)?.prop_map(move |value| Some((media.clone(), value))).boxed());
        }
        if !operation.body_required || bodies.is_empty() {
            bodies.push(Just(None).boxed());
        }
        Ok((parameters, Union::new(bodies))
            .prop_map(|(parameters, body)| Draft { params: parameters.into_iter().flatten().collect(), body })
            .boxed())
    }

    /// Values inside `schema`; `name` picks real values from the fixtures, `ascii` keeps strings
    /// to visible ASCII (header values).
    fn valid(&self, schema: &Value, name: &str, ascii: bool) -> Result<BoxedStrategy<Value>, String> {
        let rules = self.flatten(schema);
        let generated = self.generated(&rules, name, ascii);
        let hints: Vec<Value> = self
            .fixtures
            .hints(name)
            .iter()
            .filter(|hint| self.spec.validate(schema, hint, name).is_ok())
            .cloned()
            .collect();
        match generated {
            _ if hints.is_empty() => generated,
            Ok(generated) => Ok(prop_oneof![3 => proptest::sample::select(hints), 1 => generated].boxed()),
            Err(_) => Ok(proptest::sample::select(hints).boxed()),
        }
    }

    fn generated(&self, rules: &Map<String, Value>, name: &str, ascii: bool) -> Result<BoxedStrategy<Value>, String> {
        if rules.contains_key("x-data-dependent") {
            return Err(format!("{name}: valid values depend on the data; only real ones are drawn"));
        }
        if let Some(value) = rules.get("const") {
            return Ok(Just(value.clone()).boxed());
        }
        if let Some(Value::Array(options)) = rules.get("enum") {
            return Ok(proptest::sample::select(options.clone()).boxed());
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = rules.get(keyword) {
                return union(branches.iter().map(|branch| self.valid(branch, name, ascii)));
            }
        }
        let kinds = types(rules);
        if kinds.is_empty() {
            return Ok(Just(json!("anything")).boxed());
        }
        union(kinds.iter().map(|kind| match kind.as_str() {
            "null" => Ok(Just(Value::Null).boxed()),
            "boolean" => Ok(any::<bool>().prop_map(Value::Bool).boxed()),
            "integer" => integers(rules),
            "number" => numbers(rules),
            "string" => self.strings(rules, ascii),
            "object" => self.objects(rules),
            "array" => self.arrays(rules),
            other => Err(format!("{name}: unknown type {other:?}")),
        }))
    }

    fn strings(&self, rules: &Map<String, Value>, ascii: bool) -> Result<BoxedStrategy<Value>, String> {
        let min = rules.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = rules.get("maxLength").and_then(Value::as_u64).map(|max| max as usize);
        let pattern = rules.get("pattern").and_then(Value::as_str);
        let format = rules.get("format").and_then(Value::as_str).map(str::to_owned);
        let regex = pattern.map(Regex::new).transpose().map_err(|e| format!("bad pattern: {e}"))?;
        let fits = move |text: &str| {
            let chars = text.chars().count();
            chars >= min
                && max.is_none_or(|max| chars <= max)
                && regex.as_ref().is_none_or(|regex| regex.is_match(text))
                && (!ascii || text.bytes().all(|b| b.is_ascii_graphic()))
                && format_fits(format.as_deref(), text)
        };
        let drawn: BoxedStrategy<String> = match (pattern, rules.get("format").and_then(Value::as_str)) {
            (Some(pattern), _) => match proptest::string::string_regex(strip_anchors(pattern)) {
                Ok(strategy) => strategy.boxed(),
                Err(_) => {
                    let hints = self.fixtures.hints.values().flatten().filter_map(Value::as_str);
                    let known: Vec<String> =
                        KNOWN_GOOD.iter().copied().chain(hints).filter(|text| fits(text)).map(str::to_owned).collect();
                    if known.is_empty() {
                        return Err(format!("no known value matches the pattern {pattern:?}"));
                    }
                    proptest::sample::select(known).boxed()
                }
            },
            (None, Some("date-time")) => date_times(rules)?,
            (None, Some("uuid")) => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()).boxed(),
            (None, Some("uri" | "url")) => "https://[a-z]{1,12}\\.example/[a-z0-9]{0,12}".boxed(),
            (None, _) => free_text(min, max, ascii)?,
        };
        Ok(drawn.prop_filter("inside the string's constraints", move |text| fits(text)).prop_map(Value::String).boxed())
    }

    fn objects(&self, rules: &Map<String, Value>) -> Result<BoxedStrategy<Value>, String> {
        let required = required(rules);
        let properties = rules.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut fields = Vec::new();
        for (name, schema) in &properties {
            let key = name.clone();
            let present = self.valid(schema, name, false)?.prop_map(move |value| Some((key.clone(), value)));
            fields.push(if required.contains(name) {
                present.boxed()
            } else {
                prop_oneof![Just(None), present].boxed()
            });
        }
        let max = rules.get("maxProperties").and_then(Value::as_u64).map(|max| max as usize);
        let extra = match rules.get("additionalProperties") {
            Some(Value::Bool(false)) => Just(Vec::new()).boxed(),
            additional => {
                let keys = self.valid(rules.get("propertyNames").unwrap_or(&json!({"type": "string"})), "", false)?;
                let values = self.valid(additional.unwrap_or(&Value::Bool(true)), "", false)?;
                let min = rules.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
                // Without a documented limit, now and then far more entries than anyone needs.
                let sizes = match max {
                    Some(max) => prop_oneof![4 => min..=max.min(min + 4), 1 => Just(max)].boxed(),
                    None => prop_oneof![3 => min..=min + 4, 1 => min + 101..=min + 130].boxed(),
                };
                sizes.prop_flat_map(move |size| proptest::collection::vec((keys.clone(), values.clone()), size)).boxed()
            }
        };
        Ok((fields, extra)
            .prop_map(move |(fields, extra)| {
                let mut object: Map<String, Value> = fields.into_iter().flatten().collect();
                for (key, value) in extra {
                    if let Value::String(key) = key
                        && !properties.contains_key(&key)
                    {
                        object.insert(key, value);
                    }
                }
                Value::Object(object)
            })
            .prop_filter("within maxProperties", move |object| {
                max.is_none_or(|max| object.as_object().is_some_and(|o| o.len() <= max))
            })
            .boxed())
    }

    fn arrays(&self, rules: &Map<String, Value>) -> Result<BoxedStrategy<Value>, String> {
        let items = self.valid(rules.get("items").unwrap_or(&Value::Bool(true)), "", false)?;
        let min = rules.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = rules.get("maxItems").and_then(Value::as_u64).map_or(min + 4, |max| max as usize);
        Ok(proptest::collection::vec(items, min..=max).prop_map(Value::Array).boxed())
    }

    /// Every single-constraint break of `operation`'s parameters and bodies, each with the media
    /// type of the body it changes (`None` for a parameter).
    fn mutations<'o>(&self, operation: &'o Operation, runner: &mut TestRunner) -> Vec<(Option<&'o str>, Mutation)> {
        let mut mutations = Vec::new();
        for parameter in &operation.parameters {
            let (location, name) = (Some(parameter.location), &parameter.name);
            if parameter.required && parameter.location != In::Path {
                let change = Change::RemoveParam(parameter.location, name.clone());
                let what = "required parameter left out".to_owned();
                mutations.push((None, Mutation { field: name.clone(), location, what, change }));
            }
            for (what, value) in self.violations(&parameter.schema, runner) {
                // An empty path segment makes another path, not a bad value.
                if parameter.location == In::Path && value.is_null() {
                    continue;
                }
                let change = Change::SetParam(parameter.location, name.clone(), value);
                mutations.push((None, Mutation { field: name.clone(), location, what, change }));
            }
        }
        for (media, schema) in &operation.bodies {
            let media = Some(media.as_str());
            let rules = self.flatten(schema);
            for name in required(&rules) {
                let (what, change) = ("required field left out".to_owned(), Change::RemoveField(name.clone()));
                mutations.push((media, Mutation { field: name, location: None, what, change }));
            }
            for (name, property) in rules.get("properties").and_then(Value::as_object).into_iter().flatten() {
                for (what, value) in self.violations(property, runner) {
                    let change = Change::SetField(name.clone(), value);
                    mutations.push((media, Mutation { field: name.clone(), location: None, what, change }));
                }
            }
            if rules.get("additionalProperties") == Some(&Value::Bool(false)) {
                let name = "zz_unknown_field".to_owned();
                let (what, change) = ("unknown field".to_owned(), Change::SetField(name.clone(), json!(1)));
                mutations.push((media, Mutation { field: name, location: None, what, change }));
            }
        }
        mutations
    }

    /// Values just outside `schema`, each breaking one constraint, with what each breaks. Only
    /// candidates the schema refuses are kept.
    fn violations(&self, schema: &Value, runner: &mut TestRunner) -> Vec<(String, Value)> {
        let rules = self.flatten(schema);
        let mut candidates: Vec<(String, Value)> = Vec::new();
        // Wrong types: the first of these the schema refuses, and null.
        let wrong = [json!("-230361814999"), json!(12345), json!(true), json!({})];
        if let Some(value) = wrong.into_iter().find(|value| self.spec.validate(schema, value, "").is_err()) {
            candidates.push(("wrong type".into(), value));
        }
        candidates.push(("null".into(), Value::Null));
        if types(&rules).iter().any(|kind| kind == "integer") {
            candidates.push(("a fraction".into(), json!(1.5)));
        }
        if rules.contains_key("enum") {
            candidates.push(("outside the enum".into(), json!("zz-not-in-enum")));
        }
        let length = |keyword: &str| rules.get(keyword).and_then(Value::as_u64).map(|n| n as usize);
        if let Some(min) = length("minLength").filter(|&min| min > 0) {
            candidates.push((format!("{} characters, under minLength", min - 1), json!("a".repeat(min - 1))));
        }
        if let Some(max) = length("maxLength") {
            candidates.push((format!("{} characters, over maxLength", max + 1), json!("a".repeat(max + 1))));
        }
        if rules.contains_key("pattern") {
            for control in ["a\u{7}b", "line\nbreak", "\u{1b}[0m"] {
                candidates.push(("a control character".into(), json!(control)));
            }
        }
        let integer = types(&rules).iter().all(|kind| kind == "integer");
        let number = |n: f64| if integer { json!(n as i64) } else { json!(n) };
        for (keyword, step) in [("minimum", -1.0), ("maximum", 1.0)] {
            if let Some(bound) = rules.get(keyword).and_then(Value::as_f64) {
                candidates.push((format!("beyond {keyword} {bound}"), number(bound + step)));
            }
        }
        for keyword in ["exclusiveMinimum", "exclusiveMaximum"] {
            if let Some(bound) = rules.get(keyword) {
                candidates.push((format!("at {keyword}"), bound.clone()));
            }
        }
        match rules.get("format").and_then(Value::as_str) {
            Some("date-time") => {
                candidates.push(("not a date-time".into(), json!("yesterday")));
                for (label, edge, step) in [("before", "formatMinimum", -1), ("after", "formatMaximum", 1)] {
                    let bound =
                        rules.get(edge).and_then(Value::as_str).and_then(|b| OffsetDateTime::parse(b, &Rfc3339).ok());
                    if let Some(bound) = bound {
                        let beyond = bound + time::Duration::seconds(step);
                        candidates.push((format!("{label} {edge}"), json!(beyond.format(&Rfc3339).unwrap())));
                    }
                }
                for time in ["1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"] {
                    candidates.push(("outside the documented range".into(), json!(time)));
                }
            }
            Some("uuid") => candidates.push(("not a UUID".into(), json!("not-a-uuid"))),
            _ => {}
        }
        candidates.extend(self.map_violations(&rules, runner));
        candidates.retain(|(_, value)| self.spec.validate(schema, value, "").is_err());
        candidates
    }

    /// For an object used as a map: too many entries, a bad key, a bad value.
    fn map_violations(&self, rules: &Map<String, Value>, runner: &mut TestRunner) -> Vec<(String, Value)> {
        let Some(values) = rules.get("additionalProperties").filter(|schema| schema.is_object()) else {
            return Vec::new();
        };
        let names = rules.get("propertyNames").cloned().unwrap_or(json!({"type": "string"}));
        let max = rules.get("maxProperties").and_then(Value::as_u64).map(|max| max as usize);
        let wanted = max.unwrap_or(0) + 1;
        let (Ok(key_strategy), Ok(value_strategy)) = (self.valid(&names, "", false), self.valid(values, "", false))
        else {
            return Vec::new();
        };
        let mut draw = |strategy: &BoxedStrategy<Value>| strategy.new_tree(runner).ok().map(|tree| tree.current());
        let mut keys = BTreeSet::new();
        for _ in 0..wanted * 20 {
            if keys.len() == wanted {
                break;
            }
            if let Some(Value::String(key)) = draw(&key_strategy) {
                keys.insert(key);
            }
        }
        let (Some(key), Some(sample)) = (keys.first().cloned(), draw(&value_strategy)) else { return Vec::new() };
        let entry = |key: String, value: Value| Value::Object(Map::from_iter([(key, value)]));
        let mut found = Vec::new();
        if let Some(max) = max {
            let map: Map<String, Value> = keys.into_iter().map(|key| (key, sample.clone())).collect();
            found.push((format!("{} entries, over maxProperties {max}", map.len()), Value::Object(map)));
        }
        for (what, value) in self.violations(values, runner) {
            found.push((format!("an entry's value: {what}"), entry(key.clone(), value)));
        }
        for (what, name) in self.violations(&names, runner) {
            if let Value::String(name) = name {
                found.push((format!("an entry's key: {what}"), entry(name, sample.clone())));
            }
        }
        found
    }
}

fn union(
    strategies: impl Iterator<Item = Result<BoxedStrategy<Value>, String>>,
) -> Result<BoxedStrategy<Value>, String> {
    let (drawable, problems): (Vec<_>, Vec<_>) = strategies.partition(Result::is_ok);
    if drawable.is_empty() {
        return Err(problems.into_iter().filter_map(Result::err).collect::<Vec<_>>().join("; "));
    }
    Ok(Union::new(drawable.into_iter().flatten()).boxed())
}

/// The schema's types: `type`, or what `enum`, `const` or `properties` imply; empty for "any".
fn types(rules: &Map<String, Value>) -> Vec<String> {
    let kind_of = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut kinds: Vec<String> = match rules.get("type") {
        Some(Value::String(kind)) => vec![kind.clone()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => rules
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(rules.get("const"))
            .map(|v| kind_of(v).to_owned())
            .collect(),
    };
    if kinds.is_empty() && rules.contains_key("properties") {
        kinds.push("object".into());
    }
    kinds.dedup();
    kinds
}

fn required(rules: &Map<String, Value>) -> Vec<String> {
    rules
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn integers(rules: &Map<String, Value>) -> Result<BoxedStrategy<Value>, String> {
    let (floor, ceiling) = match rules.get("format").and_then(Value::as_str) {
        Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    let bound = |keyword: &str| rules.get(keyword).and_then(Value::as_f64);
    let lo = [bound("minimum").map(|b| b.ceil() as i64), bound("exclusiveMinimum").map(|b| b.floor() as i64 + 1)]
        .into_iter()
        .flatten()
        .fold(floor, i64::max);
    let hi = [bound("maximum").map(|b| b.floor() as i64), bound("exclusiveMaximum").map(|b| b.ceil() as i64 - 1)]
        .into_iter()
        .flatten()
        .fold(ceiling, i64::min);
    if lo > hi {
        return Err(format!("no integer between {lo} and {hi}"));
    }
    let small = lo.max(-1000)..=hi.min(1000).max(lo.max(-1000));
    Ok(prop_oneof![Just(lo), Just(hi), lo..=hi, small].prop_map(|n| json!(n)).boxed())
}

fn numbers(rules: &Map<String, Value>) -> Result<BoxedStrategy<Value>, String> {
    let bound = |keyword: &str| rules.get(keyword).and_then(Value::as_f64);
    let lo = bound("minimum").or(bound("exclusiveMinimum").map(f64::next_up)).unwrap_or(-1e300);
    let hi = bound("maximum").or(bound("exclusiveMaximum").map(f64::next_down)).unwrap_or(1e300);
    if lo > hi {
        return Err(format!("no number between {lo} and {hi}"));
    }
    let small = lo.max(-1000.0)..=hi.min(1000.0).max(lo.max(-1000.0));
    Ok(prop_oneof![Just(lo), Just(hi), lo..=hi, small].prop_map(|n| json!(n)).boxed())
}

/// RFC 3339 times within `formatMinimum`..`formatMaximum`, or RFC 3339's whole range; the edges
/// and recent years more often.
fn date_times(rules: &Map<String, Value>) -> Result<BoxedStrategy<String>, String> {
    let bound = |keyword: &str, default: i64| match rules.get(keyword).and_then(Value::as_str) {
        Some(text) => {
            OffsetDateTime::parse(text, &Rfc3339).map(|t| t.unix_timestamp()).map_err(|e| format!("{keyword}: {e}"))
        }
        None => Ok(default),
    };
    let (lo, hi) = (bound("formatMinimum", RFC3339_SECONDS.0)?, bound("formatMaximum", RFC3339_SECONDS.1)?);
    let recent = lo.max(1_600_000_000)..=hi.min(1_900_000_000).max(lo.max(1_600_000_000));
    Ok(prop_oneof![Just(lo), Just(hi), lo..=hi, recent]
        .prop_map(|seconds| {
            OffsetDateTime::from_unix_timestamp(seconds).expect("in range").format(&Rfc3339).expect("RFC 3339")
        })
        .boxed())
}

/// Text of `min..=max` characters (unbounded: now and then very long): letters, digits, spaces,
/// any Unicode, control characters, and strings of spaces only.
fn free_text(min: usize, max: Option<usize>, ascii: bool) -> Result<BoxedStrategy<String>, String> {
    if max.is_some_and(|max| max < min) {
        return Err(format!("no string of {min} to {max:?} characters"));
    }
    let lengths = match max {
        Some(max) => prop_oneof![Just(min), Just(max), min..=max].boxed(),
        None => prop_oneof![6 => min..=min + 16, 2 => min + 17..=min + 300, 1 => min + 1000..=min + 2100].boxed(),
    };
    let chars = match ascii {
        true => range('!', '~').boxed(),
        false => prop_oneof![6 => range('a', 'z'), 2 => range('A', 'Z'), 2 => range('0', '9'), 2 => Just(' '), 1 => any::<char>(), 1 => range('\u{0}', '\u{1f}')]
            .boxed(),
    };
    let text = lengths
        .clone()
        .prop_flat_map(move |n| (proptest::collection::vec(chars.clone(), n.min(DRAWN_CHARS)), Just(n)))
        .prop_map(|(stretch, n)| stretch.iter().cycle().take(n).collect::<String>());
    match ascii {
        true => Ok(text.boxed()),
        false => Ok(prop_oneof![9 => text, 1 => lengths.prop_map(|n| " ".repeat(n))].boxed()),
    }
}

fn format_fits(format: Option<&str>, text: &str) -> bool {
    match format {
        Some("date-time") => OffsetDateTime::parse(text, &Rfc3339).is_ok(),
        Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
        _ => true,
    }
}

/// A JSON Schema pattern is searched for, unanchored; a generator needs it without `^`/`$`.
fn strip_anchors(pattern: &str) -> &str {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    match pattern.strip_suffix('$') {
        Some(stripped) if !stripped.ends_with('\\') => stripped,
        _ => pattern,
    }
}

/// How a value travels in a query, a path, a header or a form.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// How the server may read a text value: the first of integer, number, boolean the schema takes,
/// or the text itself.
fn read_text(spec: &Spec, schema: &Value, text: &str) -> Value {
    let readings = [
        text.parse::<i64>().ok().map(|n| json!(n)),
        text.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| json!(n)),
        text.parse::<bool>().ok().map(Value::Bool),
    ];
    readings.into_iter().flatten().find(|value| spec.validate(schema, value, "").is_ok()).unwrap_or_else(|| json!(text))
}

/// A form body read back: each field as text, read by its property's schema.
fn read_form(spec: &Spec, rules: &Map<String, Value>, value: &Value) -> Value {
    let Some(object) = value.as_object() else { return value.clone() };
    let properties = rules.get("properties").and_then(Value::as_object);
    let fallback = rules.get("additionalProperties").cloned().unwrap_or(Value::Bool(true));
    let read = object.iter().filter(|(_, value)| !value.is_null()).map(|(key, value)| {
        let schema = properties.and_then(|p| p.get(key)).unwrap_or(&fallback);
        (key.clone(), read_text(spec, schema, &text(value)))
    });
    Value::Object(read.collect())
}

fn form(value: &Value) -> String {
    let fields = value.as_object().into_iter().flatten().filter(|(_, value)| !value.is_null());
    fields.map(|(key, value)| format!("{}={}", encode(key), encode(&text(value)))).collect::<Vec<_>>().join("&")
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn location_name(location: In) -> &'static str {
    match location {
        In::Path => "path",
        In::Query => "query",
        In::Header => "header",
    }
}

/// A path with each `{parameter}` replaced by a real value, or `1`.
fn concrete_path(template: &str, fixtures: &Fixtures) -> String {
    let mut path = template.to_owned();
    while let (Some(open), Some(close)) = (path.find('{'), path.find('}')) {
        let value = fixtures.hints(&path[open + 1..close]).first().map_or("1".to_owned(), text);
        path.replace_range(open..=close, &value);
    }
    path
}

/// The request for a report: method, path, query and body, long values shortened.
fn describe(operation: &Operation, draft: &Draft) -> String {
    let mut path = operation.template.clone();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for ((location, name), value) in &draft.params {
        let shown = shorten(&text(value), SHOWN_CHARS);
        match location {
            In::Path => path = path.replace(&format!("{{{name}}}"), &shown),
            In::Query => query.push(format!("{name}={shown}")),
            In::Header => headers.push(format!("{name}: {shown}")),
        }
    }
    let mut request = format!("{} {path}", operation.method);
    if !query.is_empty() {
        request = format!("{request}?{}", query.join("&"));
    }
    for header in headers {
        request = format!("{request} [{header}]");
    }
    if let Some((media, body)) = &draft.body {
        request = format!("{request} ({media}) {}", abbreviate(body));
    }
    request
}

/// `value` with long strings and large objects cut down, for a report.
fn abbreviate(value: &Value) -> Value {
    match value {
        Value::String(text) => json!(shorten(text, SHOWN_CHARS)),
        Value::Object(map) if map.len() > 6 => {
            let mut shown: Map<String, Value> =
                map.iter().take(3).map(|(k, v)| (shorten(k, SHOWN_CHARS), abbreviate(v))).collect();
            shown.insert("…".into(), json!(format!("{} entries in all", map.len())));
            Value::Object(shown)
        }
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (shorten(k, SHOWN_CHARS), abbreviate(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(abbreviate).collect()),
        other => other.clone(),
    }
}

/// At most `limit` characters, control characters escaped, with the full length when cut.
fn shorten(text: &str, limit: usize) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    let chars = text.chars().count();
    match escaped.chars().count() > limit {
        true => format!("{}…({chars} chars)", escaped.chars().take(limit).collect::<String>()),
        false => escaped,
    }
}

/// What an answer says, with its values blanked (quoted text, numbers), so that one cause is one
/// entry: for `STATUS {"error": message}` the status and the message, otherwise the whole text.
fn cause(got: &str) -> String {
    let (status, body) = got.split_once(' ').unwrap_or((got, ""));
    let message = serde_json::from_str::<Value>(body).ok().and_then(|body| body["error"].as_str().map(str::to_owned));
    let message = message.unwrap_or_else(|| got.to_owned());
    let quoted = Regex::new(r#""(?:[^"\\]|\\.)*"|`[^`]*`"#).expect("regex");
    let numbers = Regex::new(r"[0-9]+(\.[0-9]+)?").expect("regex");
    format!("{status} {}", numbers.replace_all(&quoted.replace_all(&message, "\"…\""), "#"))
}
