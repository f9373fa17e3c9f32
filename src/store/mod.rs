//! Storage: the one interface through which everything above it reads and writes data.
//!
//! [`Store`] is implemented by PostgreSQL (production, several instances may share it) and by an
//! embedded SQLite database (a single instance with nothing to install). Nothing above this module
//! knows which one it talks to. The invariants every implementation keeps:
//! - money is never counted twice: each FTD, registration and deposit is unique in the database
//!   (by click, or by the platform's transaction id), so concurrent duplicates resolve to one row;
//! - a click insert is idempotent on `click_id`, so a batch written twice stores each click once;
//! - a postback's effect and its postback-log row commit together (one transaction or statement);
//! - each offer or weight change bumps a routing version, which every instance polls.
//!
//! What does not depend on the database is written once, here and in five modules: `migrate` (the
//! migration runner), `offers` (what an offer change does), `conversions` (the rules of applying a
//! postback's event), `weights` (the EV recalculation around `WeightPolicy`) and `sql` (the
//! statements both dialects run, and the mapping of their rows). A store supplies the primitives
//! those need; `tests/integration/store_contract.rs` runs every behaviour of [`Store`] on both stores.

mod conversions;
mod held;
mod migrate;
mod offers;
pub mod postgres;
pub mod segments;
mod sql;
pub mod sqlite;
mod weights;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{Config, DatabaseConfig};
use crate::conversion::EventKind;
use crate::routing::thompson::{HORIZON_HOURS, OfferHistory, Payouts};
use crate::routing::{DailyCaps, Targeting, WeightPolicy, WeightedOffer};
use crate::visitor::{Country, DeviceClass};
pub use segments::{SegmentEvidence, SegmentFtds, SegmentRollup, SegmentTraits};

/// An offer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Where its clicks are sent (validated, may hold macros).
    pub casino_url: String,
    /// Routing weight, >= 0.
    pub weight: f64,
    /// Secret the offer's platform must present on postbacks.
    pub postback_secret: String,
    /// Inactive offers get no traffic.
    pub active: bool,
    /// The platform's own status words mapped to our events (`first_dep` -> `ftd`).
    pub event_aliases: BTreeMap<String, EventKind>,
    /// Who it accepts.
    pub targeting: Targeting,
    /// Its daily caps.
    pub daily_caps: DailyCaps,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// A validated offer to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOffer {
    /// Display name.
    pub name: String,
    /// Validated offer URL.
    pub casino_url: String,
    /// Initial weight.
    pub weight: f64,
    /// Postback secret (given or generated).
    pub postback_secret: String,
    /// Whether it gets traffic.
    pub active: bool,
    /// Status-word mapping.
    pub event_aliases: BTreeMap<String, EventKind>,
    /// Who it accepts.
    pub targeting: Targeting,
    /// Its daily caps.
    pub daily_caps: DailyCaps,
}

/// A validated partial update: `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferPatch {
    /// New name.
    pub name: Option<String>,
    /// New offer URL.
    pub casino_url: Option<String>,
    /// New weight.
    pub weight: Option<f64>,
    /// New postback secret.
    pub postback_secret: Option<String>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// Replace the status-word mapping.
    pub event_aliases: Option<BTreeMap<String, EventKind>>,
    /// Replace the targeting rules.
    pub targeting: Option<Targeting>,
    /// Set (`Some(Some)`) or remove (`Some(None)`) the daily click cap.
    pub daily_click_cap: Option<Option<u64>>,
    /// Set or remove the daily FTD cap.
    pub daily_ftd_cap: Option<Option<u64>>,
}

/// What became of a delete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The offer is gone.
    Deleted,
    /// No such offer.
    NotFound,
    /// The offer has recorded clicks; deleting it would lose history.
    HasClicks,
}

/// The `offer_id` of a click sent to the fallback URL: no offer has it (ids start at 1).
pub const FALLBACK_OFFER_ID: i64 = 0;

/// One click, as recorded (and as the journal keeps it, in JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClickRecord {
    /// The id handed to the casino in the redirect (UUID v7).
    pub click_id: Uuid,
    /// The offer picked, or [`FALLBACK_OFFER_ID`].
    pub offer_id: i64,
    /// When the click was routed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The visitor's `User-Agent`, sanitised.
    pub user_agent: Option<Box<str>>,
    /// The visitor's address.
    pub ip_address: Option<IpAddr>,
    /// The visitor's `Referer`, sanitised.
    pub referrer: Option<Box<str>>,
    /// Traffic source from the query.
    pub source: Option<Box<str>>,
    /// Campaign from the query.
    pub campaign: Option<Box<str>>,
    /// Probability with which the offer was picked.
    pub propensity: f64,
    /// The visitor's country (`None` only in journals written before targeting).
    #[serde(default, with = "visitor_serde::country")]
    pub country: Option<Country>,
    /// The visitor's device class.
    #[serde(default, with = "visitor_serde::device")]
    pub device: Option<DeviceClass>,
    /// Whether the visitor was taken for a bot or a link preview.
    #[serde(default)]
    pub is_bot: bool,
    /// Whether the click went to the fallback URL (no offer accepted the visitor).
    #[serde(default)]
    pub is_fallback: bool,
    /// Where this process's click log keeps the click, until the writer has taken care of it (none
    /// for a click read back from the journal or the log).
    #[serde(skip)]
    pub log_slot: Option<crate::click_log::LogSlot>,
}

