//! The dashboard's page shell (navigation, sign-out), its stand-alone pages (sign-in, messages), the
//! formatting of figures, and its static files (stylesheet, script, icon), compiled into the binary.
//!
//! Every value reaches the page through maud's escaping; the only markup not escaped is the SVG of
//! [`super::chart`], built from numbers and escaped names.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;

use super::{CSRF_FIELD, PREFIX, Visit, with_headers};
use crate::http::HttpResponse;

/// The stylesheet.
const CSS: &str = include_str!("assets/dashboard.css");
/// The script: copy buttons and the live view's refresh.
const JS: &str = include_str!("assets/dashboard.js");
/// The icon (without one, browsers ask for `/favicon.ico` and log its 404).
const ICON: &str = include_str!("assets/favicon.svg");

/// The pages of the navigation bar: path under `/dashboard` and title.
pub(super) const NAV: [(&str, &str); 6] = [
    ("", "Overview"),
    ("offers", "Offers"),
    ("reports", "Reports"),
    ("routing", "Routing"),
    ("postbacks", "Postbacks"),
    ("live", "Live clicks"),
];

/// `GET /dashboard/assets/{name}`.
pub(super) fn asset(name: &str) -> HttpResponse {
    let (body, content_type) = match name {
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return super::not_found(),
    };
    with_headers(Response::new(Full::new(Bytes::from_static(body.as_bytes()))), StatusCode::OK, content_type)
}

/// The document around a page's content.
fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · casino-router" }
                link rel="icon" href={ (PREFIX) "/assets/favicon.svg" } type="image/svg+xml";
                link rel="stylesheet" href={ (PREFIX) "/assets/dashboard.css" };
                script src={ (PREFIX) "/assets/dashboard.js" } defer {}
            }
            body { (body) }
        }
    }
}

/// A signed-in page: navigation (with `current` marked), sign-out, the title and `content`.
pub(super) fn shell(visit: &Visit<'_>, current: &str, title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            header.top {
                a.brand href=(PREFIX) { "casino-router" }
                nav {
                    @for (path, name) in NAV {
                        @let href = if path.is_empty() { PREFIX.to_owned() } else { format!("{PREFIX}/{path}") };
                        a href=(href) aria-current=[(path == current).then_some("page")] { (name) }
                    }
                }
                form.signout method="post" action={ (PREFIX) "/logout" } {
                    (csrf_field(visit))
                    button type="submit" { "Sign out" }
                }
            }
            main {
                h1 { (title) }
                (content)
            }
        },
    )
}

/// The hidden field that carries the session's CSRF token: in every form that changes something.
pub(super) fn csrf_field(visit: &Visit<'_>) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(visit.session.csrf_token); }
}

/// The sign-in form, with `error` beside the field.
pub(super) fn login(error: Option<&str>) -> Markup {
    document(
        "Sign in",
        html! {
            main.narrow {
                h1 { "casino-router" }
                form.card method="post" action={ (PREFIX) "/login" } {
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus
                        aria-invalid=[error.map(|_| "true")];
                    @if let Some(error) = error { p.field-error #token-error { (error) } }
                    button type="submit" { "Sign in" }
                }
                p.hint { "The token is the router's ADMIN_TOKEN (printed at start when it generated one)." }
            }
        },
    )
}

/// A page with only a message and a way back.
pub(super) fn message_page(title: &str, message: &str) -> Markup {
    document(
        title,
        html! {
            main.narrow {
                h1 { (title) }
                p.message { (message) }
                p { a href=(PREFIX) { "Back to the dashboard" } }
            }
        },
    )
}

/// `1234567.891` as `1,234,567.89`.
pub(super) fn money(value: f64) -> String {
    let cents = (value * 100.0).round();
    let sign = if cents < 0.0 { "-" } else { "" };
    let cents = cents.abs() as u128;
    format!("{sign}{}.{:02}", grouped(cents / 100), cents % 100)
}

/// `1234567` as `1,234,567`.
pub(super) fn count(value: u64) -> String {
    grouped(u128::from(value))
}

fn grouped(value: u128) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A share as a percentage with one decimal: `0.1234` as `12.3%`.
pub(super) fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A rate as a percentage with two decimals: `0.01234` as `1.23%`.
pub(super) fn rate(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// A time as `2026-12-04 17:05:09` (UTC).
pub(super) fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A date as `2026-12-04` (UTC).
pub(super) fn date(t: OffsetDateTime) -> String {
    timestamp(t)[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(money(1_234_567.891), "1,234,567.89");
        assert_eq!(money(0.005), "0.01");
        assert_eq!(money(-12.5), "-12.50");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(rate(0.01234), "1.23%");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(timestamp(datetime!(2026-12-04 18:05:09 +01:00)), "2026-12-04 17:05:09");
        assert_eq!(date(datetime!(2026-12-04 00:30 UTC)), "2026-12-04");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = message_page("<b>", "<script>alert(1)</script>").into_string();
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
    }
}
