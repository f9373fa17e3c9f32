//! The API description (OpenAPI 3.1), generated from the code so that it cannot drift from it.
//!
//! - The paths come from [`Endpoint::ALL`], each described by an exhaustive `match`: an endpoint
//!   cannot be served without being described, nor described without being served.
//! - Request and response bodies are the handlers' own serde types, deriving `ToSchema`: their
//!   fields, doc comments and constraints are the description.
//! - Limits that live in constants or in the configuration (the payout's maximum, the page size,
//!   the alias map's bounds, the click parameters' length) are read from them here, not copied.
//!
//! `tests/integration/conformance.rs` generates valid and invalid requests from the served document and checks
//! that the server agrees both ways; `tests/integration/openapi.rs` checks real answers against it.

use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Header, OpenApi as Document, Ref, RefOr, Required, Response, ResponseBuilder, Schema,
};
use utoipa::{OpenApi, PartialSchema};

use super::admin::{
    DEFAULT_WEIGHT, Deleted, GroupView, GroupedStatsView, MAX_PAGE, OfferInput, OfferPatchInput, OfferView, PageView,
    SegmentOfferView, SegmentRoutingView, StatsView, WeightsUpdated,
};
use super::click::MAX_PARAM_CHARS;
use super::postback::{Accepted, FIELDS};
use super::routes::Endpoint;
use super::{ErrorBody, HealthView};
use crate::app::{
    CLICK_ID_CHARS, HealthStatus, MAX_ALIAS_CHARS, MAX_ALIASES, MAX_DAILY_CAP, MAX_ID_CHARS, MAX_NAME_CHARS,
    MAX_RULE_ENTRIES, MAX_RULE_ENTRY_CHARS, MAX_WEIGHT, SECRET_BYTES,
};
use crate::config::Config;
use crate::conversion::{EventKind, payout_text_pattern};
use crate::routing::redirect::MAX_URL_LEN;
use crate::store::{Dimension, PostbackOutcome};
use crate::visitor::{Country, DeviceClass};

/// A string without control characters (C0, DEL, C1), as every free-text input must be.
const PRINTABLE: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";
/// An offer URL as described: http(s), a host name whose last label starts with a letter, an
/// optional port, then any printable ASCII. (The router also takes addresses and user info.)
const OFFER_URL: &str =
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(?::[0-9]{1,4})?(?:[/?#][!-~]*)?$";
/// An ISO 4217 currency code, as the router accepts it (any case).
const CURRENCY: &str = "^[A-Za-z]{3}$";
/// The same, and not all blank.
const NOT_BLANK: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "casino-router",
        description = "Self-hosted traffic router for casino affiliates: a click on `/click` is routed to one \
            casino offer and redirected with a click id; the casino's platform reports conversions on \
            `/postback`; admins manage offers and read stats. Every error answers `{\"error\": \"...\"}` \
            naming the field at fault, with the matching status; a 405 lists the allowed methods in `Allow`. \
            Admin endpoints (and `/metrics` on the main port) need `Authorization: Bearer ADMIN_TOKEN`. \
            Countries by IP address: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0."
    ),
    components(schemas(
        ErrorBody,
        HealthView,
        Accepted,
        OfferView,
        OfferInput,
        OfferPatchInput,
        Deleted,
        StatsView,
        GroupedStatsView,
        GroupView,
        SegmentRoutingView,
        SegmentOfferView,
        WeightsUpdated,
        PageView
    ))
)]
struct ApiDoc;

/// The document for a router running with `config`, as JSON.
pub fn document_json(config: &Config) -> String {
    serde_json::to_string(&document(config)).unwrap_or_else(|_| "{}".to_owned())
}

/// The document for a router running with `config`.
pub fn document(config: &Config) -> Document {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearerAuth",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("ADMIN_TOKEN")).build(),
        ),
    );
    components.schemas.insert("EventKind".to_owned(), event_kind().into());
    components.schemas.insert("PostbackOutcome".to_owned(), postback_outcome().into());
    components.schemas.insert("PostbackInput".to_owned(), postback_input(config, false).into());
    for endpoint in Endpoint::ALL {
        let (method, template) = endpoint.operation();
        let method = match method.as_str() {
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            "HEAD" => HttpMethod::Head,
            _ => HttpMethod::Get,
        };
        doc.paths.add_path_operation(template, vec![method], operation(endpoint, config));
    }
    doc
}

