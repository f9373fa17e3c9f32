//! Shared test harness: a fresh database per test, the real router on an ephemeral port, and an HTTP
//! client that does not follow redirects.
//!
//! One suite, two stores: `TEST_STORE=postgres` runs every test against PostgreSQL (each test in a
//! database of its own, on the server `TEST_DATABASE_URL` names, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `TEST_STORE=sqlite` (the default) against the
//! embedded store (each test in a file of its own). `TEST_STORE=citus` runs the PostgreSQL tests on
//! a Citus cluster (the coordinator `TEST_CITUS_URL` names, by default
//! `postgres://postgres@127.0.0.1:5440/postgres`): each test's database is made on the coordinator
//! and every worker, with the extension, so that the router lays its schema out distributed.
//! `scripts/test` runs all three (Citus where it is installed).
//!
//! Some behaviour exists only on PostgreSQL (an outage, a second instance, its advisory locks): those
//! tests take their database from [`TestDb::create_postgres`] whatever `TEST_STORE` says, so they
//! check something in every run. What a test needs but cannot find (PostgreSQL, a browser) fails it
//! under `CI=true` and skips it, saying so, elsewhere ([`skip`]).

#![allow(dead_code)] // Some helpers serve only the tests of one store or one configuration.

pub mod browser;
pub mod conformance;
pub mod openapi;
pub mod proxy;
pub mod stores;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use casino_router::config::{Config, DatabaseConfig, RoutingStrategy};
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Which store the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn backend() -> Backend {
    match std::env::var("TEST_STORE").as_deref() {
        Ok("postgres" | "citus") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("TEST_STORE must be postgres, citus or sqlite, not {other:?}"),
    }
}

/// Whether PostgreSQL is a Citus cluster in this run (`TEST_STORE=citus`).
pub fn on_citus() -> bool {
    std::env::var("TEST_STORE").as_deref() == Ok("citus")
}

/// Whether this is a CI run (`CI=true`), where a test that cannot run fails instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips the running test, saying why on stderr past the harness's capture (so a passing run shows
/// it); under CI it fails the test instead.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(!under_ci(), "{test}: {reason}; CI=true requires it");
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {reason}");
}

/// Polls `condition` every 20 ms until it holds, failing the test, naming `what`, after `within`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn maintenance_url() -> String {
    if on_citus() {
        return std::env::var("TEST_CITUS_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5440/postgres".to_owned());
    }
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database replaced by `database`.
fn url_of_database(url: &str, database: &str) -> String {
    match url.rfind('/') {
        Some(slash) if !url[..slash].ends_with('/') => format!("{}/{database}", &url[..slash]),
        _ => format!("{url}/{database}"),
    }
}

/// The Citus workers of the cluster the maintenance database belongs to, as `postgres://` URLs of
/// their maintenance database.
async fn citus_workers(admin: &tokio_postgres::Client) -> Vec<String> {
    let base: tokio_postgres::Config = maintenance_url().parse().unwrap();
    let user = base.get_user().unwrap_or("postgres").to_owned();
    let rows = admin
        .query("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid", &[])
        .await
        .expect("the Citus cluster's workers (pg_dist_node)");
    rows.iter()
        .map(|row| format!("postgres://{user}@{}:{}/postgres", row.get::<_, String>(0), row.get::<_, i32>(1)))
        .collect()
}

