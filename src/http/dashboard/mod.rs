//! The web dashboard under `/dashboard`: server-rendered pages over the same [`App`] operations as
//! the admin API, for an affiliate who would rather not use curl.
//!
//! Why server-rendered: every page is one request with its data in it (no API token in the browser,
//! no build step, nothing fetched from elsewhere), charts are SVG drawn here, and the only script
//! (`assets/dashboard.js`) copies text and reloads the live view.
//!
//! Safety, in the order a request meets it:
//! - **Sign-in**: `POST /dashboard/login` exchanges the admin token for a session ([`App::sign_in`]);
//!   the cookie holds only the session id, `HttpOnly`, `SameSite=Strict`, `Path=/dashboard`, and
//!   `Secure` when the request came over HTTPS through a trusted proxy. Without a session a page
//!   redirects to the sign-in form and a change is refused.
//! - **Cross-site requests**: every `POST` must come from a page of this origin (`Sec-Fetch-Site`,
//!   else `Origin`, when the browser sends them) and carry the session's CSRF token in its form; a
//!   cross-site form post fails all three (no cookie under `SameSite=Strict`, no token, wrong origin).
//! - **Every answer**: a strict `Content-Security-Policy` (scripts and styles of this origin only, no
//!   inline code, no framing, forms only to this origin), `no-store`, `nosniff`, no referrer.
//! - **Secrets**: an offer's postback secret is shown only on an explicit request (a `POST`), never
//!   in a list; the admin token is never shown, nor put in a URL.

mod chart;
mod form;
mod layout;
mod offers;
mod pages;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION, SET_COOKIE,
};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;

use super::HttpResponse;
use crate::app::{App, AppError, Session};
use crate::secret::secrets_match;
use form::Form;

/// Where the dashboard lives.
pub const PREFIX: &str = "/dashboard";
/// The session cookie's name.
const COOKIE_NAME: &str = "casino_session";
/// The form field that carries the session's CSRF token.
const CSRF_FIELD: &str = "csrf";

/// The policy every dashboard answer carries: nothing but this origin's own files, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the dashboard's.
pub fn is_dashboard_path(path: &str) -> bool {
    path == PREFIX || path.strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with('/'))
}

/// A signed-in request: what every page handler gets.
pub(super) struct Visit<'a> {
    app: &'a App,
    session: Session,
    /// The request's query string (`""` when none).
    query: String,
    /// The origin the browser sees (`https://router.example`), for links it copies.
    origin: String,
}

/// Handles a request under `/dashboard`.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let route = path.strip_prefix(PREFIX).unwrap_or("").trim_start_matches('/').to_owned();
    let method = req.method().clone();
    if let Some(name) = route.strip_prefix("assets/") {
        return if method == Method::GET { layout::asset(name) } else { method_not_allowed("GET") };
    }
    let https = is_https(app, &req, peer);
    let origin = origin_of(req.headers(), https);
    let session_id = session_cookie(req.headers()).map(str::to_owned);
    let session = match &session_id {
        Some(id) => match app.session(id).await {
            Ok(session) => session,
            Err(error) => return failure(error),
        },
        None => None,
    };
    if route == "login" {
        return match method {
            Method::GET if session.is_some() => redirect(PREFIX),
            Method::GET => page(StatusCode::OK, layout::login(None)),
            Method::POST => sign_in(app, req, peer, &origin, https).await,
            _ => method_not_allowed("GET, POST"),
        };
    }
    let Some(session) = session else {
        return if method == Method::GET || method == Method::HEAD {
            redirect(&format!("{PREFIX}/login"))
        } else {
            refused(StatusCode::FORBIDDEN, "Sign in first: this change was not made.")
        };
    };
    let query = req.uri().query().unwrap_or("").to_owned();
    let visit = Visit { app, session, query, origin };
    if method == Method::POST {
        if !same_origin(req.headers(), &visit.origin) {
            return refused(StatusCode::FORBIDDEN, "Cross-site request refused: this change was not made.");
        }
        let form = match Form::read(app, req.into_body()).await {
            Ok(form) => form,
            Err(message) => return refused(StatusCode::BAD_REQUEST, &message),
        };
        if !secrets_match(visit.session.csrf_token.as_bytes(), form.get(CSRF_FIELD).unwrap_or("").as_bytes()) {
            return refused(StatusCode::FORBIDDEN, "The form's security token is missing or stale: reload the page.");
        }
        return match route.as_str() {
            "logout" => sign_out(app, session_id.as_deref().unwrap_or(""), https).await,
            "offers" => offers::create(&visit, &form).await,
            _ => match offer_action(&route) {
                Some((id, "")) => offers::update(&visit, id, &form).await,
                Some((id, "secret")) => offers::reveal_secret(&visit, id).await,
                Some((id, "active")) => offers::set_active(&visit, id, &form).await,
                _ => not_found(),
            },
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, POST");
    }
    match route.as_str() {
        "" => pages::overview(&visit).await,
        "offers" => offers::list(&visit).await,
        "offers/new" => offers::new_form(&visit),
        "reports" => pages::reports(&visit).await,
        "routing" => pages::routing(&visit).await,
        "postbacks" => pages::postbacks(&visit).await,
        "live" => pages::live(&visit).await,
        _ => match offer_action(&route) {
            Some((id, "")) => offers::edit_form(&visit, id).await,
            _ => not_found(),
        },
    }
}

/// `offers/{id}` and `offers/{id}/{action}`: the id and the action (`""` for none).
fn offer_action(route: &str) -> Option<(i64, &str)> {
    let rest = route.strip_prefix("offers/")?;
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    Some((id.parse().ok()?, action))
}

