//! Postbacks for clicks not stored yet, held until they are: two instances on one PostgreSQL, as
//! behind a load balancer, the postback sent to the instance that did not answer the click, at once.

use crate::support;

use std::time::Duration;

use casino_router::config::Config;
use casino_router::journal::Journal;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of, wait_until};
use uuid::Uuid;

/// Instance A, whose writer holds each click for 2 s (as a busy writer may), and instance B on the
/// same database; `adjust` tunes B.
async fn two_instances(adjust: impl FnOnce(&mut Config)) -> Option<(TestServer, TestServer)> {
    let a = TestServer::start_postgres(|config| config.writer_flush_interval = Duration::from_secs(2)).await?;
    let mut config = support::test_config(&a.db);
    config.journal_dir = a.db.journal_dir().join("instance-b");
    adjust(&mut config);
    let b = TestServer::start_on(a.db.shared(), config).await;
    Some((a, b))
}

/// The postback log's lines for `click_id`, oldest first: `(outcome, reason)`.
async fn log_of(db: &support::TestDb, click_id: Uuid) -> Vec<(String, String)> {
    let rows =
        db.rows(&format!("SELECT outcome, reason FROM postback_log WHERE click_id = '{click_id}' ORDER BY id")).await;
    rows.into_iter().map(|row| (row[0].clone().unwrap_or_default(), row[1].clone().unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_postback_at_the_other_instance_right_after_the_click_is_held_and_applied_once() {
    let Some((a, b)) = two_instances(|_| {}).await else { return };
    let offer = a.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    wait_until("A to route to the offer", Duration::from_secs(5), async || {
        a.click("").await.status() == StatusCode::FOUND
    })
    .await;
    // A registration, an FTD with its payout, a deposit, an FTD followed by a separate payout, an FTD
    // followed by its rejection: each click from A, its postbacks to B at once.
    let plans: [&[Value]; 5] = [
        &[json!({"event": "reg"})],
        &[json!({"event": "ftd", "payout": 100})],
        &[json!({"event": "deposit", "payout": 50, "tid": "dep-1"})],
        &[json!({"event": "ftd"}), json!({"event": "payout", "payout": 70})],
        &[json!({"event": "ftd", "payout": 30}), json!({"event": "rejected"})],
    ];
    let mut clicks = Vec::new();
    for plan in plans {
        let click_id = click_id_of(&a.click_location("").await);
        for event in plan {
            let mut body = event.clone();
            body["click_id"] = json!(click_id);
            body["secret"] = json!(secret);
            let (status, answer) = b.postback_json(&body).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}: {answer}");
            assert_eq!(answer["status"], "pending", "{answer}");
        }
        clicks.push(click_id);
    }
    // A repeat while held is a duplicate.
    let repeat = json!({"click_id": clicks[1], "event": "ftd", "payout": 100, "secret": secret});
    let (status, answer) = b.postback_json(&repeat).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("duplicate")), "{answer}");

    let db = &a.db;
    wait_until("the held postbacks to be applied", Duration::from_secs(10), async || {
        db.count("SELECT count(*) FROM held_postbacks").await == 0
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM registrations").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM ftd_events").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM ftd_events WHERE voided_at IS NOT NULL").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM deposits").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM payouts").await, 3, "the FTDs' payouts and the separate one");
    let (_, stats) = a.admin_json(Method::GET, "/admin/stats", None).await;
    assert_eq!(stats[0]["total_ftds"], 2, "the rejected FTD does not count: {stats}");
    assert_eq!(stats[0]["total_revenue"], 220.0, "the payouts and the deposit, not the rejected FTD's: {stats}");
    for (click_id, plan) in clicks.iter().zip(plans) {
        let lines = log_of(db, *click_id).await;
        let accepted: Vec<&(String, String)> = lines.iter().filter(|(outcome, _)| outcome == "accepted").collect();
        assert_eq!(accepted.len(), plan.len(), "{click_id}: {lines:?}");
        assert!(accepted.iter().all(|(_, reason)| reason.starts_with("held ")), "{lines:?}");
        assert!(lines.iter().all(|(outcome, _)| outcome != "pending"), "no line stays pending: {lines:?}");
    }
    assert_eq!(log_of(db, clicks[1]).await.iter().filter(|(outcome, _)| outcome == "duplicate").count(), 1);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_postback_whose_click_never_comes_expires_and_floods_are_bounded() {
    let Some((a, b)) = two_instances(|config| {
        config.postback_hold = Duration::from_secs(2);
        config.postback_hold_limits.per_offer = 2;
    })
    .await
    else {
        return;
    };
    let offer = a.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    let ftd = |click_id: Uuid, secret: &str| json!({"click_id": click_id, "event": "ftd", "secret": secret});
    // Never clicked, but minted just now: held, within the bound of two.
    let (never, also_never) = (Uuid::now_v7(), Uuid::now_v7());
    for click_id in [never, also_never] {
        let (status, answer) = b.postback_json(&ftd(click_id, &secret)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, answer) = b.postback_json(&ftd(Uuid::now_v7(), &secret)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the third is refused, to be retried: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("too many postbacks are held"), "{answer}");
    // Without an offer's secret nothing is held; an id that cannot be recent stays unknown.
    let (status, _) = b.postback_json(&ftd(Uuid::now_v7(), "not-a-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let old = uuid::Builder::from_unix_timestamp_millis(1_600_000_000_000, &[7; 10]).into_uuid();
    let (status, _) = b.postback_json(&ftd(old, &secret)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let db = &a.db;
    wait_until("the held postbacks to expire", Duration::from_secs(10), async || {
        db.count("SELECT count(*) FROM held_postbacks").await == 0
    })
    .await;
    for click_id in [never, also_never] {
        let lines = log_of(db, click_id).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].0, "expired", "{lines:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM ftd_events").await, 0);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postback_for_a_click_of_a_crashed_instance_is_applied_when_its_journal_is_replayed() {
    // On either store: the instance that answered the click crashed with it in its journal; the
    // postback arrives meanwhile (at another instance, or at this one before it is back).
    let db = support::TestDb::create().await;
    let server = TestServer::start_on(db.shared(), support::test_config(&db)).await;
    let offer = server.create_offer("A", "https://a.example/", 1.0).await;
    let (offer_id, secret) = (offer["id"].as_i64().unwrap(), offer["postback_secret"].as_str().unwrap().to_owned());
    let click = support::journaled_click(offer_id, "crashed");
    let crashed_journal = db.journal_dir().join("crashed-instance");
    Journal::open(&crashed_journal, 1 << 20).unwrap().append(std::slice::from_ref(&click)).unwrap();
    let ftd = json!({"click_id": click.click_id, "event": "ftd", "payout": 80, "secret": secret});
    let (status, answer) = server.postback_json(&ftd).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // The crashed instance comes back and replays its journal.
    let mut config = support::test_config(&db);
    config.journal_dir = crashed_journal;
    let restarted = TestServer::start_on(db.shared(), config).await;
    // Applied (the FTD row) and then released (the held row and its pending log line), in that
    // order and in two transactions: the log is final once the held row is gone.
    wait_until("the held FTD to be applied and released", Duration::from_secs(10), async || {
        db.count("SELECT count(*) FROM held_postbacks").await == 0
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM ftd_events").await, 1);
    let lines = log_of(&db, click.click_id).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, "accepted", "{lines:?}");
    restarted.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_holding_off_an_unknown_recent_click_is_404_and_a_click_in_this_writer_is_found() {
    let server = TestServer::start_with(|config| {
        config.postback_hold = Duration::ZERO;
        config.writer_flush_interval = Duration::from_secs(30);
    })
    .await;
    let offer = server.create_offer("A", "https://a.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    let (status, _) =
        server.postback_json(&json!({"click_id": Uuid::now_v7(), "event": "ftd", "secret": secret})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A click still in this instance's writer (it waits 30 s for a batch) is found by the flush.
    let click_id = click_id_of(&server.click_location("").await);
    let (status, answer) = server.postback_json(&json!({"click_id": click_id, "event": "ftd", "secret": secret})).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("success")), "{answer}");
    assert_eq!(server.db.count("SELECT count(*) FROM held_postbacks").await, 0);
    server.stop().await;
}
