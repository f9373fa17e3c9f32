//! The admin API: offers, stats, the postback log and weight recalculation, behind a bearer token.
//!
//! Request and response types live here, at the edge; the store sees only validated values. Every
//! change to offers rebuilds the routing table before the response, so it applies to the next click.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::query::pairs;
use super::routes::Endpoint;
use super::{ApiError, HttpResponse, error, json, parse_json, read_body, respond};
use crate::app::App;
use crate::config::RoutingStrategy;
use crate::conversion::{EventKind, alias_names};
use crate::routing::RedirectTemplate;
use crate::secret::{generate_secret, secrets_match};
use crate::store::{
    DeleteOutcome, NewOffer, Offer, OfferPatch, OfferStats, PostbackLogQuery, PostbackLogRow, PostbackOutcome,
    TimeRange,
};

/// Most postback-log lines per page.
const MAX_PAGE: u32 = 1000;
/// Longest offer name.
const MAX_NAME_CHARS: usize = 200;

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
    scheme.eq_ignore_ascii_case(b"bearer ") && secrets_match(app.admin_token.as_bytes(), token)
}

async fn read_json<T: serde::de::DeserializeOwned>(app: &App, req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req.into_body(), app.config.header_read_timeout).await?;
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

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("name must be 1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}

fn validate_url(url: &str) -> Result<String, ApiError> {
    RedirectTemplate::parse(url.trim()).map(|_| url.trim().to_owned()).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn validate_weight(weight: f64) -> Result<f64, ApiError> {
    if weight.is_finite() && (0.0..=1e9).contains(&weight) {
        Ok(weight)
    } else {
        Err(ApiError::bad_request("weight must be a finite number from 0 to 1e9"))
    }
}

fn validate_secret(secret: &str) -> Result<String, ApiError> {
    if (8..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(secret.to_owned())
    } else {
        Err(ApiError::bad_request("postback_secret must be 8 to 256 visible ASCII characters"))
    }
}

fn validate_aliases(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, EventKind>, ApiError> {
    if raw.len() > 100 {
        return Err(ApiError::bad_request("event_aliases may hold at most 100 entries"));
    }
    raw.into_iter()
        .map(|(word, event)| {
            let word = word.trim().to_owned();
            if word.is_empty() || word.chars().count() > 64 || word.chars().any(char::is_control) {
                return Err(ApiError::bad_request("event_aliases keys must be 1 to 64 printable characters"));
            }
            let kind = EventKind::parse(&event).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "event_aliases[{word:?}]: {event:?} is not one of ftd, payout, reg, deposit, rejected"
                ))
            })?;
            Ok((word, kind))
        })
        .collect()
}

async fn list_offers(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let active_only = pairs(query).flatten().any(|(key, value)| key == "active_only" && value == "true");
    let offers = app.store.list_offers(active_only).await?;
    Ok(json(StatusCode::OK, &offers.iter().map(OfferView::from).collect::<Vec<_>>()))
}

async fn get_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    let offer = app.store.get_offer(id).await?.ok_or_else(no_such_offer)?;
    Ok(json(StatusCode::OK, &OfferView::from(&offer)))
}

async fn create_offer(app: &App, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let input: OfferInput = read_json(app, req).await?;
    let new_offer = NewOffer {
        name: validate_name(&input.name)?,
        casino_url: validate_url(&input.casino_url)?,
        weight: validate_weight(input.weight)?,
        postback_secret: match input.postback_secret.as_deref() {
            Some(secret) => validate_secret(secret)?,
            None => generate_secret(),
        },
        active: input.active,
        event_aliases: validate_aliases(input.event_aliases)?,
    };
    let offer = app.store.create_offer(&new_offer).await?;
    reload_after_change(app).await;
    Ok(json(StatusCode::CREATED, &OfferView::from(&offer)))
}

async fn update_offer(app: &App, id: i64, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let input: OfferPatchInput = read_json(app, req).await?;
    let patch = OfferPatch {
        name: input.name.as_deref().map(validate_name).transpose()?,
        casino_url: input.casino_url.as_deref().map(validate_url).transpose()?,
        weight: input.weight.map(validate_weight).transpose()?,
        postback_secret: input.postback_secret.as_deref().map(validate_secret).transpose()?,
        active: input.active,
        event_aliases: input.event_aliases.map(validate_aliases).transpose()?,
    };
    let offer = app.store.update_offer(id, &patch).await?.ok_or_else(no_such_offer)?;
    reload_after_change(app).await;
    Ok(json(StatusCode::OK, &OfferView::from(&offer)))
}

