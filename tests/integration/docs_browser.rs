//! `/docs` in a real browser: headless Chromium, driven through chromedriver's WebDriver protocol,
//! loads the Swagger UI from the router (no internet), sees every documented path listed, and runs
//! `GET /health` from the page.
//!
//! Needs Debian's `chromium` and `chromium-driver` (see `support/browser.rs`).

use crate::support;

use casino_router::http::openapi_json;
use serde_json::{Value, json};
use support::browser::{Browser, PATIENCE, processes_using};
use support::{TestServer, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_lists_the_endpoints_and_runs_a_request() {
    if !Browser::available() {
        return;
    }
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    browser.call(reqwest::Method::POST, "/url", Some(json!({"url": server.url("/docs")}))).await;

    // Every documented path is listed (Swagger UI keeps the raw path in data-path).
    let mut listed = Vec::new();
    for element in browser.wait_for(".opblock-summary-path").await {
        listed.push(browser.attribute(&element, "data-path").await);
    }
    let doc: Value = serde_json::from_str(&openapi_json(&support::test_config(&server.db))).unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(listed.contains(path), "{path} not listed; listed: {listed:?}");
    }

    // Open GET /health and execute it ("Try it out" is on by default here).
    let health = browser.wait_for("#operations-operations-health .opblock-summary").await;
    browser.click(&health[0]).await;
    let execute = browser.wait_for("#operations-operations-health button.execute").await;
    browser.click(&execute[0]).await;
    let status =
        browser.wait_for("#operations-operations-health .live-responses-table tr.response .response-col_status").await;
    assert_eq!(browser.text(&status[0]).await.trim(), "200");
    let body = browser.wait_for("#operations-operations-health .live-responses-table .microlight").await;
    let shown = browser.text(&body[0]).await;
    assert!(shown.contains("\"queue_capacity\": 65536"), "the page shows the router's answer: {shown}");

    // Nothing of the browser outlives it.
    let (profile, scratch) = (browser.profile.clone(), browser.scratch.clone());
    assert!(!processes_using(&profile).is_empty(), "Chromium runs with its profile on its command line");
    drop(browser);
    wait_until("Chromium to exit", PATIENCE, async || processes_using(&profile).is_empty()).await;
    assert!(!profile.exists() && !scratch.exists(), "the browser's directories are removed");
}
