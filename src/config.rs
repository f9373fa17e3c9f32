//! Configuration from the environment (and a `.env` file, read by `main`).
//!
//! Every variable is a named constant with its default and the reason for it. Parsing collects every
//! bad variable before failing, so an operator fixes a broken deployment in one pass, and nothing here
//! binds a port or opens a database: a bad configuration stops the process before it does anything.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::net::IpNetwork;
use crate::routing::{RedirectTemplate, SegmentDims};
use crate::store::HoldLimits;

/// Where the router keeps its data: `postgres://` or `postgresql://` URLs select PostgreSQL, unset or
/// `sqlite://PATH` select the embedded SQLite store.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The embedded store's file when `DATABASE_URL` is unset: next to the working directory, so that a
/// fresh clone runs with nothing to install.
pub const DEFAULT_SQLITE_PATH: &str = "./data/casino-router.db";
/// Address to listen on; all interfaces by default, as a container expects.
pub const HOST: &str = "HOST";
/// Port to listen on; 5000 as in the original design.
pub const PORT: &str = "PORT";
/// How many of each offer's most recent clicks the EV weight engine looks at.
pub const LAST_N_CLICKS: &str = "LAST_N_CLICKS";
/// Share of traffic spread evenly over all active offers, so that weak offers keep being measured.
pub const EXPLORATION_RATE: &str = "EXPLORATION_RATE";
/// Lowest weight the EV engine gives an offer with data, so that it is never starved completely.
pub const MIN_WEIGHT: &str = "MIN_WEIGHT";
/// Offers with fewer clicks than this in their window keep weight 1.0: too little data to judge.
pub const MIN_CLICKS_FOR_EV: &str = "MIN_CLICKS_FOR_EV";
/// How often the weights are recalculated (`ev` strategy).
pub const CRON_INTERVAL_HOURS: &str = "CRON_INTERVAL_HOURS";
/// `thompson` (Thompson sampling on earnings per click, the default) or `ev` (the original formula).
pub const ROUTING_STRATEGY: &str = "ROUTING_STRATEGY";
/// How often the `thompson` strategy recomputes the routing probabilities from the database.
pub const THOMPSON_REFRESH_SECONDS: &str = "THOMPSON_REFRESH_SECONDS";
/// Share of each segment's traffic the `thompson` strategy spreads evenly over the offers the
/// segment is eligible for, so that an offer it has stopped sending traffic to is still seen when
/// it improves (0 by default: see "Offers that improve" in the README).
pub const THOMPSON_EXPLORATION_RATE: &str = "THOMPSON_EXPLORATION_RATE";
/// How often each instance checks whether offers or weights changed elsewhere (another instance, or
/// a recalculation), so that all instances route alike within seconds.
pub const TABLE_REFRESH_SECONDS: &str = "TABLE_REFRESH_SECONDS";
/// Bearer token for `/admin/*`; generated and logged once at start-up when unset.
pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
/// Comma-separated addresses or CIDR networks of reverse proxies whose `X-Forwarded-For` is believed.
pub const TRUSTED_PROXIES: &str = "TRUSTED_PROXIES";
/// Capacity of the in-memory click queue between the click handler and the writer.
pub const CLICK_QUEUE_CAPACITY: &str = "CLICK_QUEUE_CAPACITY";
/// Most clicks the writer puts into one database transaction.
pub const WRITER_BATCH_SIZE: &str = "WRITER_BATCH_SIZE";
/// Longest a click waits in a partial batch before it is written.
pub const WRITER_FLUSH_MS: &str = "WRITER_FLUSH_MS";
/// Largest payout a postback may report; larger is taken for a typo or an attack.
pub const MAX_PAYOUT: &str = "MAX_PAYOUT";
/// An authenticated postback for a click not stored yet (it may wait in another instance's writer)
/// is held when the click id was minted within this many seconds, and is given up after as long.
pub const POSTBACK_HOLD_SECONDS: &str = "POSTBACK_HOLD_SECONDS";
/// Most postbacks held at once for one offer ...
pub const POSTBACK_HOLD_PER_OFFER: &str = "POSTBACK_HOLD_PER_OFFER";
/// ... and in all.
pub const POSTBACK_HOLD_MAX: &str = "POSTBACK_HOLD_MAX";
/// Connections in the PostgreSQL pool used by postbacks, admin and the writer.
pub const DB_POOL_SIZE: &str = "DB_POOL_SIZE";
/// How long in-flight requests may take to finish after SIGTERM before they are cut.
pub const SHUTDOWN_GRACE_SECONDS: &str = "SHUTDOWN_GRACE_SECONDS";
/// Most client connections served at once; further ones wait in the kernel's accept backlog, so a
/// flood of idle connections cannot exhaust file descriptors or memory.
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
/// How long a client has to send its request headers before the connection is closed (slow clients).
pub const HEADER_READ_TIMEOUT_SECONDS: &str = "HEADER_READ_TIMEOUT_SECONDS";
/// Directory of the on-disk click journal, used while the database is unreachable and replayed at
/// start-up. Give each instance its own.
pub const JOURNAL_DIR: &str = "JOURNAL_DIR";
/// The journal's default directory, beside the embedded store's default file.
pub const DEFAULT_JOURNAL_DIR: &str = "./data/journal";
/// Most megabytes the journal may hold; past that, clicks are refused with 503 (and counted).
pub const JOURNAL_MAX_MB: &str = "JOURNAL_MAX_MB";
/// Clicks the writer holds in memory during an outage before spilling them to the journal.
pub const JOURNAL_SPILL_AFTER: &str = "JOURNAL_SPILL_AFTER";
/// How often the click log (in `JOURNAL_DIR`) is `msync`ed to disk, in milliseconds: what a power
/// cut can lose. 0 leaves it to the kernel's own writeback (about 30 s). A process crash loses
/// nothing either way.
pub const CLICK_LOG_SYNC_MS: &str = "CLICK_LOG_SYNC_MS";
/// Address (`IP:PORT`) of a separate listener for `/metrics`, served there without a token (bind it
/// to a private interface). Unset: `/metrics` is served on the main port, behind the admin token.
pub const METRICS_ADDR: &str = "METRICS_ADDR";
/// `text` (human-readable, the default) or `json` (one JSON object per line, for log pipelines).
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// Header in which a trusted reverse proxy states the visitor's country (ISO 3166-1 alpha-2);
/// Cloudflare's by default. Believed only from `TRUSTED_PROXIES`.
pub const COUNTRY_HEADER: &str = "COUNTRY_HEADER";
/// The default country header: Cloudflare's.
pub const DEFAULT_COUNTRY_HEADER: &str = "cf-ipcountry";
/// IP-to-country database (MaxMind DB format) for visitors whose country no trusted header states;
/// `off` for none.
pub const GEOIP_DB: &str = "GEOIP_DB";
/// The database shipped with the router (DB-IP Lite, CC BY 4.0; see `data/geoip/README.md`),
/// relative to the working directory like the embedded store. When it is not there, the router
/// looks in [`GEOIP_DB_FALLBACKS`].
pub const DEFAULT_GEOIP_DB: &str = "./data/geoip/dbip-country.mmdb";
/// Where else the shipped database is looked for, in order: the source tree the binary was built
/// from (a binary run from another directory), and the Docker image's copy.
pub const GEOIP_DB_FALLBACKS: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/geoip/dbip-country.mmdb"),
    "/usr/share/casino-router/geoip/dbip-country.mmdb",
];
/// Where a visitor goes when no offer accepts them (macros allowed, as in offer URLs); unset: 503.
pub const FALLBACK_URL: &str = "FALLBACK_URL";
/// What bots and link previews get: `route` (an offer, like anyone) or `fallback`.
pub const BOT_ACTION: &str = "BOT_ACTION";
/// Which visitor traits make a segment that `thompson` learns about apart: a list of `country`,
/// `device` and `source`, or `none`.
pub const SEGMENT_BY: &str = "SEGMENT_BY";

