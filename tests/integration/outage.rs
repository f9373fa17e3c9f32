//! The database goes away under a running router (PostgreSQL behind a proxy the test cuts): clicks
//! keep being answered, spill to the journal, and are all written once it is back; postbacks and
//! recalculations answer 503 meanwhile; a failed scheduled recalculation keeps the current table and
//! is retried. A full journal refuses clicks visibly; a journal left behind is replayed at start.

use crate::support;

use std::time::Duration;

use casino_router::config::{Config, DatabaseConfig};
use casino_router::journal::Journal;
use casino_router::store::ClickRecord;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::proxy::TcpProxy;
use support::{TestDb, TestServer, click_id_of, click_many_at, test_config};

/// How long the router may take to get every click, or a recalculation, to the database.
const SETTLE: Duration = Duration::from_secs(30);

async fn wait_for(what: &str, condition: impl AsyncFnMut() -> bool) {
    support::wait_until(what, SETTLE, condition).await;
}

/// Every click the router took: written, queued, held in memory, or journaled.
fn clicks_accounted_for(health: &Value) -> u64 {
    let places = ["clicks_written", "queue_depth", "clicks_held", "journal_clicks"];
    places.map(|field| health[field].as_u64().unwrap()).iter().sum()
}

/// Segment files in `db`'s journal directory (not its lock file).
fn journal_segments(db: &TestDb) -> usize {
    let names = std::fs::read_dir(db.journal_dir()).unwrap().map(|entry| entry.unwrap().file_name());
    names.filter(|name| name.to_string_lossy().starts_with("clicks-")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_no_click_and_stops_nothing_but_writes() {
    let Some(db) = TestDb::create_postgres().await else { return };
    let server_addr = db.postgres_server().await.unwrap();
    let proxy = TcpProxy::start(server_addr).await;
    let mut config = test_config(&db);
    config.database = DatabaseConfig::Postgres(db.postgres_url_via(proxy.addr));
    config.recalc_interval = Duration::from_millis(300);
    config.min_clicks_for_ev = 1;
    // A queue smaller than the outage's clicks: only spilling to the journal keeps them coming. Not
    // tiny: it also absorbs the first writes on the fresh database's cold connections (100-150 ms
    // each here), while a release build's clients send 25,000 clicks a second.
    config.click_queue_capacity = 8192;
    config.journal_spill_after = 200;
    let server = TestServer::start_on(db.shared(), config).await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    server.create_offer("B", "https://b.example/", 1.0).await;
    let (before, _) = server.click_many(50, 4).await;
    wait_for("a scheduled recalculation", async || db.count("SELECT count(*) FROM weight_history").await > 0).await;

    // The database goes away in the middle of a click load; the click path goes on: every click is
    // answered with a redirect to either offer.
    let load = tokio::spawn(click_many_at(server.http.clone(), server.addr, 20_000, 4));
    let under_way = before.len() as u64 + 500;
    wait_for("the load under way", async || clicks_accounted_for(&server.health().await) >= under_way).await;
    proxy.cut();
    let during = load.await.unwrap();
    let hosts: std::collections::HashSet<_> =
        during.iter().map(|l| url::Url::parse(l).unwrap().host_str().unwrap().to_owned()).collect();
    assert_eq!(hosts.len(), 2, "the current table stays in use: {hosts:?}");
    // What needs the database says so, with a status platforms retry on.
    let (status, body) = server.admin_json(Method::POST, "/admin/update-weights", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("database unavailable"));
    let a_click = before.iter().find(|l| l.starts_with("https://a.example/")).expect("a click on A");
    let postback = json!({"click_id": click_id_of(a_click), "event": "ftd", "secret": a["postback_secret"]});
    let response = server.postback(&postback).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let health = server.health().await;
    assert_eq!((health["status"].as_str(), health["database"].as_str()), (Some("degraded"), Some("down")));
    assert!(health["journal_clicks"].as_u64().unwrap() >= 400, "spilled to the journal: {health}");
    // Every click is accounted for: written (before the cut), queued, held in memory, or journaled
    // (the last batch being formed joins them within a flush interval).
    let sent = (before.len() + during.len()) as u64;
    wait_for("every click accounted for", async || clicks_accounted_for(&server.health().await) == sent).await;
    assert!(health["journal_bytes"].as_u64().unwrap() > 0);
    let history_during = db.count("SELECT count(*) FROM weight_history").await;
    // Not a synchronisation: the behaviour under test. The scheduler's timer (300 ms) fires several
    // times during the outage; none of those runs may write anything (the test reads the database
    // directly, not through the cut proxy), and once the database is back it retries.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(db.count("SELECT count(*) FROM weight_history").await, history_during, "failed runs wrote nothing");

    proxy.restore();
    let total = (before.len() + during.len()) as i64;
    wait_for("every click written", async || db.count("SELECT count(*) FROM clicks").await == total).await;
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert!(before.iter().chain(&during).all(|l| stored.contains(&click_id_of(l))), "each click once, none lost");
    wait_for("the scheduler's retry", async || db.count("SELECT count(*) FROM weight_history").await > history_during)
        .await;
    let response = server.postback(&postback).await;
    assert_eq!(response.status(), StatusCode::OK, "the platform's retry succeeds");
    let health = server.health().await;
    assert_eq!((health["database"].as_str(), health["status"].as_str()), (Some("up"), Some("ok")));
    assert_eq!((health["clicks_failed"].as_u64(), health["clicks_rejected"].as_u64()), (Some(0), Some(0)));
    assert_eq!((health["journal_clicks"].as_u64(), health["clicks_held"].as_u64()), (Some(0), Some(0)));
    server.stop().await;
}

/// A router on PostgreSQL (the embedded store cannot go away) behind a proxy the test controls, and
/// its database; `None` when the test is skipped for want of PostgreSQL.
async fn behind_proxy(adjust: impl FnOnce(&mut Config)) -> Option<(TestDb, TcpProxy, TestServer)> {
    let db = TestDb::create_postgres().await?;
    let proxy = TcpProxy::start(db.postgres_server().await.unwrap()).await;
    let mut config = test_config(&db);
    config.database = DatabaseConfig::Postgres(db.postgres_url_via(proxy.addr));
    adjust(&mut config);
    let server = TestServer::start_on(db.shared(), config).await;
    Some((db, proxy, server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_refuses_clicks_with_503_and_counts_them() {
    let Some((db, proxy, server)) = behind_proxy(|config| {
        config.click_queue_capacity = 16;
        config.journal_spill_after = 8;
        config.journal_max_bytes = 4 * 1024; // about a dozen clicks
    })
    .await
    else {
        return;
    };
    server.create_offer("A", "https://a.example/", 1.0).await;
    proxy.cut();
    let (mut redirected, mut refused) = (Vec::new(), 0u64);
    for _ in 0..300 {
        let response = server.click("?source=flood").await;
        match response.status() {
            StatusCode::FOUND => redirected.push(click_id_of(response.headers()["location"].to_str().unwrap())),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers()["retry-after"], "1");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0 && !redirected.is_empty(), "{refused} refused, {} redirected", redirected.len());
    let health = server.health().await;
    assert_eq!(health["clicks_rejected"].as_u64(), Some(refused), "every refusal is counted: {health}");
    proxy.restore();
    let expected = redirected.len() as i64;
    wait_for("every redirected click written", async || db.count("SELECT count(*) FROM clicks").await == expected)
        .await;
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert!(redirected.iter().all(|id| stored.contains(id)), "every redirected click is kept");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_journals_the_clicks_and_the_next_start_replays_them() {
    let Some((db, proxy, server)) = behind_proxy(|config| config.journal_spill_after = 1_000_000).await else {
        return;
    };
    server.create_offer("A", "https://a.example/", 1.0).await;
    proxy.cut();
    let (clicks, _) = server.click_many(300, 4).await;
    server.stop().await; // the clicks were only in memory: shutdown spills them
    let segments = journal_segments(&db);
    assert!(segments > 0, "the journal holds the clicks");
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, 0);

    proxy.restore();
    let mut config = test_config(&db);
    config.database = DatabaseConfig::Postgres(db.postgres_url_via(proxy.addr));
    let restarted = TestServer::start_on(db.shared(), config).await;
    // Replayed before the router served anything.
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, clicks.len() as i64);
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert!(clicks.iter().all(|l| stored.contains(&click_id_of(l))));
    assert_eq!(journal_segments(&db), 0, "replayed segments are removed");
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_by_a_crash_is_replayed_at_start_once() {
    let db = TestDb::create().await;
    let server = TestServer::start_on(db.shared(), test_config(&db)).await;
    let offer_id = server.create_offer("A", "https://a.example/", 1.0).await["id"].as_i64().unwrap();
    server.stop().await;
    // What a crashed run leaves: segments, one of them holding a click that is already stored.
    let record = |n: u8| ClickRecord {
        click_id: uuid::Uuid::now_v7(),
        offer_id,
        created_at: time::OffsetDateTime::now_utc(),
        user_agent: Some(format!("agent {n}").into()),
        ip_address: Some("198.51.100.4".parse().unwrap()),
        referrer: None,
        source: Some("crash".into()),
        campaign: None,
        propensity: 1.0,
        country: None,
        device: None,
        is_bot: false,
        is_fallback: false,
        log_slot: None,
    };
    let clicks: Vec<ClickRecord> = (0..40).map(record).collect();
    let mut journal = Journal::open(&db.journal_dir(), 1 << 20).unwrap();
    journal.append(&clicks[..25]).unwrap();
    journal.append(&clicks[20..]).unwrap();
    drop(journal);
    // And a damaged segment: two unreadable lines around a good one. They must not stop recovery.
    let good = serde_json::to_string(&record(99)).unwrap();
    let damaged = [b"not json\n".as_slice(), good.as_bytes(), b"\n\xff\xfe\n"].concat();
    std::fs::write(db.journal_dir().join("clicks-00000000000000000007.jsonl"), damaged).unwrap();

    let restarted = TestServer::start_on(db.shared(), test_config(&db)).await;
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, 41, "each click once");
    let stats: Value = restarted.admin_json(Method::GET, "/admin/stats", None).await.1;
    assert_eq!(stats[0]["total_clicks"], 41, "the rollups count each click once too: {stats}");
    let health = restarted.health().await;
    assert_eq!(health["clicks_written"], 46, "replayed clicks count as written (5 twice: stored once)");
    assert_eq!(health["clicks_failed"], 2, "the unreadable lines are counted");
    assert_eq!(journal_segments(&db), 0);
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_click_the_database_refuses_is_skipped_alone() {
    // PostgreSQL refuses text holding a NUL byte. The router strips control characters at its edge,
    // so only a damaged or foreign journal holds one; the embedded store takes it as it is.
    let Some(db) = TestDb::create_postgres().await else { return };
    let server = TestServer::start_on(db.shared(), test_config(&db)).await;
    let offer_id = server.create_offer("A", "https://a.example/", 1.0).await["id"].as_i64().unwrap();
    server.stop().await;
    let record = |agent: &str| support::journaled_click(offer_id, agent);
    let clicks = [record("first"), record("nul\0byte"), record("third")];
    let mut journal = Journal::open(&db.journal_dir(), 1 << 20).unwrap();
    journal.append(&clicks).unwrap();
    drop(journal);

    let restarted = TestServer::start_on(db.shared(), test_config(&db)).await;
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert_eq!(stored, [clicks[0].click_id, clicks[2].click_id].into_iter().collect(), "the batch's other clicks");
    let health = restarted.health().await;
    assert_eq!((health["clicks_written"].as_u64(), health["clicks_failed"].as_u64()), (Some(2), Some(1)));
    assert_eq!(journal_segments(&db), 0, "the segment is done with");
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_keep_being_served_while_a_migration_holds_the_clicks_table() {
    let Some(db) = TestDb::create_postgres().await else { return };
    let mut config = test_config(&db);
    // A queue far smaller than the clicks sent while the table is locked (but larger than those of
    // one wait for the lock, a second): only the writer giving up on the lock, and holding the
    // clicks as in an outage, keeps them coming.
    let capacity = 1024;
    config.click_queue_capacity = capacity;
    config.journal_spill_after = 100;
    let server = TestServer::start_on(db.shared(), config).await;
    server.create_offer("A", "https://a.example/", 1.0).await;
    let (before, _) = server.click_many(20, 2).await;
    wait_for("the first clicks written", async || db.count("SELECT count(*) FROM clicks").await == 20).await;

    // What a migration moving the clicks does: an exclusive lock on the table, held for longer than
    // any statement of the router waits for a lock.
    let (client, connection) = tokio_postgres::connect(&db.database_url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute("BEGIN; LOCK TABLE clicks IN ACCESS EXCLUSIVE MODE").await.unwrap();
    // Paced (at most 400 a second: fewer than the queue holds during one wait for the lock) until
    // twice the queue's capacity has been redirected while the lock is held.
    let mut during = Vec::new();
    while during.len() <= 2 * capacity {
        // Each one answered 302 (click_many asserts it).
        during.extend(server.click_many(100, 4).await.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted AND relation = 'clicks'::regclass").await, 1);
    client.batch_execute("COMMIT").await.unwrap();
    drop(client);
    connection.await.unwrap().unwrap();

    let total = (before.len() + during.len()) as i64;
    wait_for("every click written", async || db.count("SELECT count(*) FROM clicks").await == total).await;
    let stored: std::collections::HashSet<_> = db.click_ids().await.into_iter().collect();
    assert!(before.iter().chain(&during).all(|l| stored.contains(&click_id_of(l))), "each click once, none lost");
    let health = server.health().await;
    assert_eq!((health["clicks_failed"].as_u64(), health["clicks_rejected"].as_u64()), (Some(0), Some(0)));
    server.stop().await;
}
