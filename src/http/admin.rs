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
use utoipa::ToSchema;

use super::query::pairs;
use super::routes::Endpoint;
use super::{ApiError, HttpResponse, error, json, parse_json, read_body, respond};
use crate::app::{App, OfferChanges, OfferDraft, OfferReport, RuleChanges, SegmentReport, SegmentRouting};
use crate::conversion::alias_names;
use crate::routing::Targeting;
use crate::store::{Dimension, Grouping, Offer, PostbackLogQuery, PostbackLogRow, PostbackOutcome, TimeRange};
use crate::visitor::{Country, DeviceClass};

/// Most postback-log lines per page.
pub(super) const MAX_PAGE: u32 = 1000;

/// Handles an admin endpoint; the caller has checked the token.
pub async fn handle(app: &App, endpoint: Endpoint, offer_id: Option<&str>, req: Request<Incoming>) -> HttpResponse {
    let query = req.uri().query().unwrap_or("").to_owned();
    // A path segment may be percent-encoded (`%2D1` is `-1`).
    let offer_id = offer_id.map(|id| {
        percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .ok()
            .and_then(|id| id.parse::<i64>().ok())
            .ok_or_else(|| ApiError::bad_request("id must be an integer"))
    });
    let result = match (endpoint, offer_id) {
        (Endpoint::ListOffers, _) => list_offers(app, &query).await,
        (Endpoint::CreateOffer, _) => create_offer(app, req).await,
        (Endpoint::Stats, _) => stats(app, &query).await,
        (Endpoint::UpdateWeights, _) => update_weights(app).await,
        (Endpoint::PostbackLog, _) => postback_log(app, &query).await,
        (_, Some(Err(bad_id))) => Err(bad_id),
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

/// A new offer. (Each field's description and limits are in [`super::openapi`], shared with
/// `OfferPatchInput`.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OfferInput {
    #[schema(schema_with = super::openapi::offer_name::<false>)]
    name: String,
    #[schema(schema_with = super::openapi::offer_url::<false>)]
    casino_url: String,
    #[serde(default = "default_weight")]
    #[schema(schema_with = super::openapi::offer_weight::<false>)]
    weight: f64,
    #[schema(schema_with = super::openapi::offer_secret::<true>)]
    postback_secret: Option<String>,
    /// Whether the offer gets traffic.
    #[serde(default = "default_active")]
    #[schema(default = true)]
    active: bool,
    #[serde(default)]
    #[schema(schema_with = super::openapi::event_aliases::<false>)]
    event_aliases: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::countries)]
    countries: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::blocked_countries)]
    blocked_countries: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::devices)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::sources)]
    sources: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::campaigns)]
    campaigns: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::daily_click_cap)]
    daily_click_cap: Option<u64>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::daily_ftd_cap)]
    daily_ftd_cap: Option<u64>,
}

/// The weight of an offer created without one.
pub(super) const DEFAULT_WEIGHT: f64 = 1.0;

fn default_weight() -> f64 {
    DEFAULT_WEIGHT
}

fn default_active() -> bool {
    true
}

