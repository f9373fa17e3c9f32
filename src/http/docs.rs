//! `/openapi.json` and `/docs`: the API's description and the Swagger UI that renders it.
//!
//! The OpenAPI document is generated from the code ([`super::openapi`]) for the running
//! configuration. The Swagger UI's files come from the `utoipa-swagger-ui` crate, vendored at build time, so `/docs`
//! works with no internet access.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use super::{HttpResponse, error};
use crate::app::App;

/// The Swagger UI's settings: where the document is, and requests ready to run.
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").try_it_out_enabled(true).persist_authorization(true))
});

/// `GET /openapi.json`.
pub fn openapi(app: &App) -> HttpResponse {
    static_response(Bytes::from(super::openapi::document_json(app.config())), "application/json", false)
}

/// `GET /docs`: the UI's files are relative to `/docs/`.
pub fn redirect_to_index() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response.headers_mut().insert(LOCATION, HeaderValue::from_static("/docs/"));
    response
}

/// `GET /docs/` (the page, for an empty `name`) and `GET /docs/{file}`.
pub fn file(name: &str) -> HttpResponse {
    match utoipa_swagger_ui::serve(name, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => {
            let bytes = match file.bytes {
                std::borrow::Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                std::borrow::Cow::Owned(bytes) => Bytes::from(bytes),
            };
            static_response(bytes, &file.content_type, file.gzpipped)
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "docs could not be rendered"),
    }
}

fn static_response(body: Bytes, content_type: &str, gzipped: bool) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if gzipped {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}