/// The description of one endpoint.
fn operation(endpoint: Endpoint, config: &Config) -> Operation {
    let op = |id: &str, tag: &str, summary: &str| {
        OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary))
    };
    let admin = |id: &str, summary: &str| {
        op(id, "admin", summary)
            .security(SecurityRequirement::new("bearerAuth", Vec::<String>::new()))
            .response("401", error("Missing or wrong bearer token."))
            .response("503", unavailable())
    };
    match endpoint {
        Endpoint::Click => op("click", "traffic", "Route a click")
            .description(Some(
                "Picks an offer that accepts the visitor (country, device, source, campaign, daily caps), records \
                 the click, and redirects to the offer URL carrying the click id; with no such offer, to \
                 `FALLBACK_URL` if it is set. The country comes from the trusted proxy's country header \
                 (`COUNTRY_HEADER`, default `CF-IPCountry`), else from the IP database, else `XX`. Bots, link \
                 previews and `HEAD` requests are recorded as bots and go where `BOT_ACTION` says; a prefetch \
                 (`Sec-Purpose: prefetch`, `Purpose: prefetch`) is refused with 503 and not recorded, so that \
                 the visitor's real navigation is the click.",
            ))
            .parameter(query(
                "source",
                "Traffic source, recorded with the click and available to the offer URL as `{source}`.",
                click_param(),
                false,
            ))
            .parameter(query(
                "campaign",
                "Campaign, recorded with the click and available to the offer URL as `{campaign}`.",
                click_param(),
                false,
            ))
            .response(
                "302",
                ResponseBuilder::new()
                    .description("Redirect to the offer; `Location` carries the click id.")
                    .header("Location", Header::new(string()))
                    .build(),
            )
            .response("400", error("A parameter is too long, has control characters, or is badly escaped."))
            .response(
                "503",
                error(
                    "No active offer, or none that accepts this visitor, and no `FALLBACK_URL`; a prefetch; or the \
                     click queue is full (then with `Retry-After: 1`).",
                ),
            ),
        Endpoint::ClickHead => op("clickHead", "traffic", "A link checker's or preview's request of a click link")
            .description(Some(
                "Answered like `GET /click`, so that the link works for the checker, and recorded as a bot's click \
                 (routed as `BOT_ACTION` says, never counted as a person's).",
            ))
            .parameter(query("source", "As for `GET /click`.", click_param(), false))
            .parameter(query("campaign", "As for `GET /click`.", click_param(), false))
            .response(
                "302",
                ResponseBuilder::new()
                    .description("Redirect, as for `GET /click`.")
                    .header("Location", Header::new(string()))
                    .build(),
            )
            .response("400", ResponseBuilder::new().description("As for `GET /click` (no body: a HEAD).").build())
            .response("503", ResponseBuilder::new().description("As for `GET /click` (no body: a HEAD).").build()),
        Endpoint::PostbackGet => postback_responses(
            op("postbackGet", "traffic", "Report a conversion (query string)")
                .description(Some(POSTBACK_DESCRIPTION))
                .parameters(Some(postback_query(config)))
                .parameter(secret_header()),
        ),
        Endpoint::PostbackPost => postback_responses(
            op("postbackPost", "traffic", "Report a conversion (JSON or form body)")
                .description(Some(POSTBACK_DESCRIPTION))
                .parameter(secret_header())
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(reference("PostbackInput"))).build(),
                        )
                        .content(
                            "application/x-www-form-urlencoded",
                            ContentBuilder::new().schema(Some(postback_input(config, true))).build(),
                        )
                        .build(),
                )),
        )
        .response("408", error("The body did not arrive in time."))
        .response("413", error("The body exceeds 65536 bytes."))
        .response("415", error("The body is neither JSON nor a form.")),
        Endpoint::Health => op("health", "operations", "Health")
            .description(Some("200 while the router is up, with a verdict and the click writer's figures."))
            .response("200", json_response("The router's health.", "Health")),
        Endpoint::Metrics => op("metrics", "operations", "Prometheus metrics")
            .description(Some(
                "On the main port behind the admin token; without it on `METRICS_ADDR` when that is set (then \
                 404 here).",
            ))
            .security(SecurityRequirement::new("bearerAuth", Vec::<String>::new()))
            .response("200", text_response("Metrics in the Prometheus text format.", "text/plain"))
            .response("401", error("Missing or wrong bearer token."))
            .response("404", error("Served on `METRICS_ADDR` instead.")),
        Endpoint::OpenApi => op("openapi", "operations", "This document").response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document.")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
                )
                .build(),
        ),
        Endpoint::DocsRoot => op("docsRoot", "operations", "Redirect to the API docs").response(
            "301",
            ResponseBuilder::new().description("To `/docs/`.").header("Location", Header::new(string())).build(),
        ),
        Endpoint::DocsIndex => op("docsIndex", "operations", "The API docs page (Swagger UI)")
            .response("200", text_response("The page.", "text/html")),
        Endpoint::DocsFile => op("docsFile", "operations", "A file of the API docs page")
            .parameter(
                ParameterBuilder::new()
                    .name("file")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("The file's name."))
                    .schema(Some(string())),
            )
            .response(
                "200",
                ResponseBuilder::new().description("The file (a script, a style sheet or an image).").build(),
            )
            .response("404", error("No such file.")),
        Endpoint::ListOffers => admin("listOffers", "List offers")
            .parameter(query(
                "active_only",
                "`true` for the active offers only.",
                ObjectBuilder::new().schema_type(Type::Boolean).default(Some(json!(false))).build(),
                false,
            ))
            .response("200", json_array_response("Every offer, by id.", "Offer"))
            .response("400", error("`active_only` is not `true` or `false`.")),
        Endpoint::CreateOffer => admin("createOffer", "Create an offer")
            .description(Some("The routing table is rebuilt before the answer: the next click can go to it."))
            .request_body(Some(json_body("OfferInput")))
            .response("201", json_response("The offer created.", "Offer"))
            .response("400", error("A field is missing, unknown or invalid; the message names it."))
            .response("408", error("The body did not arrive in time."))
            .response("413", error("The body exceeds 65536 bytes.")),
        Endpoint::GetOffer => admin("getOffer", "Read an offer")
            .parameter(offer_id())
            .response("200", json_response("The offer.", "Offer"))
            .response("400", error("`id` is not an integer."))
            .response("404", error("No such offer.")),
        Endpoint::ReplaceOffer | Endpoint::PatchOffer => {
            admin(if endpoint == Endpoint::ReplaceOffer { "replaceOffer" } else { "patchOffer" }, "Change an offer")
                .description(Some("Only the fields given change; the routing table is rebuilt before the answer."))
                .parameter(offer_id())
                .request_body(Some(json_body("OfferPatchInput")))
                .response("200", json_response("The offer as changed.", "Offer"))
                .response(
                    "400",
                    error("A field is unknown or invalid, or `id` is not an integer; the message names it."),
                )
                .response("404", error("No such offer."))
                .response("408", error("The body did not arrive in time."))
                .response("413", error("The body exceeds 65536 bytes."))
        }
        Endpoint::DeleteOffer => admin("deleteOffer", "Delete an inactive offer without clicks")
            .parameter(offer_id())
            .response("200", json_response("Deleted.", "Deleted"))
            .response("400", error("`id` is not an integer."))
            .response("404", error("No such offer."))
            .response("409", error("The offer is active, or has clicks (deactivate it instead).")),
        Endpoint::Stats => admin("stats", "Per-offer stats, or figures grouped by visitor")
            .description(Some(
                "Figures by click time within `[from, to)`. Without `group_by`: one line per offer with the routing \
                 figures of the table in use. With `group_by`: clicks of people and of bots apart, FTDs, revenue, \
                 conversion rate and EPC per group, from the hourly rollups.",
            ))
            .parameter(query("from", "Only clicks at or after this time (RFC 3339).", date_time(), false))
            .parameter(query("to", "Only clicks before this time (RFC 3339).", date_time(), false))
            .parameter(query(
                "group_by",
                "Group by `offer`, `country`, `device`, `source` or `campaign`, or by `offer` and one of the others.",
                group_by_parameter(),
                false,
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("One line per offer, or (with `group_by`) the grouped figures.")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(
                                utoipa::openapi::schema::OneOfBuilder::new()
                                    .item(utoipa::openapi::schema::ArrayBuilder::new().items(reference("OfferStats")))
                                    .item(reference("GroupedStats")),
                            ))
                            .build(),
                    )
                    .build(),
            )
            .response("400", error("`from` or `to` is not an RFC 3339 time, or `group_by` is not a grouping.")),
        Endpoint::UpdateWeights => admin("updateWeights", "Recalculate the weights now")
            .response("200", json_response("The new weights.", "WeightsUpdated"))
            .response("409", error("Another instance is recalculating right now; retry shortly.")),
        Endpoint::PostbackLog => admin("postbackLog", "The postback log, newest first")
            .parameter(query("offer_id", "Only this offer's postbacks.", int64(), false))
            .parameter(query("outcome", "Only this outcome.", reference("PostbackOutcome"), false))
            .parameter(query("from", "Only postbacks received at or after this time (RFC 3339).", date_time(), false))
            .parameter(query("to", "Only postbacks received before this time (RFC 3339).", date_time(), false))
            .parameter(query(
                "before_id",
                "Only lines with a smaller id: the previous page's `next_before_id`.",
                int64(),
                false,
            ))
            .parameter(query(
                "limit",
                "Lines per page.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_PAGE))
                    .default(Some(json!(100)))
                    .build(),
                false,
            ))
            .response("200", json_response("A page.", "PostbackLogPage"))
            .response("400", error("A parameter is invalid; the message names it.")),
    }
    .build()
}

