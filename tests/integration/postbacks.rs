//! `/postback` end to end: every form, every event, every refusal, idempotency under concurrency.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, click_id_of};
use uuid::Uuid;

/// A server with one offer, and one click on it.
async fn server_with_click() -> (TestServer, String, Uuid) {
    let server = TestServer::start().await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    let click_id = click_id_of(&server.click_location("").await);
    (server, secret, click_id)
}

/// A server with one offer, and `n` clicks on it.
async fn server_with_clicks(n: usize) -> (TestServer, String, Vec<Uuid>) {
    let server = TestServer::start().await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap().to_owned();
    let (locations, _) = server.click_many(n, 8).await;
    let clicks = locations.iter().map(|l| click_id_of(l)).collect();
    (server, secret, clicks)
}

/// A UUID v7 minted in 2020.
fn old_click_id() -> Uuid {
    uuid::Builder::from_unix_timestamp_millis(1_600_000_000_000, &[7; 10]).into_uuid()
}

async fn stats_of(server: &TestServer, query: &str) -> Value {
    let (status, stats) = server.admin_json(Method::GET, &format!("/admin/stats{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_ftd_right_after_its_click_is_recorded() {
    // The click is very likely still in the writer's queue: the postback must find it anyway.
    let (server, secret, click_id) = server_with_click().await;
    let (status, body) =
        server.postback_json(&json!({"click_id": click_id, "event": "ftd", "payout": 100.5, "secret": secret})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "success", "message": "FTD and payout recorded", "click_id": click_id}));
    let stats = stats_of(&server, "").await;
    assert_eq!((stats["total_clicks"].as_u64(), stats["total_ftds"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["total_revenue"], 100.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_form_and_header_secret_forms_are_accepted() {
    let server = TestServer::start().await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let secret = offer["postback_secret"].as_str().unwrap();
    let ids: Vec<Uuid> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(click_id_of(&server.click_location("").await));
        }
        ids
    };
    let (status, body) = server.postback_get(&format!("click_id={}&event=ftd&payout=50&secret={secret}", ids[0])).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("success")));

    let form = server
        .http
        .post(server.url("/postback"))
        .form(&[("click_id", ids[1].to_string()), ("event", "ftd".into()), ("secret", secret.into())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);

    let header = server
        .http
        .get(server.url(&format!("/postback?click_id={}&event=ftd&payout=25", ids[2])))
        .header("X-Postback-Secret", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::OK);
    let stats = stats_of(&server, "").await;
    assert_eq!(stats["total_ftds"], 3);
    assert_eq!(stats["total_revenue"], 75.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_has_its_effect() {
    let (server, secret, click_id) = server_with_click().await;
    let send = async |event: &str, extra: Value| {
        let mut body = json!({"click_id": click_id, "event": event, "secret": secret});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        server.postback_json(&body).await
    };
    // payout before any FTD: nothing to attach it to.
    let (status, body) = send("payout", json!({"payout": 10})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    assert_eq!(send("reg", json!({})).await.1["message"], "registration recorded");
    assert_eq!(send("ftd", json!({})).await.1["message"], "FTD recorded");
    assert_eq!(send("payout", json!({"payout": 120})).await.1["message"], "payout recorded");
    // A second payout for the same FTD changes nothing.
    assert_eq!(send("payout", json!({"payout": 999})).await.1["status"], "duplicate");
    assert_eq!(send("deposit", json!({"payout": 30, "tid": "dep-1"})).await.1["message"], "deposit recorded");
    assert_eq!(send("deposit", json!({"payout": 30, "tid": "dep-1"})).await.1["status"], "duplicate");
    assert_eq!(send("deposit", json!({"payout": 20, "tid": "dep-2"})).await.1["status"], "success");
    let (status, body) = send("deposit", json!({"payout": 20})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a deposit needs a tid: {body}");

    let stats = stats_of(&server, "").await;
    assert_eq!(stats["total_registrations"], 1);
    assert_eq!(stats["total_ftds"], 1);
    assert_eq!(stats["total_revenue"], 170.0, "120 FTD payout + 30 + 20 deposits");

    // Rejected voids the FTD and its payout; deposits stay.
    assert_eq!(send("rejected", json!({})).await.1["status"], "success");
    assert_eq!(send("rejected", json!({})).await.1["status"], "duplicate");
    let stats = stats_of(&server, "").await;
    assert_eq!(stats["total_ftds"], 0);
    assert_eq!(stats["total_revenue"], 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_map_their_platform_words_to_events() {
    let (server, secret, click_id) = server_with_click().await;
    let (_, offers) = server.admin_json(Method::GET, "/admin/offers", None).await;
    let id = offers[0]["id"].as_i64().unwrap();
    server
        .set_offer(id, json!({"event_aliases": {"first_dep": "ftd", "approved": "ftd", "chargeback": "rejected"}}))
        .await;
    let (status, body) =
        server.postback_get(&format!("click_id={click_id}&event=first_dep&payout=80&secret={secret}")).await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::OK, Some("FTD and payout recorded")));
    let (status, _) = server.postback_get(&format!("click_id={click_id}&event=CHARGEBACK&secret={secret}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats_of(&server, "").await["total_ftds"], 0);
    let (status, body) = server.postback_get(&format!("click_id={click_id}&event=sale&secret={secret}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("unknown event"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_form_parameters_that_are_not_fields_are_ignored_and_named_in_the_log() {
    let (server, secret, click_id) = server_with_click().await;
    // A platform's own parameters, and a misnamed payout: accepted, but the log says what was ignored.
    let (status, _) = server
        .postback_get(&format!("click_id={click_id}&event=ftd&amount=150&secret={secret}&sub1=x&sub1=y&aff_id=7"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let form = format!("click_id={click_id}&event=reg&secret={secret}&campaign_id=99");
    let response = server
        .http
        .post(server.url("/postback"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, log) = server.admin_json(Method::GET, "/admin/postbacks", None).await;
    let ignored: Vec<&Value> = log["items"].as_array().unwrap().iter().map(|line| &line["ignored_fields"]).collect();
    assert_eq!(ignored, [&json!("campaign_id"), &json!("amount, sub1, aff_id")], "newest first: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_the_right_status_and_write_nothing() {
    let (server, secret, click_id) = server_with_click().await;
    let cases: Vec<(Value, StatusCode)> = vec![
        (json!({"click_id": click_id, "event": "ftd", "secret": "wrong-secret-xyz"}), StatusCode::FORBIDDEN),
        (json!({"click_id": click_id, "event": "ftd"}), StatusCode::FORBIDDEN),
        // A click id too old to wait in any writer (a recent one is held: tests/integration/held_postbacks.rs).
        (json!({"click_id": old_click_id(), "event": "ftd", "secret": secret}), StatusCode::NOT_FOUND),
        (json!({"click_id": "{click_id}", "event": "ftd", "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"event": "ftd", "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "bogus", "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": -1, "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": "NaN", "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": "inf", "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": 1e9, "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": "ten", "secret": secret}), StatusCode::BAD_REQUEST),
        (
            json!({"click_id": click_id, "event": "ftd", "currency": "dollars", "secret": secret}),
            StatusCode::BAD_REQUEST,
        ),
        // A misspelled field would silently lose the payout: refused, by name.
        (json!({"click_id": click_id, "event": "ftd", "amount": 150, "secret": secret}), StatusCode::BAD_REQUEST),
        (json!({"click_id": click_id, "event": "ftd", "payout": "1e3", "secret": secret}), StatusCode::BAD_REQUEST),
    ];
    for (body, expected) in cases {
        let (status, answer) = server.postback_json(&body).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{body} -> {answer}");
        if body.get("amount").is_some() {
            assert!(error.starts_with(r#"unknown field "amount""#), "the field is named: {error}");
        }
        assert!(!error.contains(&secret), "the secret is never echoed");
    }
    let malformed = server
        .http
        .post(server.url("/postback"))
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let wrong_type =
        server.http.post(server.url("/postback")).header("Content-Type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge =
        server.http.post(server.url("/postback")).json(&json!({"tid": "x".repeat(70_000)})).send().await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let stats = stats_of(&server, "").await;
    assert_eq!((stats["total_ftds"].as_u64(), stats["total_revenue"].as_f64()), (Some(0), Some(0.0)));
    // Every one of them, readable or not, is in the postback log.
    let (_, log) = server.admin_json(Method::GET, "/admin/postbacks?limit=1000", None).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 18);
    let db = server.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM ftd_events").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM payouts").await, 0);
    let leaked = db
        .count(&format!(
            "SELECT count(*) FROM postback_log WHERE reason LIKE '%{secret}%' OR click_id LIKE '%{secret}%'"
        ))
        .await;
    assert_eq!(leaked, 0);
}

/// Sends every body to `/postback` at once, each retried after a 503 as platforms do (the router
/// answers 503 with `Retry-After` when its store is busy; on SQLite, starved of CPU, a burst of
/// 300 has met the 5-second busy timeout); returns each final answer's status and `status` field
/// (its `error` field if it has none), in order.
async fn post_all_at_once(server: &TestServer, bodies: Vec<Value>) -> Vec<(StatusCode, String)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (http, url) = (server.http.clone(), server.url("/postback"));
            tokio::spawn(async move {
                for _ in 0..20 {
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    let status = response.status();
                    let answer: Value = response.json().await.unwrap();
                    if status != StatusCode::SERVICE_UNAVAILABLE {
                        let said = answer.get("status").unwrap_or(&answer["error"]);
                        return (status, said.as_str().unwrap_or_default().to_owned());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                panic!("{body}: 503 twenty times");
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// The `status` fields of answers that must all be 200.
fn all_ok(answers: Vec<(StatusCode, String)>) -> Vec<String> {
    let refused: Vec<_> = answers.iter().filter(|(status, _)| *status != StatusCode::OK).collect();
    assert!(refused.is_empty(), "{} of {} refused: {refused:?}", refused.len(), answers.len());
    answers.into_iter().map(|(_, status)| status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_postbacks_count_once() {
    let (server, secret, click_id) = server_with_click().await;
    let body = json!({"click_id": click_id, "event": "ftd", "payout": 100, "secret": secret, "tid": "t-1"});
    let statuses = all_ok(post_all_at_once(&server, vec![body; 20]).await);
    assert_eq!(statuses.iter().filter(|s| *s == "success").count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 19);
    let stats = stats_of(&server, "").await;
    assert_eq!((stats["total_ftds"].as_u64(), stats["total_revenue"].as_f64()), (Some(1), Some(100.0)));
    // Every one of them is in the log once, with the outcome its answer gave.
    let (_, log) = server.admin_json(Method::GET, "/admin/postbacks?limit=100", None).await;
    let items = log["items"].as_array().unwrap();
    let outcome_count = |outcome: &str| items.iter().filter(|i| i["outcome"] == outcome).count();
    assert_eq!((items.len(), outcome_count("accepted"), outcome_count("duplicate")), (20, 1, 19), "{log}");
    assert!(items.iter().filter(|i| i["outcome"] == "duplicate").all(|i| i["reason"] == "ftd already recorded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ftds_is_recorded_once_each_with_its_payouts_and_log_lines() {
    // 120 clicks, each reported at once: payouts of 1..=120 except every tenth without one, one
    // transaction id reported for two clicks (the second is a duplicate), and 20 clicks reported
    // twice. On PostgreSQL concurrent FTDs are committed together: each must still get its own
    // outcome, payout and log line.
    let (server, secret, clicks) = server_with_clicks(120).await;
    let mut bodies = Vec::new();
    for (i, click_id) in clicks.iter().enumerate() {
        let n = i + 1;
        let tid = if n == 120 { "t-1".to_owned() } else { format!("t-{n}") };
        let mut body = json!({"click_id": click_id, "event": "ftd", "secret": secret, "tid": tid});
        if n % 10 != 0 {
            body["payout"] = json!(n);
        }
        bodies.push(body);
    }
    bodies.extend(bodies[20..40].to_vec());
    let statuses = all_ok(post_all_at_once(&server, bodies).await);
    let count = |status: &str| statuses.iter().filter(|s| *s == status).count();
    assert_eq!((count("success"), count("duplicate")), (119, 21), "{statuses:?}");
    // Click 1 or click 120 won transaction id t-1, whichever came first; every other payout counts.
    let paid: u64 = (1..=119).filter(|n| n % 10 != 0).sum();
    let stats = stats_of(&server, "").await;
    assert_eq!(stats["total_ftds"].as_u64(), Some(119));
    let total = stats["total_revenue"].as_f64().unwrap();
    assert!(total == paid as f64 || total == (paid - 1) as f64, "total payout {total}, expected {paid} or one less");
    let (_, log) = server.admin_json(Method::GET, "/admin/postbacks?limit=500", None).await;
    let items = log["items"].as_array().unwrap();
    let outcome_count = |outcome: &str| items.iter().filter(|i| i["outcome"] == outcome).count();
    assert_eq!((items.len(), outcome_count("accepted"), outcome_count("duplicate")), (140, 119, 21));
    for click_id in &clicks[20..40] {
        let lines: Vec<&Value> = items.iter().filter(|i| i["click_id"] == click_id.to_string()).collect();
        let outcomes: Vec<&str> = lines.iter().map(|i| i["outcome"].as_str().unwrap()).collect();
        assert_eq!((lines.len(), outcomes.contains(&"accepted")), (2, true), "{click_id}: {outcomes:?}");
    }
    if matches!(support::backend(), support::Backend::Postgres) {
        // Committed together: fewer transactions wrote the log than it has lines.
        let transactions = server.db.count("SELECT count(DISTINCT xmin::text) FROM postback_log").await;
        assert!(transactions < 140, "{transactions} transactions for 140 postbacks");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_every_event_kind_gets_the_outcomes_of_one_postback_at_a_time() {
    // 40 clicks with an FTD each (the even ones with a payout). Then all at once, in shuffled
    // order: each click's registration twice, three deposits of which one repeats another's
    // transaction id, a payout for each odd click twice and for each even click once (it has one),
    // and a rejection of every fourth click twice. On PostgreSQL concurrent postbacks are committed
    // together: every answer, row and log line must still be what one-at-a-time would give.
    let (server, secret, clicks) = server_with_clicks(40).await;
    let ftds = clicks
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut body = json!({"click_id": id, "event": "ftd", "secret": secret});
            if i % 2 == 0 {
                body["payout"] = json!(100);
            }
            body
        })
        .collect();
    assert!(
        post_all_at_once(&server, ftds).await.iter().all(|(status, s)| *status == StatusCode::OK && s == "success")
    );

    let mut bodies = Vec::new();
    for (i, id) in clicks.iter().enumerate() {
        let event = |event: &str| json!({"click_id": id, "event": event, "secret": secret});
        let deposit = |tid: &str, amount: u32| json!({"click_id": id, "event": "deposit", "secret": secret, "tid": tid, "payout": amount});
        bodies.extend([event("reg"), event("reg")]);
        bodies.extend([
            deposit(&format!("d{i}-a"), 10),
            deposit(&format!("d{i}-b"), 5),
            deposit(&format!("d{i}-a"), 10),
        ]);
        let payout = json!({"click_id": id, "event": "payout", "secret": secret, "payout": 7});
        bodies.push(payout.clone());
        if i % 2 == 1 {
            bodies.push(payout);
        }
        if i % 4 == 0 {
            bodies.extend([event("rejected"), event("rejected")]);
        }
    }
    // A fixed shuffle (a stride coprime with the length), so that kinds and clicks interleave.
    let n = bodies.len();
    let stride = (7..n).find(|s| gcd(*s, n) == 1).unwrap();
    let shuffled: Vec<Value> = (0..n).map(|k| bodies[k * stride % n].clone()).collect();
    let answers = all_ok(post_all_at_once(&server, shuffled.clone()).await);

    let count = |event: &str, status: &str| {
        shuffled.iter().zip(&answers).filter(|(body, s)| body["event"] == event && *s == status).count()
    };
    assert_eq!((count("reg", "success"), count("reg", "duplicate")), (40, 40));
    assert_eq!((count("deposit", "success"), count("deposit", "duplicate")), (80, 40));
    assert_eq!((count("payout", "success"), count("payout", "duplicate")), (20, 40));
    assert_eq!((count("rejected", "success"), count("rejected", "duplicate")), (10, 10));

    // Rows: 40 registrations, 80 deposits worth 15 a click, 30 FTDs standing, every payout once.
    let amount = match support::backend() {
        support::Backend::Postgres => "amount",
        support::Backend::Sqlite => "amount_micros / 1000000",
    };
    assert_eq!(server.db.count("SELECT count(*) FROM registrations").await, 40);
    assert_eq!(server.db.count("SELECT count(*) FROM deposits").await, 80);
    assert_eq!(server.db.count(&format!("SELECT sum({amount}) FROM deposits")).await, 40 * 15);
    assert_eq!(server.db.count("SELECT count(*) FROM ftd_events WHERE voided_at IS NULL").await, 30);
    assert_eq!(server.db.count("SELECT count(*) FROM payouts").await, 40);
    assert_eq!(server.db.count(&format!("SELECT sum({amount}) FROM payouts")).await, 20 * 100 + 20 * 7);

    // One log line per postback, with the outcome its answer gave.
    let (_, log) = server.admin_json(Method::GET, "/admin/postbacks?limit=500", None).await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 40 + n, "{log}");
    let logged = |outcome: &str| items.iter().filter(|i| i["outcome"] == outcome).count();
    let answered = |status: &str| answers.iter().filter(|s| *s == status).count();
    assert_eq!((logged("accepted"), logged("duplicate")), (40 + answered("success"), answered("duplicate")));
    if matches!(support::backend(), support::Backend::Postgres) {
        // Committed together: fewer transactions wrote these lines than there are.
        let transactions =
            server.db.count("SELECT count(DISTINCT xmin::text) FROM postback_log WHERE event <> 'ftd'").await;
        assert!(transactions < n as i64, "{transactions} transactions for {n} postbacks");
    }
    // The reports' rollup saw every event as the tables hold it, batched or not.
    server.db.assert_event_rollup_matches_the_events().await;
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postback_log_keeps_every_postback_with_filters_and_paging() {
    let (server, secret, click_id) = server_with_click().await;
    server.postback_json(&json!({"click_id": click_id, "event": "ftd", "payout": 10, "secret": secret})).await;
    server.postback_json(&json!({"click_id": click_id, "event": "ftd", "payout": 10, "secret": secret})).await;
    server.postback_json(&json!({"click_id": click_id, "event": "ftd", "secret": "wrong-secret-123"})).await;
    server.postback_json(&json!({"click_id": "garbage", "event": "ftd", "secret": secret})).await;

    let (status, page) = server.admin_json(Method::GET, "/admin/postbacks", None).await;
    assert_eq!(status, StatusCode::OK);
    let outcomes: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["invalid", "forbidden", "duplicate", "accepted"], "newest first");
    let accepted = &page["items"][3];
    assert_eq!(accepted["click_id"], click_id.to_string());
    assert_eq!(accepted["payout"], 10.0);
    assert_eq!(accepted["source_ip"], "127.0.0.1");
    assert!(accepted["offer_id"].is_i64());
    assert!(!page.to_string().contains(&secret), "the log never holds the secret");

    let (_, forbidden) = server.admin_json(Method::GET, "/admin/postbacks?outcome=forbidden", None).await;
    assert_eq!(forbidden["items"].as_array().unwrap().len(), 1);
    assert_eq!(forbidden["items"][0]["reason"], "invalid postback secret");

    let (_, first) = server.admin_json(Method::GET, "/admin/postbacks?limit=3", None).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let before = first["next_before_id"].as_i64().unwrap();
    let (_, second) =
        server.admin_json(Method::GET, &format!("/admin/postbacks?limit=3&before_id={before}"), None).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_before_id"], Value::Null);

    let (_, future) = server.admin_json(Method::GET, "/admin/postbacks?from=2999-01-01T00:00:00Z", None).await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let (_, offer_filtered) = server.admin_json(Method::GET, "/admin/postbacks?offer_id=999", None).await;
    assert!(offer_filtered["items"].as_array().unwrap().is_empty());
    let (status, _) = server.admin_json(Method::GET, "/admin/postbacks?outcome=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_figures_on_a_known_data_set() {
    let server = TestServer::start().await;
    let a = server.create_offer("A", "https://a.example/", 1.0).await;
    let b = server.create_offer("B", "https://b.example/", 1.0).await;
    let (a_id, b_id) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    // 10 clicks on A (2 FTDs: 100 and 50), 4 clicks on B (1 FTD: 40), steered by deactivating.
    server.set_offer(b_id, json!({"active": false})).await;
    let a_clicks: Vec<Uuid> = server.click_many(10, 2).await.0.iter().map(|l| click_id_of(l)).collect();
    server.set_offer(b_id, json!({"active": true})).await;
    server.set_offer(a_id, json!({"active": false})).await;
    let b_clicks: Vec<Uuid> = server.click_many(4, 2).await.0.iter().map(|l| click_id_of(l)).collect();
    let a_secret = a["postback_secret"].as_str().unwrap();
    let b_secret = b["postback_secret"].as_str().unwrap();
    for (click, payout, secret) in
        [(a_clicks[0], 100, a_secret), (a_clicks[1], 50, a_secret), (b_clicks[0], 40, b_secret)]
    {
        let (status, _) =
            server.postback_json(&json!({"click_id": click, "event": "ftd", "payout": payout, "secret": secret})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, stats) = server.admin_json(Method::GET, "/admin/stats", None).await;
    let a_stats = &stats[0];
    assert_eq!(a_stats["id"], a_id);
    assert_eq!(a_stats["total_clicks"], 10);
    assert_eq!(a_stats["total_ftds"], 2);
    assert_eq!(a_stats["total_revenue"], 150.0);
    assert_eq!(a_stats["conversion_rate"], 20.0);
    assert_eq!(a_stats["epc"], 15.0);
    assert_eq!(a_stats["active"], false);
    assert_eq!(a_stats["traffic_share"], 0.0);
    let b_stats = &stats[1];
    assert_eq!((b_stats["total_clicks"].as_u64(), b_stats["total_ftds"].as_u64()), (Some(4), Some(1)));
    assert_eq!(b_stats["conversion_rate"], 25.0);
    assert_eq!(b_stats["epc"], 10.0);
    assert_eq!(b_stats["traffic_share"], 1.0);

    // A range in the past holds nothing; one around now holds everything.
    let empty = stats_of(&server, "?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").await;
    assert_eq!((empty["total_clicks"].as_u64(), empty["total_ftds"].as_u64()), (Some(0), Some(0)));
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let around = stats_of(
        &server,
        &format!("?from={}&to={}", fmt(now - time::Duration::minutes(5)), fmt(now + time::Duration::minutes(5))),
    )
    .await;
    assert_eq!((around["total_clicks"].as_u64(), around["total_ftds"].as_u64()), (Some(10), Some(2)));
    let (status, _) = server.admin_json(Method::GET, "/admin/stats?from=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Scans of each partition of PostgreSQL's `clicks` (index and sequential) since the database began,
/// as its statistics report them.
async fn scans_by_partition(db: &support::TestDb) -> std::collections::BTreeMap<String, i64> {
    let rows = db
        .rows(
            "SELECT relname, CAST(coalesce(idx_scan, 0) + coalesce(seq_scan, 0) AS TEXT) FROM pg_stat_user_tables
             WHERE schemaname = 'click_partitions' AND relname <> 'bounds'",
        )
        .await;
    rows.into_iter().map(|row| (row[0].clone().unwrap(), row[1].as_deref().unwrap().parse().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_postback_reads_only_the_partition_of_its_clicks_day() {
    let Some(db) = support::TestDb::create_postgres().await else { return };
    // The migrations first, on connections then closed: creating partitions scans them (attaching
    // checks each one), and a backend reports its scans only when it flushes its statistics (at
    // exit, or when idle, up to seconds later). From then on the counts are the router's.
    let migrated = casino_router::store::open(&support::test_config(&db)).await.unwrap();
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    db.count(&others.replace("count(*)", "count(pg_terminate_backend(pid))")).await;
    support::wait_until("the migration's connections closed", std::time::Duration::from_secs(10), async || {
        db.count(others).await == 0
    })
    .await;
    drop(migrated);
    let before = scans_by_partition(&db).await;
    // The routing engine's reads are left out: its per-segment evidence joins the month's FTDs to
    // their clicks, a scan of every partition the planner is free to choose (`SEGMENT_BY=none`
    // skips it), and its refresh could come at any moment of the test.
    let mut config = support::test_config(&db);
    config.segment_by = casino_router::routing::SegmentDims::NONE;
    config.thompson_refresh_interval = std::time::Duration::from_secs(3600);
    let server = TestServer::start_on(db, config).await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let (locations, _) = server.click_many(5, 1).await;
    for location in &locations {
        let body = json!({"click_id": click_id_of(location), "event": "ftd", "payout": 40, "secret": offer["postback_secret"]});
        let (status, answer) = server.postback_json(&body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    // The partitions of the clicks' days (one, unless the clicks straddle midnight UTC).
    let days: std::collections::BTreeSet<String> = locations
        .iter()
        .map(|location| {
            let (seconds, _) = click_id_of(location).get_timestamp().unwrap().to_unix();
            let day = time::OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap();
            format!("d{:04}{:02}{:02}", day.year(), u8::from(day.month()), day.day())
        })
        .collect();
    // The statistics reach the view within seconds of each backend going idle.
    support::wait_until("the postbacks' scans counted", std::time::Duration::from_secs(30), async || {
        let scans = scans_by_partition(&server.db).await;
        days.iter().map(|day| scans[day] - before[day]).sum::<i64>() >= 5
    })
    .await;
    let scans = scans_by_partition(&server.db).await;
    assert!(scans.len() >= 8, "today, a week ahead and the default partition: {scans:?}");
    let elsewhere: Vec<_> = scans.iter().filter(|(name, n)| !days.contains(*name) && **n != before[*name]).collect();
    assert!(elsewhere.is_empty(), "no other partition was read: {elsewhere:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postback_for_a_click_past_retention_is_refused_with_the_reason() {
    let server = TestServer::start_with(|config| {
        config.click_retention = Some(std::time::Duration::from_secs(30 * 24 * 3600));
    })
    .await;
    let offer = server.create_offer("Alpha", "https://alpha.example/", 1.0).await;
    let body = json!({"click_id": old_click_id(), "event": "ftd", "secret": offer["postback_secret"]});
    let (status, answer) = server.postback_json(&body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let reason = answer["error"].as_str().unwrap();
    assert_eq!(reason, "unknown click_id: clicks older than CLICK_RETENTION_DAYS (30) are no longer stored");
    // A recent click is still found.
    let click_id = click_id_of(&server.click_location("").await);
    let body = json!({"click_id": click_id, "event": "ftd", "secret": offer["postback_secret"]});
    assert_eq!(server.postback_json(&body).await.0, StatusCode::OK);
}