/// Changes to an offer: only the fields given change (`null` leaves a field as it is).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OfferPatchInput {
    #[schema(schema_with = super::openapi::offer_name::<true>)]
    name: Option<String>,
    #[schema(schema_with = super::openapi::offer_url::<true>)]
    casino_url: Option<String>,
    #[schema(schema_with = super::openapi::offer_weight::<true>)]
    weight: Option<f64>,
    #[schema(schema_with = super::openapi::offer_secret::<true>)]
    postback_secret: Option<String>,
    /// Activate or deactivate (an offer must be inactive before it can be deleted).
    active: Option<bool>,
    #[schema(schema_with = super::openapi::event_aliases::<true>)]
    event_aliases: Option<BTreeMap<String, String>>,
    // Targeting rules and caps: absent leaves one as it is, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::countries)]
    countries: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::blocked_countries)]
    blocked_countries: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::devices)]
    devices: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::sources)]
    sources: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::campaigns)]
    campaigns: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::daily_click_cap)]
    daily_click_cap: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::daily_ftd_cap)]
    daily_ftd_cap: Option<Option<u64>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null` (absent fields are `None` by
/// `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// An offer.
#[derive(Serialize, ToSchema)]
#[schema(as = Offer)]
pub(super) struct OfferView<'a> {
    /// The offer's id.
    id: i64,
    /// Display name.
    name: &'a str,
    /// Where its clicks are sent (may hold macros).
    casino_url: &'a str,
    /// Routing weight under `ev` (under `thompson`, see `/admin/stats` for the share it gets).
    weight: f64,
    /// The secret its platform must send with postbacks.
    postback_secret: &'a str,
    /// Whether it gets traffic.
    active: bool,
    /// The platform's status words mapped to our events.
    #[schema(schema_with = super::openapi::event_aliases::<false>)]
    event_aliases: BTreeMap<&'a str, &'static str>,
    #[schema(schema_with = super::openapi::countries, required = true)]
    countries: Option<&'a [String]>,
    #[schema(schema_with = super::openapi::blocked_countries, required = true)]
    blocked_countries: Option<&'a [String]>,
    #[schema(schema_with = super::openapi::devices, required = true)]
    devices: Option<&'a [String]>,
    #[schema(schema_with = super::openapi::sources, required = true)]
    sources: Option<&'a [String]>,
    #[schema(schema_with = super::openapi::campaigns, required = true)]
    campaigns: Option<&'a [String]>,
    #[schema(schema_with = super::openapi::daily_click_cap, required = true)]
    daily_click_cap: Option<u64>,
    #[schema(schema_with = super::openapi::daily_ftd_cap, required = true)]
    daily_ftd_cap: Option<u64>,
    /// Clicks of the offer this UTC day, as this instance counts them for its caps (`null` for an
    /// offer without a cap).
    #[schema(required = true)]
    clicks_today: Option<u64>,
    /// FTDs of the offer this UTC day, as this instance counts them (`null` without a cap).
    #[schema(required = true)]
    ftds_today: Option<u64>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl<'a> OfferView<'a> {
    fn new(app: &App, offer: &'a Offer) -> Self {
        let today = app.counts_today(offer);
        OfferView {
            id: offer.id,
            name: &offer.name,
            casino_url: &offer.casino_url,
            weight: offer.weight,
            postback_secret: &offer.postback_secret,
            active: offer.active,
            event_aliases: alias_names(&offer.event_aliases),
            countries: offer.targeting.countries.as_deref(),
            blocked_countries: offer.targeting.blocked_countries.as_deref(),
            devices: offer.targeting.devices.as_deref(),
            sources: offer.targeting.sources.as_deref(),
            campaigns: offer.targeting.campaigns.as_deref(),
            daily_click_cap: offer.daily_caps.clicks,
            daily_ftd_cap: offer.daily_caps.ftds,
            clicks_today: today.map(|(clicks, _)| clicks),
            ftds_today: today.map(|(_, ftds)| ftds),
            created_at: offer.created_at,
        }
    }
}

/// What a delete did.
#[derive(Serialize, ToSchema)]
pub(super) struct Deleted {
    /// The id of the offer deleted.
    deleted: i64,
}

async fn list_offers(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let mut active_only = false;
    for pair in pairs(query) {
        let (key, value) = pair.map_err(|e| ApiError::bad_request(e.to_string()))?;
        if key == "active_only" {
            active_only = parse_bool("active_only", &value)?;
        }
    }
    let offers = app.list_offers(active_only).await?;
    Ok(json(StatusCode::OK, &offers.iter().map(|offer| OfferView::new(app, offer)).collect::<Vec<_>>()))
}

async fn get_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    Ok(json(StatusCode::OK, &OfferView::new(app, &app.offer(id).await?)))
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
        targeting: Targeting {
            countries: input.countries,
            blocked_countries: input.blocked_countries,
            devices: input.devices,
            sources: input.sources,
            campaigns: input.campaigns,
        },
        daily_click_cap: input.daily_click_cap,
        daily_ftd_cap: input.daily_ftd_cap,
    };
    let offer = app.create_offer(draft).await?;
    Ok(json(StatusCode::CREATED, &OfferView::new(app, &offer)))
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
        targeting: RuleChanges {
            countries: input.countries,
            blocked_countries: input.blocked_countries,
            devices: input.devices,
            sources: input.sources,
            campaigns: input.campaigns,
        },
        daily_click_cap: input.daily_click_cap,
        daily_ftd_cap: input.daily_ftd_cap,
    };
    let offer = app.update_offer(id, changes).await?;
    Ok(json(StatusCode::OK, &OfferView::new(app, &offer)))
}

async fn delete_offer(app: &App, id: i64) -> Result<HttpResponse, ApiError> {
    app.delete_offer(id).await?;
    Ok(json(StatusCode::OK, &Deleted { deleted: id }))
}

// ----- stats -----