const POSTBACK_DESCRIPTION: &str = "Server to server, authenticated by the offer's postback secret (a field, \
    or the `X-Postback-Secret` header). Every postback, accepted or not, is written to the postback log; a \
    success is answered only once the event is committed. A repeat answers `duplicate` and changes nothing. \
    Query and form postbacks may carry other parameters (platforms add their own): they are ignored and \
    their names recorded in the postback log; a JSON postback with an unknown field is refused.";

fn postback_responses(op: OperationBuilder) -> OperationBuilder {
    op.extensions(Some(field_rules()))
        .response(
            "200",
            json_response("Recorded, or a duplicate of an event recorded (or held) before.", "PostbackAccepted"),
        )
        .response(
            "202",
            json_response(
                "`pending`: the click id is recent and the secret is an offer's, but no instance has stored the \
                 click yet; the event is held and applied as soon as the click is stored, or shows as `expired` \
                 in the postback log after `POSTBACK_HOLD_SECONDS`.",
                "PostbackAccepted",
            ),
        )
        .response("400", error("A field is missing or invalid, or the event word is unknown; the message names it."))
        .response("403", error("Wrong or missing postback secret."))
        .response("404", error("Unknown click id (and not recent enough to be held for)."))
        .response("409", error("A `payout` or `rejected` event for a click without an FTD."))
        .response(
            "503",
            retry_later(
                "The database is unreachable, the click is still being written, or too many postbacks are held \
                 for clicks not stored yet; retry.",
            ),
        )
}

