//! Shared test harness: a fresh PostgreSQL database per test, the real router on an ephemeral port,
//! and an HTTP client that does not follow redirects.
//!
//! `TEST_DATABASE_URL` names the server's maintenance database (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database there and
//! drops it when done.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use casino_router::config::{Config, DatabaseConfig};
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

fn maintenance_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// Only the owner drops the database.
    owned: bool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("casino_test_{}", Uuid::now_v7().simple());
        let admin = connect(&maintenance_url()).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let base = maintenance_url();
        let url = match base.rfind('/') {
            Some(slash) if base[..slash].ends_with(|c: char| c != '/') => format!("{}/{name}", &base[..slash]),
            _ => format!("{base}/{name}"),
        };
        TestDb { name, url, owned: true }
    }

    /// The same database for a second router instance; dropping it leaves the database alone.
    pub fn shared(&self) -> TestDb {
        TestDb { name: self.name.clone(), url: self.url.clone(), owned: false }
    }

    /// A direct connection, for assertions on what the router stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let admin = connect(&maintenance_url()).await;
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        })
        .join();
    }
}

/// Configuration for a test server on `db`: fast writer flushes, a known admin token.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        database: DatabaseConfig::Postgres(db.url.clone()),
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

    pub async fn start_on(db: TestDb, config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(casino_router::run(listener, config, async {
            let _ = stop.await;
        }));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let server = TestServer { addr, db, http, shutdown: Some(shutdown), task: Some(task) };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if let Ok(response) = self.http.get(self.url("/health")).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("router did not become ready");
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
        let (status, offer) = self.admin_json(reqwest::Method::POST, "/admin/offers", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{offer}");
        offer
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
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Sends `n` clicks to `addr` with `concurrency` workers; returns every Location (all must be 302s).
pub async fn click_many_at(http: &reqwest::Client, addr: SocketAddr, n: usize, concurrency: usize) -> Vec<String> {
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
