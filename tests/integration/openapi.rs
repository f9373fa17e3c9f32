//! `/openapi.json` tells the truth: every endpoint the router serves is documented and every
//! documented operation exists, and real answers of the running server (successes and errors) have
//! a documented status, content type and body shape. (`tests/integration/conformance.rs` checks the other way:
//! requests generated from the document.)

use crate::support;

use casino_router::http::openapi_json;
use casino_router::http::routes::Endpoint;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use support::openapi::Spec;
use support::{TestDb, TestServer, click_id_of, test_config};

/// Sends `request` for the operation `method template`, checks the answer against the document and
/// returns its status and body.
async fn exchange(spec: &mut Spec, template: &str, request: RequestBuilder) -> (StatusCode, Vec<u8>) {
    let (client, request) = request.build_split();
    let request = request.unwrap();
    let method = request.method().to_string();
    let response = client.execute(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    if let Err(problem) = spec.check(&method, template, status.as_u16(), &headers, &body) {
        panic!("{problem}\nbody: {}", String::from_utf8_lossy(&body));
    }
    (status, body)
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_endpoints() {
    let db = TestDb::create().await;
    let doc: Value = serde_json::from_str(&openapi_json(&test_config(&db))).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let spec = Spec::new(doc);
    let served = Endpoint::ALL
        .iter()
        .map(|endpoint| {
            let (method, template) = endpoint.operation();
            (method.to_string(), template.to_owned())
        })
        .collect();
    assert_eq!(spec.operations(), served, "documented (left) vs served (right)");
    // Every schema in the document uses only what the checker understands.
    for (name, schema) in spec.doc["components"]["schemas"].as_object().unwrap() {
        let problem = spec.validate(schema, &Value::Null, name).err().unwrap_or_default();
        assert!(!problem.contains("does not know"), "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_document() {
    let server = TestServer::start().await;
    let mut spec = Spec::new(serde_json::from_str(&openapi_json(&test_config(&server.db))).unwrap());
    let s = &server;
    let anonymous = |method: Method, path: &str| s.http.request(method, s.url(path));
    let admin = |method: Method, path: &str| s.admin(method, path);

    // Operations.
    let (_, served) = exchange(&mut spec, "/openapi.json", anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(serde_json::from_slice::<Value>(&served).unwrap(), spec.doc, "served document differs");
    exchange(&mut spec, "/health", anonymous(Method::GET, "/health")).await;
    exchange(&mut spec, "/docs", anonymous(Method::GET, "/docs")).await;
    exchange(&mut spec, "/docs/", anonymous(Method::GET, "/docs/")).await;
    exchange(&mut spec, "/docs/{file}", anonymous(Method::GET, "/docs/swagger-ui.css")).await;
    exchange(&mut spec, "/docs/{file}", anonymous(Method::GET, "/docs/no-such-file.js")).await;
    exchange(&mut spec, "/metrics", admin(Method::GET, "/metrics")).await;
    exchange(&mut spec, "/metrics", anonymous(Method::GET, "/metrics")).await;

    // Offers.
    let new_offer = json!({"name": "Alpha", "casino_url": "https://alpha.example/r?aff=7", "weight": 2.0,
                           "event_aliases": {"first_dep": "ftd"}});
    let (status, body) =
        exchange(&mut spec, "/admin/offers", admin(Method::POST, "/admin/offers").json(&new_offer)).await;
    assert_eq!(status, StatusCode::CREATED);
    let offer: Value = serde_json::from_slice(&body).unwrap();
    let id = offer["id"].as_i64().unwrap();
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    let bad_offer = json!({"name": "Bad", "casino_url": "javascript:alert(1)"});
    exchange(&mut spec, "/admin/offers", admin(Method::POST, "/admin/offers").json(&bad_offer)).await;
    exchange(&mut spec, "/admin/offers", anonymous(Method::POST, "/admin/offers").json(&new_offer)).await;
    let huge = "x".repeat(70 * 1024);
    exchange(&mut spec, "/admin/offers", admin(Method::POST, "/admin/offers").body(huge)).await;
    exchange(&mut spec, "/admin/offers", admin(Method::GET, "/admin/offers?active_only=true")).await;
    let one = format!("/admin/offers/{id}");
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::GET, &one)).await;
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::GET, "/admin/offers/999999")).await;
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::PUT, &one).json(&json!({"weight": 3.0}))).await;
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::PATCH, &one).json(&json!({"name": "Alpha 2"}))).await;
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::PATCH, &one).json(&json!({"weight": -1}))).await;
    exchange(&mut spec, "/admin/offers/{id}", admin(Method::DELETE, &one)).await; // active: 409

    // Traffic.
    let (status, _) = exchange(&mut spec, "/click", anonymous(Method::GET, "/click?source=fb&campaign=c1")).await;
    assert_eq!(status, StatusCode::FOUND);
    exchange(&mut spec, "/click", anonymous(Method::GET, "/click?source=%zz")).await;
    let (status, _) = exchange(&mut spec, "/click", anonymous(Method::HEAD, "/click?source=checker")).await;
    assert_eq!(status, StatusCode::FOUND, "a HEAD is answered like a click");
    exchange(&mut spec, "/click", anonymous(Method::HEAD, "/click?source=%zz")).await;
    // A method a path does not have: 405, with the documented error body.
    for (method, path) in [(Method::POST, "/click"), (Method::DELETE, "/health"), (Method::PUT, "/admin/stats")] {
        let response = admin(method, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let body: Value = response.json().await.unwrap();
        spec.validate(&json!({"$ref": "#/components/schemas/Error"}), &body, path).unwrap();
    }
    let click = |query: &'static str| async move { click_id_of(&s.click_location(query).await) };
    let first = click("?source=a").await;
    let postback = |query: String| anonymous(Method::GET, &format!("/postback?{query}"));
    let (status, _) =
        exchange(&mut spec, "/postback", postback(format!("click_id={first}&event=ftd&payout=120&secret={secret}")))
            .await;
    assert_eq!(status, StatusCode::OK);
    exchange(&mut spec, "/postback", postback(format!("click_id={first}&event=first_dep&payout=120&secret={secret}")))
        .await;
    exchange(&mut spec, "/postback", postback(format!("click_id={first}&event=ftd&secret=wrong-secret"))).await;
    // A recent click id not stored yet: held (202); one from 2020: unknown (404).
    exchange(&mut spec, "/postback", postback(format!("click_id={}&event=ftd&secret={secret}", uuid::Uuid::now_v7())))
        .await;
    let old = uuid::Builder::from_unix_timestamp_millis(1_600_000_000_000, &[7; 10]).into_uuid();
    exchange(&mut spec, "/postback", postback(format!("click_id={old}&event=ftd&secret={secret}"))).await;
    exchange(&mut spec, "/postback", postback("event=ftd".into())).await;
    let second = click("?source=b").await;
    exchange(&mut spec, "/postback", postback(format!("click_id={second}&event=rejected&secret={secret}"))).await;
    let json_body = json!({"click_id": second, "event": "ftd", "payout": 80.5});
    let post = || anonymous(Method::POST, "/postback").header("X-Postback-Secret", &secret);
    exchange(&mut spec, "/postback", post().json(&json_body)).await;
    exchange(&mut spec, "/postback", post().header("content-type", "text/plain").body("hello")).await;
    exchange(&mut spec, "/postback", post().header("content-type", "application/json").body("{not json")).await;

    // Stats, weights, the postback log.
    exchange(&mut spec, "/admin/stats", admin(Method::GET, "/admin/stats?from=2020-01-01T00:00:00Z")).await;
    exchange(&mut spec, "/admin/stats", admin(Method::GET, "/admin/stats?from=yesterday")).await;
    let (status, _) =
        exchange(&mut spec, "/admin/stats", admin(Method::GET, "/admin/stats?group_by=offer,country")).await;
    assert_eq!(status, StatusCode::OK);
    exchange(&mut spec, "/admin/stats", admin(Method::GET, "/admin/stats?group_by=os")).await;
    exchange(&mut spec, "/admin/update-weights", admin(Method::POST, "/admin/update-weights")).await;
    exchange(&mut spec, "/admin/update-weights", anonymous(Method::POST, "/admin/update-weights")).await;
    exchange(&mut spec, "/admin/postbacks", admin(Method::GET, "/admin/postbacks?limit=2")).await;
    exchange(&mut spec, "/admin/postbacks", admin(Method::GET, "/admin/postbacks?limit=0")).await;

    // Deleting: an inactive offer without clicks.
    let spare = json!({"name": "Spare", "casino_url": "https://spare.example/", "active": false});
    let (_, body) = exchange(&mut spec, "/admin/offers", admin(Method::POST, "/admin/offers").json(&spare)).await;
    let spare_id = serde_json::from_slice::<Value>(&body).unwrap()["id"].as_i64().unwrap();
    let (status, _) =
        exchange(&mut spec, "/admin/offers/{id}", admin(Method::DELETE, &format!("/admin/offers/{spare_id}"))).await;
    assert_eq!(status, StatusCode::OK);

    // Every documented operation was seen answering with success.
    for (method, template) in spec.operations() {
        let succeeded = spec.seen.iter().any(|(m, t, status)| *m == method && *t == template && *status < 400);
        assert!(succeeded, "{method} {template} was not exercised with a success");
    }
    // And the errors checked include each kind the document promises most often.
    for status in [400, 401, 403, 404, 409, 413, 415] {
        assert!(spec.seen.iter().any(|(_, _, seen)| *seen == status), "no {status} was checked");
    }
}
