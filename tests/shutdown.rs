//! SIGTERM on the real binary: clicks answered just before it are all in the table afterwards.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;
use support::{ADMIN_TOKEN, TestDb, click_many_at};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_queued_click_and_exits_zero() {
    let db = TestDb::create().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_casino-router"))
        .env_clear()
        .env("DATABASE_URL", db.database_url())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        // Keep clicks in the queue: only the shutdown drain can write them.
        .env("WRITER_FLUSH_MS", "60000")
        .env("WRITER_BATCH_SIZE", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the router binary");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("router exited before listening").unwrap();
        if let Some(rest) = line.split("addr=").nth(1).filter(|_| line.contains("listening")) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let created = http
        .post(format!("http://{addr}/admin/offers"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Alpha", "casino_url": "https://alpha.example/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let locations = click_many_at(&http, addr, 400, 8).await;
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, 0, "clicks are still queued");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    let log = drain.join().unwrap();
    assert!(exit.success(), "exit status {exit:?}, log: {log:#?}");
    assert_eq!(db.count("SELECT count(*) FROM clicks").await, locations.len() as i64);
}