/// The journal's JSON of the visitor fields: their codes.
mod visitor_serde {
    macro_rules! as_code {
        ($name:ident, $ty:ty, $parse:expr) => {
            pub mod $name {
                use serde::{Deserialize, Deserializer, Serializer};

                pub fn serialize<S: Serializer>(value: &Option<$ty>, serializer: S) -> Result<S::Ok, S::Error> {
                    match value {
                        Some(value) => serializer.serialize_some(value.as_str()),
                        None => serializer.serialize_none(),
                    }
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<$ty>, D::Error> {
                    let code: Option<String> = Option::deserialize(deserializer)?;
                    Ok(code.as_deref().and_then($parse))
                }
            }
        };
    }
    as_code!(country, crate::visitor::Country, crate::visitor::Country::from_code);
    as_code!(device, crate::visitor::DeviceClass, crate::visitor::DeviceClass::parse);
}

/// The offer a click belongs to, as a postback needs it for authentication and event mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickOwner {
    /// The click's offer.
    pub offer_id: i64,
    /// That offer's postback secret.
    pub postback_secret: String,
    /// That offer's status-word mapping.
    pub event_aliases: BTreeMap<String, EventKind>,
    /// When the click happened.
    pub clicked_at: OffsetDateTime,
}

/// An authenticated, validated postback event to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The click it concerns.
    pub click_id: Uuid,
    /// The click's offer.
    pub offer_id: i64,
    /// When the click happened (events are reported by click time).
    pub clicked_at: OffsetDateTime,
    /// The event, after alias mapping.
    pub kind: EventKind,
    /// Amount, when the event carries one.
    pub payout: Option<f64>,
    /// ISO 4217 code, stored as given.
    pub currency: String,
    /// The platform's transaction id.
    pub tid: Option<String>,
    /// The platform's player id.
    pub external_player_id: Option<String>,
}

/// An authenticated postback for a click that no instance has stored yet, held until one does (see
/// `sql/postgres/0005_held_postbacks.sql`). Never holds the secret: `offer_id` is the offer whose
/// secret it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPostback {
    /// The click it concerns.
    pub click_id: Uuid,
    /// The offer whose secret it carried; the click must turn out to be that offer's.
    pub offer_id: i64,
    /// The event, after the offer's aliases.
    pub kind: EventKind,
    /// Amount, when the event carries one.
    pub payout: Option<f64>,
    /// ISO 4217 code.
    pub currency: String,
    /// The platform's transaction id.
    pub tid: Option<String>,
    /// The platform's player id.
    pub external_player_id: Option<String>,
    /// When it is given up, if its click has not come.
    pub expires_at: OffsetDateTime,
}

impl HeldPostback {
    /// What tells two held postbacks of one click and kind apart: the transaction id (two deposits
    /// of a player are two events); without one, a repeat is a duplicate.
    pub fn repeat_key(&self) -> &str {
        self.tid.as_deref().unwrap_or("")
    }
}

/// How many postbacks may be held at once, per offer and in all: a flood of made-up click ids
/// with a leaked secret fills them, and then is refused, rather than filling the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// Per offer.
    pub per_offer: u64,
    /// In all.
    pub total: u64,
}

/// What holding a postback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held, and logged as pending.
    Held,
    /// The same event is held already (logged as a duplicate).
    Duplicate,
    /// The click was stored meanwhile: apply the postback now (nothing was written).
    ClickStored,
    /// The limits are reached (nothing was written).
    Full,
}

/// A held postback whose click is stored now, claimed by this instance for a while to apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedPostback {
    /// The held row.
    pub id: i64,
    /// What was held.
    pub held: HeldPostback,
    /// Its pending line in the postback log, as written when it arrived.
    pub log: PostbackLogEntry,
    /// That line's id.
    pub log_id: i64,
    /// The click's offer and time.
    pub click_offer_id: i64,
    /// When the click happened.
    pub clicked_at: OffsetDateTime,
}

impl ClaimedPostback {
    /// The event to apply, now that its click is known.
    pub fn conversion(&self) -> Conversion {
        let held = &self.held;
        Conversion {
            click_id: held.click_id,
            offer_id: held.offer_id,
            clicked_at: self.clicked_at,
            kind: held.kind,
            payout: held.payout,
            currency: held.currency.clone(),
            tid: held.tid.clone(),
            external_player_id: held.external_player_id.clone(),
        }
    }
}

/// What applying a conversion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionOutcome {
    /// Written.
    Recorded,
    /// Already recorded before: nothing changed.
    Duplicate,
    /// A `payout` or `rejected` event for a click that has no FTD.
    NoFtd,
}

/// How a postback ended, as the postback log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostbackOutcome {
    /// Applied.
    Accepted,
    /// A repeat of an event already applied.
    Duplicate,
    /// Malformed or out-of-range input.
    Invalid,
    /// Wrong or missing secret.
    Forbidden,
    /// No click with that id.
    UnknownClick,
    /// `payout` or `rejected` with no FTD to apply it to.
    NoFtd,
    /// Held for its click, which no instance has stored yet (see [`HeldPostback`]).
    Pending,
    /// Held until its time ran out, and its click never came.
    Expired,
}

impl PostbackOutcome {
    /// Every outcome, in declaration order (`outcome as usize` indexes it).
    pub const ALL: [PostbackOutcome; 8] = [
        PostbackOutcome::Accepted,
        PostbackOutcome::Duplicate,
        PostbackOutcome::Invalid,
        PostbackOutcome::Forbidden,
        PostbackOutcome::UnknownClick,
        PostbackOutcome::NoFtd,
        PostbackOutcome::Pending,
        PostbackOutcome::Expired,
    ];

