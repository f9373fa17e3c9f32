//! The floor for `benches/load.sh`: a bare server on the router's HTTP stack (hyper's HTTP/1, tokio's
//! multi-threaded runtime) that answers every request with a 302 to a URL carrying a fresh UUID v7,
//! and does nothing else (no pick, no record, no queue, no database). Issue 5 asks the router to
//! come within 10% of it.
//!
//! Run: `cargo run --release --example bare_redirect -- 127.0.0.1:5087`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5087".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                let location = format!("https://casino-alpha.example/register?click_id={}", uuid::Uuid::now_v7());
                let response = Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, location)
                    .body(Empty::<Bytes>::new());
                Ok::<_, Infallible>(response.expect("a valid response"))
            });
            // A connection that ends badly (reset by wrk at its deadline) is nothing to report.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