/// One offer's performance over the requested range (by click time), and how it is routed now.
#[derive(Serialize, ToSchema)]
#[schema(as = OfferStats)]
pub(super) struct StatsView<'a> {
    /// The offer's id.
    id: i64,
    /// Its name.
    name: &'a str,
    /// Clicks of people in the range (bots and link previews are counted apart: see `group_by`).
    total_clicks: u64,
    /// Registrations of those clicks.
    total_registrations: u64,
    /// FTDs of those clicks (rejected FTDs do not count).
    total_ftds: u64,
    /// Revenue of those clicks: FTD payouts plus further deposits, in the range (not a window).
    total_revenue: f64,
    /// FTDs per click over the range, in percent.
    conversion_rate: f64,
    /// Earnings per click over the range: `total_revenue / total_clicks`.
    epc: f64,
    /// The weight that routes the offer now: under `ev` its stored EV weight (EV / best EV,
    /// floored at `MIN_WEIGHT`); under `thompson` the table's probability of being best.
    weight: f64,
    /// Whether it is active.
    active: bool,
    /// Probability that a new click goes to this offer now (exploration included), for a visitor every
    /// offer accepts: targeting rules narrow the choice for others, and an offer at a daily cap gets 0.
    traffic_share: f64,
    /// Thompson posterior mean earnings per click over the last 30 days (active offers; `null`
    /// otherwise).
    #[schema(required = true)]
    epc_mean: Option<f64>,
    /// 90% posterior interval of the earnings per click, `[low, high]` (active offers).
    #[schema(required = true)]
    epc_interval_90: Option<[f64; 2]>,
    /// Posterior probability that this offer has the highest earnings per click among the active
    /// offers (active offers).
    #[schema(required = true)]
    probability_best: Option<f64>,
}

/// Parses a boolean query parameter: `true` or `false`, nothing else.
fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{key} must be true or false"))),
    }
}

fn parse_time(key: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("{key} must be an RFC 3339 time, such as 2026-01-31T00:00:00Z")))
}

/// `/admin/stats`' parameters.
fn parse_stats_query(query: &str) -> Result<(TimeRange, Option<Grouping>), ApiError> {
    let mut range = TimeRange::default();
    let mut grouping = None;
    for pair in pairs(query) {
        let (key, value) = pair.map_err(|e| ApiError::bad_request(e.to_string()))?;
        match key.as_ref() {
            "from" => range.from = Some(parse_time("from", &value)?),
            "to" => range.to = Some(parse_time("to", &value)?),
            "group_by" => grouping = Some(parse_grouping(&value)?),
            _ => {}
        }
    }
    Ok((range, grouping))
}

/// `offer`, a dimension, or `offer,` and a dimension (in either order).
fn parse_grouping(value: &str) -> Result<Grouping, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "group_by must be offer, country, device, source or campaign, or offer and one of the others \
             (offer,country)",
        )
    };
    let mut grouping = Grouping { by_offer: false, dimension: None };
    for part in value.split(',') {
        match (part, Dimension::parse(part)) {
            ("offer", _) if !grouping.by_offer => grouping.by_offer = true,
            (_, Some(dimension)) if grouping.dimension.is_none() => grouping.dimension = Some(dimension),
            _ => return Err(bad()),
        }
    }
    Ok(grouping)
}

async fn stats(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let (range, grouping) = parse_stats_query(query)?;
    if let Some(grouping) = grouping {
        let report = app.segment_report(range, grouping).await?;
        return Ok(json(StatusCode::OK, &GroupedStatsView::new(grouping, &report)));
    }
    let reports = app.offer_report(range).await?;
    Ok(json(StatusCode::OK, &reports.iter().map(StatsView::from).collect::<Vec<_>>()))
}

/// Figures grouped by offer, a visitor dimension, or both (`group_by`).
#[derive(Serialize, ToSchema)]
#[schema(as = GroupedStats)]
pub(super) struct GroupedStatsView<'a> {
    /// What the rows are grouped by, as asked (`offer`, a dimension, or both).
    #[schema(schema_with = super::openapi::group_by_list)]
    group_by: Vec<&'static str>,
    /// One row per group, by clicks (most first).
    rows: Vec<GroupView<'a>>,
}