/// Rules across fields that a schema cannot state, machine-readable: an event that needs other
/// fields (`x-field-rules`: `{"field": "event", "equals": "deposit", "requires": ["payout", "tid"]}`,
/// compared ignoring case). They come from [`EventKind::required_fields`], as the server's check does.
fn field_rules() -> Extensions {
    let rules: Vec<_> = EventKind::ALL
        .into_iter()
        .filter(|kind| !kind.required_fields().is_empty())
        .map(|kind| json!({"field": "event", "equals": kind.as_str(), "requires": kind.required_fields()}))
        .collect();
    Extensions::from_iter([("x-field-rules", json!(rules))])
}

/// The postback's fields as one object: the JSON body (`form` false: unknown fields refused, `null`
/// allowed for an absent optional field) or the form body (`form` true: other fields allowed).
fn postback_input(config: &Config, form: bool) -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("The fields of a postback."))
        .required("click_id")
        .required("event");
    for name in FIELDS {
        object = object.property(name, postback_field(name, config, !form));
    }
    if !form {
        object = object.additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
    }
    object.build().into()
}

/// The postback's fields as query parameters of `GET /postback`.
fn postback_query(config: &Config) -> Vec<utoipa::openapi::path::Parameter> {
    FIELDS
        .iter()
        .map(|&name| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(if matches!(name, "click_id" | "event") { Required::True } else { Required::False })
                .schema(Some(postback_field(name, config, false)))
                .build()
        })
        .collect()
}

