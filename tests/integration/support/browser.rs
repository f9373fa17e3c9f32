//! A real browser for the tests: headless Chromium, driven through chromedriver's WebDriver protocol.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); [`Browser::available`]
//! tells, and a test without them says plainly that it was skipped (under `CI=true` it fails).
//!
//! Chromium outlives a killed chromedriver: the browser and its helpers would keep running after the
//! suite. So chromedriver runs in a process group of its own, which Chromium's processes inherit, and
//! the `Browser` guard quits the session and then kills the whole group when it is dropped, also when
//! the test panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::wait_until;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The key of an element reference in W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the browser may take to start, to show an element, or to go away.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process, the Chromium it starts, and one browser session; all end on drop.
pub struct Browser {
    /// chromedriver, leader of a process group that Chromium's processes join.
    driver: Child,
    driver_addr: SocketAddr,
    base: String,
    http: reqwest::Client,
    session: String,
    /// Chromium's profile directory, unique to this browser: removed on drop, and named on the
    /// command line of the browser's processes, which is how the test finds them.
    pub profile: PathBuf,
    /// The browser's `TMPDIR`, unique to it and removed on drop: Chromium leaves a directory of its
    /// own in the temporary directory at every run.
    pub scratch: PathBuf,
}

impl Browser {
    /// Whether Chromium and chromedriver are installed; if not, the test is skipped (see
    /// [`super::skip`]) and this is false.
    pub fn available() -> bool {
        if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
            return true;
        }
        super::skip(&format!("needs {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium and chromium-driver)"));
        false
    }

    /// A browser with a window 1280 pixels wide.
    pub async fn start() -> Browser {
        Browser::start_sized(1280, 900).await
    }

    /// A browser with a window of `width` x `height` pixels, keeping the console's messages.
    pub async fn start_sized(width: u32, height: u32) -> Browser {
        let driver_addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let name = format!("casino-chromium-{}", uuid::Uuid::now_v7().simple());
        let (profile, scratch) = (std::env::temp_dir().join(&name), std::env::temp_dir().join(name + "-tmp"));
        std::fs::create_dir(&scratch).expect("create the browser's temporary directory");
        let spawned = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", driver_addr.port()))
            .env("TMPDIR", &scratch)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let driver = spawned.unwrap_or_else(|error| {
            let _ = std::fs::remove_dir_all(&scratch);
            panic!("start chromedriver: {error}")
        });
        let base = format!("http://{driver_addr}");
        let http = reqwest::Client::new();
        // The guard exists from here on: a failure below still ends chromedriver.
        let mut browser = Browser { driver, driver_addr, base, http, session: String::new(), profile, scratch };
        let status = format!("{}/status", browser.base);
        wait_until("chromedriver to answer", PATIENCE, async || browser.http.get(&status).send().await.is_ok()).await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", browser.profile.display()),
                format!("--window-size={width},{height}"),
            ]}
        }}});
        let created = browser.call(reqwest::Method::POST, "/session", Some(capabilities)).await;
        browser.session = created["sessionId"].as_str().expect("session id").to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, failing on a WebDriver error.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found.as_array().unwrap().iter().map(|element| element[ELEMENT].as_str().unwrap().to_owned()).collect()
    }

    /// Waits for at least one element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Vec<String> {
        let mut found = Vec::new();
        wait_until(&format!("an element matching {css:?}"), PATIENCE, async || {
            found = self.find_all(css).await;
            !found.is_empty()
        })
        .await;
        found
    }

    pub async fn attribute(&self, element: &str, name: &str) -> String {
        let value = self.call(reqwest::Method::GET, &format!("/element/{element}/attribute/{name}"), None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    pub async fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn click(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }
}

impl Browser {
    /// Opens `url` and waits for its document to load.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// The page's URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    /// Types `text` into an element.
    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// Empties a field.
    pub async fn clear(&self, element: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({}))).await;
    }

    /// Runs `script` in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// The console's messages of level `SEVERE` (errors, and refusals by the Content-Security-Policy)
    /// since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Saves a screenshot of the window as a PNG.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
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
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// `DELETE /session/{id}` over a plain socket, waiting for chromedriver's answer (it answers once
/// the browser is closed). The answer is read to its `Content-Length`: chromedriver keeps the
/// connection open after it.
fn quit_session(driver: SocketAddr, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&driver, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {driver}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer);
        let Some(end_of_headers) = text.find("\r\n\r\n") else { continue };
        let length = text[..end_of_headers]
            .lines()
            .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:")?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if answer.len() >= end_of_headers + 4 + length {
            return Ok(());
        }
    }
}

/// Processes whose command line names `profile`: the Chromium a browser started.
pub fn processes_using(profile: &Path) -> Vec<String> {
    let needle = profile.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle))
        .collect()
}
