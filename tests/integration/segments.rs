//! Learning per segment over real HTTP on the store `TEST_STORE` names: two offers that are equal over
//! all traffic, one converting in Germany and the other in France. After their postbacks, each
//! country is routed to its own best offer, and `group_by=country` shows why.

use crate::support;

use std::collections::HashMap;

use casino_router::config::RoutingStrategy;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of};

/// Sends a click from `country` (by the trusted proxy's header); returns the offer's host and the
/// click id.
async fn click_from(server: &TestServer, country: &str) -> (String, String) {
    let response =
        server.http.get(server.url("/click?source=seo")).header("CF-IPCountry", country).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let host = url::Url::parse(&location).unwrap().host_str().unwrap().trim_end_matches(".example").to_owned();
    (host, click_id_of(&location).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_country_is_routed_to_the_offer_that_converts_there() {
    let server = TestServer::start_with(|config| {
        config.routing_strategy = RoutingStrategy::Thompson;
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut secrets = HashMap::new();
    for name in ["berlin", "paris"] {
        let body = json!({"name": name, "casino_url": format!("https://{name}.example/go"), "weight": 1.0});
        let (status, created) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        secrets.insert(name.to_owned(), created["postback_secret"].as_str().unwrap().to_owned());
    }
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
    let (status, report) = server.admin_json(Method::GET, "/admin/stats?group_by=country", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let row = |country: &str| -> Value {
        report["rows"].as_array().unwrap().iter().find(|row| row["country"] == country).cloned().unwrap()
    };
    let ids: HashMap<i64, String> = server
        .admin_json(Method::GET, "/admin/offers", None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|offer| (offer["id"].as_i64().unwrap(), offer["name"].as_str().unwrap().to_owned()))
        .collect();
    for (country, best) in [("DE", "berlin"), ("FR", "paris")] {
        let row = row(country);
        let segments = row["segments"].as_array().unwrap_or_else(|| panic!("{country}: no segments in {row}"));
        assert_eq!(segments.len(), 1, "{row}");
        assert_eq!((segments[0]["country"].as_str(), segments[0]["device"].as_str()), (Some(country), Some("desktop")));
        let share_of = |name: &str| {
            segments[0]["offers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| ids[&o["offer_id"].as_i64().unwrap()] == name)
                .unwrap()["traffic_share"]
                .as_f64()
                .unwrap()
        };
        assert!(share_of(best) > 0.9, "{country}: {row}");
        let converting = segments[0]["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| ids[&o["offer_id"].as_i64().unwrap()] == best)
            .unwrap();
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