/// How long a dashboard sign-in lasts, in hours; then the browser is asked for the token again.
pub const DASHBOARD_SESSION_HOURS: &str = "DASHBOARD_SESSION_HOURS";

/// Days each partition of PostgreSQL's `clicks` covers (new partitions; existing ones keep theirs).
pub const CLICK_PARTITION_DAYS: &str = "CLICK_PARTITION_DAYS";
/// Clicks older than this many days are removed (whole partitions on PostgreSQL, batched deletes on
/// SQLite); events, rollups and the postback log are kept. `0`: clicks are kept forever.
pub const CLICK_RETENTION_DAYS: &str = "CLICK_RETENTION_DAYS";

/// Seconds in a day.
const DAY_SECONDS: u64 = 24 * 3600;

/// The router's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which store to open.
    pub database: DatabaseConfig,
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind.
    pub port: u16,
    /// Per-offer window of recent clicks for the EV engine.
    pub last_n_clicks: u32,
    /// Share of traffic spread evenly, in `[0, 1]`.
    pub exploration_rate: f64,
    /// Floor of an EV weight, in `[0, 1]`.
    pub min_weight: f64,
    /// Minimum clicks in the window before an offer's EV is trusted.
    pub min_clicks_for_ev: u32,
    /// Period of the weight recalculation (`ev`).
    pub recalc_interval: Duration,
    /// How offers are weighted.
    pub routing_strategy: RoutingStrategy,
    /// Period of the Thompson refresh.
    pub thompson_refresh_interval: Duration,
    /// Share of each segment's traffic `thompson` spreads evenly, in `[0, 1]`.
    pub thompson_exploration_rate: f64,
    /// Period of the check for changes made elsewhere.
    pub table_refresh_interval: Duration,
    /// Admin bearer token; `None` means "generate one at start-up".
    pub admin_token: Option<String>,
    /// Proxies whose `X-Forwarded-For` header is trusted.
    pub trusted_proxies: Vec<IpNetwork>,
    /// Capacity of the click queue.
    pub click_queue_capacity: usize,
    /// Clicks per writer transaction at most.
    pub writer_batch_size: usize,
    /// How recent a click id must be for a postback to be held for it, and how long it is held.
    pub postback_hold: Duration,
    /// How many postbacks may be held at once.
    pub postback_hold_limits: HoldLimits,
    /// Deadline of a partial batch, started by its first click.
    pub writer_flush_interval: Duration,
    /// Largest accepted postback payout.
    pub max_payout: f64,
    /// PostgreSQL pool size.
    pub db_pool_size: usize,
    /// Bound on the wait for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time allowed to send request headers.
    pub header_read_timeout: Duration,
    /// Directory of the click journal.
    pub journal_dir: PathBuf,
    /// Size bound of the journal, in bytes.
    pub journal_max_bytes: u64,
    /// Clicks held in memory during an outage before a spill.
    pub journal_spill_after: usize,
    /// Period of the click log's `msync`; `None`: the kernel's writeback.
    pub click_log_sync: Option<Duration>,
    /// Separate, unauthenticated listener for `/metrics`, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Header of a trusted proxy that states the visitor's country.
    pub country_header: hyper::header::HeaderName,
    /// The IP-to-country database to open.
    pub geoip: GeoIpSource,
    /// Where visitors no offer accepts are sent.
    pub fallback: Option<RedirectTemplate>,
    /// What bots get.
    pub bot_action: BotAction,
    /// The traits that make a learning segment.
    pub segment_by: SegmentDims,
    /// How long a dashboard sign-in lasts.
    pub dashboard_session: Duration,
    /// Days each new partition of PostgreSQL's `clicks` covers.
    pub click_partition_days: u32,
    /// How long clicks are kept; `None`: forever.
    pub click_retention: Option<Duration>,
    /// Create the example offers when the store has none. Not an environment variable: the binary
    /// sets it for the embedded store, so a first run routes clicks at once.
    pub seed_if_empty: bool,
}