async fn delete_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    #[derive(Serialize)]
    struct Deleted {
        deleted: i64,
    }
    // An active offer may be picked by a click (here or on another instance) at any moment; its
    // clicks would then outlive it. Deactivation first makes deletion safe.
    if app.store.get_offer(id).await?.ok_or_else(no_such_offer)?.active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offer is active: set active=false first (and keep it if it has clicks)",
        ));
    }
    // Clicks still queued count as history too: write them before deciding.
    if app.queue.flush(std::time::Duration::from_secs(5)).await.is_err() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "pending clicks could not be written; retry later"));
    }
    match app.store.delete_offer(id).await? {
        DeleteOutcome::Deleted => {
            reload_after_change(app).await;
            Ok(json(StatusCode::OK, &Deleted { deleted: id }))
        }
        DeleteOutcome::NotFound => Err(no_such_offer()),
        DeleteOutcome::HasClicks => Err(ApiError::new(
            StatusCode::CONFLICT,
            "offer has recorded clicks and deleting it would lose history; set active=false instead",
        )),
    }
}

async fn reload_after_change(app: &App) {
    if let Err(error) = app.reload_routing().await {
        // The change is committed; the periodic refresh will pick it up.
        tracing::warn!(%error, "routing table not rebuilt after an offer change");
    }
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
    let rows = app.store.offer_stats(parse_range(query)?).await?;
    let active: Vec<i64> = rows.iter().filter(|row| row.active).map(|row| row.offer_id).collect();
    // Under `thompson`, the posterior the current table was built from (so that `probability_best`
    // is the table's `weight`), unless the active offers changed since; otherwise a fresh one.
    let current = app
        .current_thompson()
        .filter(|current| current.posteriors.iter().map(|posterior| posterior.offer_id).eq(active.iter().copied()));
    let posterior = match current {
        Some(current) => current,
        None => Arc::new(app.thompson(&active).await?),
    };
    let thompson_of = |offer_id: i64| {
        let index = active.iter().position(|&id| id == offer_id)?;
        let (low, high) = posterior.epc_interval[index];
        Some((posterior.posteriors[index].mean_epc(), [low, high], posterior.probability_best[index]))
    };
    let table = app.table.load();
    let share = |offer_id: i64| {
        table.offers().iter().find(|offer| offer.offer_id == offer_id).map_or(0.0, |offer| offer.propensity)
    };
    let views: Vec<StatsView> = rows
        .iter()
        .map(|row: &OfferStats| {
            let per_click = |value: f64| if row.clicks == 0 { 0.0 } else { value / row.clicks as f64 };
            let thompson = thompson_of(row.offer_id);
            // Under `thompson` the table's probabilities are the weights; an offer's stored weight
            // waits for a switch back to `ev`.
            let thompson_routes = app.config.routing_strategy == RoutingStrategy::Thompson && row.active;
            let traffic_share = share(row.offer_id);
            StatsView {
                id: row.offer_id,
                name: &row.name,
                total_clicks: row.clicks,
                total_registrations: row.registrations,
                total_ftds: row.ftds,
                total_payout: row.revenue,
                conversion_rate: 100.0 * per_click(row.ftds as f64),
                ev: per_click(row.revenue),
                weight: if thompson_routes { traffic_share } else { row.weight },
                active: row.active,
                traffic_share,
                epc_mean: thompson.map(|(mean, _, _)| mean),
                epc_interval_90: thompson.map(|(_, interval, _)| interval),
                probability_best: thompson.map(|(_, _, probability)| probability),
            }
        })
        .collect();
    Ok(json(StatusCode::OK, &views))
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
    let Some(weighted) = app.recalculate_weights().await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "another instance is recalculating the weights; retry shortly",
        ));
    };
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
    let parsed = parse_log_query(query)?;
    let rows = app.store.postback_log(&parsed).await?;
    let full_page = rows.len() == parsed.limit as usize;
    let next_before_id = if full_page { rows.last().map(|row| row.id) } else { None };
    Ok(json(StatusCode::OK, &Page { items: rows.iter().map(PostbackLogView::from).collect(), next_before_id }))
}
