//! The dashboard in a real browser (headless Chromium, see `support/browser.rs`): sign-in required
//! and working, every page rendered with data and without a console error (a refusal by the
//! Content-Security-Policy is one), the charts drawn, an offer created and edited through the form
//! with a validation error shown beside its field, the script's copy button and live reload working,
//! cross-site form posts refused, readable on a phone's width, signed out at the end.
//!
//! A screenshot of every page is saved under the test run's output folder,
//! `target/tmp/dashboard-screenshots/` (the README's come from there).

use crate::support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::browser::{Browser, PATIENCE, processes_using};
use support::{ADMIN_TOKEN, TestServer, click_id_of, wait_until};

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// Two offers, clicks from three sources and two countries, FTDs, a registration, a deposit and a
/// refused postback: something on every page.
async fn with_traffic(server: &TestServer) {
    let alpha = server.create_offer("Casino Alpha", "https://alpha.example/", 1.0).await;
    let beta = server.create_offer("Casino Beta", "https://beta.example/", 1.0).await;
    let secrets = [alpha["postback_secret"].as_str().unwrap(), beta["postback_secret"].as_str().unwrap()];
    let mut ids = Vec::new();
    for i in 0..60 {
        let source = ["facebook", "google", "tiktok"][i % 3];
        let country = ["DE", "GB"][i % 2];
        let response = server
            .http
            .get(server.url(&format!("/click?source={source}&campaign=spring")))
            .header("cf-ipcountry", country)
            .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        ids.push(click_id_of(response.headers()["location"].to_str().unwrap()));
    }
    wait_until("the clicks to be stored", PATIENCE, async || {
        server.db.count("SELECT count(*) FROM clicks").await == 60
    })
    .await;
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
        for secret in secrets {
            // One of the two secrets is the click's offer's; the other is refused (403) and logged.
            let event = if i % 2 == 0 { "ftd&payout=120" } else { "reg" };
            server.postback_get(&format!("click_id={id}&event={event}&secret={secret}")).await;
        }
    }
}

/// Opens `path`, waits for its heading, checks the console, and saves a screenshot as `name`.
async fn visit(browser: &Browser, base: &str, path: &str, name: &str) -> String {
    browser.open(&format!("{base}{path}")).await;
    let heading = browser.wait_for("main h1").await;
    let title = browser.text(&heading[0]).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{path}: console errors {errors:?}");
    browser.screenshot(&screenshots().join(format!("{name}.png"))).await;
    title
}

