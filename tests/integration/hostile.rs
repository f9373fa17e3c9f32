//! Hostile and broken clients over raw sockets: undecodable queries, bytes that are not HTTP, header
//! floods, slow clients and connection floods get a clear refusal, and the router goes on serving.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes on a new connection and returns what the server answered before closing (or
/// within 5 s).
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

async fn still_serving(server: &TestServer) {
    // A new connection: with a short header timeout the server closes idle pooled ones.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let health = fresh.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_queries_are_400s_with_a_json_reason() {
    let server = TestServer::start().await;
    server.create_offer("A", "https://a.example/", 1.0).await;
    for target in ["/click?source=%FF%FE", "/click?campaign=%E2%82", "/click?source=%", "/postback?click_id=%zz"] {
        let answer =
            raw_exchange(&server, format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await;
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
        assert!(answer.contains("{\"error\":"), "{target}: {answer}");
    }
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_http_are_refused_and_the_router_goes_on() {
    let server = TestServer::start().await;
    let requests: [&[u8]; 4] = [
        b"GET /click?source=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /postback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for request in requests {
        let answer = raw_exchange(&server, request).await;
        // hyper answers 400 to what it cannot parse, or closes the connection on a broken body.
        assert!(answer.is_empty() || status_of(&answer) == 400, "{:?}: {answer}", String::from_utf8_lossy(request));
    }
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_flood_is_refused() {
    let server = TestServer::start().await;
    let mut request = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for n in 0..500 {
        request.push_str(&format!("X-Flood-{n}: {}\r\n", "v".repeat(64)));
    }
    request.push_str("\r\n");
    let answer = raw_exchange(&server, request.as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_after_the_header_timeout() {
    let server = TestServer::start_with(|config| config.header_read_timeout = Duration::from_millis(500)).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finishes
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || status_of(&answer) == 408, "{answer}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408() {
    let server = TestServer::start_with(|config| config.header_read_timeout = Duration::from_millis(500)).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /postback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(b"{\"click_id\": ").await.unwrap(); // and nothing more
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let server = TestServer::start_with(|config| config.max_connections = 3).await;
    // Idle keep-alive connections, each after one answered request, until one is not answered: the
    // limit is reached (the harness's own pooled connection may hold a slot too).
    let mut idle = Vec::new();
    let waiting = loop {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(read) => {
                assert!(String::from_utf8_lossy(&buffer[..read.unwrap()]).starts_with("HTTP/1.1 200"));
                idle.push(stream);
            }
            Err(_) => break stream,
        }
        assert!(idle.len() <= 3, "more connections served than MAX_CONNECTIONS");
    };
    assert!(idle.len() >= 2, "only {} connections served", idle.len());
    // Once a connection closes, the waiting one is served.
    drop(idle.pop());
    let mut waiting = waiting;
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buffer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
}