    /// The outcome's name in the log and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            PostbackOutcome::Accepted => "accepted",
            PostbackOutcome::Duplicate => "duplicate",
            PostbackOutcome::Invalid => "invalid",
            PostbackOutcome::Forbidden => "forbidden",
            PostbackOutcome::UnknownClick => "unknown_click",
            PostbackOutcome::NoFtd => "no_ftd",
            PostbackOutcome::Pending => "pending",
            PostbackOutcome::Expired => "expired",
        }
    }

    /// Parses an outcome name.
    pub fn parse(name: &str) -> Option<PostbackOutcome> {
        PostbackOutcome::ALL.into_iter().find(|outcome| outcome.as_str() == name)
    }
}

impl From<ConversionOutcome> for PostbackOutcome {
    fn from(outcome: ConversionOutcome) -> Self {
        match outcome {
            ConversionOutcome::Recorded => PostbackOutcome::Accepted,
            ConversionOutcome::Duplicate => PostbackOutcome::Duplicate,
            ConversionOutcome::NoFtd => PostbackOutcome::NoFtd,
        }
    }
}

/// One line of the postback log: every postback received, accepted or not. Never holds the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackLogEntry {
    /// When it arrived.
    pub received_at: OffsetDateTime,
    /// The click's offer, when the click is known.
    pub offer_id: Option<i64>,
    /// The click id as sent (it may not be a valid id).
    pub click_id: Option<String>,
    /// The event word as sent.
    pub event: Option<String>,
    /// The payout as sent, when it was a number.
    pub payout: Option<f64>,
    /// The currency as sent.
    pub currency: Option<String>,
    /// The transaction id as sent.
    pub tid: Option<String>,
    /// How it ended.
    pub outcome: PostbackOutcome,
    /// Why, for anything but plain acceptance.
    pub reason: Option<String>,
    /// Who sent it.
    pub source_ip: Option<IpAddr>,
    /// The names of query or form parameters that are not postback fields, comma-separated.
    pub ignored_fields: Option<String>,
}

impl PostbackLogEntry {
    /// This entry with the outcome (and its reason) of applying a `kind` event.
    pub fn concluded(&self, kind: EventKind, outcome: ConversionOutcome) -> PostbackLogEntry {
        let reason = match outcome {
            ConversionOutcome::Recorded => self.reason.clone(),
            ConversionOutcome::Duplicate => Some(format!("{} already recorded", kind.as_str())),
            ConversionOutcome::NoFtd => Some("click has no FTD".to_owned()),
        };
        PostbackLogEntry { outcome: outcome.into(), reason, ..self.clone() }
    }
}

/// A stored postback-log line.
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackLogRow {
    /// Log id, increasing.
    pub id: i64,
    /// The entry.
    pub entry: PostbackLogEntry,
}

/// Filters and paging for the postback log; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostbackLogQuery {
    /// Only this offer.
    pub offer_id: Option<i64>,
    /// Only this outcome.
    pub outcome: Option<PostbackOutcome>,
    /// Only lines received at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Only lines received before this time.
    pub to: Option<OffsetDateTime>,
    /// Only lines with an id below this one (the `next_before_id` of the previous page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A half-open time range `[from, to)`; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeRange {
    /// Inclusive start.
    pub from: Option<OffsetDateTime>,
    /// Exclusive end.
    pub to: Option<OffsetDateTime>,
}

/// Performance figures of one offer over a time range (by click time).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferStats {
    /// The offer.
    pub offer_id: i64,
    /// Its name.
    pub name: String,
    /// Its current weight.
    pub weight: f64,
    /// Whether it is active.
    pub active: bool,
    /// Clicks of people in the range (bots are reported apart).
    pub clicks: u64,
    /// Registrations of those clicks.
    pub registrations: u64,
    /// Non-rejected FTDs of those clicks.
    pub ftds: u64,
    /// FTD payouts of those FTDs plus further deposits of those clicks.
    pub revenue: f64,
}

/// A visitor dimension reports can group clicks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The visitor's country.
    Country,
    /// The visitor's device class.
    Device,
    /// The click's `source`.
    Source,
    /// The click's `campaign`.
    Campaign,
}

impl Dimension {
    /// Every dimension, in declaration order.
    pub const ALL: [Dimension; 4] = [Dimension::Country, Dimension::Device, Dimension::Source, Dimension::Campaign];

    /// Its name in the API and the column of `clicks` that holds it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dimension::Country => "country",
            Dimension::Device => "device",
            Dimension::Source => "source",
            Dimension::Campaign => "campaign",
        }
    }

    /// Parses a dimension's name.
    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|dimension| dimension.as_str() == name)
    }

    /// A click's value of this dimension, as the rollup keys it (`""` when the click has none).
    pub fn value_of(self, click: &ClickRecord) -> &str {
        match self {
            Dimension::Country => click.country.map_or("", Country::as_str),
            Dimension::Device => click.device.map_or("", DeviceClass::as_str),
            Dimension::Source => click.source.as_deref().unwrap_or(""),
            Dimension::Campaign => click.campaign.as_deref().unwrap_or(""),
        }
    }
}