/// How offers are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    /// Weight = EV / max EV, floored, with uniform exploration, every `CRON_INTERVAL_HOURS`.
    Ev,
    /// Each offer's probability of having the highest earnings per click under the posterior.
    #[default]
    Thompson,
}

impl RoutingStrategy {
    /// The strategy's name, as `ROUTING_STRATEGY` spells it.
    pub fn name(self) -> &'static str {
        match self {
            RoutingStrategy::Ev => "ev",
            RoutingStrategy::Thompson => "thompson",
        }
    }
}

impl std::str::FromStr for RoutingStrategy {
    type Err = ();

    fn from_str(name: &str) -> Result<RoutingStrategy, ()> {
        let name = name.to_ascii_lowercase();
        [RoutingStrategy::Ev, RoutingStrategy::Thompson].into_iter().find(|strategy| strategy.name() == name).ok_or(())
    }
}

/// Which IP-to-country database to open at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoIpSource {
    /// The shipped database, if it is there or at one of [`GEOIP_DB_FALLBACKS`] (a start-up
    /// warning if not).
    Default(PathBuf),
    /// A database the operator named: it must open.
    Required(PathBuf),
    /// None: countries come from the proxy header only.
    Off,
}

/// What bots and link previews get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotAction {
    /// An offer, like anyone (their clicks are flagged and kept out of the weight engines).
    #[default]
    Route,
    /// The fallback URL.
    Fallback,
}

