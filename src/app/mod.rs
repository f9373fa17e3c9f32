//! The application layer: every operation the router offers, with its rules, between the HTTP edge
//! and the workers (store, routing, writer).
//!
//! A handler parses its request, calls one operation here and renders the result; it never reaches
//! the store or the writer. So a rule such as "an offer change commits, then the routing table is
//! rebuilt" or "a postback for a click still in the queue flushes the writer and looks again" is
//! written once, here, whichever door the request came through.
//!
//! The operations are grouped by concern:
//! - [`click`]: the click path (visitor, pick, id, Location, queue); no I/O, no lock, no `.await`;
//! - [`caps`]: each offer's clicks and FTDs of the day, for its daily caps;
//! - [`dashboard`]: what each dashboard page shows, and the routing history it draws;
//! - [`postback`]: validating, authenticating and applying postbacks, and logging every one;
//! - [`offers`]: validated offer changes, each followed by a table rebuild;
//! - [`reports`]: stats, the postback log, weight recalculation on request, health;
//! - [`routing`]: building and swapping the routing table, under either strategy;
//! - [`sessions`]: dashboard sign-in, sessions kept in the store;
//! - [`upkeep`]: the clicks table's partitions and retention.
//!
//! Invariant: the routing table is replaced whole, under `rebuild`, from what the store says at that
//! moment; the click path only ever `load()`s it.

mod caps;
mod click;
mod dashboard;
mod offers;
mod postback;
mod reports;
mod routing;
mod sessions;
mod upkeep;

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::RoutingTable;
use crate::secret::secrets_match;
use crate::store::{Store, StoreError};
use crate::writer::ClickQueue;

pub use click::{ClickRefused, RoutedClick, Visitor, VisitorLookup, new_click_id};
pub use dashboard::{
    Activity, Bucket, LiveClick, MAX_PERIOD_DAYS, OfferActivity, OfferRouting, OfferStanding, Period, RoutingHistory,
    offer_name,
};
pub use offers::{
    MAX_ALIAS_CHARS, MAX_ALIASES, MAX_DAILY_CAP, MAX_NAME_CHARS, MAX_RULE_ENTRIES, MAX_RULE_ENTRY_CHARS, MAX_WEIGHT,
    OfferChanges, OfferDraft, RuleChanges, SECRET_BYTES,
};
pub use postback::{CLICK_ID_CHARS, MAX_ID_CHARS, PayoutValue, PostbackAccepted, PostbackInput, PostbackRefused};
pub use reports::{
    Health, HealthStatus, OfferReport, PostbackLogPage, SegmentOffer, SegmentReport, SegmentRouting, SegmentRow,
    ThompsonFigures,
};
pub use routing::Learned;
pub use sessions::{Session, SignedIn};

/// Shared state of a running router, and the operations on it.
pub struct App {
    /// The validated configuration.
    config: Config,
    /// Where everything but the click path reads and writes.
    store: Arc<dyn Store>,
    /// The current routing table: one `load()` per click.
    table: ArcSwap<RoutingTable>,
    /// Where clicks go to be written.
    queue: ClickQueue,
    /// How visitors are told apart (country database, bot list).
    lookup: VisitorLookup,
    /// Each offer's counts today, for the daily caps (never locked on the click path).
    daily_counts: Mutex<caps::DailyCounts>,
    /// Bearer token of the admin API.
    admin_token: String,
    /// Counters and histograms for `/metrics`.
    metrics: Arc<Metrics>,
    /// Routing version of the store when the current table was built.
    loaded_version: AtomicI64,
    /// Serialises rebuilds, so an older snapshot never replaces a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// Under `thompson`: what the current table was built from.
    thompson: ArcSwapOption<Learned>,
    /// The routing-history slot (its start, Unix seconds) this instance last recorded, and the
    /// offers it recorded then.
    recorded_routing: Mutex<(i64, Vec<i64>)>,
    /// Under `thompson`: the last probabilities logged, so that a slow drift is logged once it adds
    /// up, not lost between two refreshes that each moved too little.
    logged_thompson: ArcSwapOption<Learned>,
}

/// Why an operation failed, in terms the HTTP edge maps to a status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// The request is malformed or out of range; the message names the field (400).
    #[error("{0}")]
    Invalid(String),
    /// No offer with that id (404).
    #[error("no such offer")]
    NoSuchOffer,
    /// A sign-in with a token that is not the admin token (401).
    #[error("wrong token")]
    WrongToken,
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(&'static str),
    /// Clicks still waiting in the writer could not be written in time (503).
    #[error("pending clicks could not be written; retry later")]
    PendingClicks,
    /// The store failed (503 while the database is unreachable, else 500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// A 400 whose message names the field.
    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::Invalid(message.into())
    }
}

impl App {
    /// State with an empty routing table; call [`App::reload_routing`] before serving.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        queue: ClickQueue,
        lookup: VisitorLookup,
        admin_token: String,
        metrics: Arc<Metrics>,
    ) -> App {
        App {
            config,
            store,
            table: ArcSwap::from_pointee(RoutingTable::default()),
            queue,
            lookup,
            daily_counts: Mutex::default(),
            admin_token,
            metrics,
            loaded_version: AtomicI64::new(i64::MIN),
            recorded_routing: Mutex::new((i64::MIN, Vec::new())),
            rebuild: tokio::sync::Mutex::new(()),
            thompson: ArcSwapOption::empty(),
            logged_thompson: ArcSwapOption::empty(),
        }
    }

    /// The configuration the router runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn is_admin_token(&self, token: &[u8]) -> bool {
        secrets_match(self.admin_token.as_bytes(), token)
    }

    /// Active offers in the current routing table.
    pub fn routable_offers(&self) -> usize {
        self.table.load().offers().len()
    }

    /// `/metrics` in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.table.load(), self.writer_snapshot())
    }
}
