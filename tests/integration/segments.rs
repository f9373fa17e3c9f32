//! Learning per segment over real HTTP on the store `TEST_STORE` names: two offers that are equal over
//! all traffic, one converting in Germany and the other in France. After their postbacks, each
//! country is routed to its own best offer, and `group_by=country` shows why. And segments that
//! share a trait tell of each other: a new country's mobile visitors go to the offer that converts
//! on mobile elsewhere.

use crate::support;

use std::collections::HashMap;

use casino_router::config::RoutingStrategy;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of};

/// A phone's user agent.
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1";

/// Sends a click from `country` (by the trusted proxy's header) on a desktop; returns the offer's
/// host and the click id.
async fn click_from(server: &TestServer, country: &str) -> (String, String) {
    click_from_device(server, country, false).await
}

/// Sends a click from `country`, from a phone if `mobile`; returns the offer's host and the click id.
async fn click_from_device(server: &TestServer, country: &str, mobile: bool) -> (String, String) {
    let mut request = server.http.get(server.url("/click?source=seo")).header("CF-IPCountry", country);
    if mobile {
        request = request.header("User-Agent", IPHONE);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let host = url::Url::parse(&location).unwrap().host_str().unwrap().trim_end_matches(".example").to_owned();
    (host, click_id_of(&location).to_string())
}

/// A `thompson` router behind a trusted proxy (which names the visitor's country), with offers
/// `names`; returns it and each offer's postback secret.
async fn router_with(names: [&str; 2]) -> (TestServer, HashMap<String, String>) {
    let server = TestServer::start_with(|config| {
        config.routing_strategy = RoutingStrategy::Thompson;
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut secrets = HashMap::new();
    for name in names {
        let body = json!({"name": name, "casino_url": format!("https://{name}.example/go"), "weight": 1.0});
        let (status, created) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        secrets.insert(name.to_owned(), created["postback_secret"].as_str().unwrap().to_owned());
    }
    (server, secrets)
}

/// The offers' names by id.
async fn offer_names(server: &TestServer) -> HashMap<i64, String> {
    let (_, offers) = server.admin_json(Method::GET, "/admin/offers", None).await;
    let offers = offers.as_array().unwrap().iter();
    offers.map(|offer| (offer["id"].as_i64().unwrap(), offer["name"].as_str().unwrap().to_owned())).collect()
}

/// The offer named `name` among a segment's offers in the report.
fn offer_in<'a>(segment: &'a Value, ids: &HashMap<i64, String>, name: &str) -> &'a Value {
    let mut offers = segment["offers"].as_array().unwrap().iter();
    offers.find(|o| ids[&o["offer_id"].as_i64().unwrap()] == name).unwrap_or_else(|| panic!("{name} in {segment}"))
}

/// The row of `country` in the report grouped by country.
async fn country_row(server: &TestServer, country: &str) -> Value {
    let (status, report) = server.admin_json(Method::GET, "/admin/stats?group_by=country", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report["rows"].as_array().unwrap().iter().find(|row| row["country"] == country).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_country_is_routed_to_the_offer_that_converts_there() {
    let (server, secrets) = router_with(["berlin", "paris"]).await;
    // Both offers get visitors of both countries; every German visitor of `berlin` and every French
    // visitor of `paris` deposits. Over all traffic the two offers are alike.
    let mut sent: HashMap<(&str, String), u32> = HashMap::new();
    for round in 0..80 {
        let country = if round % 2 == 0 { "DE" } else { "FR" };
        let (offer, click_id) = click_from(&server, country).await;
        *sent.entry((country, offer.clone())).or_default() += 1;
        if (country, offer.as_str()) == ("DE", "berlin") || (country, offer.as_str()) == ("FR", "paris") {
            let body = json!({"click_id": click_id, "event": "ftd", "payout": 100, "secret": secrets[&offer]});
            let (status, answer) = server.postback_json(&body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
    }
    for key in [("DE", "berlin"), ("DE", "paris"), ("FR", "berlin"), ("FR", "paris")] {
        assert!(sent.get(&(key.0, key.1.to_owned())).is_some_and(|&n| n >= 5), "each offer saw each country: {sent:?}");
    }
    let (status, _) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::OK);

    // The report: each country's row holds its segment (desktop: the test client has no agent of a
    // phone), with the offer that converts there taking nearly all of its traffic.
    let ids = offer_names(&server).await;
    for (country, best) in [("DE", "berlin"), ("FR", "paris")] {
        let row = country_row(&server, country).await;
        let segments = row["segments"].as_array().unwrap_or_else(|| panic!("{country}: no segments in {row}"));
        assert_eq!(segments.len(), 1, "{row}");
        assert_eq!((segments[0]["country"].as_str(), segments[0]["device"].as_str()), (Some(country), Some("desktop")));
        let converting = offer_in(&segments[0], &ids, best);
        assert!(converting["traffic_share"].as_f64().unwrap() > 0.9, "{country}: {row}");
        assert!(
            converting["ftds"].as_u64().unwrap() >= 5 && converting["epc_mean"].as_f64().unwrap() > 0.0,
            "{converting}"
        );
    }
    // Grouped by campaign, which makes no segments: no segment figures.
    let (_, by_campaign) = server.admin_json(Method::GET, "/admin/stats?group_by=campaign", None).await;
    assert!(by_campaign["rows"].as_array().unwrap().iter().all(|row| row.get("segments").is_none()), "{by_campaign}");

    // And the clicks follow: German visitors go to `berlin`, French ones to `paris`.
    for (country, best) in [("DE", "berlin"), ("FR", "paris")] {
        let mut to_best = 0;
        for _ in 0..40 {
            to_best += u32::from(click_from(&server, country).await.0 == best);
        }
        assert!(to_best >= 34, "{country}: {to_best} of 40 clicks to {best}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_countrys_mobile_visitors_go_to_the_offer_that_converts_on_mobile_elsewhere() {
    const ROUNDS: usize = 640;
    let (server, secrets) = router_with(["phone", "desk"]).await;
    // German and French visitors on both devices: every second mobile visitor of `phone` and every
    // second desktop visitor of `desk` deposits, every tenth of the others. Over all traffic, and in
    // each country, the two offers are alike.
    let mut sent: HashMap<(&str, bool, String), u32> = HashMap::new();
    for round in 0..ROUNDS {
        let (country, mobile) = [("DE", false), ("DE", true), ("FR", false), ("FR", true)][round % 4];
        let (offer, click_id) = click_from_device(&server, country, mobile).await;
        let seen = sent.entry((country, mobile, offer.clone())).or_default();
        *seen += 1;
        let every = if (offer == "phone") == mobile { 2 } else { 10 };
        if seen.is_multiple_of(every) {
            let body = json!({"click_id": click_id, "event": "ftd", "payout": 100, "secret": secrets[&offer]});
            let (status, answer) = server.postback_json(&body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
    }
    assert!(sent.values().all(|&n| n >= 20) && sent.len() == 8, "each offer saw each segment: {sent:?}");
    // Austria's first mobile visitors, none of whom has deposited yet.
    for _ in 0..6 {
        click_from_device(&server, "AT", true).await;
    }
    support::wait_until("the clicks to be stored", std::time::Duration::from_secs(20), async || {
        server.db.count("SELECT count(*) FROM clicks").await == ROUNDS as i64 + 6
    })
    .await;
    let (status, _) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::OK);

    // Austrian mobile is taken for what the offers are on mobile elsewhere, not for what they are
    // over all traffic, where they are alike.
    let ids = offer_names(&server).await;
    let row = country_row(&server, "AT").await;
    let segments = row["segments"].as_array().unwrap_or_else(|| panic!("AT: no segments in {row}"));
    assert_eq!((segments[0]["country"].as_str(), segments[0]["device"].as_str()), (Some("AT"), Some("mobile")));
    let of = |name: &str, field: &str| offer_in(&segments[0], &ids, name)[field].as_f64().unwrap();
    assert!(of("phone", "epc_mean") > 1.4 * of("desk", "epc_mean"), "{row}");
    assert!(of("phone", "traffic_share") > of("desk", "traffic_share"), "{row}");
    let (_, overall) = server.admin_json(Method::GET, "/admin/stats?group_by=offer", None).await;
    let epc_overall: Vec<f64> = ["phone", "desk"]
        .iter()
        .map(|name| {
            let mut rows = overall["rows"].as_array().unwrap().iter();
            let row = rows.find(|row| row["offer_id"].as_i64().is_some_and(|id| ids[&id] == *name));
            row.and_then(|row| row["epc"].as_f64()).unwrap_or_else(|| panic!("{name} in {overall}"))
        })
        .collect();
    assert!((epc_overall[0] / epc_overall[1] - 1.0).abs() < 0.35, "over all traffic alike: {overall}");
    server.stop().await;
}