/// One postback field. In JSON (`json`), optional fields may be `null` and `payout` a number too.
fn postback_field(name: &str, config: &Config, json: bool) -> Schema {
    let text = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
    let nullable = |builder: ObjectBuilder| {
        if json {
            builder.schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        } else {
            builder
        }
    };
    let schema = match name {
        "click_id" => text("The click id the router put in the offer URL.")
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .min_length(Some(CLICK_ID_CHARS))
            .max_length(Some(CLICK_ID_CHARS))
            .build(),
        "event" => text(
            "`ftd` (first-time deposit, with or without its payout), `payout` (the payout of an earlier FTD), \
             `reg` (registration), `deposit` (a further deposit: needs `payout` and `tid`), `rejected` (the FTD \
             was voided), or one of the offer's own `event_aliases` words; case is ignored.",
        )
        .min_length(Some(1))
        .max_length(Some(MAX_ALIAS_CHARS))
        .pattern(Some(PRINTABLE))
        .examples(EventKind::ALL.map(EventKind::as_str))
        // Which words are valid depends on the offer's data, not on a schema.
        .extensions(Some(Extensions::from_iter([(
            "x-data-dependent",
            json!("the event names above and the click's offer's event_aliases words"),
        )])))
        .build(),
        "payout" => {
            // As text, empty means no payout (platforms fill their templates with empty macros).
            let decimal = text("A plain decimal from 0 to `MAX_PAYOUT`, such as `150.00`; empty for none.")
                .pattern(Some(optional(&payout_text_pattern(config.max_payout))));
            if !json {
                return decimal.build().into();
            }
            let number = ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(config.max_payout))
                .description(Some("The amount, from 0 to `MAX_PAYOUT`."));
            return utoipa::openapi::schema::OneOfBuilder::new()
                .item(number)
                .item(decimal)
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .description(Some("The amount (FTD, payout, deposit): a number, or a decimal string."))
                .build()
                .into();
        }
        "secret" => nullable(text("The offer's postback secret (or send it in `X-Postback-Secret`, which wins)."))
            .max_length(Some(SECRET_BYTES.1))
            .build(),
        "external_player_id" => {
            nullable(text("The platform's player id.")).max_length(Some(MAX_ID_CHARS)).pattern(Some(PRINTABLE)).build()
        }
        "tid" => nullable(text("The platform's transaction id: a deposit's duplicate key."))
            .max_length(Some(MAX_ID_CHARS))
            .pattern(Some(PRINTABLE))
            .build(),
        _ => nullable(text("ISO 4217 code of the payout (default USD; empty for the default)."))
            .pattern(Some(optional(CURRENCY)))
            .build(),
    };
    schema.into()
}

/// An anchored `pattern` that also allows the empty string.
fn optional(pattern: &str) -> String {
    let inner = pattern.trim_start_matches('^').trim_end_matches('$');
    format!("^(?:{inner})?$")
}

fn secret_header() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("X-Postback-Secret")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("The offer's postback secret, instead of the `secret` field."))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(SECRET_BYTES.1))))
        .build()
}

/// A string schema, or (`NULLABLE`, for a patch) a string or `null`.
fn text_field<const NULLABLE: bool>(description: &str) -> ObjectBuilder {
    let builder = ObjectBuilder::new().description(Some(description));
    if NULLABLE {
        builder.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
    } else {
        builder.schema_type(Type::String)
    }
}

/// An offer's `name`.
pub(super) fn offer_name<const NULLABLE: bool>() -> Schema {
    text_field::<NULLABLE>(&format!(
        "Display name: 1 to {MAX_NAME_CHARS} characters, not all blank, no control characters (stored trimmed)."
    ))
    .min_length(Some(1))
    .max_length(Some(MAX_NAME_CHARS))
    .pattern(Some(NOT_BLANK))
    .build()
    .into()
}

/// An offer's `casino_url`.
pub(super) fn offer_url<const NULLABLE: bool>() -> Schema {
    text_field::<NULLABLE>(&format!(
        "Where the offer's clicks are sent: an absolute http(s) URL of printable ASCII, at most {MAX_URL_LEN} \
         characters. It may place the click id and the click's source and campaign with the macros \
         `{{click_id}}`, `{{source}}` and `{{campaign}}` in its path, query or fragment; without `{{click_id}}`, \
         `click_id=<id>` is appended to the query."
    ))
    .format(Some(SchemaFormat::Custom("uri".to_owned())))
    .max_length(Some(MAX_URL_LEN))
    .pattern(Some(OFFER_URL))
    .examples(["https://casino.example/signup?btag={click_id}&subid={source}"])
    .build()
    .into()
}