impl std::str::FromStr for BotAction {
    type Err = ();

    fn from_str(name: &str) -> Result<BotAction, ()> {
        match name.to_ascii_lowercase().as_str() {
            "route" => Ok(BotAction::Route),
            "fallback" => Ok(BotAction::Fallback),
            _ => Err(()),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();

    fn from_str(name: &str) -> Result<LogFormat, ()> {
        match name.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(()),
        }
    }
}

/// Which store the router uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A PostgreSQL connection URL.
    Postgres(String),
    /// Path of the embedded SQLite database file.
    Sqlite(PathBuf),
}

impl DatabaseConfig {
    /// `postgresql` or `sqlite`, for logs (the URL may hold a password).
    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseConfig::Postgres(_) => "postgresql",
            DatabaseConfig::Sqlite(_) => "sqlite",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: DatabaseConfig::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH)),
            host: IpAddr::from([0, 0, 0, 0]),
            port: 5000,
            last_n_clicks: 1000,
            exploration_rate: 0.20,
            min_weight: 0.1,
            min_clicks_for_ev: 100,
            recalc_interval: Duration::from_secs(6 * 3600),
            routing_strategy: RoutingStrategy::Thompson,
            thompson_refresh_interval: Duration::from_secs(60),
            thompson_exploration_rate: 0.0,
            table_refresh_interval: Duration::from_secs(5),
            admin_token: None,
            trusted_proxies: Vec::new(),
            click_queue_capacity: 65_536,
            writer_batch_size: 4096,
            postback_hold: Duration::from_secs(600),
            postback_hold_limits: HoldLimits { per_offer: 1_000, total: 10_000 },
            writer_flush_interval: Duration::from_millis(50),
            max_payout: 100_000.0,
            db_pool_size: 16,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            journal_dir: PathBuf::from(DEFAULT_JOURNAL_DIR),
            journal_max_bytes: 1024 * 1024 * 1024,
            journal_spill_after: 4096,
            click_log_sync: Some(Duration::from_secs(1)),
            metrics_addr: None,
            log_format: LogFormat::Text,
            country_header: hyper::header::HeaderName::from_static(DEFAULT_COUNTRY_HEADER),
            geoip: GeoIpSource::Default(PathBuf::from(DEFAULT_GEOIP_DB)),
            fallback: None,
            bot_action: BotAction::Route,
            segment_by: SegmentDims::DEFAULT,
            dashboard_session: Duration::from_secs(12 * 3600),
            click_partition_days: 1,
            click_retention: None,
            seed_if_empty: false,
        }
    }
}

