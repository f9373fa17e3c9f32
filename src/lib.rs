//! casino-router: a self-hosted traffic router for casino affiliates.
//!
//! A landing-page click (`GET /click`) is routed to one casino offer, picked by weight from a
//! precomputed alias table, given a UUID v7 click id, queued for the batching writer, and answered
//! with a 302 to the offer's URL carrying that id. Casino platforms later report conversions on
//! `/postback`; a background task turns them into new weights. Admins use a JSON API.
//!
//! The modules, from the edge inwards:
//! - [`config`]: configuration from the environment, validated in one pass.
//! - [`server`]: accepts connections, graceful shutdown; [`shutdown`]: the signals that start it.
//! - [`http`]: request routing and handlers (click, postback, admin, health).
//! - [`app`]: the shared state and the operations that swap the routing table.
//! - [`routing`]: pure code: alias table, offer URL rules, EV weight policy.
//! - [`conversion`]: pure code: what a postback means; [`secret`]: secret generation and comparison.
//! - [`writer`]: the click queue and the batching writer thread; [`journal`]: its on-disk spill
//!   during database outages, replayed at start-up; [`click_log`]: every click in a memory-mapped
//!   file before its redirect, so a crashed process loses none.
//! - [`metrics`]: counters and histograms for `/metrics`, lock-free on the click path.
//! - [`store`]: the storage interface and its PostgreSQL and SQLite implementations.
//! - [`scheduler`]: timed recalculation and cross-instance refresh; [`seed`]: example offers.
//! - [`net`]: client addresses behind trusted proxies.
//! - [`visitor`]: pure code: a click's country (GeoIP, proxy header), device class and bot check.
//! - [`simulate`]: the routing strategies against synthetic traffic (`casino-router simulate`).

// Denied everywhere but in `click_log`, whose memory-mapped frames need raw pointers.
#![deny(unsafe_code)]
// The documentation is for the people working on the router, and says why with links to the
// private items that do it: build it with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod app;
#[allow(unsafe_code)]
pub mod click_log;
pub mod config;
pub mod conversion;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod net;
pub mod routing;
pub mod scheduler;
pub mod secret;
pub mod seed;
pub mod server;
pub mod shutdown;
pub mod simulate;
pub mod store;
pub mod visitor;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::{Handle, RuntimeFlavor};

use tokio::sync::watch;

use crate::app::{App, VisitorLookup};
use crate::click_log::{ClickLog, ClickLogError};
use crate::config::{Config, GeoIpSource};
use crate::http::Surface;
use crate::journal::{Journal, JournalError, Replayed};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::visitor::{BotList, GeoIp, GeoIpError};
use crate::writer::{ClickWriter, WriterConfig};

