//! `/docs` in a real browser: headless Chromium, driven through chromedriver's WebDriver protocol,
//! loads the Swagger UI from the router (no internet), sees every documented path listed, and runs
//! `GET /health` from the page.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the test
//! says plainly that it was skipped, except under `CI=true`, where it fails.
//!
//! Chromium outlives a killed chromedriver: the browser and its helpers would keep running after the
//! suite. So chromedriver runs in a process group of its own, which Chromium's processes inherit, and
//! the `Browser` guard quits the session and then kills the whole group when it is dropped, also when
//! the test panics.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use casino_router::http::openapi_json;
use serde_json::{Value, json};
use support::{TestServer, wait_until};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key of an element reference in W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the browser may take to start, to show an element, or to go away.
const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process, the Chromium it starts, and one browser session; all end on drop.
struct Browser {
    /// chromedriver, leader of a process group that Chromium's processes join.
    driver: Child,
    driver_addr: SocketAddr,
    base: String,
    http: reqwest::Client,
    session: String,
    /// Chromium's profile directory, unique to this browser: removed on drop, and named on the
    /// command line of the browser's processes, which is how the test finds them.
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let driver_addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", driver_addr.port()))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://{driver_addr}");
        let http = reqwest::Client::new();
        let profile = std::env::temp_dir().join(format!("casino-chromium-{}", uuid::Uuid::now_v7().simple()));
        // The guard exists from here on: a failure below still ends chromedriver.
        let mut browser = Browser { driver, driver_addr, base, http, session: String::new(), profile };
        let status = format!("{}/status", browser.base);
        wait_until("chromedriver to answer", PATIENCE, async || browser.http.get(&status).send().await.is_ok()).await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", browser.profile.display()),
            ]}
        }}});
        let created = browser.call(reqwest::Method::POST, "/session", Some(capabilities)).await;
        browser.session = created["sessionId"].as_str().expect("session id").to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, failing on a WebDriver error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        let value = answer["value"].clone();
        assert!(value.get("error").is_none(), "WebDriver {path}: {value}");
        value
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found.as_array().unwrap().iter().map(|element| element[ELEMENT].as_str().unwrap().to_owned()).collect()
    }

    /// Waits for at least one element matching `css`.
    async fn wait_for(&self, css: &str) -> Vec<String> {
        let mut found = Vec::new();
        wait_until(&format!("an element matching {css:?}"), PATIENCE, async || {
            found = self.find_all(css).await;
            !found.is_empty()
        })
        .await;
        found
    }

    async fn attribute(&self, element: &str, name: &str) -> String {
        let value = self.call(reqwest::Method::GET, &format!("/element/{element}/attribute/{name}"), None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    async fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None).await.as_str().unwrap().to_owned()
    }

    async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }
}

impl Drop for Browser {
    /// Quits the session (chromedriver closes Chromium), then kills the process group for whatever
    /// is left. Plain blocking I/O: this also runs while a panic unwinds out of the runtime.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = quit_session(self.driver_addr, &self.session);
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE /session/{id}` over a plain socket, waiting for chromedriver's answer (it answers once
/// the browser is closed).
fn quit_session(driver: SocketAddr, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&driver, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {driver}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    stream.read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Processes whose command line names `profile`: the Chromium a browser started.
fn processes_using(profile: &Path) -> Vec<String> {
    let needle = profile.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_lists_the_endpoints_and_runs_a_request() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        support::skip(&format!("needs {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium and chromium-driver)"));
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
    let profile = browser.profile.clone();
    assert!(!processes_using(&profile).is_empty(), "Chromium runs with its profile on its command line");
    drop(browser);
    wait_until("Chromium to exit", PATIENCE, async || processes_using(&profile).is_empty()).await;
}