/// A page at another origin, whose script posts a form to `target` at once (as a malicious site
/// would); served until the listener is dropped.
fn attacker_page(target: String) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let body = format!(
                "<!doctype html><form id=f method=post action=\"{target}\">\
                 <input name=active value=false><input name=csrf value=guessed></form>\
                 <script>document.getElementById('f').submit()</script>"
            );
            // One thread per connection: a browser opens connections ahead that may never carry a
            // request, and those must not hold up the next one.
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut request = [0u8; 4096];
                if stream.read(&mut request).unwrap_or(0) == 0 {
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    if !Browser::available() {
        return;
    }
    let server = TestServer::start_with(|config| config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    with_traffic(&server).await;
    let base = format!("http://{}", server.addr);
    let browser = Browser::start().await;

    // Sign-in is required, and works.
    browser.open(&format!("{base}/dashboard/offers")).await;
    assert_eq!(browser.url().await, format!("{base}/dashboard/login"));
    browser.screenshot(&screenshots().join("sign-in.png")).await;
    let token = browser.wait_for("#token").await;
    browser.type_into(&token[0], "wrong-token-0000000000").await;
    browser.click(&browser.wait_for("form button").await[0]).await;
    let error = browser.wait_for("#token-error").await;
    assert_eq!(browser.text(&error[0]).await, "That is not the admin token.");
    // The browser logs the refusal's 401 itself; that one is expected.
    let refusal = browser.console_errors().await;
    assert!(refusal.iter().all(|message| message.contains("401")), "{refusal:?}");
    let token = browser.wait_for("#token").await;
    browser.type_into(&token[0], ADMIN_TOKEN).await;
    browser.click(&browser.wait_for("form button").await[0]).await;
    wait_until("the overview", PATIENCE, async || browser.url().await == format!("{base}/dashboard")).await;

    // Every page, with data, without console errors.
    assert_eq!(visit(&browser, &base, "/dashboard", "overview").await, "Overview");
    assert_eq!(browser.text(&browser.wait_for("[data-total=clicks] dd").await[0]).await, "60");
    // Both charts drew a line per offer through every hour of today.
    let hours =
        browser.execute("return document.querySelectorAll('svg.chart')[0].querySelectorAll('rect.hover').length").await;
    let lines = browser.find_all("svg.chart polyline.line").await;
    assert_eq!(lines.len(), 4, "two offers, two charts");
    for line in &lines {
        let points = browser.attribute(line, "points").await;
        assert_eq!(Value::from(points.split(' ').count()), hours, "{points}");
    }
    // Across the chart, once today has two hours or more to join (in its first hour, a line is one
    // point, which the point count above has checked).
    let drawn = browser.execute("return document.querySelector('svg.chart polyline.line').getTotalLength()").await;
    if hours.as_u64() > Some(1) {
        assert!(drawn.as_f64().unwrap() > 100.0, "the line has length: {drawn}");
    }

    assert_eq!(visit(&browser, &base, "/dashboard/offers", "offers").await, "Offers");
    assert_eq!(browser.find_all("#offers tbody tr[data-offer-id]").await.len(), 2);
    assert_eq!(visit(&browser, &base, "/dashboard/reports?group=country", "reports").await, "Reports");
    let countries: Vec<String> = {
        let mut shown = Vec::new();
        for cell in browser.find_all("#report tbody tr td:first-child").await {
            shown.push(browser.text(&cell).await);
        }
        shown
    };
    assert_eq!(countries.len(), 2, "{countries:?}");
    assert!(countries.contains(&"DE".to_owned()) && countries.contains(&"GB".to_owned()));
    assert_eq!(visit(&browser, &base, "/dashboard/routing", "routing").await, "Routing");
    assert_eq!(browser.find_all("#posteriors tbody tr").await.len(), 2);
    assert_eq!(visit(&browser, &base, "/dashboard/postbacks", "postbacks").await, "Postbacks");
    assert!(!browser.find_all("#postbacks tr[data-outcome=forbidden]").await.is_empty());
    assert!(!browser.find_all("#postbacks tr[data-outcome=accepted]").await.is_empty());
    assert_eq!(visit(&browser, &base, "/dashboard/live", "live-clicks").await, "Live clicks");
    assert_eq!(browser.find_all("#clicks tbody tr[data-bot]").await.len(), 60);
    // The live view reloads itself.
    browser.execute("window.before_reload = true; return null").await;
    wait_until("the live view to reload", PATIENCE, async || {
        browser.execute("return window.before_reload === undefined").await == Value::Bool(true)
    })
    .await;

    // An offer created through the form: a bad URL is named beside its field, then fixed.
    visit(&browser, &base, "/dashboard/offers/new", "new-offer").await;
    browser.type_into(&browser.wait_for("#name").await[0], "Casino Gamma").await;
    browser.type_into(&browser.wait_for("#casino_url").await[0], "ftp://gamma.example/").await;
    browser.type_into(&browser.wait_for("#countries").await[0], "de, at").await;
    browser.click(&browser.wait_for("form.offer-form button[type=submit]").await[0]).await;
    let error = browser.wait_for("#casino_url-error").await;
    assert_eq!(browser.text(&error[0]).await, "casino_url must use http or https");
    assert_eq!(browser.attribute(&browser.wait_for("#casino_url").await[0], "aria-invalid").await, "true");
    browser.screenshot(&screenshots().join("offer-validation.png")).await;
    // The form's page came with a 400, which the browser logs; nothing else.
    let refusal = browser.console_errors().await;
    assert!(refusal.iter().all(|message| message.contains("400")), "{refusal:?}");
    let url_field = browser.wait_for("#casino_url").await;
    browser.clear(&url_field[0]).await;
    browser.type_into(&url_field[0], "https://gamma.example/?c={click_id}").await;
    browser.click(&browser.wait_for("form.offer-form button[type=submit]").await[0]).await;
    wait_until("the new offer's page", PATIENCE, async || browser.url().await.contains("/dashboard/offers/3")).await;
    let (status, gamma) = server.admin_json(Method::GET, "/admin/offers/3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (gamma["name"].as_str(), gamma["countries"].clone()),
        (Some("Casino Gamma"), serde_json::json!(["DE", "AT"]))
    );

    // ... and edited.
    let name = browser.wait_for("#name").await;
    browser.clear(&name[0]).await;
    browser.type_into(&name[0], "Casino Gamma EU").await;
    browser.click(&browser.wait_for("form.offer-form button[type=submit]").await[0]).await;
    let saved = browser.wait_for(".saved").await;
    assert_eq!(browser.text(&saved[0]).await, "Saved.");
    assert_eq!(server.admin_json(Method::GET, "/admin/offers/3", None).await.1["name"], "Casino Gamma EU");
    // The copy button works under the policy (the script runs), and the secret is shown on request.
    browser.click(&browser.wait_for("[data-copy]").await[0]).await;
    wait_until("the copy button to confirm", PATIENCE, async || {
        browser.text(&browser.find_all("[data-copy]").await[0]).await == "Copied"
    })
    .await;
    browser.click(&browser.wait_for("#show-secret").await[0]).await;
    let secret = browser.wait_for("#secret").await;
    assert_eq!(browser.text(&secret[0]).await, gamma["postback_secret"].as_str().unwrap());
    browser.screenshot(&screenshots().join("offer.png")).await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{errors:?}");

    // A form posted from another site (localhost is not 127.0.0.1's site: no cookie is sent) and from
    // another origin of the same site (the cookie is sent; the origin and the token are wrong): both
    // refused, the offer untouched.
    let target = format!("{base}/dashboard/offers/1/active");
    let attacker = attacker_page(target);
    for page in [format!("http://localhost:{}/", attacker.port()), format!("http://127.0.0.1:{}/", attacker.port())] {
        browser.open(&page).await;
        wait_until("the forged post's answer", PATIENCE, async || browser.url().await.starts_with(&base)).await;
        let heading = browser.wait_for("main h1").await;
        assert_eq!(browser.text(&heading[0]).await, "Refused", "from {page}");
        let (_, alpha) = server.admin_json(Method::GET, "/admin/offers/1", None).await;
        assert_eq!(alpha["active"], true, "a post from {page} changed the offer");
    }
    browser.console_errors().await;

    // Readable on a phone: nothing wider than the screen but the tables, which scroll.
    let phone = Browser::start_sized(390, 844).await;
    phone.open(&format!("{base}/dashboard/login")).await;
    phone.type_into(&phone.wait_for("#token").await[0], ADMIN_TOKEN).await;
    phone.click(&phone.wait_for("form button").await[0]).await;
    wait_until("the overview", PATIENCE, async || phone.url().await == format!("{base}/dashboard")).await;
    for (path, name) in [("/dashboard", "phone-overview"), ("/dashboard/offers", "phone-offers")] {
        visit(&phone, &base, path, name).await;
        let overflow = phone.execute("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap() <= 0, "{path} is wider than the phone's screen by {overflow} px");
    }
    drop(phone);

    // Signing out ends it.
    browser.open(&format!("{base}/dashboard")).await;
    browser.click(&browser.wait_for("form.signout button").await[0]).await;
    wait_until("the sign-in form", PATIENCE, async || browser.url().await == format!("{base}/dashboard/login")).await;
    browser.open(&format!("{base}/dashboard/reports")).await;
    assert_eq!(browser.url().await, format!("{base}/dashboard/login"));

    // Nothing of the browser outlives it.
    let profile = browser.profile.clone();
    drop(browser);
    wait_until("Chromium to exit", PATIENCE, async || processes_using(&profile).is_empty()).await;
}
