//! Targeting over real HTTP on the store `TEST_STORE` names: visitors of several countries and
//! devices (by a trusted proxy's country header, and by the shipped IP database), offers with rules,
//! the fallback URL, daily caps, bots and link previews, and the grouped stats.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use casino_router::config::BotAction;
use casino_router::routing::RedirectTemplate;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of, wait_until};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                      Version/17.5 Mobile/15E148 Safari/604.1";
const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                    Version/12.1 Mobile/15E148 Safari/604.1";
const WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/126.0.0.0 Safari/537.36";
const TELEGRAM: &str = "TelegramBot (like TwitterBot)";
const FALLBACK: &str = "https://fallback.example/lander?cid={click_id}";

/// A router behind a trusted proxy (the test client's own address), with a fallback URL.
async fn behind_proxy(bot_action: BotAction) -> TestServer {
    TestServer::start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        config.fallback = Some(RedirectTemplate::parse(FALLBACK).unwrap());
        config.bot_action = bot_action;
    })
    .await
}

/// Creates an offer with `rules` merged into its body; returns its id.
async fn offer(server: &TestServer, name: &str, rules: Value) -> i64 {
    let mut body = json!({"name": name, "casino_url": format!("https://{name}.example/go"), "weight": 1.0});
    body.as_object_mut().unwrap().extend(rules.as_object().unwrap().clone());
    let (status, created) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_i64().unwrap()
}

/// One visitor's request.
#[derive(Debug, Clone, Copy, Default)]
struct Visit<'a> {
    country: Option<&'a str>,
    forwarded_for: Option<&'a str>,
    agent: Option<&'a str>,
    source: Option<&'a str>,
}

/// Sends a click; returns its status and Location (if any).
async fn visit(server: &TestServer, visit: Visit<'_>) -> (StatusCode, Option<String>) {
    let query = visit.source.map_or(String::new(), |source| format!("?source={source}"));
    let mut request = server.http.get(server.url(&format!("/click{query}")));
    if let Some(country) = visit.country {
        request = request.header("CF-IPCountry", country);
    }
    if let Some(address) = visit.forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    if let Some(agent) = visit.agent {
        request = request.header("User-Agent", agent);
    }
    let response = request.send().await.unwrap();
    let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
    (response.status(), location)
}