/// How a report groups: by offer, by one dimension, or by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// One row per offer (the fallback is an offer of its own here).
    pub by_offer: bool,
    /// One row per value of this dimension.
    pub dimension: Option<Dimension>,
}

/// One row of a grouped report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentStats {
    /// The offer, when grouped by offer ([`FALLBACK_OFFER_ID`] for the fallback).
    pub offer_id: Option<i64>,
    /// The dimension's value, when grouped by one (`None`: the click had none, or was recorded
    /// before the router knew it).
    pub value: Option<String>,
    /// Clicks of people (bots excluded).
    pub clicks: u64,
    /// Clicks of bots and link previews.
    pub bots: u64,
    /// Non-rejected FTDs of those clicks.
    pub ftds: u64,
    /// What those clicks earned: FTD payouts plus further deposits.
    pub revenue: f64,
}

/// An offer's totals for the current UTC day, over all instances, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyTotal {
    /// The offer.
    pub offer_id: i64,
    /// Clicks routed to it (bots included).
    pub clicks: u64,
    /// Non-rejected FTDs that arrived.
    pub ftds: u64,
}

/// Clicks, registrations, FTDs and revenue, added up (by click time).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Clicks of people.
    pub clicks: u64,
    /// Clicks of bots and link previews.
    pub bots: u64,
    /// Registrations of those clicks.
    pub registrations: u64,
    /// Non-rejected FTDs of those clicks.
    pub ftds: u64,
    /// What those clicks earned: FTD payouts plus further deposits.
    pub revenue: f64,
}

impl Figures {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Figures) {
        self.clicks += other.clicks;
        self.bots += other.bots;
        self.registrations += other.registrations;
        self.ftds += other.ftds;
        self.revenue += other.revenue;
    }

    /// FTDs per click of a person (0 without clicks).
    pub fn conversion_rate(&self) -> f64 {
        if self.clicks == 0 { 0.0 } else { self.ftds as f64 / self.clicks as f64 }
    }

    /// Revenue per click of a person (0 without clicks).
    pub fn epc(&self) -> f64 {
        if self.clicks == 0 { 0.0 } else { self.revenue / self.clicks as f64 }
    }
}

/// One offer's figures of one hour, for the dashboard's charts and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyFigures {
    /// The offer ([`FALLBACK_OFFER_ID`] for clicks sent to the fallback URL).
    pub offer_id: i64,
    /// The hour's start.
    pub hour: OffsetDateTime,
    /// What its clicks of that hour did.
    pub figures: Figures,
}

/// A stored click, as the dashboard's live view lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickSummary {
    /// The click id.
    pub click_id: String,
    /// When it was routed.
    pub created_at: OffsetDateTime,
    /// The offer it went to ([`FALLBACK_OFFER_ID`] for the fallback URL).
    pub offer_id: i64,
    /// The visitor's country, when known.
    pub country: Option<String>,
    /// The visitor's device class, when known.
    pub device: Option<String>,
    /// The click's `source`.
    pub source: Option<String>,
    /// The click's `campaign`.
    pub campaign: Option<String>,
    /// Whether a bot or link preview made it.
    pub is_bot: bool,
}

/// One offer's place in the routing at one moment, as the routing history keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingShare {
    /// The start of the ten-minute slot it was recorded in.
    pub slot: OffsetDateTime,
    /// The offer.
    pub offer_id: i64,
    /// Its share of new clicks, over all segments.
    pub traffic_share: f64,
    /// Under `thompson`: its posterior mean earnings per click.
    pub epc_mean: Option<f64>,
    /// Under `thompson`: its probability of having the highest earnings per click.
    pub probability_best: Option<f64>,
}

/// A dashboard sign-in, as stored: never the session id itself, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// SHA-256 of the session id the browser's cookie holds, in hex.
    pub id_hash: String,
    /// The token the session's forms must carry.
    pub csrf_token: String,
    /// When it was signed in.
    pub created_at: OffsetDateTime,
    /// When it ends.
    pub expires_at: OffsetDateTime,
}

/// What [`Store::maintain_clicks`] is to keep: partitions ahead of `now` and no click older than the
/// retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickUpkeep {
    /// The time to plan from.
    pub now: OffsetDateTime,
    /// Days each new partition covers (PostgreSQL; SQLite keeps one table).
    pub partition_days: u32,
    /// Clicks minted before `now - retention` are removed; `None` keeps every click.
    pub retention: Option<time::Duration>,
}

impl ClickUpkeep {
    /// How far ahead of `now` partitions must exist: a week, or two partitions if they are longer.
    pub fn ahead(&self) -> time::Duration {
        time::Duration::days(7).max(time::Duration::days(2 * i64::from(self.partition_days)))
    }

    /// The first moment whose clicks are kept, if clicks are removed at all.
    pub fn cutoff(&self) -> Option<OffsetDateTime> {
        self.retention.map(|retention| self.now - retention)
    }
}

/// What one [`Store::maintain_clicks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickUpkeepDone {
    /// Partitions created (PostgreSQL).
    pub partitions_created: u32,
    /// Names of the partitions dropped past retention (PostgreSQL).
    pub partitions_dropped: Vec<String>,
    /// Clicks deleted past retention: SQLite's, and PostgreSQL's default partition's are not
    /// counted (they leave with their partition, or by one DELETE).
    pub clicks_deleted: u64,
}

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached: callers answer 503 and the writer retries. A reason made by
    /// [`StoreError::unavailable_at`] names the server and reads on from the words "database
    /// unavailable" (`database unavailable at 127.0.0.1:5432: connection refused`); any other
    /// follows a colon.
    #[error("database unavailable{}", unavailable_reason(.0))]
    Unavailable(String),
    /// The database refused a statement.
    #[error("database error: {0}")]
    Query(String),
    /// A migration could not be applied.
    #[error("migration {version} failed: {reason}")]
    Migration {
        /// The migration's number.
        version: u32,
        /// What failed.
        reason: String,
    },
}

