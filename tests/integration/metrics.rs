//! `/metrics`: Prometheus text that counts what the router did, behind the admin token on the main
//! port, or without it on a listener of its own.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use support::{ADMIN_TOKEN, TestServer, click_id_of, wait_until};

/// Parses the text format into `series -> value` (`name{labels}` as written), checking that every
/// series follows its `# TYPE` line.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(rest.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let family = name.split('{').next().unwrap();
        assert!(typed.iter().any(|t| family.starts_with(t.as_str())), "{family} has no TYPE line");
        series.insert(name.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")));
    }
    series
}

async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let response = server.admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    parse(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_clicks_postbacks_batches_and_weights() {
    let server = TestServer::start().await;
    let alpha = server.create_offer("Alpha", "https://alpha.example/", 3.0);
    let beta = server.create_offer("Beta", "https://beta.example/", 1.0);
    let (alpha, beta) = (alpha.await, beta.await);
    let (alpha_id, beta_id) = (alpha["id"].as_i64().unwrap(), beta["id"].as_i64().unwrap());

    let (locations, by_host) = server.click_many(200, 4).await;
    let secret_of =
        |host: &str| if host == "alpha.example" { &alpha["postback_secret"] } else { &beta["postback_secret"] };
    let first = &locations[0];
    let host = url::Url::parse(first).unwrap().host_str().unwrap().to_owned();
    let click_id = click_id_of(first);
    let secret = secret_of(&host).as_str().unwrap();
    let ftd = format!("click_id={click_id}&event=ftd&payout=50&secret={secret}");
    assert_eq!(server.postback_get(&ftd).await.0, StatusCode::OK);
    assert_eq!(server.postback_get(&ftd).await.0, StatusCode::OK);
    let forged = format!("click_id={click_id}&event=ftd&secret=wrong-secret");
    assert_eq!(server.postback_get(&forged).await.0, StatusCode::FORBIDDEN);
    assert_eq!(server.postback_get("event=ftd").await.0, StatusCode::BAD_REQUEST);
    let (status, _) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::OK);

    // Every click reaches the writer's counters (the postback flushes the queue only if its click
    // was not stored yet, which a fast writer may already have done).
    let written = async || scrape(&server).await["casino_router_writer_clicks_total{result=\"written\"}"] == 200.0;
    wait_until("every click written", Duration::from_secs(10), written).await;
    let metrics = scrape(&server).await;
    let clicks = |id: i64| metrics[&format!("casino_router_clicks_total{{offer_id=\"{id}\"}}")];
    assert_eq!(clicks(alpha_id), by_host["alpha.example"] as f64);
    assert_eq!(clicks(beta_id), by_host.get("beta.example").copied().unwrap_or(0) as f64);
    assert_eq!(metrics["casino_router_click_duration_seconds_count"], 200.0);
    assert!(metrics["casino_router_click_duration_seconds_sum"] > 0.0);
    for (outcome, expected) in
        [("accepted", 1.0), ("duplicate", 1.0), ("forbidden", 1.0), ("invalid", 1.0), ("unknown_click", 0.0)]
    {
        assert_eq!(metrics[&format!("casino_router_postbacks_total{{outcome=\"{outcome}\"}}")], expected, "{outcome}");
    }
    // Every click is written, in batches the histogram counted.
    assert_eq!(metrics["casino_router_writer_clicks_total{result=\"written\"}"], 200.0);
    assert_eq!(metrics["casino_router_writer_batch_size_sum"], 200.0);
    assert!(metrics["casino_router_writer_flush_duration_seconds_count"] >= 1.0);
    assert_eq!(metrics["casino_router_writer_queue_depth"], 0.0);
    // Weights and shares are those of the current table (recalculated: too few clicks, weight 1).
    let share = |id: i64| metrics[&format!("casino_router_offer_traffic_share{{offer_id=\"{id}\"}}")];
    assert!((share(alpha_id) + share(beta_id) - 1.0).abs() < 1e-9);
    assert_eq!(metrics[&format!("casino_router_offer_weight{{offer_id=\"{alpha_id}\"}}")], 1.0);
    let recalculated = metrics["casino_router_last_recalculation_timestamp_seconds"];
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((now - recalculated).abs() < 60.0, "last recalculation {recalculated}, now {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token_on_the_main_port() {
    let server = TestServer::start().await;
    let anonymous = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = server.http.get(server.url("/metrics")).bearer_auth("not-the-token-at-all").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&server).await["casino_router_writer_queue_depth"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_metrics_listener_serves_metrics_alone_without_a_token() {
    let server = TestServer::start_with_metrics_listener().await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    server.click_location("").await;
    let metrics_url = |path: &str| format!("http://{}{path}", server.metrics_addr.unwrap());
    let response = server.http.get(metrics_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = parse(&response.text().await.unwrap());
    assert_eq!(metrics["casino_router_click_duration_seconds_count"], 1.0);
    // Only /metrics there; and no /metrics on the main port any more, even with the token.
    let click = server.http.get(metrics_url("/click")).send().await.unwrap();
    assert_eq!(click.status(), StatusCode::NOT_FOUND);
    let admin = server.http.get(metrics_url("/admin/offers")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.admin(Method::GET, "/metrics").send().await.unwrap().status(), StatusCode::NOT_FOUND);
}
