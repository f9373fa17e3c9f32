//! The admin API and `/health`, against the real server and PostgreSQL.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_require_the_bearer_token() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/admin/offers"),
        (Method::POST, "/admin/offers"),
        (Method::GET, "/admin/offers/1"),
        (Method::PUT, "/admin/offers/1"),
        (Method::DELETE, "/admin/offers/1"),
        (Method::GET, "/admin/stats"),
        (Method::POST, "/admin/update-weights"),
        (Method::GET, "/admin/postbacks"),
    ] {
        for auth in [None, Some("Bearer wrong-token-0123456789"), Some(ADMIN_TOKEN), Some("Basic abc")] {
            let mut request = server.http.request(method.clone(), server.url(path));
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body, json!({"error": "unauthorized"}));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_created_read_listed_updated_and_deleted() {
    let server = TestServer::start().await;
    let body = json!({
        "name": "Casino Delta",
        "casino_url": "https://casino-delta.example/register",
        "weight": 0.5,
        "postback_secret": "your-secure-secret-token",
        "active": true,
        "event_aliases": {"first_dep": "ftd"}
    });
    let (status, created) = server.admin_json(Method::POST, "/admin/offers", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "Casino Delta");
    assert_eq!(created["weight"], 0.5);
    assert_eq!(created["postback_secret"], "your-secure-secret-token");
    assert_eq!(created["event_aliases"], json!({"first_dep": "ftd"}));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, fetched) = server.admin_json(Method::GET, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    // PUT changes only the fields it names.
    let (status, updated) =
        server.admin_json(Method::PUT, &format!("/admin/offers/{id}"), Some(json!({"active": false}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["active"], false);
    assert_eq!(updated["name"], "Casino Delta");
    assert_eq!(updated["weight"], 0.5);
    assert_eq!(updated["postback_secret"], "your-secure-secret-token");

    let second = server.create_offer("Echo", "https://echo.example/", 1.0).await;
    let (_, all) = server.admin_json(Method::GET, "/admin/offers", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, active) = server.admin_json(Method::GET, "/admin/offers?active_only=true", None).await;
    assert_eq!(active.as_array().unwrap().iter().map(|o| o["id"].clone()).collect::<Vec<_>>(), [second["id"].clone()]);

    let (status, deleted) = server.admin_json(Method::DELETE, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted, json!({"deleted": id}));
    let (status, missing) = server.admin_json(Method::GET, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing, json!({"error": "no such offer"}));
    for method in [Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({"active": true}));
        let (status, _) = server.admin_json(method, &format!("/admin/offers/{id}"), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_generated_url_safe() {
    let server = TestServer::start().await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let secret = a["postback_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 43, "32 random bytes, base64url without padding");
    assert!(secret.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_ne!(a["postback_secret"], b["postback_secret"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_offers_are_400s_with_a_reason() {
    let server = TestServer::start().await;
    let cases = [
        json!({"name": "", "casino_url": "https://a.example/"}),
        json!({"name": "A", "casino_url": "not a url"}),
        json!({"name": "A", "casino_url": "ftp://a.example/"}),
        json!({"name": "A", "casino_url": "/relative/path"}),
        json!({"name": "A", "casino_url": "https://{source}.example/"}),
        json!({"name": "A", "casino_url": "https://a.example/", "weight": -1}),
        json!({"name": "A", "casino_url": "https://a.example/", "postback_secret": "short"}),
        json!({"name": "A", "casino_url": "https://a.example/", "event_aliases": {"x": "bogus"}}),
        json!({"name": "A", "casino_url": "https://a.example/", "unknown_field": 1}),
        json!({"casino_url": "https://a.example/"}),
    ];
    for body in cases {
        let (status, error) = server.admin_json(Method::POST, "/admin/offers", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{body} -> {error}");
    }
    let offer = server.create_offer("A", "https://a.example/", 1.0).await;
    let id = offer["id"].as_i64().unwrap();
    for patch in [json!({"weight": "heavy"}), json!({"casino_url": "javascript:alert(1)"}), json!({"name": "  "})] {
        let (status, _) = server.admin_json(Method::PUT, &format!("/admin/offers/{id}"), Some(patch.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{patch}");
    }
    let (_, unchanged) = server.admin_json(Method::GET, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(unchanged, offer, "a refused update changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bodies_are_refused() {
    let server = TestServer::start().await;
    let malformed = server.admin(Method::POST, "/admin/offers").body("{not json").send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("invalid JSON body"));
    // A value that does not fit is refused naming its field.
    let wrong = json!({"name": "A", "casino_url": "https://a.example/", "weight": "heavy"});
    let (status, body) = server.admin_json(Method::POST, "/admin/offers", Some(wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "weight: invalid type: string, expected f64", "the field, not its value");
    let secret = json!({"name": "A", "casino_url": "https://a.example/", "postback_secret": 123456789012_i64});
    let (_, body) = server.admin_json(Method::POST, "/admin/offers", Some(secret)).await;
    assert_eq!(body["error"], "postback_secret: invalid type: integer, expected a string", "never the value");

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    let response = server.admin(Method::POST, "/admin/offers").body(huge).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_clicks_cannot_be_deleted() {
    let server = TestServer::start().await;
    let offer = server.create_offer("A", "https://a.example/", 1.0).await;
    let id = offer["id"].as_i64().unwrap();
    // The click may still be queued when DELETE arrives: it counts all the same.
    server.click_location("").await;
    let (status, body) = server.admin_json(Method::DELETE, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "an active offer is never deleted");
    assert!(body["error"].as_str().unwrap().contains("active=false first"), "{body}");
    server.set_offer(id, json!({"active": false})).await;
    let (status, body) = server.admin_json(Method::DELETE, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("recorded clicks"), "{body}");
    let (status, _) = server.admin_json(Method::GET, &format!("/admin/offers/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_changes_apply_to_the_next_click_without_restart() {
    let server = TestServer::start().await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let (_, by_host) = server.click_many(200, 4).await;
    assert!(by_host.contains_key("a.example") && by_host.contains_key("b.example"));

    // Deactivating A sends every click to B at once.
    server.set_offer(a["id"].as_i64().unwrap(), json!({"active": false})).await;
    let (_, by_host) = server.click_many(200, 4).await;
    assert_eq!(by_host.get("b.example"), Some(&200));

    // A new URL applies at once too.
    server.set_offer(b["id"].as_i64().unwrap(), json!({"casino_url": "https://b2.example/go"})).await;
    assert!(server.click_location("").await.starts_with("https://b2.example/go?click_id="));

    // Weight changes move the traffic: with e = 0.2 and weights 0 and 1, A gets 10% of clicks.
    server.set_offer(a["id"].as_i64().unwrap(), json!({"active": true, "weight": 0.0})).await;
    let (_, by_host) = server.click_many(2000, 8).await;
    let a_share = *by_host.get("a.example").unwrap_or(&0) as f64 / 2000.0;
    assert!((0.06..0.14).contains(&a_share), "A's share {a_share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_database_and_queue() {
    let server = TestServer::start().await;
    // No offer yet: every click would be refused, and health says so rather than "ok".
    let health: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!((&health["status"], &health["active_offers"]), (&json!("no_active_offers"), &json!(0)));
    server.create_offer("A", "https://a.example/", 1.0).await;
    server.click_location("").await;
    let response = server.http.get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "up");
    assert!(health["queue_depth"].is_u64());
    assert_eq!(health["queue_capacity"], 65_536);
    assert_eq!(health["active_offers"], 1);
    assert!(health["clicks_written"].is_u64() && health["clicks_failed"] == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = TestServer::start().await;
    let response = server.http.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"error": "not found"}));
    // A 405 names the methods the path does take (RFC 9110).
    let response = server.http.delete(server.url("/click")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let response = server.http.put(server.url("/postback")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    let response = server.admin(Method::POST, "/admin/offers/1").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, PUT, PATCH, DELETE");
    let (status, _) = server.admin_json(Method::DELETE, "/admin/stats", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_light_load_the_pool_reuses_its_most_recent_connection() {
    // PostgreSQL only: its backends are visible in pg_stat_activity. The pool hands out the
    // connection returned last, so light traffic keeps one connection hot (its prepared statements,
    // its backend's caches) instead of cycling through every connection a burst opened.
    let Some(server) = TestServer::start_postgres(|_| {}).await else { return };
    server.create_offer("A", "https://a.example/", 1.0).await;
    let backends = "SELECT count(DISTINCT pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND application_name = 'casino-router'";
    // A burst opens several connections.
    for _ in 0..4 {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..24 {
            let request = server.admin(Method::GET, "/admin/stats");
            burst.spawn(async move { request.send().await.unwrap().status() });
        }
        while let Some(status) = burst.join_next().await {
            assert_eq!(status.unwrap(), StatusCode::OK);
        }
    }
    let opened = server.db.count(backends).await;
    assert!(opened >= 4, "the burst opened only {opened} connections");

    let since = server.db.rows("SELECT clock_timestamp()::text").await[0][0].clone().unwrap();
    for _ in 0..20 {
        let response = server.admin(Method::GET, "/admin/offers").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let used = server.db.count(&format!("{backends} AND state_change > '{since}'::timestamptz")).await;
    assert!(used <= 2, "20 requests one after the other used {used} of {opened} connections");
}