impl StoreError {
    /// The database at `server` (`host:port`) cannot be reached, because of `cause`.
    pub fn unavailable_at(server: &str, cause: &str) -> StoreError {
        StoreError::Unavailable(format!("{UNAVAILABLE_AT}{server}: {cause}"))
    }
}

/// How a reason made by [`StoreError::unavailable_at`] begins.
const UNAVAILABLE_AT: &str = "at ";

fn unavailable_reason(reason: &str) -> String {
    if reason.starts_with(UNAVAILABLE_AT) { format!(" {reason}") } else { format!(": {reason}") }
}

/// The hourly evidence the Thompson engine reads: clicks and arrived FTDs by offer and click age,
/// over the engine's horizon, over all traffic and per learning segment. Cheap: clicks come from the
/// rollups, FTDs grouped by hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingEvidence {
    /// `(offer_id, click hour, clicks)`, bots left out; the click hour counts back from the current
    /// hour (0), as [`OfferHistory::clicks`] does.
    pub clicks: Vec<(i64, usize, u64)>,
    /// FTDs (not rejected) grouped by offer, click age and delay.
    pub ftds: Vec<FtdBucket>,
    /// The same per segment, from the first whole hour the segment rollup covers.
    pub segments: SegmentEvidence,
    /// Share of the current hour elapsed.
    pub hour_elapsed: f64,
}

impl RoutingEvidence {
    /// The engine's per-offer histories, for `offer_ids` in that order (offers without evidence get
    /// empty ones).
    pub fn histories(&self, offer_ids: &[i64]) -> Vec<OfferHistory> {
        let mut histories: Vec<OfferHistory> = offer_ids
            .iter()
            .map(|&offer_id| OfferHistory {
                offer_id,
                clicks: vec![0; HORIZON_HOURS],
                ftds: vec![0; HORIZON_HOURS],
                payouts: vec![Payouts::default(); HORIZON_HOURS],
                ..OfferHistory::default()
            })
            .collect();
        let index = |offer_id: i64| offer_ids.iter().position(|&id| id == offer_id);
        for &(offer_id, age, clicks) in &self.clicks {
            if let Some(i) = index(offer_id)
                && age < HORIZON_HOURS
            {
                histories[i].clicks[age] += clicks;
            }
        }
        for bucket in &self.ftds {
            let Some(history) = index(bucket.offer_id).map(|i| &mut histories[i]) else { continue };
            if bucket.age_hours >= HORIZON_HOURS {
                continue;
            }
            history.ftds[bucket.age_hours] += bucket.ftds;
            history.delays.push((bucket.age_hours, bucket.delay_hours.min(bucket.age_hours), bucket.ftds));
            history.payouts[bucket.age_hours].add(Payouts {
                count: bucket.payouts,
                sum: bucket.payout_sum,
                sum_sq: bucket.payout_sum_sq,
            });
        }
        histories
    }
}

/// FTDs of one offer with the same click age and delay, in whole hours.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FtdBucket {
    /// The offer.
    pub offer_id: i64,
    /// Hours since the clicks.
    pub age_hours: usize,
    /// Hours from the clicks to their FTD postbacks.
    pub delay_hours: usize,
    /// FTDs.
    pub ftds: u64,
    /// How many of them have a payout.
    pub payouts: u64,
    /// Sum of those payouts.
    pub payout_sum: f64,
    /// Sum of their squares.
    pub payout_sum_sq: f64,
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Opens (and migrates) the store `config` selects.
pub async fn open(config: &Config) -> StoreResult<Arc<dyn Store>> {
    match &config.database {
        DatabaseConfig::Postgres(url) => {
            Ok(Arc::new(postgres::PostgresStore::open(url, config.db_pool_size, config.segment_by).await?))
        }
        DatabaseConfig::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path, config.segment_by).await?)),
    }
}

/// What [`insert_clicks_isolating`] did.
#[derive(Debug, Default)]
pub struct ClicksWritten {
    /// Clicks stored (or already stored: inserts are idempotent).
    pub written: u64,
    /// Clicks the database refused even one by one, with why.
    pub refused: Vec<(Uuid, StoreError)>,
    /// Set when the database became unreachable part-way: the clicks from there on were not tried.
    pub unreachable: Option<ClicksUnreachable>,
}

/// Where and why the database became unreachable.
#[derive(Debug)]
pub struct ClicksUnreachable {
    /// Index of the first click not tried.
    pub from: usize,
    /// Why.
    pub reason: String,
}