/// One variable that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidVar {
    /// The variable's name.
    pub name: &'static str,
    /// What was wrong and what is accepted.
    pub reason: String,
}

/// Every bad variable found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<InvalidVar>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration:")?;
        for var in &self.0 {
            write!(f, "\n  {}: {}", var.name, var.reason)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value if it is set.
    /// Empty values count as unset, as in most `.env` conventions.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut vars =
            Vars { lookup: &|name| lookup(name).filter(|value| !value.trim().is_empty()), errors: Vec::new() };
        let defaults = Config::default();
        let config = Config {
            database: vars.database(),
            host: vars.parsed(HOST, defaults.host, "an IP address such as 0.0.0.0 or ::"),
            port: vars.parsed(PORT, defaults.port, "a port number from 0 to 65535"),
            last_n_clicks: vars.ranged(LAST_N_CLICKS, defaults.last_n_clicks, 1, 10_000_000),
            exploration_rate: vars.ranged(EXPLORATION_RATE, defaults.exploration_rate, 0.0, 1.0),
            min_weight: vars.ranged(MIN_WEIGHT, defaults.min_weight, 0.0, 1.0),
            min_clicks_for_ev: vars.ranged(MIN_CLICKS_FOR_EV, defaults.min_clicks_for_ev, 0, 10_000_000),
            recalc_interval: Duration::from_secs_f64(
                3600.0
                    * vars.ranged(
                        CRON_INTERVAL_HOURS,
                        defaults.recalc_interval.as_secs_f64() / 3600.0,
                        0.001,
                        24.0 * 365.0,
                    ),
            ),
            routing_strategy: vars.parsed(ROUTING_STRATEGY, defaults.routing_strategy, "ev or thompson"),
            thompson_refresh_interval: Duration::from_secs_f64(vars.ranged(
                THOMPSON_REFRESH_SECONDS,
                defaults.thompson_refresh_interval.as_secs_f64(),
                0.05,
                86_400.0,
            )),
            thompson_exploration_rate: vars.ranged(
                THOMPSON_EXPLORATION_RATE,
                defaults.thompson_exploration_rate,
                0.0,
                1.0,
            ),
            table_refresh_interval: Duration::from_secs_f64(vars.ranged(
                TABLE_REFRESH_SECONDS,
                defaults.table_refresh_interval.as_secs_f64(),
                0.05,
                3600.0,
            )),
            admin_token: vars.admin_token(),
            trusted_proxies: vars.trusted_proxies(),
            click_queue_capacity: vars.ranged(CLICK_QUEUE_CAPACITY, defaults.click_queue_capacity, 1, 100_000_000),
            writer_batch_size: vars.ranged(WRITER_BATCH_SIZE, defaults.writer_batch_size, 1, 1_000_000),
            postback_hold: Duration::from_secs(vars.ranged(
                POSTBACK_HOLD_SECONDS,
                defaults.postback_hold.as_secs(),
                0,
                7 * 86_400,
            )),
            postback_hold_limits: HoldLimits {
                per_offer: vars.ranged(
                    POSTBACK_HOLD_PER_OFFER,
                    defaults.postback_hold_limits.per_offer,
                    0,
                    100_000_000,
                ),
                total: vars.ranged(POSTBACK_HOLD_MAX, defaults.postback_hold_limits.total, 0, 100_000_000),
            },
            writer_flush_interval: Duration::from_millis(vars.ranged(
                WRITER_FLUSH_MS,
                defaults.writer_flush_interval.as_millis() as u64,
                1,
                60_000,
            )),
            max_payout: vars.ranged(MAX_PAYOUT, defaults.max_payout, 0.0, 1e12),
            db_pool_size: vars.ranged(DB_POOL_SIZE, defaults.db_pool_size, 2, 1000),
            shutdown_grace: Duration::from_secs_f64(vars.ranged(
                SHUTDOWN_GRACE_SECONDS,
                defaults.shutdown_grace.as_secs_f64(),
                0.0,
                3600.0,
            )),
            max_connections: vars.ranged(MAX_CONNECTIONS, defaults.max_connections, 1, 1_000_000),
            header_read_timeout: Duration::from_secs_f64(vars.ranged(
                HEADER_READ_TIMEOUT_SECONDS,
                defaults.header_read_timeout.as_secs_f64(),
                0.1,
                600.0,
            )),
            journal_dir: (vars.lookup)(JOURNAL_DIR).map_or(defaults.journal_dir, PathBuf::from),
            journal_max_bytes: vars.ranged(JOURNAL_MAX_MB, defaults.journal_max_bytes >> 20, 1, 1 << 30) << 20,
            journal_spill_after: vars.ranged(JOURNAL_SPILL_AFTER, defaults.journal_spill_after, 1, 10_000_000),
            click_log_sync: Some(Duration::from_millis(vars.ranged(
                CLICK_LOG_SYNC_MS,
                defaults.click_log_sync.map_or(0, |period| period.as_millis() as u64),
                0,
                3_600_000,
            )))
            .filter(|period| !period.is_zero()),
            metrics_addr: vars.optional(METRICS_ADDR, "an address such as 127.0.0.1:9100"),
            log_format: vars.parsed(LOG_FORMAT, defaults.log_format, "text or json"),
            country_header: vars.parsed(COUNTRY_HEADER, defaults.country_header, "an HTTP header name"),
            geoip: match (vars.lookup)(GEOIP_DB) {
                None => defaults.geoip,
                Some(value) if value.trim().eq_ignore_ascii_case("off") => GeoIpSource::Off,
                Some(path) => GeoIpSource::Required(PathBuf::from(path.trim())),
            },
            fallback: vars.fallback(),
            bot_action: vars.parsed(BOT_ACTION, defaults.bot_action, "route or fallback"),
            segment_by: vars.parsed(SEGMENT_BY, defaults.segment_by, "a list of country, device, source (or none)"),
            dashboard_session: Duration::from_secs(
                3600 * vars.ranged(DASHBOARD_SESSION_HOURS, defaults.dashboard_session.as_secs() / 3600, 1, 24 * 90),
            ),
            click_partition_days: vars.ranged(CLICK_PARTITION_DAYS, defaults.click_partition_days, 1, 31),
            click_retention: Some(Duration::from_secs(
                DAY_SECONDS
                    * vars.ranged(
                        CLICK_RETENTION_DAYS,
                        defaults.click_retention.map_or(0, |retention| retention.as_secs() / DAY_SECONDS),
                        0,
                        36_500,
                    ),
            ))
            .filter(|retention| !retention.is_zero()),
            seed_if_empty: defaults.seed_if_empty,
        };
        if config.bot_action == BotAction::Fallback && config.fallback.is_none() {
            vars.reject(BOT_ACTION, format!("fallback needs {FALLBACK_URL}: set it, or BOT_ACTION=route"));
        }
        if vars.errors.is_empty() { Ok(config) } else { Err(ConfigError(vars.errors)) }
    }
}

