//! The admin API: offers, stats, the postback log and weight recalculation, behind a bearer token.
//!
//! Request and response types live here, at the edge. Each handler parses its request, calls one
//! [`App`] operation (which validates and applies the rules, such as rebuilding the routing table
//! after an offer change) and renders the result.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::query::pairs;
use super::routes::Endpoint;
use super::{ApiError, HttpResponse, error, json, parse_json, read_body, respond};
use crate::app::{App, OfferChanges, OfferDraft, OfferReport};
use crate::conversion::alias_names;
use crate::store::{Offer, PostbackLogQuery, PostbackLogRow, PostbackOutcome, TimeRange};

/// Most postback-log lines per page.
const MAX_PAGE: u32 = 1000;

/// Handles an admin endpoint; the caller has checked the token.
pub async fn handle(app: &App, endpoint: Endpoint, offer_id: Option<&str>, req: Request<Incoming>) -> HttpResponse {
    let query = req.uri().query().unwrap_or("").to_owned();
    // Ids that are not numbers name no offer, like ids that do not exist.
    let offer_id = offer_id.map(|id| id.parse::<i64>().map_err(|_| no_such_offer()));
    let result = match (endpoint, offer_id) {
        (Endpoint::ListOffers, _) => list_offers(app, &query).await,
        (Endpoint::CreateOffer, _) => create_offer(app, req).await,
        (Endpoint::Stats, _) => stats(app, &query).await,
        (Endpoint::UpdateWeights, _) => update_weights(app).await,
        (Endpoint::PostbackLog, _) => postback_log(app, &query).await,
        (_, Some(Err(not_found))) => Err(not_found),
        (Endpoint::GetOffer, Some(Ok(id))) => get_offer(app, id).await,
        (Endpoint::ReplaceOffer | Endpoint::PatchOffer, Some(Ok(id))) => update_offer(app, id, req).await,
        (Endpoint::DeleteOffer, Some(Ok(id))) => delete_offer(app, id).await,
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    };
    respond(result)
}

/// The answer to a request without a valid admin token: no detail.
pub fn unauthorized() -> HttpResponse {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized");
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn no_such_offer() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such offer")
}

/// Whether the request carries the admin bearer token.
pub fn authorized<B>(app: &App, req: &Request<B>) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else { return false };
    // The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
    let Some((scheme, token)) = value.as_bytes().split_at_checked(7) else { return false };
    scheme.eq_ignore_ascii_case(b"bearer ") && app.is_admin_token(token)
}

async fn read_json<T: serde::de::DeserializeOwned>(app: &App, req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req.into_body(), app.config().header_read_timeout).await?;
    parse_json(&body)
}

// ----- offers -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferInput {
    name: String,
    casino_url: String,
    #[serde(default = "default_weight")]
    weight: f64,
    postback_secret: Option<String>,
    #[serde(default = "default_active")]
    active: bool,
    #[serde(default)]
    event_aliases: BTreeMap<String, String>,
}

fn default_weight() -> f64 {
    1.0
}

fn default_active() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferPatchInput {
    name: Option<String>,
    casino_url: Option<String>,
    weight: Option<f64>,
    postback_secret: Option<String>,
    active: Option<bool>,
    event_aliases: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct OfferView<'a> {
    id: i64,
    name: &'a str,
    casino_url: &'a str,
    weight: f64,
    postback_secret: &'a str,
    active: bool,
    event_aliases: BTreeMap<&'a str, &'static str>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl<'a> From<&'a Offer> for OfferView<'a> {
    fn from(offer: &'a Offer) -> Self {
        OfferView {
            id: offer.id,
            name: &offer.name,
            casino_url: &offer.casino_url,
            weight: offer.weight,
            postback_secret: &offer.postback_secret,
            active: offer.active,
            event_aliases: alias_names(&offer.event_aliases),
            created_at: offer.created_at,
        }
    }
}