/// Makes database `name`, just created on the coordinator, a Citus database: the same database with
/// the extension on every worker, and the workers registered in it. Its tables get 4 shards each
/// (Citus's default is 32): a test's few rows need no more, and each shard is a table to create.
async fn make_citus_database(admin: &tokio_postgres::Client, name: &str) {
    let coordinator: tokio_postgres::Config = maintenance_url().parse().unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &coordinator.get_hosts()[0] else { panic!("TCP host needed") };
    let port = coordinator.get_ports().first().copied().unwrap_or(5432);
    let mut workers = Vec::new();
    for worker in citus_workers(admin).await {
        connect(&worker).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("database on a worker");
        connect(&url_of_database(&worker, name)).await.batch_execute("CREATE EXTENSION citus").await.unwrap();
        let config: tokio_postgres::Config = worker.parse().unwrap();
        let tokio_postgres::config::Host::Tcp(worker_host) = &config.get_hosts()[0] else { panic!("TCP host") };
        workers.push((worker_host.clone(), i32::from(config.get_ports()[0])));
    }
    let db = connect(&url_of_database(&maintenance_url(), name)).await;
    db.batch_execute(&format!("CREATE EXTENSION citus; ALTER DATABASE {name} SET citus.shard_count = 4"))
        .await
        .expect("citus on the coordinator");
    db.execute("SELECT citus_set_coordinator_host($1, $2)", &[host, &i32::from(port)]).await.unwrap();
    for (worker_host, worker_port) in &workers {
        // A worker's database that has just got the extension may still be updating its catalog
        // from Citus's maintenance daemon ("tuple concurrently updated"): try again shortly.
        let mut attempts = 0;
        while let Err(error) = db.execute("SELECT citus_add_node($1, $2)", &[worker_host, worker_port]).await {
            attempts += 1;
            assert!(attempts < 10, "adding worker {worker_host}:{worker_port} to {name}: {error}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url).await.unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"))
}

enum Location {
    Postgres { name: String, url: String },
    Sqlite { dir: PathBuf },
}

/// A database of its own for one test, removed at the end.
pub struct TestDb {
    location: std::sync::Arc<Location>,
    /// Only the owner removes the database.
    owned: bool,
}

impl TestDb {
    /// A database on the store `TEST_STORE` names.
    pub async fn create() -> TestDb {
        TestDb::create_on(backend()).await
    }

    /// A PostgreSQL database whatever `TEST_STORE` says, for behaviour only PostgreSQL has; `None`
    /// (the test skipped, see [`skip`]) when PostgreSQL is not reachable, or when this is the SQLite
    /// pass of `scripts/test` and its PostgreSQL pass runs the test anyway.
    pub async fn create_postgres() -> Option<TestDb> {
        if backend() == Backend::Sqlite && std::env::var("TEST_POSTGRES_PASS").as_deref() == Ok("follows") {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = writeln!(std::io::stderr(), "{test}: PostgreSQL only; left to the PostgreSQL pass");
            return None;
        }
        let url = maintenance_url();
        if let Err(error) = try_connect(&url).await {
            skip(&format!("needs PostgreSQL at {url} (TEST_DATABASE_URL): {error}"));
            return None;
        }
        Some(TestDb::create_on(Backend::Postgres).await)
    }

    /// A database of its own on `backend`, whichever store the suite runs against.
    pub async fn create_on(backend: Backend) -> TestDb {
        let unique = format!("casino_test_{}", Uuid::now_v7().simple());
        let location = match backend {
            Backend::Postgres => {
                let admin = connect(&maintenance_url()).await;
                admin.batch_execute(&format!("CREATE DATABASE {unique}")).await.expect("create test database");
                if on_citus() {
                    make_citus_database(&admin, &unique).await;
                }
                let url = url_of_database(&maintenance_url(), &unique);
                Location::Postgres { name: unique, url }
            }
            Backend::Sqlite => Location::Sqlite { dir: std::env::temp_dir().join(unique) },
        };
        TestDb { location: std::sync::Arc::new(location), owned: true }
    }

    /// The same database for a second router instance; dropping it leaves the database alone.
    pub fn shared(&self) -> TestDb {
        TestDb { location: self.location.clone(), owned: false }
    }

    pub fn database_config(&self) -> DatabaseConfig {
        match &*self.location {
            Location::Postgres { url, .. } => DatabaseConfig::Postgres(url.clone()),
            Location::Sqlite { dir } => DatabaseConfig::Sqlite(dir.join("router.db")),
        }
    }

    /// For PostgreSQL, the server's address; `None` on the embedded store.
    pub async fn postgres_server(&self) -> Option<SocketAddr> {
        let Location::Postgres { url, .. } = &*self.location else { return None };
        let config: tokio_postgres::Config = url.parse().unwrap();
        let tokio_postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else { panic!("TCP host needed") };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        tokio::net::lookup_host((host.as_str(), port)).await.unwrap().next()
    }

    /// This PostgreSQL database's URL with the server's address replaced by `via` (a proxy).
    pub fn postgres_url_via(&self, via: SocketAddr) -> String {
        let Location::Postgres { url, name } = &*self.location else { panic!("PostgreSQL only") };
        let config: tokio_postgres::Config = url.parse().unwrap();
        format!("postgres://{}@{via}/{name}", config.get_user().unwrap_or("postgres"))
    }

    /// This database's own click journal directory (removed with it).
    pub fn journal_dir(&self) -> PathBuf {
        match &*self.location {
            Location::Postgres { name, .. } => std::env::temp_dir().join(format!("{name}-journal")),
            Location::Sqlite { dir } => dir.join("journal"),
        }
    }

    /// The `DATABASE_URL` that selects this database.
    pub fn database_url(&self) -> String {
        match self.database_config() {
            DatabaseConfig::Postgres(url) => url,
            DatabaseConfig::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    /// Runs statements, separated by semicolons (to set a database up as an older release left it).
    pub async fn execute_batch(&self, sql: &str) {
        match self.database_config() {
            DatabaseConfig::Postgres(url) => {
                connect(&url).await.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            DatabaseConfig::Sqlite(path) => {
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    let conn = rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                })
                .await
                .unwrap();
            }
        }
    }

    /// Runs a query (portable SQL) and returns every row's columns as text.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self.database_config() {
            DatabaseConfig::Postgres(url) => {
                // The simple query protocol returns every value as text.
                let client = connect(&url).await;
                let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                messages
                    .iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => {
                            Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                        }
                        _ => None,
                    })
                    .collect()
            }
            DatabaseConfig::Sqlite(path) => {
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).unwrap();
                    let mut statement = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                    let columns = statement.column_count();
                    let rows = statement
                        .query_map([], |row| {
                            (0..columns)
                                .map(|i| {
                                    Ok(match row.get_ref(i)? {
                                        rusqlite::types::ValueRef::Null => None,
                                        rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                                        rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                                        rusqlite::types::ValueRef::Text(v) => Some(String::from_utf8_lossy(v).into()),
                                        rusqlite::types::ValueRef::Blob(_) => Some("<blob>".into()),
                                    })
                                })
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .unwrap();
                    rows.collect::<rusqlite::Result<Vec<_>>>().unwrap()
                })
                .await
                .unwrap()
            }
        }
    }

    /// Asserts that `event_rollup_hourly` holds what the events themselves add up to, per offer,
    /// hour of the click and value of every dimension: registrations, FTDs not rejected, and their
    /// payouts plus every deposit (groups left at zero by a rejection aside).
    pub async fn assert_event_rollup_matches_the_events(&self) {
        let (hour, amount) = match self.database_config() {
            DatabaseConfig::Postgres(_) => ("date_trunc('hour', e.click_at, 'UTC')", "amount"),
            DatabaseConfig::Sqlite(_) => ("e.click_at / 3600000000 * 3600000000", "amount_micros"),
        };
        let dimension = |name: &str, column: &str| {
            format!(
                "SELECT e.offer_id, {hour} AS hour, '{name}' AS dimension, {column} AS value, e.registrations, e.ftds, e.amount
                 FROM events e JOIN clicks c ON c.click_id = e.click_id"
            )
        };
        let raw = format!(
            "WITH events AS (
                SELECT click_id, offer_id, click_at, 1 AS registrations, 0 AS ftds, 0 AS amount FROM registrations
                UNION ALL
                SELECT f.click_id, f.offer_id, f.click_at, 0, 1, COALESCE(p.{amount}, 0)
                FROM ftd_events f LEFT JOIN payouts p ON p.click_id = f.click_id WHERE f.voided_at IS NULL
                UNION ALL
                SELECT click_id, offer_id, click_at, 0, 0, {amount} FROM deposits
             ), by_dimension AS ({} UNION ALL {} UNION ALL {} UNION ALL {} UNION ALL {})
             SELECT offer_id, CAST(hour AS TEXT), dimension, value, CAST(sum(registrations) AS BIGINT),
                    CAST(sum(ftds) AS BIGINT), CAST(CAST(sum(amount) AS DOUBLE PRECISION) AS TEXT)
             FROM by_dimension GROUP BY 1, 2, 3, 4 ORDER BY 3, 2, 1, 4",
            dimension("", "''"),
            dimension("country", "COALESCE(c.country, '')"),
            dimension("device", "COALESCE(c.device, '')"),
            dimension("source", "COALESCE(c.source, '')"),
            dimension("campaign", "COALESCE(c.campaign, '')"),
        );
        let rolled = format!(
            "SELECT offer_id, CAST(hour AS TEXT), dimension, value, CAST(sum(registrations) AS BIGINT),
                    CAST(sum(ftds) AS BIGINT), CAST(CAST(sum({amount}) AS DOUBLE PRECISION) AS TEXT)
             FROM event_rollup_hourly GROUP BY 1, 2, 3, 4
             HAVING sum(registrations) <> 0 OR sum(ftds) <> 0 OR sum({amount}) <> 0 ORDER BY 3, 2, 1, 4"
        );
        let (raw, rolled) = (self.rows(&raw).await, self.rows(&rolled).await);
        assert!(!raw.is_empty(), "no events to compare");
        assert_eq!(rolled, raw, "the event rollup (left) against the events (right)");
    }

    /// A query's single integer (portable SQL, for example `SELECT count(*) FROM clicks`).
    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.rows(&format!("SELECT CAST(({sql}) AS BIGINT) AS n")).await;
        rows[0][0].as_deref().map_or(0, |n| n.parse().unwrap())
    }

    /// Every stored click id.
    pub async fn click_ids(&self) -> Vec<Uuid> {
        let rows = self.rows("SELECT CAST(click_id AS TEXT) AS id FROM clicks").await;
        rows.iter().map(|row| Uuid::parse_str(row[0].as_deref().unwrap()).unwrap()).collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        match &*self.location {
            Location::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Location::Postgres { name, .. } => {
                let _ = std::fs::remove_dir_all(self.journal_dir());
                let name = name.clone();
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        let admin = connect(&maintenance_url()).await;
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = admin.batch_execute(&drop).await;
                        if on_citus() {
                            for worker in citus_workers(&admin).await {
                                let _ = connect(&worker).await.batch_execute(&drop).await;
                            }
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Configuration for a test server on `db`: fast writer flushes, a known admin token, and the `ev`
/// strategy, under which the weight an admin sets is the offer's traffic share (most tests set
/// weights and count clicks). The tests of `thompson` switch to it.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        routing_strategy: RoutingStrategy::Ev,
        database: db.database_config(),
        journal_dir: db.journal_dir(),
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        writer_flush_interval: Duration::from_millis(5),
        table_refresh_interval: Duration::from_millis(200),
        db_pool_size: 8,
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// The real router, on 127.0.0.1 and an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The separate `/metrics` listener, when started with one.
    pub metrics_addr: Option<SocketAddr>,
    pub db: TestDb,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), casino_router::RunError>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let db = TestDb::create().await;
        let mut config = test_config(&db);
        adjust(&mut config);
        TestServer::start_on(db, config).await
    }

    /// A router on PostgreSQL whatever `TEST_STORE` says; `None` when [`TestDb::create_postgres`]
    /// skips the test.
    pub async fn start_postgres(adjust: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let db = TestDb::create_postgres().await?;
        let mut config = test_config(&db);
        adjust(&mut config);
        Some(TestServer::start_on(db, config).await)
    }

    pub async fn start_on(db: TestDb, config: Config) -> TestServer {
        TestServer::launch(db, config, false).await
    }

    /// A router that serves `/metrics` on a second listener of its own (`METRICS_ADDR`).
    pub async fn start_with_metrics_listener() -> TestServer {
        let db = TestDb::create().await;
        let config = test_config(&db);
        TestServer::launch(db, config, true).await
    }

    async fn launch(db: TestDb, mut config: Config, metrics_listener: bool) -> TestServer {
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http_listener.local_addr().unwrap();
        let metrics = match metrics_listener {
            true => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let metrics_addr = metrics.as_ref().map(|listener| listener.local_addr().unwrap());
        config.metrics_addr = metrics_addr;
        let (shutdown, stop) = oneshot::channel::<()>();
        let listeners = casino_router::Listeners { http: http_listener, metrics };
        let task = tokio::spawn(casino_router::run(listeners, config, async {
            let _ = stop.await;
        }));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut server = TestServer { addr, metrics_addr, db, http, shutdown: Some(shutdown), task: Some(task) };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&mut self) {
        let (http, health, task) = (&self.http, self.url("/health"), &mut self.task);
        wait_until("the router to answer /health", Duration::from_secs(10), async || {
            if task.as_ref().is_some_and(|task| task.is_finished()) {
                let result = task.take().unwrap().await;
                panic!("router stopped before it was ready: {result:?}");
            }
            http.get(&health).send().await.is_ok_and(|response| response.status() == StatusCode::OK)
        })
        .await;
    }

    /// Stops the router gracefully and waits until every queued click is written.
    pub async fn stop(mut self) -> TestDb {
        self.shutdown_in_place().await;
        let shared = self.db.shared();
        std::mem::replace(&mut self.db, shared)
    }

    async fn shutdown_in_place(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("router task panicked").expect("router failed");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn click(&self, query: &str) -> Response {
        self.http.get(self.url(&format!("/click{query}"))).send().await.unwrap()
    }

    /// Clicks and returns the redirect's Location, asserting a 302.
    pub async fn click_location(&self, query: &str) -> String {
        let response = self.click(query).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{:?}", response.text().await);
        response.headers()[LOCATION].to_str().unwrap().to_owned()
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    /// Sends an admin request and returns its status and JSON body.
    pub async fn admin_json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates an offer and returns it as the API shows it.
    pub async fn create_offer(&self, name: &str, casino_url: &str, weight: f64) -> Value {
        let body = json!({"name": name, "casino_url": casino_url, "weight": weight});
        create_offer_at(&self.http, self.addr, body).await
    }

    /// `/health`'s answer.
    pub async fn health(&self) -> Value {
        self.http.get(self.url("/health")).send().await.unwrap().json().await.unwrap()
    }

    /// Posts a JSON postback.
    pub async fn postback(&self, body: &Value) -> Response {
        self.http.post(self.url("/postback")).json(body).send().await.unwrap()
    }

    /// Posts a JSON postback; returns its status and JSON answer.
    pub async fn postback_json(&self, body: &Value) -> (StatusCode, Value) {
        let response = self.postback(body).await;
        (response.status(), response.json().await.unwrap())
    }

    /// Sends a postback as a GET query (`click_id=...&event=...`); returns its status and JSON answer.
    pub async fn postback_get(&self, query: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(&format!("/postback?{query}"))).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn set_offer(&self, id: i64, patch: Value) -> Value {
        let (status, offer) = self.admin_json(reqwest::Method::PUT, &format!("/admin/offers/{id}"), Some(patch)).await;
        assert_eq!(status, StatusCode::OK, "{offer}");
        offer
    }

    /// Sends `n` clicks, `concurrency` at a time, and counts the redirects by target host.
    pub async fn click_many(&self, n: usize, concurrency: usize) -> (Vec<String>, HashMap<String, u64>) {
        let locations = click_many_at(&self.http, self.addr, n, concurrency).await;
        let mut by_host = HashMap::new();
        for location in &locations {
            let host = url::Url::parse(location).unwrap().host_str().unwrap().to_owned();
            *by_host.entry(host).or_insert(0) += 1;
        }
        (locations, by_host)
    }
}

impl Drop for TestServer {
    /// A test that does not call `stop` still stops its router gracefully, before the runtime goes:
    /// a writer cut off mid-flush would otherwise retry until its shutdown limit.
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::task::block_in_place(|| {
                let _ = tokio::runtime::Handle::current().block_on(tokio::time::timeout(Duration::from_secs(20), task));
            });
        }
    }
}

/// Creates an offer (`body`, as `POST /admin/offers` takes it) on the router at `addr`; returns it as
/// the API shows it.
pub async fn create_offer_at(http: &reqwest::Client, addr: SocketAddr, body: Value) -> Value {
    let response =
        http.post(format!("http://{addr}/admin/offers")).bearer_auth(ADMIN_TOKEN).json(&body).send().await.unwrap();
    let status = response.status();
    let offer = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{offer}");
    offer
}

/// Sends `n` clicks to `addr` with `concurrency` workers; returns every Location (all must be 302s).
pub async fn click_many_at(
    http: impl std::borrow::Borrow<reqwest::Client>,
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
) -> Vec<String> {
    let http = http.borrow();
    let per_worker = n.div_ceil(concurrency);
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let http = http.clone();
        let count = per_worker.min(n.saturating_sub(worker * per_worker));
        workers.push(tokio::spawn(async move {
            let mut locations = Vec::with_capacity(count);
            for _ in 0..count {
                let response = http.get(format!("http://{addr}/click?source=load")).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::FOUND);
                locations.push(response.headers()[LOCATION].to_str().unwrap().to_owned());
            }
            locations
        }));
    }
    let mut all = Vec::with_capacity(n);
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all
}

/// A click as a journal holds it (minted now, by an unknown visitor), with `agent` as its user
/// agent: what a crashed instance leaves behind.
pub fn journaled_click(offer_id: i64, agent: &str) -> casino_router::store::ClickRecord {
    casino_router::store::ClickRecord {
        click_id: Uuid::now_v7(),
        offer_id,
        created_at: time::OffsetDateTime::now_utc(),
        user_agent: Some(agent.into()),
        ip_address: None,
        referrer: None,
        source: None,
        campaign: None,
        propensity: 1.0,
        country: None,
        device: None,
        is_bot: false,
        is_fallback: false,
        log_slot: None,
    }
}

/// The click id carried by a Location built from a URL without macros.
pub fn click_id_of(location: &str) -> Uuid {
    let url = url::Url::parse(location).unwrap();
    let (_, id) = url.query_pairs().find(|(key, _)| key == "click_id").expect("click_id in Location");
    Uuid::parse_str(&id).unwrap()
}

/// Pearson's chi-square statistic of observed counts against expected probabilities.
pub fn chi_square(observed: &[u64], probabilities: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(probabilities)
        .map(|(&o, &p)| {
            let expected = p * n as f64;
            (o as f64 - expected).powi(2) / expected
        })
        .sum()
}