/// An offer's `weight`.
pub(super) fn offer_weight<const NULLABLE: bool>() -> Schema {
    let builder = ObjectBuilder::new()
        .description(Some(
            "Routing weight under `ROUTING_STRATEGY=ev` (traffic is shared in proportion to the weights, plus \
             the exploration share); ignored under `thompson`, which routes by each offer's probability of \
             earning the most per click (plus an even share of `THOMPSON_EXPLORATION_RATE`, if set).",
        ))
        .minimum(Some(0))
        .maximum(Some(MAX_WEIGHT));
    if NULLABLE {
        builder.schema_type(SchemaType::from_iter([Type::Number, Type::Null])).build().into()
    } else {
        builder.schema_type(Type::Number).default(Some(json!(DEFAULT_WEIGHT))).build().into()
    }
}

/// An offer's `postback_secret`.
pub(super) fn offer_secret<const NULLABLE: bool>() -> Schema {
    let (min, max) = SECRET_BYTES;
    text_field::<NULLABLE>(&format!(
        "The secret the casino's platform must send with each postback: {min} to {max} visible ASCII \
         characters; generated when a new offer has none."
    ))
    .min_length(Some(min))
    .max_length(Some(max))
    .pattern(Some(r"^[!-~]+$"))
    .build()
    .into()
}

/// `event_aliases`: the platform's own status words mapped to our event names (or, `NULLABLE`, for a
/// patch, `null` to leave them as they are).
pub(super) fn event_aliases<const NULLABLE: bool>() -> Schema {
    let kinds = if NULLABLE { SchemaType::from_iter([Type::Object, Type::Null]) } else { Type::Object.into() };
    ObjectBuilder::new()
        .schema_type(kinds)
        .description(Some(
            "The platform's own status words mapped to our events, such as `{\"first_dep\": \"ftd\"}`; words are \
             matched ignoring case.",
        ))
        .max_properties(Some(MAX_ALIASES))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ALIAS_CHARS))
                .pattern(Some(NOT_BLANK)),
        ))
        .additional_properties(Some(reference("EventKind")))
        .build()
        .into()
}

/// A targeting list: `null` (or, in a new offer, absent) for anyone.
fn rule_list(description: &str, items: ObjectBuilder, min_items: usize) -> Schema {
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .description(Some(format!(
            "{description} `null` (or absent when creating) for anyone; when changing an offer, absent leaves the \
             rule as it is and `null` removes it."
        )))
        .items(items.schema_type(Type::String))
        .min_items(Some(min_items))
        .max_items(Some(MAX_RULE_ENTRIES))
        .build()
        .into()
}

fn country_codes() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("An ISO 3166-1 alpha-2 country code in capitals, or `XX` for an unknown country."))
        .enum_values(Some(Country::all().map(Country::as_str)))
}

/// `countries`.
pub(super) fn countries() -> Schema {
    rule_list(
        "Countries the offer accepts visitors from (the proxy's country header, else the IP database).",
        country_codes(),
        1,
    )
}

/// `blocked_countries`.
pub(super) fn blocked_countries() -> Schema {
    rule_list("Countries the offer refuses, even if `countries` lists them; `[]` blocks none.", country_codes(), 0)
}

/// `devices`.
pub(super) fn devices() -> Schema {
    rule_list(
        "Device classes the offer accepts (from the user agent and the `Sec-CH-UA-Mobile` hint).",
        ObjectBuilder::new().enum_values(Some(DeviceClass::ALL.map(DeviceClass::as_str))),
        1,
    )
}

/// A `sources` or `campaigns` entry.
fn value_pattern() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some("An exact value, or a prefix when it ends in `*` (`fb_*`)."))
        .min_length(Some(1))
        .max_length(Some(MAX_RULE_ENTRY_CHARS))
        .pattern(Some(r"^[^\x00-\x1F\x7F-\x9F*]*\*?$"))
}

/// `sources`.
pub(super) fn sources() -> Schema {
    rule_list(
        "Traffic sources (`source` of the click) the offer accepts; a click without one matches none.",
        value_pattern(),
        1,
    )
}

/// `campaigns`.
pub(super) fn campaigns() -> Schema {
    rule_list(
        "Campaigns (`campaign` of the click) the offer accepts; a click without one matches none.",
        value_pattern(),
        1,
    )
}