/// The host of a Location (the offer's name, or `fallback`).
fn host(location: &str) -> String {
    let host = url::Url::parse(location).unwrap().host_str().unwrap().to_owned();
    host.trim_end_matches(".example").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_visitor_goes_only_to_offers_whose_rules_accept_them() {
    let server = behind_proxy(BotAction::Route).await;
    // The rules, and who each accepts, as the test states them independently.
    offer(&server, "uk-mobile", json!({"countries": ["GB"], "devices": ["mobile", "tablet"]})).await;
    offer(&server, "dach", json!({"countries": ["DE", "AT", "CH"], "blocked_countries": ["CH"]})).await;
    offer(&server, "fb-anywhere", json!({"sources": ["fb_*"], "blocked_countries": ["GB"]})).await;
    offer(&server, "unknown-only", json!({"countries": ["XX"], "sources": ["google"]})).await;
    let accepts = |name: &str, country: &str, device: &str, source: Option<&str>| match name {
        "uk-mobile" => country == "GB" && device != "desktop",
        "dach" => country == "DE" || country == "AT",
        "fb-anywhere" => country != "GB" && source.is_some_and(|s| s.starts_with("fb_")),
        "unknown-only" => country == "XX" && source == Some("google"),
        _ => name == "fallback",
    };
    let mut seen: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for country in ["GB", "DE", "AT", "CH", "BR", "XX"] {
        for (device, agent) in [("mobile", IPHONE), ("tablet", IPAD), ("desktop", WINDOWS)] {
            for source in [None, Some("fb_spring"), Some("google"), Some("fb")] {
                let eligible: Vec<&str> = ["uk-mobile", "dach", "fb-anywhere", "unknown-only"]
                    .into_iter()
                    .filter(|name| accepts(name, country, device, source))
                    .collect();
                for _ in 0..6 {
                    let (status, location) = visit(
                        &server,
                        Visit { country: Some(country), agent: Some(agent), source, ..Visit::default() },
                    )
                    .await;
                    assert_eq!(status, StatusCode::FOUND);
                    let target = host(location.as_deref().unwrap());
                    let expected = if eligible.is_empty() { vec!["fallback"] } else { eligible.clone() };
                    assert!(
                        expected.contains(&target.as_str()),
                        "{country}/{device}/{source:?} went to {target}, expected one of {expected:?}"
                    );
                    let key = (country.to_owned(), device.to_owned(), format!("{source:?}"));
                    seen.entry(key).or_default().push(target);
                }
            }
        }
    }
    // Where several offers accept a visitor, the traffic is shared (not all to the first): over
    // the 36 DACH visitors from an fb_ source (six per country and device), both offers are seen.
    // Six draws of one visitor kind alone would all land on one offer once in 32 runs.
    let shared: Vec<&String> = seen
        .iter()
        .filter(|((country, _, source), _)| ["DE", "AT"].contains(&country.as_str()) && source.contains("fb_"))
        .flat_map(|(_, targets)| targets)
        .collect();
    assert_eq!(shared.len(), 36);
    assert!(shared.iter().any(|t| *t == "dach") && shared.iter().any(|t| *t == "fb-anywhere"), "{shared:?}");

    // Each click is stored with what the router knew of its visitor.
    let db = server.stop().await;
    let stored = db
        .rows(
            "SELECT country, device, CAST(is_fallback AS INTEGER), CAST(is_bot AS INTEGER), count(*) FROM clicks \
             WHERE country = 'GB' GROUP BY 1, 2, 3, 4 ORDER BY 2",
        )
        .await;
    let stored: Vec<Vec<String>> =
        stored.into_iter().map(|row| row.into_iter().map(Option::unwrap).collect()).collect();
    // GB: mobile and tablet all go to uk-mobile; desktop has no offer (fb-anywhere blocks GB).
    assert_eq!(
        stored,
        [["GB", "desktop", "1", "0", "24"], ["GB", "mobile", "0", "0", "24"], ["GB", "tablet", "0", "0", "24"]],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_country_header_from_an_untrusted_peer_is_ignored() {
    // No trusted proxy: the header is the visitor's own claim. The database says 127.0.0.1 is
    // nowhere (XX), so a DE-only offer does not get the click.
    let server = TestServer::start().await;
    offer(&server, "de-only", json!({"countries": ["DE"]})).await;
    let (status, _) = visit(&server, Visit { country: Some("DE"), ..Visit::default() }).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no offer for XX and no fallback URL");
    let body: Value = server.click("").await.json().await.unwrap();
    assert_eq!(body["error"], "no offer accepts this visitor, and no FALLBACK_URL is set");
    offer(&server, "anywhere", json!({})).await;
    let (_, location) = visit(&server, Visit { country: Some("DE"), ..Visit::default() }).await;
    assert_eq!(host(&location.unwrap()), "anywhere");
    let db = server.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM clicks WHERE country = 'XX'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_country_header_the_ip_database_places_the_visitor() {
    let server = behind_proxy(BotAction::Route).await;
    // Real addresses of national networks, as the shipped database (DB-IP Lite) places them.
    let addresses = [
        ("194.25.2.129", "DE"),
        ("212.58.244.20", "GB"),
        ("193.51.224.1", "FR"),
        ("200.147.67.142", "BR"),
        ("133.11.0.1", "JP"),
        ("2003::1", "DE"),
    ];
    for country in ["DE", "GB", "FR", "BR", "JP"] {
        offer(&server, &country.to_lowercase(), json!({"countries": [country]})).await;
    }
    for (address, country) in addresses {
        for _ in 0..3 {
            let (status, location) = visit(&server, Visit { forwarded_for: Some(address), ..Visit::default() }).await;
            assert_eq!(status, StatusCode::FOUND);
            assert_eq!(host(&location.unwrap()), country.to_lowercase(), "{address}");
        }
    }
    // A trusted proxy's header wins over the database; its XX (unknown) does not.
    let header_wins = Visit { country: Some("JP"), forwarded_for: Some("194.25.2.129"), ..Visit::default() };
    assert_eq!(host(&visit(&server, header_wins).await.1.unwrap()), "jp");
    let unknown_header = Visit { country: Some("XX"), forwarded_for: Some("212.58.244.20"), ..Visit::default() };
    assert_eq!(host(&visit(&server, unknown_header).await.1.unwrap()), "gb");
    // A private address is nowhere: the fallback.
    let private = Visit { forwarded_for: Some("10.1.2.3"), ..Visit::default() };
    assert_eq!(host(&visit(&server, private).await.1.unwrap()), "fallback");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_and_previews_are_flagged_kept_apart_in_stats_and_sent_where_bot_action_says() {
    let server = behind_proxy(BotAction::Fallback).await;
    let id = offer(&server, "casino", json!({})).await;
    let person = Visit { agent: Some(WINDOWS), ..Visit::default() };
    for _ in 0..3 {
        assert_eq!(host(&visit(&server, person).await.1.unwrap()), "casino");
    }
    let (_, preview) = visit(&server, Visit { agent: Some(TELEGRAM), ..Visit::default() }).await;
    assert_eq!(host(&preview.unwrap()), "fallback", "BOT_ACTION=fallback");
    let head = server.http.head(server.url("/click")).header("User-Agent", WINDOWS).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::FOUND, "a HEAD gets the redirect, so the link works for the checker");
    assert_eq!(host(head.headers()[LOCATION].to_str().unwrap()), "fallback");
    // A prefetch is refused and not recorded: the person's real navigation will be the click.
    for (name, value) in [("Sec-Purpose", "prefetch"), ("Purpose", "prefetch"), ("Sec-Purpose", "prefetch;prerender")] {
        let prefetch = server.http.get(server.url("/click")).header("User-Agent", IPHONE).header(name, value);
        let response = prefetch.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{name}: {value}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(response.headers().get(LOCATION).is_none());
    }
    // A crafted agent that repeats a bot's word costs a bounded check, and is a bot.
    let crafted = "ContextualBot ".repeat(2_000);
    assert_eq!(host(&visit(&server, Visit { agent: Some(&crafted), ..Visit::default() }).await.1.unwrap()), "fallback");

    wait_until("the clicks to be stored", Duration::from_secs(5), async || {
        server.db.count("SELECT count(*) FROM clicks").await == 6
    })
    .await;
    let (status, report) = server.admin_json(Method::GET, "/admin/stats?group_by=offer", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["group_by"], json!(["offer"]));
    let rows = report["rows"].as_array().unwrap();
    let row = |fallback: bool| rows.iter().find(|row| row["fallback"] == fallback).unwrap().clone();
    assert_eq!(
        (row(false)["offer_id"].as_i64(), row(false)["clicks"].as_u64(), row(false)["bots"].as_u64()),
        (Some(id), Some(3), Some(0))
    );
    assert_eq!(
        (row(true)["offer_id"].clone(), row(true)["clicks"].as_u64(), row(true)["bots"].as_u64()),
        (Value::Null, Some(0), Some(3))
    );
    let (_, plain) = server.admin_json(Method::GET, "/admin/stats", None).await;
    assert_eq!(plain[0]["total_clicks"], 3, "bots are no clicks of people");
    assert_eq!(
        server.db.count("SELECT count(*) FROM clicks WHERE is_bot").await,
        3,
        "the preview, the HEAD, the crafted agent"
    );
    let metrics = server.admin(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for line in ["casino_router_bot_clicks_total 3", "casino_router_fallback_clicks_total 3"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_leaves_rotation_at_its_daily_caps_and_an_ftd_past_the_cap_is_still_recorded() {
    let server = behind_proxy(BotAction::Route).await;
    let clicks_capped = offer(&server, "five-clicks", json!({"daily_click_cap": 5, "weight": 1000.0})).await;
    let ftd_capped = offer(&server, "one-ftd", json!({"daily_ftd_cap": 1, "countries": ["BR"]})).await;
    offer(&server, "open", json!({"weight": 0.001})).await;
    let de = Visit { country: Some("DE"), ..Visit::default() };
    let mut hosts = Vec::new();
    for _ in 0..40 {
        hosts.push(host(&visit(&server, de).await.1.unwrap()));
    }
    assert_eq!(hosts.iter().filter(|h| *h == "five-clicks").count(), 5, "{hosts:?}");
    assert!(hosts[30..].iter().all(|h| h == "open"), "{hosts:?}");
    let (_, shown) = server.admin_json(Method::GET, &format!("/admin/offers/{clicks_capped}"), None).await;
    assert_eq!((shown["daily_click_cap"].as_u64(), shown["clicks_today"].as_u64()), (Some(5), Some(5)));

    // Two BR clicks reach the FTD-capped offer (it takes all BR traffic but "open"'s sliver).
    let br = Visit { country: Some("BR"), ..Visit::default() };
    let mut ftd_clicks = Vec::new();
    while ftd_clicks.len() < 2 {
        let location = visit(&server, br).await.1.unwrap();
        if host(&location) == "one-ftd" {
            ftd_clicks.push(click_id_of(&location));
        }
    }
    let secret =
        server.admin_json(Method::GET, &format!("/admin/offers/{ftd_capped}"), None).await.1["postback_secret"]
            .as_str()
            .unwrap()
            .to_owned();
    for click_id in &ftd_clicks {
        let body = json!({"click_id": click_id, "event": "ftd", "payout": 100, "secret": secret});
        let (status, answer) = server.postback_json(&body).await;
        assert_eq!(status, StatusCode::OK, "the second FTD passes the cap and is still recorded: {answer}");
    }
    assert_eq!(server.db.count("SELECT count(*) FROM ftd_events").await, 2);
    for _ in 0..30 {
        assert_eq!(host(&visit(&server, br).await.1.unwrap()), "open", "the FTD cap is reached");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_are_refused_naming_the_field_and_rules_change_one_by_one() {
    let server = TestServer::start().await;
    for (rules, field) in [
        (json!({"countries": []}), "countries"),
        (json!({"countries": ["UK"]}), "countries"),
        (json!({"blocked_countries": ["de"]}), "blocked_countries"),
        (json!({"devices": ["phone"]}), "devices"),
        (json!({"sources": ["a*b"]}), "sources"),
        (json!({"campaigns": [""]}), "campaigns"),
        (json!({"daily_click_cap": 0}), "daily_click_cap"),
        (json!({"daily_ftd_cap": -1}), "daily_ftd_cap"),
    ] {
        let mut body = json!({"name": "x", "casino_url": "https://x.example/"});
        body.as_object_mut().unwrap().extend(rules.as_object().unwrap().clone());
        let (status, error) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rules}");
        assert!(error["error"].as_str().unwrap().contains(field), "{rules}: {error}");
    }
    let id = offer(&server, "ruled", json!({"countries": ["DE"], "sources": ["fb"], "daily_click_cap": 9})).await;
    let changed = server.set_offer(id, json!({"sources": null, "devices": ["tablet"], "daily_click_cap": null})).await;
    assert_eq!(changed["countries"], json!(["DE"]), "absent: unchanged");
    assert_eq!(changed["sources"], Value::Null, "null: removed");
    assert_eq!(changed["devices"], json!(["tablet"]));
    assert_eq!((changed["daily_click_cap"].clone(), changed["clicks_today"].clone()), (Value::Null, Value::Null));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_stats_answer_every_grouping_and_refuse_others() {
    let server = behind_proxy(BotAction::Route).await;
    let id = offer(&server, "casino", json!({})).await;
    for (country, agent) in [("DE", IPHONE), ("DE", WINDOWS), ("BR", IPHONE)] {
        visit(&server, Visit { country: Some(country), agent: Some(agent), source: Some("fb"), ..Visit::default() })
            .await;
    }
    wait_until("the clicks to be stored", Duration::from_secs(5), async || {
        server.db.count("SELECT count(*) FROM clicks").await == 3
    })
    .await;
    let (status, report) = server.admin_json(Method::GET, "/admin/stats?group_by=offer,country", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let rows: Vec<(i64, String, u64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["offer_id"].as_i64().unwrap(),
                row["country"].as_str().unwrap().to_owned(),
                row["clicks"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(id, "DE".to_owned(), 2), (id, "BR".to_owned(), 1)], "most clicks first");
    let (_, by_device) = server.admin_json(Method::GET, "/admin/stats?group_by=device", None).await;
    let devices: Vec<&str> =
        by_device["rows"].as_array().unwrap().iter().map(|r| r["device"].as_str().unwrap()).collect();
    assert_eq!(devices, ["mobile", "desktop"]);
    assert!(by_device["rows"][0].get("offer_id").is_none(), "not grouped by offer");
    for bad in ["offer,offer", "country,device", "os", ""] {
        let (status, error) = server.admin_json(Method::GET, &format!("/admin/stats?group_by={bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(error["error"].as_str().unwrap().starts_with("group_by"), "{error}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_cap_reached_across_two_instances_stops_both_within_the_refresh() {
    // PostgreSQL whatever the pass: the embedded store is one instance.
    let adjust = |config: &mut casino_router::config::Config| {
        config.fallback = Some(RedirectTemplate::parse(FALLBACK).unwrap());
    };
    let Some(a) = TestServer::start_postgres(adjust).await else { return };
    let mut config = support::test_config(&a.db);
    adjust(&mut config);
    config.journal_dir = a.db.journal_dir().join("instance-b");
    let b = TestServer::start_on(a.db.shared(), config).await;
    let capped = offer(&a, "capped", json!({"daily_click_cap": 10})).await;
    let today = async |server: &TestServer| {
        let (_, shown) = server.admin_json(Method::GET, &format!("/admin/offers/{capped}"), None).await;
        shown["clicks_today"].as_u64()
    };
    // B learns of the offer by its version poll (its table routes to it); then A takes 6 of the
    // day's 10 clicks.
    wait_until("B to route to the new offer", Duration::from_secs(5), async || {
        let (_, stats) = b.admin_json(Method::GET, "/admin/stats", None).await;
        stats.as_array().unwrap().iter().any(|row| row["id"] == capped && row["traffic_share"] == 1.0)
    })
    .await;
    for _ in 0..6 {
        assert_eq!(host(&visit(&a, Visit::default()).await.1.unwrap()), "capped");
    }
    // Within its refresh, B counts A's stored clicks, and has 4 left to give.
    wait_until("B to count A's clicks", Duration::from_secs(5), async || today(&b).await == Some(6)).await;
    let mut from_b = Vec::new();
    for _ in 0..8 {
        from_b.push(host(&visit(&b, Visit::default()).await.1.unwrap()));
    }
    assert_eq!(from_b.iter().filter(|h| *h == "capped").count(), 4, "{from_b:?}");
    assert!(from_b[4..].iter().all(|h| h == "fallback"), "{from_b:?}");
    // And A, within its refresh, sees the cap reached by B.
    wait_until("A to count B's clicks", Duration::from_secs(5), async || today(&a).await == Some(10)).await;
    assert_eq!(host(&visit(&a, Visit::default()).await.1.unwrap()), "fallback");
    b.stop().await;
    let db = a.stop().await;
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM clicks WHERE offer_id = {capped}")).await,
        10,
        "exactly the cap"
    );
}