/// Why the router could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The click journal could not be opened or replayed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The click log could not be opened or read.
    #[error(transparent)]
    ClickLog(#[from] ClickLogError),
    /// The IP-to-country database named by `GEOIP_DB` could not be opened.
    #[error("GEOIP_DB: {0}")]
    GeoIp(#[from] GeoIpError),
    /// The writer thread could not be started.
    #[error("could not start the click writer: {0}")]
    Writer(#[from] std::io::Error),
    /// `run` needs a multi-thread runtime: the writer thread blocks on the store's futures, which
    /// only a multi-thread runtime's workers drive meanwhile.
    #[error("casino-router must run on a multi-thread tokio runtime")]
    Runtime,
}

/// The sockets the router serves, already bound.
#[derive(Debug)]
pub struct Listeners {
    /// Clicks, postbacks, admin, docs (and `/metrics` behind the token when `metrics` is `None`).
    pub http: TcpListener,
    /// `/metrics` alone, without a token (`METRICS_ADDR`).
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Listeners {
        Listeners { http, metrics: None }
    }
}

/// Runs the router on `listeners` until `shutdown` resolves, then stops in order: stop accepting,
/// finish in-flight requests (bounded by the grace period), stop the scheduler, drain the click
/// queue into the store, and return.
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let listeners = listeners.into();
    let runtime = Handle::current();
    if runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err(RunError::Runtime);
    }
    // The journal first: its lock says whether another instance has this JOURNAL_DIR, and a second
    // instance must fail before it opens the store, seeds offers or generates an admin token.
    let mut journal = Journal::open(&config.journal_dir, config.journal_max_bytes)?;
    // What a stopped process left in its click log goes into the journal (fsynced), and is replayed
    // with it below.
    let (click_log, recovered) = ClickLog::open(&config.journal_dir, config.click_log_sync)?;
    if !recovered.clicks.is_empty() || recovered.damaged > 0 {
        journal.append(&recovered.clicks)?;
        tracing::warn!(
            clicks = recovered.clicks.len(),
            damaged = recovered.damaged,
            "clicks the previous process left in its click log (it did not stop cleanly): journaled for replay"
        );
    }
    recovered.discard().map_err(JournalError::Io)?;
    let lookup = VisitorLookup { geoip: open_geoip(&config.geoip)?, bots: BotList::bundled() };
    let store = store::open(&config).await?;
    if config.seed_if_empty {
        for offer in seed::seed_examples(store.as_ref()).await? {
            tracing::warn!(
                offer_id = offer.id,
                name = %offer.name,
                postback_secret = %offer.postback_secret,
                "empty database: created example offer"
            );
        }
    }
    let admin_token = match &config.admin_token {
        Some(token) => token.clone(),
        None => {
            let token = secret::generate_secret();
            tracing::warn!(admin_token = %token, "ADMIN_TOKEN is not set; generated one for this run");
            token
        }
    };
    // Clicks journaled by an earlier run (an outage, a crash) go in before any new click is taken.
    // If that fails, the writer starts in its outage mode and keeps retrying the rest.
    let mut replayed = Replayed::default();
    if !journal.is_empty() {
        match journal.replay(store.as_ref(), config.writer_batch_size).await {
            Ok(done) => {
                replayed = done;
                tracing::info!(clicks = done.written, refused = done.failed, dir = %config.journal_dir.display(), "replayed the click journal");
            }
            Err(error) => tracing::warn!(%error, "click journal not replayed yet; the writer will retry"),
        }
    }
    let writer_config = WriterConfig {
        queue_capacity: config.click_queue_capacity,
        batch_size: config.writer_batch_size,
        flush_interval: config.writer_flush_interval,
        spill_after: config.journal_spill_after,
    };
    let metrics = Arc::new(Metrics::default());
    let writer = ClickWriter::spawn(store.clone(), writer_config, runtime, metrics.clone(), journal, Some(click_log))?;
    writer.queue().stats().written.fetch_add(replayed.written, std::sync::atomic::Ordering::Relaxed);
    writer.queue().stats().failed.fetch_add(replayed.failed, std::sync::atomic::Ordering::Relaxed);
    let grace = config.shutdown_grace;
    let app = Arc::new(App::new(config, store, writer.queue().clone(), lookup, admin_token, metrics));
    app.reload_routing().await?;

    let (stop, stopped) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(app.clone(), stopped.clone()));
    if let Ok(addr) = listeners.http.local_addr() {
        tracing::info!(
            %addr,
            offers = app.routable_offers(),
            store = %app.config().database.kind(),
            strategy = app.config().routing_strategy.name(),
            metrics = listeners.metrics.as_ref().and_then(|l| l.local_addr().ok()).map(tracing::field::display),
            "casino-router listening"
        );
    }
    if app.routable_offers() == 0 {
        tracing::warn!(
            "no active offers: every click answers 503 until one is added; run `casino-router seed` for three \
             examples, or POST /admin/offers with the admin token (see /docs)"
        );
    }
    let metrics_server = listeners.metrics.map(|listener| {
        let stopped = stopped.clone();
        let shutdown = async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(server::serve(listener, Surface::Metrics, app.clone(), shutdown, grace))
    });
    let shutdown = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    server::serve(listeners.http, Surface::Public, app.clone(), shutdown, grace).await;
    let _ = scheduler.await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    writer.shutdown().await;
    tracing::info!("casino-router stopped");
    Ok(())
}

/// Opens the IP-to-country database `source` names. The shipped one is looked for in the working
/// directory, then at [`config::GEOIP_DB_FALLBACKS`]; it may be missing everywhere (a binary copied
/// without `data/`): the router then runs on the proxy's country header alone, and says so.
fn open_geoip(source: &GeoIpSource) -> Result<Option<GeoIp>, GeoIpError> {
    let geoip = match source {
        GeoIpSource::Off => None,
        GeoIpSource::Required(path) => Some(GeoIp::open(path)?),
        GeoIpSource::Default(path) => {
            let fallbacks = config::GEOIP_DB_FALLBACKS.map(std::path::Path::new);
            let found = std::iter::once(path.as_path()).chain(fallbacks).find(|candidate| candidate.is_file());
            match found.map(GeoIp::open) {
                Some(Ok(geoip)) => Some(geoip),
                Some(Err(error)) => {
                    tracing::warn!(%error, "no IP-to-country database: countries come from the proxy header only (set GEOIP_DB)");
                    None
                }
                None => {
                    tracing::warn!(
                        path = %path.display(),
                        "no IP-to-country database found: countries come from the proxy header only (set GEOIP_DB)"
                    );
                    None
                }
            }
        }
    };
    if let Some(geoip) = &geoip {
        tracing::info!(database = %geoip.describe(), "IP-to-country database open");
    }
    Ok(geoip)
}
