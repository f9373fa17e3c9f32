//! The database goes away under a running router (PostgreSQL behind a proxy the test cuts): clicks
//! keep being answered and are all written once it is back; postbacks and recalculations answer 503
//! meanwhile; a failed scheduled recalculation keeps the current table and is retried.

mod support;

use std::time::{Duration, Instant};

use casino_router::config::DatabaseConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::proxy::TcpProxy;
use support::{TestDb, TestServer, click_id_of, test_config};

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_no_click_and_stops_nothing_but_writes() {
    let db = TestDb::create().await;
    let Some(server_addr) = db.postgres_server().await else {
        eprintln!("outage test: PostgreSQL only (the embedded store cannot go away); skipped on SQLite");
        return;
    };
    let proxy = TcpProxy::start(server_addr).await;
    let mut config = test_config(&db);
    config.database = DatabaseConfig::Postgres(db.postgres_url_via(proxy.addr));
    config.recalc_interval = Duration::from_millis(300);
    config.min_clicks_for_ev = 1;
    let server = TestServer::start_on(db.shared(), config).await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    server.create_offer("B", "https://b.example/", 1.0).await;
    let (before, _) = server.click_many(50, 4).await;
    wait_for("a scheduled recalculation", async || db.count("SELECT count(*) FROM weight_history").await > 0).await;

    proxy.cut();
    // The click path goes on: every click is answered with a redirect to either offer.
    let (during, by_host) = server.click_many(300, 4).await;
    assert_eq!(by_host.len(), 2, "the current table stays in use: {by_host:?}");
    // What needs the database says so, with a status platforms retry on.
    let (status, body) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("database unavailable"));
    let a_click = before.iter().find(|l| l.starts_with("https://a.example/")).expect("a click on A");
    let postback = json!({"click_id": click_id_of(a_click), "event": "ftd", "secret": a["postback_secret"]});
    let response = server.http.post(server.url("/postback")).json(&postback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let health: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["database"].as_str()), (Some("degraded"), Some("down")));
    let history_during = db.count("SELECT count(*) FROM weight_history").await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // several failed scheduled runs

    proxy.restore();
    let total = (before.len() + during.len()) as i64;
    wait_for("every click written", async || db.count("SELECT count(*) FROM clicks").await == total).await;
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert!(before.iter().chain(&during).all(|l| stored.contains(&click_id_of(l))), "each click once, none lost");
    wait_for("the scheduler's retry", async || db.count("SELECT count(*) FROM weight_history").await > history_during)
        .await;
    let response = server.http.post(server.url("/postback")).json(&postback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the platform's retry succeeds");
    let health: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["database"], "up");
    assert_eq!(health["clicks_failed"], 0);
    server.stop().await;
}
