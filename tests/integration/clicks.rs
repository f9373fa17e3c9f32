//! The click path end to end: real server, real sockets, real PostgreSQL.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION};
use serde_json::{Value, json};
use support::{TestServer, chi_square, click_id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_active_offer_is_a_503_with_a_json_error() {
    let server = TestServer::start().await;
    let response = server.click("").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "no active offer"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_redirects_with_its_id_and_no_caching() {
    let server = TestServer::start().await;
    server.create_offer("Alpha", "https://alpha.example/reg?aff=1#top", 1.0).await;
    let response = server.click("?source=fb").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let location = response.headers()[LOCATION].to_str().unwrap();
    let id = click_id_of(location);
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(location, format!("https://alpha.example/reg?aff=1&click_id={id}#top"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macros_are_substituted_percent_encoded() {
    let server = TestServer::start().await;
    server.create_offer("Beta", "https://beta.example/s?btag={click_id}&src={source}&c={campaign}", 1.0).await;
    let location = server.click_location("?source=face%20book&campaign=a%26b").await;
    let prefix = "https://beta.example/s?btag=";
    assert!(location.starts_with(prefix), "{location}");
    let (id, rest) = location[prefix.len()..].split_once('&').unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(rest, "src=face%20book&c=a%26b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_click_parameters_are_400s() {
    let server = TestServer::start().await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let long = "x".repeat(257);
    for query in [
        format!("?source={long}"),
        format!("?campaign={long}"),
        "?source=%zz".into(),
        "?source=%FF".into(),
        "?campaign=a%00".into(),
    ] {
        let response = server.click(&query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{query}: {body}");
    }
    // 256 characters is still fine.
    assert_eq!(server.click(&format!("?source={}", "x".repeat(256))).await.status(), StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_records_everything_the_issue_names() {
    let server = TestServer::start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let response = server
        .http
        .get(server.url("/click?source=fb&campaign=w24"))
        .header("User-Agent", "TestAgent/1.0")
        .header("Referer", "https://lander.example/page")
        .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
        .send()
        .await
        .unwrap();
    let id = click_id_of(response.headers()[LOCATION].to_str().unwrap());
    let db = server.stop().await;
    let rows = db
        .rows(&format!(
            "SELECT offer_id, user_agent, ip_address, referrer, source, campaign, propensity, created_at
             FROM clicks WHERE click_id = '{id}'"
        ))
        .await;
    let row: Vec<&str> = rows[0].iter().map(|v| v.as_deref().unwrap()).collect();
    assert_eq!(row[0], offer["id"].to_string());
    assert_eq!(row[1], "TestAgent/1.0");
    assert_eq!(row[2].trim_end_matches("/32"), "198.51.100.7", "rightmost untrusted X-Forwarded-For hop");
    assert_eq!(row[3], "https://lander.example/page");
    assert_eq!(row[4], "fb");
    assert_eq!(row[5], "w24");
    assert_eq!(row[6].parse::<f64>().unwrap(), 1.0, "the only offer is picked with probability 1");
    assert!(!row[7].is_empty(), "the click time is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start().await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let response = server.http.get(server.url("/click")).header("X-Forwarded-For", "6.6.6.6").send().await.unwrap();
    let id = click_id_of(response.headers()[LOCATION].to_str().unwrap());
    let db = server.stop().await;
    let rows = db.rows(&format!("SELECT ip_address FROM clicks WHERE click_id = '{id}'")).await;
    assert_eq!(rows[0][0].as_deref().unwrap().trim_end_matches("/32"), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clicks_land_exactly_once_each() {
    let server = TestServer::start().await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    server.create_offer("Beta", "https://beta.example/", 2.0).await;
    let (locations, _) = server.click_many(10_000, 32).await;
    let ids: HashSet<_> = locations.iter().map(|l| click_id_of(l)).collect();
    assert_eq!(ids.len(), 10_000, "every click got its own id");
    let db = server.stop().await;
    let stored = db.click_ids().await;
    assert_eq!(stored.len(), 10_000);
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), ids);
    let rollup = db.count("SELECT sum(clicks) FROM click_rollup_hourly").await;
    assert_eq!(rollup, 10_000, "the hourly rollup counts each click once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_shorter_than_a_batch_still_wakes_the_writer() {
    // The writer sleeps until a batch's deadline (here far away) unless a sender wakes it. With a
    // queue shorter than a batch, waking it only at a full batch would never happen: the queue would
    // fill and /click answer 503 until the deadline.
    let server = TestServer::start_with(|config| {
        config.click_queue_capacity = 1024;
        config.writer_batch_size = 4096;
        config.writer_flush_interval = Duration::from_secs(30);
    })
    .await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let (locations, _) = server.click_many(5_000, 4).await;
    assert_eq!(locations.len(), 5_000, "every click redirected, none refused by a full queue");
    let db = server.stop().await;
    assert_eq!(db.click_ids().await.len(), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_frequencies_match_the_configured_weights() {
    let server = TestServer::start().await;
    let weights = [1.0, 2.0, 5.0];
    for (i, weight) in weights.iter().enumerate() {
        server.create_offer(&format!("O{i}"), &format!("https://o{i}.example/"), *weight).await;
    }
    let n = 8000;
    let (_, by_host) = server.click_many(n, 16).await;
    let observed: Vec<u64> = (0..3).map(|i| by_host.get(&format!("o{i}.example")).copied().unwrap_or(0)).collect();
    // p_i = e/K + (1-e) w_i / sum(w), e = 0.2.
    let total: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| 0.2 / 3.0 + 0.8 * w / total).collect();
    let statistic = chi_square(&observed, &expected);
    // Two degrees of freedom; 27.63 is the one-in-a-million critical value, so this does not flake,
    // while a wrong formula (for example no exploration share) lands far above it.
    assert!(statistic < 27.63, "chi-square {statistic}, observed {observed:?}, expected {expected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_sent_before_shutdown_are_all_stored() {
    let server = TestServer::start_with(|config| {
        // A long deadline keeps clicks queued until the shutdown drain writes them.
        config.writer_flush_interval = std::time::Duration::from_secs(30);
        config.writer_batch_size = 100_000;
    })
    .await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let (locations, _) = server.click_many(500, 8).await;
    let db = server.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, locations.len() as i64);
}