/// Inserts `clicks` in one transaction; if the database refuses the batch, click by click, so that
/// one bad row refuses only itself and the others are stored. Stops where the database becomes
/// unreachable. The writer and the journal's replay both write this way.
pub async fn insert_clicks_isolating(store: &dyn Store, clicks: &[ClickRecord]) -> ClicksWritten {
    let mut outcome = ClicksWritten::default();
    match store.insert_clicks(clicks).await {
        Ok(_) => {
            outcome.written = clicks.len() as u64;
            return outcome;
        }
        Err(StoreError::Unavailable(reason)) => {
            outcome.unreachable = Some(ClicksUnreachable { from: 0, reason });
            return outcome;
        }
        Err(error) if clicks.len() > 1 => {
            tracing::warn!(%error, clicks = clicks.len(), "click batch refused, writing clicks one by one");
        }
        Err(error) => {
            outcome.refused.push((clicks[0].click_id, error));
            return outcome;
        }
    }
    for (index, click) in clicks.iter().enumerate() {
        match store.insert_clicks(std::slice::from_ref(click)).await {
            Ok(_) => outcome.written += 1,
            Err(StoreError::Unavailable(reason)) => {
                outcome.unreachable = Some(ClicksUnreachable { from: index, reason });
                break;
            }
            Err(error) => outcome.refused.push((click.click_id, error)),
        }
    }
    outcome
}

/// `(offer, hour, dimension, value)`, as `click_rollup_dims` keys its rows.
pub(crate) type DimsKey<'a> = (i64, i64, &'a str, Cow<'a, str>);

/// What a batch of new clicks adds to the rollups: per offer and hour (start, in Unix seconds),
/// `(clicks, bots)`; and the same per dimension value, and per learning segment (see `segments`).
/// Both stores write it in the batch's transaction, from the clicks actually inserted.
#[derive(Debug)]
pub(crate) struct Rollup<'a> {
    pub hourly: BTreeMap<(i64, i64), (i64, i64)>,
    dims: BTreeMap<(i64, i64, &'a str, &'a str), (i64, i64)>,
    /// Per offer, hour and segment, keyed by the clicks' traits: their stored value is made once
    /// per row, not once per click.
    by_segment: BTreeMap<(i64, i64, SegmentTraits<'a>), (i64, i64)>,
    segments: &'a SegmentRollup,
}

impl<'a> Rollup<'a> {
    /// An empty rollup that also counts the segments of `segments`.
    pub fn new(segments: &'a SegmentRollup) -> Rollup<'a> {
        Rollup { hourly: BTreeMap::new(), dims: BTreeMap::new(), by_segment: BTreeMap::new(), segments }
    }

    /// Counts `click`.
    pub fn add(&mut self, click: &'a ClickRecord) {
        let timestamp = click.created_at.unix_timestamp();
        let hour = timestamp - timestamp.rem_euclid(3600);
        let bot = i64::from(click.is_bot);
        let count = |entry: &mut (i64, i64)| {
            entry.0 += 1;
            entry.1 += bot;
        };
        count(self.hourly.entry((click.offer_id, hour)).or_default());
        for dimension in Dimension::ALL {
            let key = (click.offer_id, hour, dimension.as_str(), dimension.value_of(click));
            count(self.dims.entry(key).or_default());
        }
        if let Some(traits) = self.segments.traits_of(click) {
            count(self.by_segment.entry((click.offer_id, hour, traits)).or_default());
        }
    }

    /// The rows for `click_rollup_dims`: `((offer, hour, dimension, value), (clicks, bots))`.
    pub fn dim_rows(&self) -> impl Iterator<Item = (DimsKey<'_>, (i64, i64))> {
        let dims = self.dims.iter().map(|(&(offer, hour, dimension, value), &counts)| {
            ((offer, hour, dimension, Cow::Borrowed(value)), counts)
        });
        let segments = self.by_segment.iter().map(|((offer, hour, traits), &counts)| {
            ((*offer, *hour, self.segments.dimension(), Cow::Owned(SegmentRollup::value(traits))), counts)
        });
        dims.chain(segments)
    }

    /// The rollup of `clicks`.
    pub fn of(clicks: impl IntoIterator<Item = &'a ClickRecord>, segments: &'a SegmentRollup) -> Rollup<'a> {
        let mut rollup = Rollup::new(segments);
        clicks.into_iter().for_each(|click| rollup.add(click));
        rollup
    }

    /// How many clicks it counts.
    pub fn clicks(&self) -> u64 {
        self.hourly.values().map(|(clicks, _)| *clicks as u64).sum()
    }
}