/// One group's figures over the range (by click time).
#[derive(Serialize, ToSchema)]
#[schema(as = StatsGroup)]
pub(super) struct GroupView<'a> {
    /// The offer (grouped by offer); `null` for the clicks sent to the fallback URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    offer_id: Option<Option<i64>>,
    /// The offer's name (grouped by offer); `null` for the fallback URL or a deleted offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    offer_name: Option<Option<&'a str>>,
    /// Whether these are the clicks sent to the fallback URL (grouped by offer).
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<bool>,
    /// The visitors' country (grouped by country); `null` for clicks recorded before the router knew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<Option<&'a str>>,
    /// The visitors' device class (grouped by device); `null` as for `country`.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Option<&'a str>>,
    /// The clicks' source (grouped by source); `null` for clicks without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Option<&'a str>>,
    /// The clicks' campaign (grouped by campaign); `null` for clicks without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<Option<&'a str>>,
    /// Clicks of people (bots and link previews are counted apart).
    clicks: u64,
    /// Clicks of bots and link previews.
    bots: u64,
    /// FTDs of those clicks (rejected FTDs do not count).
    ftds: u64,
    /// Revenue of those clicks: FTD payouts plus further deposits.
    revenue: f64,
    /// FTDs per click of people, in percent.
    conversion_rate: f64,
    /// Earnings per click of people: `revenue / clicks`.
    epc: f64,
    /// Under `thompson`, grouped by a trait that makes learning segments (`SEGMENT_BY`): the learned
    /// segments with that value, and how each routes now. Absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    segments: Vec<SegmentRoutingView<'a>>,
}

/// A learned segment: who it is, and each offer's posterior and share of its visitors now.
#[derive(Serialize, ToSchema)]
#[schema(as = SegmentRouting)]
pub(super) struct SegmentRoutingView<'a> {
    /// The segment's country (when countries make segments).
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'static str>,
    /// Its device class (when devices make segments).
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'static str>,
    /// Its source (when sources make segments; empty: clicks without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    /// The offers that accept its visitors (only the row's offer, when grouped by offer).
    offers: Vec<SegmentOfferView>,
}

/// One offer in a learned segment.
#[derive(Serialize, ToSchema)]
#[schema(as = SegmentOffer)]
pub(super) struct SegmentOfferView {
    /// The offer.
    offer_id: i64,
    /// Its share of the segment's visitors now: its probability of being the best of the offers
    /// that accept them.
    traffic_share: f64,
    /// Posterior mean earnings per click in the segment.
    epc_mean: f64,
    /// Posterior mean FTDs per click in the segment, in percent.
    conversion_rate_mean: f64,
    /// Clicks of people in the segment the posterior counts (its window).
    clicks: u64,
    /// FTDs of those clicks that have arrived.
    ftds: u64,
    /// Those clicks weighted by how likely their FTD would have arrived by now.
    exposure: f64,
}