async fn list_offers(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let active_only = pairs(query).flatten().any(|(key, value)| key == "active_only" && value == "true");
    let offers = app.list_offers(active_only).await?;
    Ok(json(StatusCode::OK, &offers.iter().map(OfferView::from).collect::<Vec<_>>()))
}

async fn get_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    Ok(json(StatusCode::OK, &OfferView::from(&app.offer(id).await?)))
}

async fn create_offer(app: &App, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let input: OfferInput = read_json(app, req).await?;
    let draft = OfferDraft {
        name: input.name,
        casino_url: input.casino_url,
        weight: input.weight,
        postback_secret: input.postback_secret,
        active: input.active,
        event_aliases: input.event_aliases,
    };
    let offer = app.create_offer(draft).await?;
    Ok(json(StatusCode::CREATED, &OfferView::from(&offer)))
}

async fn update_offer(app: &App, id: i64, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let input: OfferPatchInput = read_json(app, req).await?;
    let changes = OfferChanges {
        name: input.name,
        casino_url: input.casino_url,
        weight: input.weight,
        postback_secret: input.postback_secret,
        active: input.active,
        event_aliases: input.event_aliases,
    };
    let offer = app.update_offer(id, changes).await?;
    Ok(json(StatusCode::OK, &OfferView::from(&offer)))
}

async fn delete_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    #[derive(Serialize)]
    struct Deleted {
        deleted: i64,
    }
    app.delete_offer(id).await?;
    Ok(json(StatusCode::OK, &Deleted { deleted: id }))
}

// ----- stats -----

#[derive(Serialize)]
struct StatsView<'a> {
    id: i64,
    name: &'a str,
    total_clicks: u64,
    total_registrations: u64,
    total_ftds: u64,
    total_payout: f64,
    /// FTDs per click, in percent.
    conversion_rate: f64,
    /// Payout per click.
    ev: f64,
    weight: f64,
    active: bool,
    /// Share of new clicks this offer gets now.
    traffic_share: f64,
    /// Thompson posterior mean earnings per click (active offers; `null` otherwise).
    epc_mean: Option<f64>,
    /// Its 90% interval, `[low, high]`.
    epc_interval_90: Option<[f64; 2]>,
    /// Probability of having the highest earnings per click among the active offers.
    probability_best: Option<f64>,
}

fn parse_time(key: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).ok().filter(|time| (1970..=9000).contains(&time.year())).ok_or_else(|| {
        ApiError::bad_request(format!("{key} must be an RFC 3339 time from 1970 to 9000, such as 2026-01-31T00:00:00Z"))
    })
}

fn parse_range(query: &str) -> Result<TimeRange, ApiError> {
    let mut range = TimeRange::default();
    for pair in pairs(query) {
        let (key, value) = pair.map_err(|e| ApiError::bad_request(e.to_string()))?;
        match key.as_ref() {
            "from" => range.from = Some(parse_time("from", &value)?),
            "to" => range.to = Some(parse_time("to", &value)?),
            _ => {}
        }
    }
    Ok(range)
}

async fn stats(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let reports = app.offer_report(parse_range(query)?).await?;
    Ok(json(StatusCode::OK, &reports.iter().map(StatsView::from).collect::<Vec<_>>()))
}

impl<'a> From<&'a OfferReport> for StatsView<'a> {
    fn from(report: &'a OfferReport) -> Self {
        let stats = &report.stats;
        let per_click = |value: f64| if stats.clicks == 0 { 0.0 } else { value / stats.clicks as f64 };
        StatsView {
            id: stats.offer_id,
            name: &stats.name,
            total_clicks: stats.clicks,
            total_registrations: stats.registrations,
            total_ftds: stats.ftds,
            total_payout: stats.revenue,
            conversion_rate: 100.0 * per_click(stats.ftds as f64),
            ev: per_click(stats.revenue),
            weight: report.weight,
            active: stats.active,
            traffic_share: report.traffic_share,
            epc_mean: report.thompson.map(|t| t.epc_mean),
            epc_interval_90: report.thompson.map(|t| t.epc_interval_90),
            probability_best: report.thompson.map(|t| t.probability_best),
        }
    }
}