/// The parsing context: the lookup and the errors found so far.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<InvalidVar>,
}

impl Vars<'_> {
    fn reject(&mut self, name: &'static str, reason: String) {
        self.errors.push(InvalidVar { name, reason });
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &'static str, default: T, expected: &str) -> T {
        self.optional(name, expected).unwrap_or(default)
    }

    /// The variable's value if it is set and valid; `None` if unset, or invalid (and reported).
    fn optional<T: std::str::FromStr>(&mut self, name: &'static str, expected: &str) -> Option<T> {
        let raw = (self.lookup)(name)?;
        let parsed = raw.trim().parse().ok();
        if parsed.is_none() {
            self.reject(name, format!("{raw:?} is not {expected}"));
        }
        parsed
    }

    fn ranged<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a number from {min} to {max}");
        let Some(raw) = (self.lookup)(name) else { return default };
        match raw.trim().parse::<T>() {
            // `!(min <= v && v <= max)` also rejects NaN.
            Ok(value) if min <= value && value <= max => value,
            _ => {
                self.reject(name, format!("{raw:?} is not {expected}"));
                default
            }
        }
    }

    fn database(&mut self) -> DatabaseConfig {
        let Some(url) = (self.lookup)(DATABASE_URL) else {
            return DatabaseConfig::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Err(error) = url.parse::<tokio_postgres::Config>() {
                self.reject(DATABASE_URL, format!("not a valid PostgreSQL URL: {error}"));
            }
            return DatabaseConfig::Postgres(url);
        }
        if let Some(path) = url.strip_prefix("sqlite://").filter(|path| !path.is_empty()) {
            return DatabaseConfig::Sqlite(PathBuf::from(path));
        }
        let scheme = url.split("://").next().unwrap_or_default();
        self.reject(
            DATABASE_URL,
            format!("unsupported scheme {scheme:?}: use postgres://..., postgresql://... or sqlite://PATH"),
        );
        DatabaseConfig::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH))
    }

    fn fallback(&mut self) -> Option<RedirectTemplate> {
        let url = (self.lookup)(FALLBACK_URL)?;
        match RedirectTemplate::parse(url.trim()) {
            Ok(template) => Some(template),
            Err(error) => {
                // The template's errors speak of casino_url, the offer field they usually concern.
                self.reject(FALLBACK_URL, error.to_string().replace("casino_url", "the URL"));
                None
            }
        }
    }

    fn admin_token(&mut self) -> Option<String> {
        let token = (self.lookup)(ADMIN_TOKEN)?;
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.reject(ADMIN_TOKEN, "must be at least 16 visible ASCII characters".to_owned());
            return None;
        }
        Some(token)
    }

    fn trusted_proxies(&mut self) -> Vec<IpNetwork> {
        let Some(raw) = (self.lookup)(TRUSTED_PROXIES) else { return Vec::new() };
        let mut networks = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            match item.parse() {
                Ok(network) => networks.push(network),
                Err(_) => self.reject(
                    TRUSTED_PROXIES,
                    format!("{item:?} is not an IP address or CIDR network such as 10.0.0.0/8"),
                ),
            }
        }
        networks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.port, 5000);
        assert_eq!(config.last_n_clicks, 1000);
        assert_eq!(config.exploration_rate, 0.20);
        assert_eq!(config.thompson_exploration_rate, 0.0);
        assert_eq!(config.min_weight, 0.1);
        assert_eq!(config.recalc_interval, Duration::from_secs(6 * 3600));
        assert_eq!(config.database, DatabaseConfig::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH)));
    }

    #[test]
    fn the_routing_strategy_is_thompson_unless_ev_is_asked_for() {
        assert_eq!(parse(&[]).unwrap().routing_strategy, RoutingStrategy::Thompson);
        assert_eq!(parse(&[(ROUTING_STRATEGY, "EV")]).unwrap().routing_strategy, RoutingStrategy::Ev);
        assert_eq!(parse(&[(ROUTING_STRATEGY, "thompson")]).unwrap().routing_strategy, RoutingStrategy::Thompson);
        let err = parse(&[(ROUTING_STRATEGY, "greedy")]).unwrap_err();
        assert!(err.to_string().contains("ev or thompson"), "{err}");
    }

    #[test]
    fn segments_are_country_by_device_unless_set() {
        assert_eq!(parse(&[]).unwrap().segment_by, SegmentDims::DEFAULT);
        let by_source = parse(&[(SEGMENT_BY, "source")]).unwrap().segment_by;
        assert_eq!(by_source, SegmentDims { source: true, ..SegmentDims::NONE });
        assert_eq!(parse(&[(SEGMENT_BY, "none")]).unwrap().segment_by, SegmentDims::NONE);
        let err = parse(&[(SEGMENT_BY, "country,city")]).unwrap_err();
        assert_eq!(err.0[0].name, SEGMENT_BY);
        assert!(err.0[0].reason.contains("country, device, source"), "{err}");
    }

    #[test]
    fn database_url_selects_the_store() {
        let pg = parse(&[(DATABASE_URL, "postgresql://u@h/db")]).unwrap();
        assert_eq!(pg.database, DatabaseConfig::Postgres("postgresql://u@h/db".into()));
        let lite = parse(&[(DATABASE_URL, "sqlite:///tmp/x.db")]).unwrap();
        assert_eq!(lite.database, DatabaseConfig::Sqlite(PathBuf::from("/tmp/x.db")));
        let err = parse(&[(DATABASE_URL, "mysql://h/db")]).unwrap_err();
        assert_eq!(err.0[0].name, DATABASE_URL);
        let err = parse(&[(DATABASE_URL, "postgres://u@h:notaport/db")]).unwrap_err();
        assert!(err.0[0].reason.starts_with("not a valid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn every_bad_variable_is_reported_at_once_with_its_range() {
        let err = parse(&[
            (PORT, "70000"),
            (EXPLORATION_RATE, "1.5"),
            (THOMPSON_EXPLORATION_RATE, "-0.1"),
            (MIN_WEIGHT, "NaN"),
            (TRUSTED_PROXIES, "10.0.0.0/8, nonsense"),
            (ADMIN_TOKEN, "short"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [PORT, EXPLORATION_RATE, MIN_WEIGHT, THOMPSON_EXPLORATION_RATE, ADMIN_TOKEN, TRUSTED_PROXIES]
        );
        let text = err.to_string();
        assert!(text.contains("EXPLORATION_RATE: \"1.5\" is not a number from 0 to 1"), "{text}");
    }

    #[test]
    fn metrics_address_and_log_format_are_parsed() {
        let config = parse(&[(METRICS_ADDR, "127.0.0.1:9100"), (LOG_FORMAT, "JSON")]).unwrap();
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(config.log_format, LogFormat::Json);
        let err = parse(&[(METRICS_ADDR, "9100"), (LOG_FORMAT, "xml")]).unwrap_err();
        let names: Vec<_> = err.0.iter().map(|v| v.name).collect();
        assert_eq!(names, [METRICS_ADDR, LOG_FORMAT]);
    }

    #[test]
    fn clicks_are_kept_forever_in_daily_partitions_unless_set() {
        let config = parse(&[]).unwrap();
        assert_eq!((config.click_partition_days, config.click_retention), (1, None));
        let config = parse(&[(CLICK_PARTITION_DAYS, "7"), (CLICK_RETENTION_DAYS, "90")]).unwrap();
        assert_eq!(config.click_partition_days, 7);
        assert_eq!(config.click_retention, Some(Duration::from_secs(90 * 24 * 3600)));
        assert_eq!(parse(&[(CLICK_RETENTION_DAYS, "0")]).unwrap().click_retention, None);
        let err = parse(&[(CLICK_PARTITION_DAYS, "0"), (CLICK_RETENTION_DAYS, "-1")]).unwrap_err();
        let names: Vec<_> = err.0.iter().map(|v| v.name).collect();
        assert_eq!(names, [CLICK_PARTITION_DAYS, CLICK_RETENTION_DAYS]);
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_networks() {
        let config = parse(&[(TRUSTED_PROXIES, "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        assert_eq!(config.trusted_proxies.len(), 3);
        assert!(config.trusted_proxies[1].contains("10.1.2.3".parse().unwrap()));
    }
}