/// The storage interface. Implementations apply their migrations when they are opened.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// A number that changes whenever offers or weights change.
    async fn routing_version(&self) -> StoreResult<i64>;

    /// Lists offers by id, optionally only the active ones.
    async fn list_offers(&self, active_only: bool) -> StoreResult<Vec<Offer>>;

    /// Reads one offer.
    async fn get_offer(&self, id: i64) -> StoreResult<Option<Offer>>;

    /// Creates an offer.
    async fn create_offer(&self, offer: &NewOffer) -> StoreResult<Offer>;

    /// Changes the given fields of an offer; `None` if there is no such offer.
    async fn update_offer(&self, id: i64, patch: &OfferPatch) -> StoreResult<Option<Offer>>;

    /// Deletes an offer that has no clicks.
    async fn delete_offer(&self, id: i64) -> StoreResult<DeleteOutcome>;

    /// Writes a batch of clicks in one transaction, skipping ids already stored; returns how many
    /// were new. A click's id is a UUID v7 minted at its `created_at` (reports find clicks of a
    /// time range through the primary key).
    async fn insert_clicks(&self, clicks: &[ClickRecord]) -> StoreResult<u64>;

    /// The offer of a stored click.
    async fn click_owner(&self, click_id: Uuid) -> StoreResult<Option<ClickOwner>>;

    /// Applies an authenticated conversion and logs it (with the outcome it had) in one transaction.
    async fn apply_conversion(&self, conversion: &Conversion, log: &PostbackLogEntry)
    -> StoreResult<ConversionOutcome>;

    /// Logs a postback that was refused before it could be applied.
    async fn log_postback(&self, entry: &PostbackLogEntry) -> StoreResult<()>;

    /// Holds an authenticated postback for a click not stored yet and logs it as pending (`log`
    /// with that outcome), in one transaction; unless the click is stored by now, the same event is
    /// held already, or `limits` are reached.
    async fn hold_postback(
        &self,
        held: &HeldPostback,
        log: &PostbackLogEntry,
        limits: HoldLimits,
    ) -> StoreResult<HoldOutcome>;

    /// Claims up to `limit` held postbacks whose clicks are stored, oldest first, until
    /// `now + lease` (another instance claims them after that, should this one fail to apply them).
    async fn claim_held_postbacks(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
        limit: usize,
    ) -> StoreResult<Vec<ClaimedPostback>>;

    /// Forgets a claimed postback once it has been applied (its outcome logged on a line of its
    /// own), with its pending line.
    async fn release_held_postback(&self, claimed: &ClaimedPostback) -> StoreResult<()>;

    /// Gives up the held postbacks that expired by `now` and are not being applied: their lines
    /// say expired. Returns how many.
    async fn expire_held_postbacks(&self, now: OffsetDateTime) -> StoreResult<u64>;

    /// Reads the postback log, newest first.
    async fn postback_log(&self, query: &PostbackLogQuery) -> StoreResult<Vec<PostbackLogRow>>;

    /// Per-offer figures over a range of click times.
    async fn offer_stats(&self, range: TimeRange) -> StoreResult<Vec<OfferStats>>;

    /// Figures over a range of click times, grouped by offer, a visitor dimension, or both (in no
    /// particular order).
    async fn segment_stats(&self, range: TimeRange, grouping: Grouping) -> StoreResult<Vec<SegmentStats>>;

    /// Each offer's clicks and FTDs since `day_start` (the start of the current UTC day), for the
    /// daily caps; offers with neither are left out.
    async fn daily_totals(&self, day_start: OffsetDateTime) -> StoreResult<Vec<DailyTotal>>;

    /// Clicks and FTDs of the last `horizon_hours` before `now`, by offer and hour, for the
    /// Thompson engine.
    async fn routing_evidence(&self, now: OffsetDateTime, horizon_hours: usize) -> StoreResult<RoutingEvidence>;

    /// Each offer's figures by hour over the whole hours `[from, to)` of click time, from the rollups
    /// (clicks) and one grouped pass over each kind of event; hours without clicks or events are
    /// left out.
    async fn hourly_figures(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<HourlyFigures>>;

    /// The last `limit` clicks stored, newest first.
    async fn latest_clicks(&self, limit: u32) -> StoreResult<Vec<ClickSummary>>;

    /// Records the routing's shares (all of one slot), replacing what the slot held for those offers
    /// (instances reading the same evidence compute the same shares).
    async fn record_routing(&self, shares: &[RoutingShare]) -> StoreResult<()>;

    /// The routing history of the slots in `[from, to)`, oldest first.
    async fn routing_history(&self, from: OffsetDateTime, to: OffsetDateTime) -> StoreResult<Vec<RoutingShare>>;

    /// Saves a new dashboard session, and deletes every session that expired before it began.
    async fn create_session(&self, session: &DashboardSession) -> StoreResult<()>;

    /// The session whose id hashes to `id_hash`, if it has not expired by `now`.
    async fn find_session(&self, id_hash: &str, now: OffsetDateTime) -> StoreResult<Option<DashboardSession>>;

    /// Ends the session whose id hashes to `id_hash` (nothing if there is none).
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;

    /// Keeps the clicks table: on PostgreSQL, creates the partitions `upkeep` asks to have ahead and
    /// drops those wholly past retention; on SQLite, deletes the clicks past retention in bounded
    /// batches, each its own transaction. Events, rollups and the postback log are never touched.
    async fn maintain_clicks(&self, upkeep: ClickUpkeep) -> StoreResult<ClickUpkeepDone>;

    /// Recomputes the weights of the active offers from their last `last_n_clicks` clicks with
    /// `policy`, saves them and their history, and bumps the routing version, all in one transaction.
    /// Returns `None` when another instance is recalculating at this moment.
    async fn recalculate_weights(
        &self,
        last_n_clicks: u32,
        policy: &WeightPolicy,
    ) -> StoreResult<Option<Vec<WeightedOffer>>>;
}

/// The step every change of offers or weights ends with, inside its transaction (see `offers` and
/// `weights`). Its future may complete at once (SQLite's does).
pub(crate) trait RoutingVersion {
    /// Bumps the routing version, so that every instance rebuilds its table.
    async fn bump_routing_version(&mut self) -> StoreResult<()>;
}

/// The start of `now`'s UTC hour, and the share of the hour elapsed since.
pub(crate) fn current_hour(now: OffsetDateTime) -> (OffsetDateTime, f64) {
    let into_hour = now.unix_timestamp().rem_euclid(3600);
    let start = now - time::Duration::seconds(into_hour) - time::Duration::nanoseconds(i64::from(now.nanosecond()));
    (start, (now - start).as_seconds_f64() / 3600.0)
}