/// `POST /dashboard/login`: the token for a session cookie.
async fn sign_in(app: &App, req: Request<Incoming>, peer: SocketAddr, origin: &str, https: bool) -> HttpResponse {
    let client = crate::net::client(
        peer.ip(),
        req.headers().get("x-forwarded-for").map(HeaderValue::as_bytes),
        &app.config().trusted_proxies,
    );
    if !same_origin(req.headers(), origin) {
        return refused(StatusCode::FORBIDDEN, "Cross-site request refused.");
    }
    let form = match Form::read(app, req.into_body()).await {
        Ok(form) => form,
        Err(message) => return page(StatusCode::BAD_REQUEST, layout::login(Some(&message))),
    };
    match app.sign_in(form.get("token").unwrap_or("").trim().as_bytes()).await {
        Ok(signed_in) => {
            let max_age = (signed_in.session.expires_at - time::OffsetDateTime::now_utc()).whole_seconds().max(0);
            with_cookie(redirect(PREFIX), &signed_in.session_id, max_age, https)
        }
        Err(AppError::WrongToken) => {
            // Who tried, never what they typed.
            tracing::warn!(client = %client.ip, "dashboard sign-in with a wrong token");
            page(StatusCode::UNAUTHORIZED, layout::login(Some("That is not the admin token.")))
        }
        Err(error) => failure(error),
    }
}

/// `POST /dashboard/logout`: ends the session everywhere and clears the cookie.
async fn sign_out(app: &App, session_id: &str, https: bool) -> HttpResponse {
    if let Err(error) = app.sign_out(session_id).await {
        return failure(error);
    }
    with_cookie(redirect(&format!("{PREFIX}/login")), "", 0, https)
}

/// The session id of the request's cookie, if it has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

/// Whether the request came over HTTPS: through a trusted proxy that says so (`X-Forwarded-Proto`).
fn is_https(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> bool {
    let trusted = crate::net::client(peer.ip(), None, &app.config().trusted_proxies).via_trusted_proxy;
    trusted
        && req
            .headers()
            .get(HeaderName::from_static("x-forwarded-proto"))
            .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The origin the browser addressed: scheme and `Host`.
fn origin_of(headers: &HeaderMap, https: bool) -> String {
    let host = headers.get(HOST).and_then(|host| host.to_str().ok()).unwrap_or("");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// Whether a change comes from a page of this origin, as far as the browser tells: `Sec-Fetch-Site`
/// (every current browser sends it) must be `same-origin`, else `Origin` must be this one. A client
/// that sends neither (a script, not a browser) has no cookie to abuse: the CSRF token decides.
fn same_origin(headers: &HeaderMap, origin: &str) -> bool {
    if let Some(site) = headers.get(HeaderName::from_static("sec-fetch-site")) {
        return site.as_bytes() == b"same-origin";
    }
    match headers.get(hyper::header::ORIGIN) {
        Some(value) => value.as_bytes() == origin.as_bytes(),
        None => true,
    }
}

/// An HTML page with the dashboard's headers.
pub(super) fn page(status: StatusCode, markup: Markup) -> HttpResponse {
    with_headers(Response::new(Full::new(Bytes::from(markup.into_string()))), status, "text/html; charset=utf-8")
}

/// A page saying why a request was refused, with a way back.
fn refused(status: StatusCode, message: &str) -> HttpResponse {
    page(status, layout::message_page("Refused", message))
}

fn not_found() -> HttpResponse {
    page(StatusCode::NOT_FOUND, layout::message_page("Not found", "No such page."))
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = page(StatusCode::METHOD_NOT_ALLOWED, layout::message_page("Not allowed", "Method not allowed."));
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(hyper::header::ALLOW, value);
    }
    response
}

/// An operation's failure as a page: the status the API would answer, and its message.
fn failure(error: AppError) -> HttpResponse {
    let error = super::ApiError::from(error);
    page(error.status(), layout::message_page("Something went wrong", error.message()))
}

/// 303 to `location` (after a form, the browser GETs it).
pub(super) fn redirect(location: &str) -> HttpResponse {
    let mut response = with_headers(Response::new(Full::new(Bytes::new())), StatusCode::SEE_OTHER, "text/plain");
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// `response` setting the session cookie to `value` for `max_age` seconds (an empty value and 0
/// clear it): `HttpOnly`, `SameSite=Strict`, only under the dashboard, `Secure` over HTTPS.
fn with_cookie(mut response: HttpResponse, value: &str, max_age: i64, https: bool) -> HttpResponse {
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE_NAME}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// A response with the dashboard's security headers.
fn with_headers(mut response: HttpResponse, status: StatusCode, content_type: &'static str) -> HttpResponse {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
        .insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    headers.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let id = "a".repeat(43);
        let found = headers(&[("cookie", &format!("theme=dark; {COOKIE_NAME}={id}; x=1"))]);
        assert_eq!(session_cookie(&found), Some(id.as_str()));
        assert_eq!(session_cookie(&headers(&[("cookie", "casino_session_old=1")])), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn only_same_origin_requests_pass() {
        let origin = "http://127.0.0.1:5000";
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), origin));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")]), origin));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site"), ("origin", origin)]), origin));
        assert!(same_origin(&headers(&[("origin", origin)]), origin));
        assert!(!same_origin(&headers(&[("origin", "http://localhost:5000")]), origin));
        assert!(same_origin(&HeaderMap::new(), origin));
    }

    #[test]
    fn offer_routes_give_their_id_and_action() {
        assert_eq!(offer_action("offers/12"), Some((12, "")));
        assert_eq!(offer_action("offers/12/secret"), Some((12, "secret")));
        assert_eq!(offer_action("offers/new"), None);
        assert_eq!(offer_action("reports"), None);
    }
}
