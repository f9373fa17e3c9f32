//! The dashboard over real HTTP: sign-in and sessions, the protections of every change (CSRF token,
//! origin, the cookie's flags), the secrets it keeps back, and that each page's figures are the
//! store's. (The pages in a real browser: `dashboard_browser.rs`.)

use crate::support;

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, TestServer, click_id_of};

/// Every page of the navigation.
const PAGES: [&str; 6] = [
    "/dashboard",
    "/dashboard/offers",
    "/dashboard/reports",
    "/dashboard/routing",
    "/dashboard/postbacks",
    "/dashboard/live",
];

/// A signed-in browser, as far as HTTP goes: its session cookie and the session's CSRF token.
struct SignedIn<'a> {
    server: &'a TestServer,
    cookie: String,
    csrf: String,
}

impl<'a> SignedIn<'a> {
    async fn new(server: &'a TestServer) -> SignedIn<'a> {
        let response = sign_in(server, ADMIN_TOKEN).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let mut signed_in = SignedIn { server, cookie, csrf: String::new() };
        let page = signed_in.page("/dashboard/offers").await;
        signed_in.csrf = hidden_value(&page, "csrf").expect("every page carries the CSRF token");
        signed_in
    }

    async fn get(&self, path: &str) -> Response {
        self.server.http.get(self.server.url(path)).header("cookie", &self.cookie).send().await.unwrap()
    }

    /// A page's HTML, asserting a 200 with the dashboard's headers.
    async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_strict_headers(&response);
        response.text().await.unwrap()
    }

    /// Posts a form from this origin, with the session's CSRF token first.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, &[("sec-fetch-site", "same-origin")]).await
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        let mut request = self.server.http.post(self.server.url(path)).header("cookie", &self.cookie).form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

async fn sign_in(server: &TestServer, token: &str) -> Response {
    server.http.post(server.url("/dashboard/login")).form(&[("token", token)]).send().await.unwrap()
}

/// The value of the first hidden input named `name`.
fn hidden_value(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[start..].split('"').next()?.to_owned())
}

/// The figure shown in the card `data-total="{key}"`.
fn card(html: &str, key: &str) -> String {
    let start = html.find(&format!("data-total=\"{key}\"")).unwrap_or_else(|| panic!("no card {key}"));
    let dd = &html[start..];
    let value = &dd[dd.find("<dd>").unwrap() + 4..];
    value[..value.find("</dd>").unwrap()].to_owned()
}

