//! HTTP: routing of requests to handlers, and the response helpers they share.
//!
//! Routing is a `match` on method and path. Every error answers `{"error": "..."}` with the right
//! status; bodies are read with a size limit; nothing a client sends can panic a handler.

mod admin;
mod click;
mod postback;
mod query;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::store::StoreError;

pub use click::{ClickParams, handle_click};

/// The response type of every handler: small bodies, built whole.
pub type HttpResponse = Response<Full<Bytes>>;

/// Largest request body accepted (postbacks and admin JSON are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Routes one request to its handler.
pub async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/click") => handle_click(app, req.uri(), req.headers(), peer),
        (&Method::GET | &Method::POST, "/postback") => postback::handle(app, req, peer).await,
        (&Method::GET, "/health") => health(app).await,
        (_, "/click" | "/postback" | "/health") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ if path == "/admin" || path.starts_with("/admin/") => admin::handle(app, req).await,
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
    queue_depth: usize,
    queue_capacity: usize,
    clicks_written: u64,
    clicks_failed: u64,
    clicks_rejected: u64,
    active_offers: usize,
}

/// `GET /health`: 200 while the router can route; says whether the database is reachable.
async fn health(app: &App) -> HttpResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let database_up = app.store.ping().await.is_ok();
    let stats = app.queue.stats();
    json(
        StatusCode::OK,
        &Health {
            status: if database_up { "ok" } else { "degraded" },
            database: if database_up { "up" } else { "down" },
            queue_depth: app.queue.depth(),
            queue_capacity: app.config.click_queue_capacity,
            clicks_written: stats.written.load(Relaxed),
            clicks_failed: stats.failed.load(Relaxed),
            clicks_rejected: stats.rejected.load(Relaxed),
            active_offers: app.table.load().offers().len(),
        },
    )
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_json_type(Response::new(Full::new(Bytes::from(bytes))), status),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "response could not be encoded"),
    }
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> HttpResponse {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
    }
    let bytes = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_else(|_| b"{\"error\":\"error\"}".to_vec());
    with_json_type(Response::new(Full::new(Bytes::from(bytes))), status)
}

/// The answer to a store failure: 503 when the database is unreachable (clients retry), else 500.
pub fn store_error(err: &StoreError) -> HttpResponse {
    match err {
        StoreError::Unavailable(_) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable, retry later");
            response.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        other => {
            tracing::error!(error = %other, "store error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn with_json_type(mut response: HttpResponse, status: StatusCode) -> HttpResponse {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Reads a whole body of at most [`MAX_BODY_BYTES`], or answers 413 (too large) or 400.
async fn read_body(body: Incoming) -> Result<Bytes, HttpResponse> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds 65536 bytes"))
        }
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "request body could not be read")),
    }
}

/// Parses a JSON body into `T`, answering 400 with serde's explanation when it does not fit.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))
}