fn daily_cap(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .description(Some(format!(
            "{description} Per UTC day; the offer leaves rotation once it is reached (on every instance within \
             `TABLE_REFRESH_SECONDS`) and returns the next day. `null` (or absent when creating) for none; when \
             changing an offer, absent leaves it as it is and `null` removes it."
        )))
        .minimum(Some(1))
        .maximum(Some(MAX_DAILY_CAP))
        .build()
        .into()
}

/// `daily_click_cap`.
pub(super) fn daily_click_cap() -> Schema {
    daily_cap("Most clicks a day (bots included: they reach the casino).")
}

/// `daily_ftd_cap`.
pub(super) fn daily_ftd_cap() -> Schema {
    daily_cap("Most FTDs a day, counted as they arrive; an FTD past the cap is still recorded.")
}

/// `group_by` of a grouped report.
pub(super) fn group_by_list() -> Schema {
    utoipa::openapi::schema::ArrayBuilder::new()
        .description(Some("What the rows are grouped by: `offer`, a visitor dimension, or both."))
        .items(RefOr::T(string_enum(
            "A grouping.",
            std::iter::once("offer").chain(Dimension::ALL.map(Dimension::as_str)),
        )))
        .min_items(Some(1))
        .max_items(Some(2))
        .build()
        .into()
}

fn group_by_parameter() -> Schema {
    let names: Vec<String> = std::iter::once("offer".to_owned())
        .chain(Dimension::ALL.map(|d| d.as_str().to_owned()))
        .chain(Dimension::ALL.map(|d| format!("offer,{}", d.as_str())))
        .chain(Dimension::ALL.map(|d| format!("{},offer", d.as_str())))
        .collect();
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).build().into()
}

fn event_kind() -> Schema {
    string_enum("An event the router understands.", EventKind::ALL.map(EventKind::as_str))
}

/// `/health`'s verdict.
pub(super) fn health_status() -> Schema {
    string_enum(
        "`ok` while routing; `degraded` while the database is unreachable or the writer still holds or \
         journals clicks for it; `no_active_offers` while every click is refused (add offers with the admin \
         API or the `seed` command).",
        HealthStatus::ALL.map(HealthStatus::as_str),
    )
}

/// How a postback ended, in the postback log.
pub(super) fn postback_outcome() -> Schema {
    string_enum(
        "How a postback ended (`pending`: held for its click, which no instance has stored yet; the line gives \
         way to the outcome once the click is stored, or becomes `expired`).",
        PostbackOutcome::ALL.map(PostbackOutcome::as_str),
    )
}

/// A string that is one of the names of a Rust enum (each listed by the enum's own `ALL`).
fn string_enum(description: &str, names: impl IntoIterator<Item = &'static str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(names))
        .build()
        .into()
}

fn click_param() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_PARAM_CHARS))
        .pattern(Some(PRINTABLE))
        .build()
        .into()
}

fn offer_id() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The offer's id."))
        .schema(Some(int64()))
        .build()
}

fn query(
    name: &str,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
    required: bool,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn string() -> Schema {
    String::schema().into()
}

fn int64() -> Schema {
    i64::schema().into()
}

fn date_time() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
        .into()
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn json_body(schema: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", ContentBuilder::new().schema(Some(reference(schema))).build())
        .build()
}

fn json_response(description: &str, schema: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(reference(schema))).build())
        .build()
}

fn json_array_response(description: &str, schema: &str) -> Response {
    let array = utoipa::openapi::schema::ArrayBuilder::new().items(reference(schema)).build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(array)).build())
        .build()
}

fn text_response(description: &str, content_type: &str) -> Response {
    ResponseBuilder::new().description(description).content(content_type, ContentBuilder::new().build()).build()
}

fn error(description: &str) -> Response {
    json_response(description, "Error")
}

fn retry_later(description: &str) -> Response {
    let mut response = error(description);
    response.headers.insert("Retry-After".to_owned(), Header::new(i64::schema()).into());
    response
}

fn unavailable() -> Response {
    retry_later("The database is unreachable; retry (`Retry-After` is set).")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_and_operation_has_a_description() {
        let config = Config::from_lookup(|_| None).unwrap();
        let doc = serde_json::to_value(document(&config)).unwrap();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                assert!(property["description"].is_string(), "{name}.{field} has no description");
            }
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(operation["summary"].is_string(), "{method} {path} has no summary");
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let described =
                        parameter["description"].is_string() || parameter["schema"]["description"].is_string();
                    assert!(described, "{method} {path}: parameter {} has no description", parameter["name"]);
                }
            }
        }
    }
}
