//! The server and its `/openapi.json` agree both ways: requests drawn inside the document are not
//! refused as invalid, requests breaking one of its constraints are refused with an error naming
//! the field, and every answer is one the document describes (see `support::conformance`).
//!
//! Rerun with `TEST_STORE=sqlite cargo test --locked --test conformance` (or `TEST_STORE=postgres`).

use crate::support;

use support::TestServer;
use support::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_the_answers_the_document_promises() {
    let server = TestServer::start().await;
    let disagreements = conformance::run(&server).await;
    server.stop().await;
    let report: Vec<String> = disagreements.iter().map(ToString::to_string).collect();
    assert!(
        disagreements.is_empty(),
        "{} disagreements between the server and its /openapi.json:\n\n{}",
        disagreements.len(),
        report.join("\n\n")
    );
}