/// Rounds a range to whole hours for the rollup: `[from_hour, to_hour)` lies within `[from, to)`,
/// and the edges `[from, from_hour)` and `[to_hour, to)` are counted from raw clicks.
pub(crate) fn rollup_bounds(range: TimeRange) -> (OffsetDateTime, OffsetDateTime, OffsetDateTime, OffsetDateTime) {
    let from = range.from.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let to = range.to.unwrap_or_else(far_future);
    let floor = |t: OffsetDateTime| {
        let t = t.to_offset(time::UtcOffset::UTC);
        t.replace_time(time::Time::from_hms(t.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
    };
    let from_floor = floor(from);
    // In the last hour of year 9999 there is no next whole hour: raw clicks only.
    let Some(from_hour) = (if from_floor == from { Some(from) } else { from_floor.checked_add(time::Duration::HOUR) })
    else {
        return (from, to, to, to);
    };
    let to_hour = floor(to);
    if from_hour >= to_hour {
        // Less than one whole hour: everything comes from raw clicks.
        (from, to, to, to)
    } else {
        (from, to, from_hour, to_hour)
    }
}

/// The end of an unbounded range: the last instant an RFC 3339 time can name.
fn far_future() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59.999999 UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn routing_evidence_becomes_each_offers_hourly_history_payouts_included() {
        let bucket = |offer_id, age_hours, delay_hours, ftds, payouts, payout_sum| FtdBucket {
            offer_id,
            age_hours,
            delay_hours,
            ftds,
            payouts,
            payout_sum,
            payout_sum_sq: payout_sum * payout_sum / payouts.max(1) as f64,
        };
        let evidence = RoutingEvidence {
            clicks: vec![(7, 3, 40), (7, HORIZON_HOURS, 5), (9, 0, 2), (8, 1, 10)],
            ftds: vec![
                bucket(7, 3, 5, 2, 2, 300.0),            // a delay longer than the age is counted at the age
                bucket(7, 3, 1, 1, 0, 0.0),              // an FTD without a payout
                bucket(7, HORIZON_HOURS, 1, 1, 1, 80.0), // beyond the horizon
                bucket(8, 1, 0, 1, 1, 50.0),             // an offer not asked about
            ],
            segments: SegmentEvidence::default(),
            hour_elapsed: 0.5,
        };
        let histories = evidence.histories(&[7, 9]);
        let (seven, nine) = (&histories[0], &histories[1]);
        assert_eq!((seven.offer_id, seven.clicks[3], seven.ftds[3], seven.clicks.len()), (7, 40, 3, HORIZON_HOURS));
        assert_eq!(seven.delays, [(3, 3, 2), (3, 1, 1)]);
        assert_eq!(seven.payouts[3], Payouts { count: 2, sum: 300.0, sum_sq: 45_000.0 });
        assert_eq!(seven.payouts.iter().filter(|p| p.count > 0).count(), 1, "nothing beyond the horizon");
        assert_eq!((nine.clicks[0], nine.ftds.iter().sum::<u64>(), nine.delays.len()), (2, 0, 0));
    }

    #[test]
    fn rollup_bounds_split_a_range_into_whole_hours_and_edges() {
        let range =
            TimeRange { from: Some(datetime!(2026-01-01 10:15 UTC)), to: Some(datetime!(2026-01-01 13:30 UTC)) };
        let (from, to, from_hour, to_hour) = rollup_bounds(range);
        assert_eq!((from, to), (range.from.unwrap(), range.to.unwrap()));
        assert_eq!(from_hour, datetime!(2026-01-01 11:00 UTC));
        assert_eq!(to_hour, datetime!(2026-01-01 13:00 UTC));
    }

    #[test]
    fn rollup_bounds_of_a_short_range_use_raw_clicks_only() {
        let range =
            TimeRange { from: Some(datetime!(2026-01-01 10:15 UTC)), to: Some(datetime!(2026-01-01 10:45 UTC)) };
        let (_, to, from_hour, to_hour) = rollup_bounds(range);
        assert_eq!((from_hour, to_hour), (to, to));
    }

    #[test]
    fn an_unavailable_server_is_named_after_the_words_database_unavailable() {
        let error = StoreError::unavailable_at("127.0.0.1:5999", "connection refused (os error 111)");
        assert_eq!(error.to_string(), "database unavailable at 127.0.0.1:5999: connection refused (os error 111)");
        let error = StoreError::Unavailable("pending clicks not written yet".to_owned());
        assert_eq!(error.to_string(), "database unavailable: pending clicks not written yet");
    }

    #[test]
    fn rollup_bounds_at_the_end_of_time_do_not_overflow() {
        let range = TimeRange { from: Some(datetime!(9999-12-31 23:59:59 UTC)), to: None };
        let (from, to, from_hour, to_hour) = rollup_bounds(range);
        assert_eq!((from_hour, to_hour), (to, to));
        assert!(from < to);
        let range = TimeRange { from: Some(datetime!(0000-01-01 0:00 UTC)), to: Some(datetime!(0000-01-01 0:30 UTC)) };
        assert_eq!(rollup_bounds(range).2, datetime!(0000-01-01 0:30 UTC));
    }

    #[test]
    fn rollup_bounds_keep_exact_hours() {
        let range = TimeRange { from: Some(datetime!(2026-01-01 10:00 UTC)), to: None };
        let (_, _, from_hour, _) = rollup_bounds(range);
        assert_eq!(from_hour, datetime!(2026-01-01 10:00 UTC));
    }
}