impl<'a> GroupedStatsView<'a> {
    fn new(grouping: Grouping, report: &'a SegmentReport) -> GroupedStatsView<'a> {
        let mut group_by = Vec::new();
        if grouping.by_offer {
            group_by.push("offer");
        }
        group_by.extend(grouping.dimension.map(Dimension::as_str));
        let rows = report
            .rows
            .iter()
            .map(|row| {
                let stats = &row.stats;
                let value = |dimension| (grouping.dimension == Some(dimension)).then_some(stats.value.as_deref());
                let per_click = |value: f64| if stats.clicks == 0 { 0.0 } else { value / stats.clicks as f64 };
                GroupView {
                    offer_id: grouping.by_offer.then(|| stats.offer_id.filter(|_| !row.is_fallback)),
                    offer_name: grouping.by_offer.then_some(row.offer_name.as_deref()),
                    fallback: grouping.by_offer.then_some(row.is_fallback),
                    country: value(Dimension::Country),
                    device: value(Dimension::Device),
                    source: value(Dimension::Source),
                    campaign: value(Dimension::Campaign),
                    clicks: stats.clicks,
                    bots: stats.bots,
                    ftds: stats.ftds,
                    revenue: stats.revenue,
                    conversion_rate: 100.0 * per_click(stats.ftds as f64),
                    epc: per_click(stats.revenue),
                    segments: row.segments.iter().map(SegmentRoutingView::from).collect(),
                }
            })
            .collect();
        GroupedStatsView { group_by, rows }
    }
}

impl<'a> From<&'a SegmentRouting> for SegmentRoutingView<'a> {
    fn from(routing: &'a SegmentRouting) -> Self {
        SegmentRoutingView {
            country: routing.segment.country.map(Country::as_str),
            device: routing.segment.device.map(DeviceClass::as_str),
            source: routing.segment.source.as_deref(),
            offers: routing
                .offers
                .iter()
                .map(|offer| SegmentOfferView {
                    offer_id: offer.offer_id,
                    traffic_share: offer.traffic_share,
                    epc_mean: offer.posterior.mean_epc(),
                    conversion_rate_mean: 100.0 * offer.posterior.mean_rate(),
                    clicks: offer.posterior.clicks,
                    ftds: offer.posterior.ftds,
                    exposure: offer.posterior.exposure,
                })
                .collect(),
        }
    }
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
            total_revenue: stats.revenue,
            conversion_rate: 100.0 * per_click(stats.ftds as f64),
            epc: per_click(stats.revenue),
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

/// One offer's new weight and the window it was computed from.
#[derive(Serialize, ToSchema)]
pub(super) struct WeightView {
    /// The offer's id.
    id: i64,
    /// Clicks in the window the weight was computed from: under `ev` the offer's last
    /// `LAST_N_CLICKS` clicks, under `thompson` the last 30 days.
    window_clicks: u64,
    /// FTDs of those clicks.
    window_ftds: u64,
    /// Revenue of those FTDs.
    window_revenue: f64,
    /// The window's earnings per click: under `ev` the EV (FTD rate x average payout), under
    /// `thompson` the posterior mean.
    window_ev: f64,
    /// The new weight: under `ev` EV / best EV, floored at `MIN_WEIGHT` (1.0 below
    /// `MIN_CLICKS_FOR_EV` clicks); under `thompson` the probability of being best.
    weight: f64,
}

/// The weights after a recalculation.
#[derive(Serialize, ToSchema)]
pub(super) struct WeightsUpdated {
    /// Always `updated`.
    #[schema(pattern = "^updated$")]
    status: &'static str,
    /// Every active offer's new weight.
    weights: Vec<WeightView>,
}

async fn update_weights(app: &App) -> Result<HttpResponse, ApiError> {
    let weighted = app.update_weights().await?;
    let weights = weighted
        .iter()
        .map(|w| WeightView {
            id: w.window.offer_id,
            window_clicks: w.window.clicks,
            window_ftds: w.window.ftds,
            window_revenue: w.window.revenue,
            window_ev: w.ev,
            weight: w.weight,
        })
        .collect();
    Ok(json(StatusCode::OK, &WeightsUpdated { status: "updated", weights }))
}

// ----- postback log -----

/// One postback as received, and how it ended. Never holds the secret.
#[derive(Serialize, ToSchema)]
#[schema(as = PostbackLogLine)]
pub(super) struct PostbackLogView<'a> {
    /// Log id, increasing; pass as `before_id` to page.
    id: i64,
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
    /// The click's offer, when the click is known.
    #[schema(required = true)]
    offer_id: Option<i64>,
    /// The click id as sent (it may not be a valid id).
    #[schema(required = true)]
    click_id: Option<&'a str>,
    /// The event word as sent.
    #[schema(required = true)]
    event: Option<&'a str>,
    /// The payout as sent, when it was a number.
    #[schema(required = true)]
    payout: Option<f64>,
    /// The currency as sent.
    #[schema(required = true)]
    currency: Option<&'a str>,
    /// The platform's transaction id as sent.
    #[schema(required = true)]
    tid: Option<&'a str>,
    /// How it ended.
    #[schema(schema_with = super::openapi::postback_outcome)]
    outcome: &'static str,
    /// Why, for anything but plain acceptance.
    #[schema(required = true)]
    reason: Option<&'a str>,
    /// The address it came from.
    #[schema(required = true)]
    source_ip: Option<String>,
    /// The names of the query or form parameters that are not postback fields (platforms add their
    /// own), comma-separated: a misnamed field (`amount` for `payout`) shows here.
    #[schema(required = true)]
    ignored_fields: Option<&'a str>,
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
            ignored_fields: entry.ignored_fields.as_deref(),
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
                    let names: Vec<&str> = PostbackOutcome::ALL.iter().map(|o| o.as_str()).collect();
                    ApiError::bad_request(format!("outcome must be one of {}", names.join(", ")))
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

/// A page of the postback log, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = PostbackLogPage)]
pub(super) struct PageView<'a> {
    /// The lines.
    items: Vec<PostbackLogView<'a>>,
    /// Pass as `before_id` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    next_before_id: Option<i64>,
}

async fn postback_log(app: &App, query: &str) -> Result<HttpResponse, ApiError> {
    let page = app.postback_log(&parse_log_query(query)?).await?;
    Ok(json(
        StatusCode::OK,
        &PageView { items: page.rows.iter().map(PostbackLogView::from).collect(), next_before_id: page.next_before_id },
    ))
}