fn assert_strict_headers(response: &Response) {
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"]
    {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

/// An offer's JSON as the admin API shows it.
async fn offer(server: &TestServer, id: i64) -> Value {
    server.admin_json(Method::GET, &format!("/admin/offers/{id}"), None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_pages_lead_to_the_sign_in_form_and_changes_are_refused() {
    let server = TestServer::start().await;
    let created = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    for page in PAGES.iter().chain(&["/dashboard/offers/new", "/dashboard/offers/1"]) {
        let response = server.http.get(server.url(page)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(response.headers()[LOCATION], "/dashboard/login", "{page}");
    }
    // A forged or stale cookie is no session.
    let forged = server
        .http
        .get(server.url("/dashboard"))
        .header("cookie", format!("casino_session={}", "A".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    let response = server
        .http
        .post(server.url(&format!("/dashboard/offers/{}/active", created["id"])))
        .form(&[("active", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(offer(&server, created["id"].as_i64().unwrap()).await["active"], true);
    // The stylesheet and the script need no session (the sign-in form uses them).
    let css = server.http.get(server.url("/dashboard/assets/dashboard.css")).send().await.unwrap();
    assert_eq!(
        (css.status(), css.headers()[CONTENT_TYPE].to_str().unwrap()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    let missing = server.http.get(server.url("/dashboard/assets/other.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_takes_the_admin_token_once_and_sets_a_strict_http_only_cookie() {
    let server = TestServer::start().await;
    let form = server.http.get(server.url("/dashboard/login")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert_strict_headers(&form);
    assert!(form.text().await.unwrap().contains("name=\"token\""));

    let wrong = sign_in(&server, "not-the-admin-token-at-all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("That is not the admin token."));

    let right = sign_in(&server, ADMIN_TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/dashboard");
    let cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP from an untrusted peer: {cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN));
    // The database keeps the session id's hash, not the id.
    let id = cookie.split(';').next().unwrap().trim_start_matches("casino_session=").to_owned();
    assert_eq!(server.db.count("SELECT count(*) FROM dashboard_sessions").await, 1);
    assert_eq!(
        server.db.count(&format!("SELECT count(*) FROM dashboard_sessions WHERE id_hash LIKE '%{id}%'")).await,
        0
    );

    let browser = SignedIn::new(&server).await;
    for page in PAGES {
        let html = browser.page(page).await;
        assert!(!html.contains(ADMIN_TOKEN), "{page} shows the admin token");
    }
    // Signed in, the form sends the browser on to the dashboard.
    let again = browser.get("/dashboard/login").await;
    assert_eq!((again.status(), again.headers()[LOCATION].to_str().unwrap()), (StatusCode::SEE_OTHER, "/dashboard"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_only_for_https_through_a_trusted_proxy() {
    let behind_proxy =
        TestServer::start_with(|config| config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let direct = TestServer::start().await;
    for (server, secure) in [(&behind_proxy, true), (&direct, false)] {
        let response = server
            .http
            .post(server.url("/dashboard/login"))
            .header("x-forwarded-proto", "https")
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_on_every_instance() {
    let Some(a) = TestServer::start_postgres(|_| {}).await else { return };
    let mut config = support::test_config(&a.db);
    config.journal_dir = a.db.journal_dir().join("instance-b");
    let b = TestServer::start_on(a.db.shared(), config).await;
    let browser = SignedIn::new(&a).await;
    // The same cookie is a session at the other instance too (a load balancer may send it there).
    let at_b = SignedIn { server: &b, cookie: browser.cookie.clone(), csrf: browser.csrf.clone() };
    at_b.page("/dashboard").await;

    let response = at_b.post("/dashboard/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/dashboard/login");
    assert!(response.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    for instance in [&browser, &at_b] {
        let page = instance.get("/dashboard").await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "the session ended everywhere");
    }
    assert_eq!(a.db.count("SELECT count(*) FROM dashboard_sessions").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_needs_the_session_csrf_token_and_this_origin() {
    let server = TestServer::start().await;
    let id = server.create_offer("Alpha", "https://alpha.example/", 1.0).await["id"].as_i64().unwrap();
    let browser = SignedIn::new(&server).await;
    let path = format!("/dashboard/offers/{id}/active");
    let origin = format!("http://{}", server.addr);
    type Fields<'a> = Vec<(&'a str, &'a str)>;
    let forged: [(&str, Fields, Fields); 5] = [
        ("no token", vec![("active", "false")], vec![]),
        ("a wrong token", vec![("csrf", "x".repeat(43).leak()), ("active", "false")], vec![]),
        ("another site", vec![("csrf", &browser.csrf), ("active", "false")], vec![("sec-fetch-site", "cross-site")]),
        ("a sibling site", vec![("csrf", &browser.csrf), ("active", "false")], vec![("sec-fetch-site", "same-site")]),
        ("another origin", vec![("csrf", &browser.csrf), ("active", "false")], vec![("origin", "http://evil.example")]),
    ];
    for (what, form, headers) in &forged {
        let response = browser.post_raw(&path, form, headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        assert_eq!(offer(&server, id).await["active"], true, "{what} changed the offer");
    }
    let response =
        browser.post_raw(&path, &[("csrf", &browser.csrf), ("active", "false")], &[("origin", &origin)]).await;
    assert_eq!(
        (response.status(), response.headers()[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/dashboard/offers")
    );
    assert_eq!(offer(&server, id).await["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postback_secrets_are_shown_only_on_request() {
    let server = TestServer::start().await;
    let created = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let (id, secret) = (created["id"].as_i64().unwrap(), created["postback_secret"].as_str().unwrap());
    let browser = SignedIn::new(&server).await;
    for page in ["/dashboard/offers".to_owned(), format!("/dashboard/offers/{id}")] {
        assert!(!browser.page(&page).await.contains(secret), "{page} shows the secret");
    }
    let shown = browser.post(&format!("/dashboard/offers/{id}/secret"), &[]).await;
    assert_eq!(shown.status(), StatusCode::OK);
    let html = shown.text().await.unwrap();
    assert!(html.contains(&format!("<code id=\"secret\">{secret}</code>")), "{html}");
    assert!(html.contains(&format!("http://{}/postback?click_id={{click_id}}", server.addr)));
    assert!(html.contains(&format!("secret={secret}")), "the template to copy carries it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_created_and_edited_through_the_form_with_the_apis_validation() {
    let server = TestServer::start().await;
    let browser = SignedIn::new(&server).await;
    let fields = |url: &'static str| {
        vec![
            ("name", "Casino Delta"),
            ("casino_url", url),
            ("weight", ""),
            ("active", "true"),
            ("event_aliases", "first_dep = ftd\nchargeback = rejected"),
            ("countries", "gb, ie"),
            ("devices", "mobile"),
            ("daily_ftd_cap", "20"),
        ]
    };
    let refused = browser.post("/dashboard/offers", &fields("ftp://delta.example/")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("<p class=\"field-error\" id=\"casino_url-error\">casino_url must use http or https</p>"),
        "{html}"
    );
    assert!(html.contains("value=\"Casino Delta\""), "what was typed is kept");
    assert_eq!(server.admin_json(Method::GET, "/admin/offers", None).await.1, json!([]));

    let created = browser.post("/dashboard/offers", &fields("https://delta.example/?c={click_id}")).await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER, "{:?}", created.text().await);
    let location = created.headers()[LOCATION].to_str().unwrap().to_owned();
    let id: i64 = location.strip_prefix("/dashboard/offers/").unwrap().parse().unwrap();
    let stored = offer(&server, id).await;
    assert_eq!(stored["name"], "Casino Delta");
    assert_eq!(stored["countries"], json!(["GB", "IE"]));
    assert_eq!(stored["devices"], json!(["mobile"]));
    assert_eq!(stored["daily_ftd_cap"], 20);
    assert_eq!(stored["event_aliases"], json!({"chargeback": "rejected", "first_dep": "ftd"}));
    let secret = stored["postback_secret"].as_str().unwrap().to_owned();

    // An edit saves every field: a blank rule or cap removes it; a blank secret keeps it.
    let edit = [
        ("name", "Casino Delta 2"),
        ("casino_url", "https://delta.example/v2?c={click_id}"),
        ("weight", "2.5"),
        ("event_aliases", ""),
        ("countries", ""),
        ("blocked_countries", "RU"),
        ("devices", ""),
        ("daily_click_cap", "1000"),
        ("daily_ftd_cap", ""),
        ("postback_secret", ""),
    ];
    let saved = browser.post(&location, &edit).await;
    assert_eq!(
        (saved.status(), saved.headers()[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, &*format!("{location}?saved=1"))
    );
    let stored = offer(&server, id).await;
    assert_eq!(stored["name"], "Casino Delta 2");
    assert_eq!(stored["weight"], 2.5);
    assert_eq!(stored["active"], false, "the box was not ticked");
    assert_eq!(stored["countries"], Value::Null);
    assert_eq!(stored["blocked_countries"], json!(["RU"]));
    assert_eq!((stored["daily_click_cap"].clone(), stored["daily_ftd_cap"].clone()), (json!(1000), Value::Null));
    assert_eq!(stored["event_aliases"], json!({}));
    assert_eq!(stored["postback_secret"], secret.as_str());
    assert!(browser.page(&format!("{location}?saved=1")).await.contains("Saved."));

    // Values of the wrong kind are named too, and nothing changes.
    let bad = browser
        .post(&location, &[("name", "X"), ("casino_url", "https://x.example/"), ("daily_click_cap", "lots")])
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("id=\"daily_click_cap-error\">daily_click_cap must be a whole number"));
    assert_eq!(offer(&server, id).await["name"], "Casino Delta 2");
}

/// Sends `n` clicks with `query` and returns their ids.
async fn clicks(server: &TestServer, query: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(click_id_of(&server.click_location(query).await).to_string());
    }
    ids
}

/// Waits until the writer has stored every click sent.
async fn all_stored(server: &TestServer, n: i64) {
    support::wait_until("the clicks to be stored", std::time::Duration::from_secs(10), async || {
        server.db.count("SELECT count(*) FROM clicks").await == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_adds_up_the_periods_clicks_bots_and_events() {
    let server = TestServer::start().await;
    let created = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = created["postback_secret"].as_str().unwrap().to_owned();
    let ids = clicks(&server, "?source=fb", 12).await;
    let bot = server.http.head(server.url("/click?source=fb")).send().await.unwrap();
    assert_eq!(bot.status(), StatusCode::FOUND);
    all_stored(&server, 13).await;
    for (click, event, payout, tid) in
        [(0, "ftd", "150", ""), (1, "ftd", "50.5", ""), (2, "reg", "", ""), (0, "deposit", "20", "t1")]
    {
        let query = format!("click_id={}&event={event}&payout={payout}&tid={tid}&secret={secret}", ids[click]);
        let (status, body) = server.postback_get(&query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let browser = SignedIn::new(&server).await;
    let html = browser.page("/dashboard").await;
    let expected = [
        ("clicks", "12"),
        ("bots", "1"),
        ("registrations", "1"),
        ("ftds", "2"),
        ("cr", "16.67%"),
        ("revenue", "220.50"),
        ("epc", "18.38"),
    ];
    for (key, value) in expected {
        assert_eq!(card(&html, key), value, "{key}");
    }
    assert!(html.contains("data-name=\"Alpha\""), "a line per offer");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
    // Yesterday saw none of it.
    let yesterday = browser.page("/dashboard?period=yesterday").await;
    assert_eq!(card(&yesterday, "clicks"), "0");
    assert_eq!(card(&yesterday, "revenue"), "0.00");
    // A bad period is named.
    let bad = browser.get("/dashboard?period=custom&from=2026-13-01&to=2026-12-01").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("from must be a date such as 2026-12-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_group_sort_and_download_as_csv() {
    let server = TestServer::start().await;
    let created = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = created["postback_secret"].as_str().unwrap().to_owned();
    let fb = clicks(&server, "?source=fb", 3).await;
    clicks(&server, "?source=%3DHYPERLINK(1)", 1).await;
    clicks(&server, "?source=tiktok", 2).await;
    all_stored(&server, 6).await;
    let (status, _) = server.postback_get(&format!("click_id={}&event=ftd&payout=90&secret={secret}", fb[0])).await;
    assert_eq!(status, StatusCode::OK);
    let browser = SignedIn::new(&server).await;

    let html = browser.page("/dashboard/reports?group=source&sort=clicks&dir=asc").await;
    let order: Vec<usize> =
        ["=HYPERLINK(1)", "tiktok", "fb"].iter().map(|name| html.find(&format!("<td>{name}</td>")).unwrap()).collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "fewest clicks first: {order:?}");

    let csv = browser.get("/dashboard/reports?group=source&sort=revenue&dir=desc&format=csv").await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(csv.headers()[CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment; filename=\"report-source-"));
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "source,clicks,bots,ftds,cr,revenue,epc");
    assert_eq!(lines[1], "\"fb\",3,0,1,0.333333,90.00,30.0000");
    assert!(lines.contains(&"\"'=HYPERLINK(1)\",1,0,0,0.000000,0.00,0.0000"), "no formula: {body}");
    assert_eq!(lines.len(), 4);

    let bad = browser.get("/dashboard/reports?group=planet").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postback_log_is_filtered_by_offer_and_outcome_and_paged() {
    let server = TestServer::start().await;
    let alpha = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = alpha["postback_secret"].as_str().unwrap().to_owned();
    let ids = clicks(&server, "", 60).await;
    all_stored(&server, 60).await;
    for id in &ids {
        server.postback_get(&format!("click_id={id}&event=reg&secret={secret}")).await;
    }
    server.postback_get(&format!("click_id={}&event=reg&secret=wrong-secret-1234", ids[0])).await;
    let browser = SignedIn::new(&server).await;
    let first = browser.page("/dashboard/postbacks").await;
    assert_eq!(first.matches("<tr data-outcome=").count(), 50, "a page");
    let next = first.split("id=\"older\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let second = browser.page(&next).await;
    assert_eq!(second.matches("<tr data-outcome=").count(), 11);
    assert!(!second.contains("id=\"older\""));
    let forbidden = browser.page("/dashboard/postbacks?outcome=forbidden").await;
    assert_eq!(forbidden.matches("<tr data-outcome=\"forbidden\"").count(), 1);
    assert_eq!(forbidden.matches("<tr data-outcome=").count(), 1);
    assert!(forbidden.contains("invalid postback secret"), "the reason is shown");
    let other = browser.page("/dashboard/postbacks?offer=999").await;
    assert_eq!(other.matches("<tr data-outcome=").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_lists_the_latest_clicks_newest_first() {
    let server = TestServer::start_with(|config| config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    clicks(&server, "?source=older", 1).await;
    let response = server
        .http
        .get(server.url("/click?source=newest&campaign=spring"))
        .header("cf-ipcountry", "DE")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    all_stored(&server, 2).await;
    let browser = SignedIn::new(&server).await;
    let html = browser.page("/dashboard/live").await;
    assert!(html.contains("data-refresh=\"5\""));
    let newest = html.find("<td>newest</td>").unwrap();
    assert!(newest < html.find("<td>older</td>").unwrap());
    let row = &html[html[..newest].rfind("<tr").unwrap()..newest];
    assert!(row.contains("<td>Alpha</td>") && row.contains("<td>DE</td>"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_page_shows_each_offers_recorded_share_and_posterior() {
    let server = TestServer::start().await;
    server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    server.create_offer("Beta", "https://beta.example/", 1.0).await;
    let browser = SignedIn::new(&server).await;
    let html = browser.page("/dashboard/routing").await;
    assert!(html.contains("data-name=\"Alpha\"") && html.contains("data-name=\"Beta\""), "{html}");
    // Two offers of equal weight: half the traffic each, recorded for the current slot.
    assert_eq!(server.db.count("SELECT count(*) FROM routing_history WHERE abs(traffic_share - 0.5) < 1e-9").await, 2);
    let posteriors = &html[html.find("id=\"posteriors\"").unwrap()..];
    for name in ["Alpha", "Beta"] {
        assert!(posteriors.contains(&format!("<td>{name}</td><td class=\"num\">50.0%</td>")), "{posteriors}");
    }
}
