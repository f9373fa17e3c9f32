//! The real binary as an operator runs it: configuration errors, subcommands, first run, SIGTERM.

use crate::support;

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::Duration;

use casino_router::config::DatabaseConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Backend, TestDb, backend, click_many_at, create_offer_at, wait_until};

/// How long a router process may take to start, or to give up.
const PATIENCE: Duration = Duration::from_secs(20);

fn router(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_casino-router"));
    command
        .env_clear()
        .env("DATABASE_URL", db.database_url())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("JOURNAL_DIR", db.journal_dir())
        .current_dir(std::env::temp_dir());
    command
}

/// A running router process.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// What it logged up to its "listening" line.
    startup_log: Vec<String>,
    /// The rest of its log, drained on a thread so the child never blocks on a full pipe.
    drain: std::thread::JoinHandle<Vec<String>>,
}

/// Starts `serve` and waits for its "listening" log line.
fn serve(mut command: Command) -> Served {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start the router");
    let mut lines: Lines<BufReader<ChildStderr>> = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = lines.next().expect("router exited before listening").unwrap();
        if line.contains("listening") {
            let addr = listening_address(&line);
            log.push(line);
            break addr;
        }
        log.push(line);
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    Served { child, addr, startup_log: log, drain }
}

/// The address in the "listening" line, in text (`addr=...`) or JSON (`"addr":"..."`) format.
fn listening_address(line: &str) -> SocketAddr {
    if line.starts_with('{') {
        let object: Value = serde_json::from_str(line).unwrap();
        return object["addr"].as_str().unwrap().parse().unwrap();
    }
    line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

async fn admin_get(http: &reqwest::Client, addr: SocketAddr, token: &str, path: &str) -> Value {
    http.get(format!("http://{addr}{path}")).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Runs `command` to its end, killing it if it is still running after [`PATIENCE`].
async fn run_to_end(mut command: Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the router");
    let pid = child.id().to_string();
    let waited = tokio::time::timeout(PATIENCE, tokio::task::spawn_blocking(move || child.wait_with_output())).await;
    let Ok(output) = waited else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the router is still running after {PATIENCE:?}");
    };
    output.unwrap().unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[test]
fn a_bad_configuration_exits_64_naming_every_bad_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_casino-router"))
        .env_clear()
        .env("PORT", "99999")
        .env("EXPLORATION_RATE", "2")
        .env("DATABASE_URL", "mysql://nope")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "PORT: \"99999\" is not a port number from 0 to 65535",
        "EXPLORATION_RATE: \"2\" is not a number from 0 to 1",
        "DATABASE_URL: unsupported scheme",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_creates_three_offers_once() {
    let db = TestDb::create().await;
    let first = router(&db).arg("seed").output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(stdout.matches("postback_secret=").count(), 3, "{stdout}");
    let second = router(&db).arg("seed").output().unwrap();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing seeded"));
    assert_eq!(db.count("SELECT count(*) FROM offers").await, 3);
}

#[test]
fn a_bad_variable_in_the_dot_env_file_is_reported_too() {
    let dir = std::env::temp_dir().join(format!("casino-dotenv-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), "# tuning\nMIN_WEIGHT=7\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_casino-router")).env_clear().current_dir(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("MIN_WEIGHT: \"7\" is not a number from 0 to 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_once() {
    let db = TestDb::create().await;
    for _ in 0..2 {
        let output = router(&db).arg("migrate").output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    }
    // Each migration once, however often `migrate` runs.
    let migrations = std::fs::read_dir("sql/postgres").unwrap().filter(|entry| {
        entry.as_ref().is_ok_and(|entry| entry.path().extension().is_some_and(|extension| extension == "sql"))
    });
    assert_eq!(db.count("SELECT count(*) FROM schema_migrations").await, migrations.count() as i64);
    assert_eq!(db.count("SELECT count(*) FROM offers").await, 0, "migrate seeds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_seeds_examples_on_the_embedded_store_only() {
    let db = TestDb::create().await;
    let mut command = router(&db);
    command.env_remove("ADMIN_TOKEN");
    let Served { child, addr, startup_log, drain } = serve(command);
    // Without ADMIN_TOKEN one is generated and logged once.
    let token_lines: Vec<&String> = startup_log.iter().filter(|line| line.contains("admin_token=")).collect();
    assert_eq!(token_lines.len(), 1, "{startup_log:#?}");
    let token = token_lines[0].split("admin_token=").nth(1).unwrap().split_whitespace().next().unwrap();
    let offers = admin_get(&http(), addr, token, "/admin/offers").await;
    let click = http().get(format!("http://{addr}/click")).send().await.unwrap().status();
    signal(&child, "TERM");
    let mut log = startup_log.clone();
    log.extend(drain.join().unwrap());
    let log = log.join("\n");
    match backend() {
        Backend::Sqlite => {
            assert_eq!(offers.as_array().unwrap().len(), 3);
            assert_eq!(click, StatusCode::FOUND, "a click works right after the first start");
            assert_eq!(log.matches("created example offer").count(), 3, "{log}");
            assert!(log.contains("postback_secret="));
            assert!(!log.contains("no active offers"), "{log}");
        }
        Backend::Postgres => {
            assert_eq!(offers, json!([]), "PostgreSQL is seeded only by the seed subcommand");
            assert_eq!(click, StatusCode::SERVICE_UNAVAILABLE);
            // Start-up says why every click will be refused, and how to add offers.
            let hint = log.lines().find(|line| line.contains("no active offers")).unwrap_or_else(|| panic!("{log}"));
            assert!(hint.contains("casino-router seed") && hint.contains("POST /admin/offers"), "{hint}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_journal_directory_refuses_to_start_before_anything_else() {
    // Two instances sharing a journal would number their spills alike and overwrite each other's.
    let db = TestDb::create().await;
    let Served { child, drain, .. } = serve(router(&db));
    // The second instance is on a fresh database of its own and has no ADMIN_TOKEN: had it got past
    // the journal, it would have generated a token and (on the embedded store) seeded examples.
    let other = TestDb::create().await;
    let mut second = router(&other);
    second.env("JOURNAL_DIR", db.journal_dir()).env_remove("ADMIN_TOKEN");
    let output = run_to_end(second).await;
    signal(&child, "TERM");
    drain.join().unwrap();

    let log = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    assert!(!output.status.success(), "the second instance exited with success: {log}");
    assert!(log.contains("in use by another router instance") && log.contains("JOURNAL_DIR"), "{log}");
    assert!(!log.contains("admin_token") && !log.contains("created example offer"), "it went on first: {log}");
    let store_opened = match other.database_config() {
        DatabaseConfig::Sqlite(path) => path.exists(),
        DatabaseConfig::Postgres(_) => {
            other.count("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'").await > 0
        }
    };
    assert!(!store_opened, "the second instance opened its store before its journal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_named_in_the_error() {
    let db = TestDb::create().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for (variable, value, named) in [
        ("PORT", addr.port().to_string(), format!("could not listen on {addr} (HOST, PORT): ")),
        ("METRICS_ADDR", addr.to_string(), format!("could not listen on {addr} (METRICS_ADDR): ")),
    ] {
        let mut command = router(&db);
        command.env(variable, value);
        let output = run_to_end(command).await;
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{log}");
        assert!(log.contains(&named) && log.contains("in use"), "{variable}: {named:?} missing in {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_queued_click_and_exits_zero() {
    stop_with_signal_keeps_every_click("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_flushes_every_queued_click_and_exits_zero() {
    stop_with_signal_keeps_every_click("INT").await;
}

async fn stop_with_signal_keeps_every_click(signal_name: &str) {
    let db = TestDb::create().await;
    let mut command = router(&db);
    // Keep clicks in the queue: only the shutdown drain can write them.
    command.env("WRITER_FLUSH_MS", "60000").env("WRITER_BATCH_SIZE", "1000000");
    let Served { mut child, addr, drain, .. } = serve(command);

    let http = http();
    create_offer_at(&http, addr, json!({"name": "Alpha", "casino_url": "https://alpha.example/"})).await;
    let locations = click_many_at(&http, addr, 400, 8).await;
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, 0, "clicks are still queued");

    signal(&child, signal_name);
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let log = drain.join().unwrap();
    assert!(exit.success(), "exit status {exit:?}, log: {log:#?}");
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, locations.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let db = TestDb::create().await;
    let mut command = router(&db);
    command.env("LOG_FORMAT", "json");
    let Served { child, addr, startup_log, drain } = serve(command);
    let http = http();
    let body =
        json!({"name": "Logged", "casino_url": "https://logged.example/", "postback_secret": "offer-secret-4242"});
    let offer = create_offer_at(&http, addr, body).await;
    assert_eq!(offer["postback_secret"], "offer-secret-4242");
    // The click may go to an example offer (seeded on the embedded store) whose URL names the id
    // otherwise: take whichever query value is a UUID.
    let location = url::Url::parse(&click_many_at(&http, addr, 1, 1).await.remove(0)).unwrap();
    let click_id = location.query_pairs().find_map(|(_, value)| uuid::Uuid::parse_str(&value).ok()).unwrap();
    let refused = http
        .get(format!("http://{addr}/postback?click_id={click_id}&event=ftd&secret=guessed-secret-777"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let recalculated =
        http.post(format!("http://{addr}/admin/update-weights")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(recalculated.status(), StatusCode::OK);
    signal(&child, "TERM");
    let mut log = startup_log;
    log.extend(drain.join().unwrap());

    let mut messages = Vec::new();
    for line in &log {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
        messages.push(object["message"].as_str().unwrap_or_default().to_owned());
        for secret in ["offer-secret-4242", "guessed-secret-777", ADMIN_TOKEN] {
            assert!(!line.contains(secret), "a secret was logged: {line}");
        }
    }
    for expected in ["casino-router listening", "postback refused", "casino-router stopped"] {
        assert_eq!(messages.iter().filter(|m| *m == expected).count(), 1, "{expected:?} once in {log:#?}");
    }
    // `thompson`, the default strategy, recomputes its probabilities on `update-weights`, and logs
    // them only if they changed since the start-up table (one click may or may not move them).
    let changed = messages.iter().filter(|m| *m == "thompson probabilities changed").count();
    assert!(changed <= 1, "{log:#?}");
    assert!(
        !log.iter().any(|line| line.contains(&click_id.to_string()) && !line.contains("postback")),
        "no line per click"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_redirected_click_and_counts_none_twice() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let db = TestDb::create().await;
    // The default writer settings: a batch is committed up to 50 ms after its first click, so at
    // the kill clicks wait in the queue and the open batch; the click log must bring them back.
    let Served { mut child, addr, drain, .. } = serve(router(&db));
    let http = http();
    create_offer_at(&http, addr, json!({"name": "Alpha", "casino_url": "https://alpha.example/", "active": true}))
        .await;
    // Deactivate the examples the embedded store seeds, so every click carries click_id plainly.
    let offers = admin_get(&http, addr, ADMIN_TOKEN, "/admin/offers").await;
    for offer in offers.as_array().unwrap().iter().filter(|offer| offer["name"] != "Alpha") {
        let url = format!("http://{addr}/admin/offers/{}", offer["id"]);
        http.patch(url).bearer_auth(ADMIN_TOKEN).json(&json!({"active": false})).send().await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, stop) = (http.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(response) = http.get(format!("http://{addr}/click?source=kill")).send().await else { break };
                if response.status() == StatusCode::FOUND {
                    answered.push(support::click_id_of(response.headers()["location"].to_str().unwrap()));
                }
            }
            answered
        }));
    }
    // Kill once the writer has committed batches under the load for a while.
    wait_until("clicks committed under load", PATIENCE, async || db.count("SELECT count(*) FROM clicks").await >= 2000)
        .await;
    signal(&child, "KILL");
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for worker in workers {
        answered.extend(worker.await.unwrap());
    }
    let _ = tokio::task::spawn_blocking(move || child.wait()).await.unwrap();
    drop(drain);
    let stored_at_kill = db.click_ids().await.len();

    // The next start, on the same journal directory, replays the click log before it listens.
    let Served { child, startup_log, drain, .. } = serve(router(&db));
    signal(&child, "TERM");
    drain.join().unwrap();
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    let lost = answered.iter().filter(|id| !stored.contains(id)).count();
    eprintln!(
        "SIGKILL under load: {} redirected clicks, {} stored at the kill, {} after the restart, {lost} lost",
        answered.len(),
        stored_at_kill,
        stored.len()
    );
    assert!(answered.len() > 500, "the load ran: {} clicks", answered.len());
    assert!(stored_at_kill < answered.len(), "the kill caught clicks in flight, which the log had to bring back");
    assert!(startup_log.iter().any(|line| line.contains("click log")), "{startup_log:#?}");
    assert_eq!(lost, 0, "every redirected click is stored");
    // None counted twice: the hourly rollup (bumped with each insert) agrees with the rows, and a
    // click that was logged but never answered (the kill came between) is at most a stored extra.
    let rolled_up = db.count("SELECT CAST(COALESCE(SUM(clicks), 0) AS BIGINT) FROM click_rollup_hourly").await;
    assert_eq!(rolled_up, stored.len() as i64);
    assert!(stored.len() - answered.len() <= 8, "at most one unanswered click per connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_ip_database_is_found_from_any_working_directory() {
    // Run from a temporary directory (see `router`), where ./data/geoip does not exist: the binary
    // finds the database in the tree it was built from.
    let db = TestDb::create().await;
    let mut command = router(&db);
    command.env("TRUSTED_PROXIES", "127.0.0.1").env("TABLE_REFRESH_SECONDS", "0.1");
    let Served { child, addr, startup_log, drain } = serve(command);
    assert!(startup_log.iter().any(|line| line.contains("IP-to-country database open")), "{startup_log:#?}");
    let http = http();
    // Only a DE offer in rotation (the embedded store seeds example offers: switched off).
    for offer in admin_get(&http, addr, ADMIN_TOKEN, "/admin/offers").await.as_array().unwrap() {
        let id = offer["id"].as_i64().unwrap();
        let switched_off = http.put(format!("http://{addr}/admin/offers/{id}")).bearer_auth(ADMIN_TOKEN);
        assert!(switched_off.json(&json!({"active": false})).send().await.unwrap().status().is_success());
    }
    let de = json!({"name": "DE only", "casino_url": "https://de.example/", "countries": ["DE"]});
    create_offer_at(&http, addr, de).await;
    // Deutsche Telekom's resolver and the BBC, as a trusted proxy forwards them.
    let click =
        |address: &'static str| http.get(format!("http://{addr}/click")).header("X-Forwarded-For", address).send();
    for _ in 0..5 {
        let response = click("194.25.2.129").await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert!(response.headers()["location"].to_str().unwrap().starts_with("https://de.example/"));
    }
    assert_eq!(click("212.58.244.20").await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE, "GB: no offer");
    signal(&child, "TERM");
    drain.join().unwrap();
}
