//! The EV weight engine on known data, against the real server and PostgreSQL.

use crate::support;

use std::time::Duration;

use casino_router::config::DatabaseConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of, test_config, wait_until};
use uuid::Uuid;

/// Sends `n` clicks to `offer` alone (the others are deactivated meanwhile); returns their ids.
async fn clicks_on(server: &TestServer, offer: i64, all: &[i64], n: usize) -> Vec<Uuid> {
    for &other in all.iter().filter(|&&id| id != offer) {
        server.set_offer(other, json!({"active": false})).await;
    }
    server.set_offer(offer, json!({"active": true})).await;
    let ids = server.click_many(n, 2).await.0.iter().map(|l| click_id_of(l)).collect();
    for &other in all {
        server.set_offer(other, json!({"active": true})).await;
    }
    ids
}

async fn ftd(server: &TestServer, click: Uuid, payout: f64, secret: &str) {
    let body = json!({"click_id": click, "event": "ftd", "payout": payout, "secret": secret});
    let (status, answer) = server.postback_json(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn update_weights(server: &TestServer) -> Value {
    let (status, body) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn weight_of(body: &Value, id: i64) -> f64 {
    body["weights"].as_array().unwrap().iter().find(|w| w["id"] == id).unwrap()["weight"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_follow_the_ev_formula_with_floor_and_exploration_minimum() {
    let server = TestServer::start_with(|config| config.min_clicks_for_ev = 5).await;
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for name in ["A", "B", "C", "D"] {
        let offer = server.create_offer(name, &format!("https://{}.example/", name.to_lowercase()), 1.0).await;
        ids.push(offer["id"].as_i64().unwrap());
        secrets.push(offer["postback_secret"].as_str().unwrap().to_owned());
    }
    // A: 10 clicks, FTDs paying 100 and 50 -> EV 15.  B: 10 clicks, one FTD of 60 -> EV 6.
    // C: 10 clicks, nothing -> EV 0.  D: 2 clicks, under the 5-click minimum.
    let a = clicks_on(&server, ids[0], &ids, 10).await;
    let b = clicks_on(&server, ids[1], &ids, 10).await;
    clicks_on(&server, ids[2], &ids, 10).await;
    clicks_on(&server, ids[3], &ids, 2).await;
    ftd(&server, a[0], 100.0, &secrets[0]).await;
    ftd(&server, a[1], 50.0, &secrets[0]).await;
    ftd(&server, b[0], 60.0, &secrets[1]).await;

    let body = update_weights(&server).await;
    assert_eq!(body["status"], "updated");
    let a_row = body["weights"].as_array().unwrap().iter().find(|w| w["id"] == ids[0]).unwrap();
    assert_eq!((a_row["window_clicks"].as_u64(), a_row["window_ftds"].as_u64()), (Some(10), Some(2)));
    assert_eq!(a_row["window_ev"], 15.0);
    assert_eq!(weight_of(&body, ids[0]), 1.0, "best EV");
    assert!((weight_of(&body, ids[1]) - 0.4).abs() < 1e-12, "6 / 15");
    assert_eq!(weight_of(&body, ids[2]), 0.1, "EV 0 is floored at MIN_WEIGHT");
    assert_eq!(weight_of(&body, ids[3]), 1.0, "too few clicks: explored at full weight");

    // The weights are stored and every run is kept in weight_history.
    let (_, offers) = server.admin_json(Method::GET, "/admin/offers", None).await;
    let stored: Vec<f64> = offers.as_array().unwrap().iter().map(|o| o["weight"].as_f64().unwrap()).collect();
    assert_eq!(stored.len(), 4);
    assert!((stored[1] - 0.4).abs() < 1e-12 && stored[2] == 0.1);
    update_weights(&server).await;
    let db = server.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM weight_history").await, 8, "two runs of four offers");
    assert_eq!(db.count("SELECT count(DISTINCT run_at) FROM weight_history").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_revenue_anywhere_gives_equal_weights() {
    let server = TestServer::start_with(|config| config.min_clicks_for_ev = 1).await;
    let a = server.create_offer("A", "https://a.example/", 0.3).await;
    let b = server.create_offer("B", "https://b.example/", 0.7).await;
    server.click_many(20, 2).await;
    let body = update_weights(&server).await;
    assert_eq!(weight_of(&body, a["id"].as_i64().unwrap()), 1.0);
    assert_eq!(weight_of(&body, b["id"].as_i64().unwrap()), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_weights_shifts_traffic_here_and_on_other_instances() {
    // PostgreSQL whatever the pass: the embedded store is one instance.
    let Some(server) = TestServer::start_postgres(|config| config.min_clicks_for_ev = 5).await else { return };
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let ids = [a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    let a_clicks = clicks_on(&server, ids[0], &ids, 10).await;
    clicks_on(&server, ids[1], &ids, 10).await;
    ftd(&server, a_clicks[0], 200.0, a["postback_secret"].as_str().unwrap()).await;

    let (_, before) = server.click_many(1000, 8).await;
    let before_share = *before.get("a.example").unwrap_or(&0) as f64 / 1000.0;
    assert!((0.42..0.58).contains(&before_share), "equal weights first: {before_share}");
    // A second instance on the same database.
    let mut other_config = test_config(&server.db);
    other_config.min_clicks_for_ev = 5;
    other_config.journal_dir = server.db.journal_dir().join("other-instance");
    let other = TestServer::start_on(server.db.shared(), other_config).await;

    update_weights(&server).await;
    // Weights 1 and 0.1 with e = 0.2: A gets 0.1 + 0.8 / 1.1 = 0.827 of the traffic.
    let (_, here) = server.click_many(2000, 8).await;
    let here_share = *here.get("a.example").unwrap_or(&0) as f64 / 2000.0;
    assert!((0.78..0.87).contains(&here_share), "this instance: {here_share}");

    // The other instance notices the new routing version within its refresh interval (200 ms).
    let mut other_share = 0.0;
    wait_until("the other instance's new table", Duration::from_secs(5), async || {
        let (status, stats) = other.admin_json(Method::GET, "/admin/stats", None).await;
        assert_eq!(status, StatusCode::OK);
        other_share = stats[0]["traffic_share"].as_f64().unwrap();
        other_share > 0.8
    })
    .await;
    assert!((other_share - (0.1 + 0.8 / 1.1)).abs() < 1e-9, "other instance's table: {other_share}");
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recalculation_at_a_time_across_instances() {
    // PostgreSQL whatever the pass: the embedded store is one instance.
    let Some(server) = TestServer::start_postgres(|_| {}).await else { return };
    server.create_offer("A", "https://a.example/", 1.0).await;
    // Another instance's recalculation holds the lock (the key the router uses for it).
    let DatabaseConfig::Postgres(url) = server.db.database_config() else { unreachable!() };
    let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    holder.execute("SELECT pg_advisory_lock($1)", &[&0x6361_7369_6e6f_0002_i64]).await.unwrap();
    let (status, body) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("another instance"));
    holder.execute("SELECT pg_advisory_unlock($1)", &[&0x6361_7369_6e6f_0002_i64]).await.unwrap();
    let (status, _) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Real postbacks: 60 clicks on each of A and B, a third of A's depositing ($150) and none of B's;
/// then a recalculation, after which A is very likely the best.
async fn a_third_of_as_clicks_convert(server: &TestServer, a: &Value, ids: [i64; 2]) {
    let a_clicks = clicks_on(server, ids[0], &ids, 60).await;
    clicks_on(server, ids[1], &ids, 60).await;
    for &click in a_clicks.iter().step_by(3) {
        ftd(server, click, 150.0, a["postback_secret"].as_str().unwrap()).await;
    }
    let body = update_weights(server).await;
    assert!(weight_of(&body, ids[0]) > 0.9, "A is very likely the best: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thompson_drives_traffic_toward_the_offer_that_converts() {
    let server = TestServer::start_with(|config| {
        config.routing_strategy = casino_router::config::RoutingStrategy::Thompson;
    })
    .await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let ids = [a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    // No data: both offers are equally likely to be best, so they share the traffic.
    let (_, by_host) = server.click_many(400, 4).await;
    let a_share = by_host.get("a.example").copied().unwrap_or(0) as f64 / 400.0;
    assert!((0.3..=0.7).contains(&a_share), "share of A with no data: {a_share}");
    a_third_of_as_clicks_convert(&server, &a, ids).await;

    let (_, by_host) = server.click_many(300, 4).await;
    let a_share = by_host.get("a.example").copied().unwrap_or(0) as f64 / 300.0;
    assert!(a_share > 0.85, "share of A after its FTDs: {a_share}");
    let (status, stats) = server.admin_json(Method::GET, "/admin/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    let row = |id: i64| stats.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    let (a_row, b_row) = (row(ids[0]), row(ids[1]));
    // B's clicks are seconds old and B has no FTD to tell its platform's delay: its silence is weak
    // evidence, so A is the likely best, not a certainty.
    assert!(a_row["probability_best"].as_f64().unwrap() > 0.75, "{a_row}");
    assert!(a_row["epc_mean"].as_f64().unwrap() > b_row["epc_mean"].as_f64().unwrap(), "{stats}");
    let interval = a_row["epc_interval_90"].as_array().unwrap();
    let (low, high) = (interval[0].as_f64().unwrap(), interval[1].as_f64().unwrap());
    assert!(low < a_row["epc_mean"].as_f64().unwrap() && a_row["epc_mean"].as_f64().unwrap() < high, "{a_row}");
    assert!((a_row["traffic_share"].as_f64().unwrap() - a_row["weight"].as_f64().unwrap()).abs() < 1e-9);
    // The probability shown is the one the table routes by: the same posterior, not a newer one.
    assert!((a_row["probability_best"].as_f64().unwrap() - a_row["weight"].as_f64().unwrap()).abs() < 1e-9, "{a_row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thompson_with_an_exploration_rate_keeps_an_even_share_for_a_losing_offer() {
    let server = TestServer::start_with(|config| {
        config.routing_strategy = casino_router::config::RoutingStrategy::Thompson;
        config.thompson_exploration_rate = 0.4;
    })
    .await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let ids = [a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    a_third_of_as_clicks_convert(&server, &a, ids).await;
    // B's share: its probability of being best, 60% of it, plus its even part of the 40% explored.
    let (status, stats) = server.admin_json(Method::GET, "/admin/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    for row in stats.as_array().unwrap() {
        let (share, best) = (row["traffic_share"].as_f64().unwrap(), row["probability_best"].as_f64().unwrap());
        assert!((share - (0.6 * best + 0.2)).abs() < 1e-9, "{row}");
        assert_eq!(row["weight"], row["traffic_share"], "under thompson an offer's weight is its share");
    }
    let (_, by_host) = server.click_many(300, 4).await;
    let b_share = by_host.get("b.example").copied().unwrap_or(0) as f64 / 300.0;
    // At least 20% expected (binomial standard deviation 2.3 points): 12% is 3.5 below.
    assert!(b_share > 0.12, "share of B, which has no FTD: {b_share}");
}