// ----- weights -----

#[derive(Serialize)]
struct WeightView {
    id: i64,
    clicks: u64,
    ftds: u64,
    payout: f64,
    ev: f64,
    weight: f64,
}

async fn update_weights(app: &App) -> Result<HttpResponse, ApiError> {
    #[derive(Serialize)]
    struct Updated {
        status: &'static str,
        weights: Vec<WeightView>,
    }
    let weighted = app.update_weights().await?;
    Ok(json(
        StatusCode::OK,
        &Updated {
            status: "updated",
            weights: weighted
                .iter()
                .map(|w| WeightView {
                    id: w.window.offer_id,
                    clicks: w.window.clicks,
                    ftds: w.window.ftds,
                    payout: w.window.revenue,
                    ev: w.ev,
                    weight: w.weight,
                })
                .collect(),
        },
    ))
}

// ----- postback log -----

#[derive(Serialize)]
struct PostbackLogView<'a> {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
    offer_id: Option<i64>,
    click_id: Option<&'a str>,
    event: Option<&'a str>,
    payout: Option<f64>,
    currency: Option<&'a str>,
    tid: Option<&'a str>,
    outcome: &'static str,
    reason: Option<&'a str>,
    source_ip: Option<String>,
}

impl<'a> From<&'a PostbackLogRow> for PostbackLogView<'a> {
    fn from(row: &'a PostbackLogRow) -> Self {
        let entry = &row.entry;
        PostbackLogView {
            id: row.id,
            received_at: entry.received_at,
            offer_id: entry.offer_id,
            click_id: entry.click_id.as_deref(),
            event: entry.event.as_deref(),
            payout: entry.payout.filter(|p| p.is_finite()),
            currency: entry.currency.as_deref(),
            tid: entry.tid.as_deref(),
            outcome: entry.outcome.as_str(),
            reason: entry.reason.as_deref(),
            source_ip: entry.source_ip.map(|ip| ip.to_string()),
        }
    }
}

fn parse_log_query(query: &str) -> Result<PostbackLogQuery, ApiError> {
    let bad = |message: &'static str| ApiError::bad_request(message);
    let mut parsed = PostbackLogQuery { limit: 100, ..PostbackLogQuery::default() };
    for pair in pairs(query) {
        let (key, value) = pair.map_err(|e| ApiError::bad_request(e.to_string()))?;
        match key.as_ref() {
            "offer_id" => parsed.offer_id = Some(value.parse().map_err(|_| bad("offer_id must be an integer"))?),
            "outcome" => {
                parsed.outcome = Some(PostbackOutcome::parse(&value).ok_or_else(|| {
                    bad("outcome must be one of accepted, duplicate, invalid, forbidden, unknown_click, no_ftd")
                })?)
            }
            "from" => parsed.from = Some(parse_time("from", &value)?),
            "to" => parsed.to = Some(parse_time("to", &value)?),
            "before_id" => parsed.before_id = Some(value.parse().map_err(|_| bad("before_id must be an integer"))?),
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE).contains(limit))
                    .ok_or_else(|| bad("limit must be from 1 to 1000"))?
            }
            _ => {}
        }
    }
    Ok(parsed)
}

async fn postback_log(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    #[derive(Serialize)]
    struct Page<'a> {
        items: Vec<PostbackLogView<'a>>,
        /// Pass as `before_id` for the next (older) page; `null` on the last page.
        next_before_id: Option<i64>,
    }
    let page = app.postback_log(&parse_log_query(query)?).await?;
    Ok(json(
        StatusCode::OK,
        &Page { items: page.rows.iter().map(PostbackLogView::from).collect(), next_before_id: page.next_before_id },
    ))
}
