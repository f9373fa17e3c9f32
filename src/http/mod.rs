//! HTTP: routing of requests to handlers, and the response helpers they share.
//!
//! Routing goes through the endpoint list of [`routes`], which the OpenAPI document is checked
//! against. Every error answers `{"error": "..."}` with the right status; bodies are read with a size
//! limit and a time limit; nothing a client sends can panic a handler.

mod admin;
mod click;
mod dashboard;
mod docs;
mod openapi;
mod postback;
mod query;
pub mod routes;

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{App, AppError, Health};
use crate::store::StoreError;
use routes::{Endpoint, Resolved};

pub use click::{ClickParams, handle_click};
pub use openapi::{document as openapi_document, document_json as openapi_json};

/// The response type of every handler: small bodies, built whole.
pub type HttpResponse = Response<Full<Bytes>>;

/// Largest request body accepted (postbacks and admin JSON are small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The main port: clicks, postbacks, admin, docs.
    Public,
    /// The separate metrics port (`METRICS_ADDR`): only `/metrics`, without a token.
    Metrics,
}

/// Routes one request to its handler.
pub async fn route(app: &App, surface: Surface, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    // The click path first, without the route table's search. A HEAD (a link checker, an ad
    // network's validator) is answered like a GET, so the link works for it, and recorded as a bot.
    let is_head = req.method() == Method::HEAD;
    if (req.method() == Method::GET || is_head) && req.uri().path() == "/click" && surface == Surface::Public {
        return handle_click(app, req.uri(), req.headers(), peer, is_head);
    }
    let path = req.uri().path();
    if surface == Surface::Metrics {
        return match (req.method(), path) {
            (&Method::GET, "/metrics") => metrics(app),
            (_, "/metrics") => method_not_allowed("GET"),
            _ => error(StatusCode::NOT_FOUND, "not found"),
        };
    }
    if dashboard::is_dashboard_path(path) {
        return dashboard::handle(app, req, peer).await;
    }
    // Nothing under /admin, not even whether a path exists, is told without the token.
    if (path == "/admin" || path.starts_with("/admin/")) && !admin::authorized(app, &req) {
        return admin::unauthorized();
    }
    let (endpoint, parameter) = match routes::resolve(req.method(), path) {
        Resolved::Found(endpoint, parameter) => (endpoint, parameter.map(str::to_owned)),
        Resolved::MethodNotAllowed => return method_not_allowed(&routes::allowed_methods(path)),
        Resolved::NotFound => return error(StatusCode::NOT_FOUND, "not found"),
    };
    match endpoint {
        Endpoint::Click => handle_click(app, req.uri(), req.headers(), peer, false),
        Endpoint::ClickHead => handle_click(app, req.uri(), req.headers(), peer, true),
        Endpoint::PostbackGet | Endpoint::PostbackPost => postback::handle(app, req, peer).await,
        Endpoint::Health => health(app).await,
        Endpoint::Metrics if app.config().metrics_addr.is_some() => error(StatusCode::NOT_FOUND, "not found"),
        Endpoint::Metrics if !admin::authorized(app, &req) => admin::unauthorized(),
        Endpoint::Metrics => metrics(app),
        Endpoint::OpenApi => docs::openapi(app),
        Endpoint::DocsRoot => docs::redirect_to_index(),
        Endpoint::DocsIndex => docs::file(""),
        Endpoint::DocsFile => docs::file(parameter.as_deref().unwrap_or("")),
        admin_endpoint => admin::handle(app, admin_endpoint, parameter.as_deref(), req).await,
    }
}

/// `GET /metrics`: the Prometheus text format.
fn metrics(app: &App) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(app.metrics_text())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The router's health.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
struct HealthView {
    /// The verdict (described by [`openapi::health_status`]).
    #[schema(schema_with = openapi::health_status)]
    status: &'static str,
    /// Whether the database answered just now: `up` or `down`.
    #[schema(pattern = "^(up|down)$")]
    database: &'static str,
    /// Clicks waiting in memory for the writer.
    queue_depth: usize,
    /// How many clicks the queue holds at most (`CLICK_QUEUE_CAPACITY`).
    queue_capacity: usize,
    /// Clicks the writer holds in memory while the database is unreachable.
    clicks_held: u64,
    /// Clicks spilled to the on-disk journal, waiting for the database.
    journal_clicks: u64,
    /// Size of the journal, in bytes.
    journal_bytes: u64,
    /// Clicks written to the database since start.
    clicks_written: u64,
    /// Clicks the database refused even one by one.
    clicks_failed: u64,
    /// Clicks refused at the door with 503: queue full.
    clicks_rejected: u64,
    /// Offers in the routing table.
    active_offers: usize,
}

/// `GET /health`: 200 with a verdict (`ok`, `degraded` while the database is unreachable,
/// `no_active_offers` while every click is refused), whether the database is reachable, and how
/// many clicks wait for it (queued, held in memory, journaled).
async fn health(app: &App) -> HttpResponse {
    let Health { status, database_up, active_offers, writer } = app.health().await;
    json(
        StatusCode::OK,
        &HealthView {
            status: status.as_str(),
            database: if database_up { "up" } else { "down" },
            queue_depth: writer.queue_depth,
            queue_capacity: writer.queue_capacity,
            clicks_held: writer.held,
            journal_clicks: writer.journal_clicks,
            journal_bytes: writer.journal_bytes,
            clicks_written: writer.written,
            clicks_failed: writer.failed,
            clicks_rejected: writer.rejected,
            active_offers,
        },
    )
}

/// 405 with the `Allow` header RFC 9110 requires.
fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_json_type(Response::new(Full::new(Bytes::from(bytes))), status),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "response could not be encoded"),
    }
}

/// Every error's body.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
struct ErrorBody<'a> {
    /// What went wrong, naming the field at fault.
    error: &'a str,
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> HttpResponse {
    let bytes = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_else(|_| b"{\"error\":\"error\"}".to_vec());
    with_json_type(Response::new(Full::new(Bytes::from(bytes))), status)
}

/// An error answer: its status and the message of its `{"error": ...}` body. Small, so handlers can
/// return `Result<HttpResponse, ApiError>` and use `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: Cow<'static, str>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message of the error body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response: `{"error": message}`, plus `Retry-After` on a 503.
    pub fn into_response(self) -> HttpResponse {
        let mut response = error(self.status, &self.message);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A store failure: 503 when the database is unreachable (clients retry), else 500 (and logged).
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable, retry later")
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// An operation's failure: the status its kind calls for, and its message (which names the field).
impl From<AppError> for ApiError {
    fn from(err: AppError) -> ApiError {
        match err {
            AppError::Invalid(message) => ApiError::bad_request(message),
            AppError::NoSuchOffer => ApiError::new(StatusCode::NOT_FOUND, "no such offer"),
            AppError::WrongToken => ApiError::new(StatusCode::UNAUTHORIZED, "wrong token"),
            AppError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            AppError::PendingClicks => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
            AppError::Store(error) => error.into(),
        }
    }
}

/// serde's reason for refusing a value, without the value (which may be a secret): "invalid type:
/// integer `12345`, expected a string at line 1 column 9" becomes "invalid type: integer, expected a
/// string". Other reasons (a missing or unknown field) name fields only and are kept whole.
fn without_value(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("");
            let expected = rest.split_once(", expected ").map_or("", |(_, expected)| expected);
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    text.to_owned()
}

/// The response of a handler that may fail.
fn respond(result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(ApiError::into_response)
}

fn with_json_type(mut response: HttpResponse, status: StatusCode) -> HttpResponse {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Reads a whole body of at most [`MAX_BODY_BYTES`] within `timeout`, or fails with 413 (too
/// large), 408 (too slow: a client trickling a body would otherwise hold a connection slot) or 400.
async fn read_body(body: Incoming, timeout: std::time::Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds 65536 bytes"))
        }
        Ok(Err(_)) => Err(ApiError::bad_request("request body could not be read")),
    }
}

/// Parses a JSON body into `T`, failing with 400 and serde's explanation, led by the path of the
/// field at fault (`name: invalid type: ...`), when it does not fit.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        // Only a value that does not fit has a field to name; bad syntax is the body's fault.
        let data = error.classify() == serde_json::error::Category::Data;
        ApiError::bad_request(if data && path != "." {
            format!("{path}: {}", without_value(&error))
        } else {
            format!("invalid JSON body: {error}")
        })
    })
}
