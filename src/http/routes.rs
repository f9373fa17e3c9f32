//! The list of endpoints: every operation the router answers, as a method and a path template.
//!
//! Dispatch, the OpenAPI document's test and the docs all start from [`Endpoint::ALL`], so an endpoint
//! cannot exist without being listed here, and the test that compares this list with
//! `openapi.json` catches an undocumented one. `/click` comes first: it is the one that must be fast,
//! and it is matched by a single comparison.

use hyper::Method;

/// One operation of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /click`
    Click,
    /// `HEAD /click`: a link checker's or a preview's, answered like a click and recorded as a bot's.
    ClickHead,
    /// `GET /postback`
    PostbackGet,
    /// `POST /postback`
    PostbackPost,
    /// `GET /health`
    Health,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /docs`: redirects to `/docs/`.
    DocsRoot,
    /// `GET /docs/`: the Swagger UI page.
    DocsIndex,
    /// `GET /docs/{file}`: the Swagger UI's files.
    DocsFile,
    /// `GET /admin/offers`
    ListOffers,
    /// `POST /admin/offers`
    CreateOffer,
    /// `GET /admin/offers/{id}`
    GetOffer,
    /// `PUT /admin/offers/{id}`
    ReplaceOffer,
    /// `PATCH /admin/offers/{id}`
    PatchOffer,
    /// `DELETE /admin/offers/{id}`
    DeleteOffer,
    /// `GET /admin/stats`
    Stats,
    /// `POST /admin/update-weights`
    UpdateWeights,
    /// `GET /admin/postbacks`
    PostbackLog,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// An endpoint, with the path parameter if its template has one (`{id}`, `{file}`).
    Found(Endpoint, Option<&'a str>),
    /// The path exists, not with this method.
    MethodNotAllowed,
    /// No such path.
    NotFound,
}

impl Endpoint {
    /// Every endpoint, in matching order.
    pub const ALL: [Endpoint; 19] = [
        Endpoint::Click,
        Endpoint::ClickHead,
        Endpoint::PostbackGet,
        Endpoint::PostbackPost,
        Endpoint::Health,
        Endpoint::Metrics,
        Endpoint::OpenApi,
        Endpoint::DocsRoot,
        Endpoint::DocsIndex,
        Endpoint::DocsFile,
        Endpoint::ListOffers,
        Endpoint::CreateOffer,
        Endpoint::GetOffer,
        Endpoint::ReplaceOffer,
        Endpoint::PatchOffer,
        Endpoint::DeleteOffer,
        Endpoint::Stats,
        Endpoint::UpdateWeights,
        Endpoint::PostbackLog,
    ];

    /// The method and path template, as in the OpenAPI document.
    pub const fn operation(self) -> (Method, &'static str) {
        match self {
            Endpoint::Click => (Method::GET, "/click"),
            Endpoint::ClickHead => (Method::HEAD, "/click"),
            Endpoint::PostbackGet => (Method::GET, "/postback"),
            Endpoint::PostbackPost => (Method::POST, "/postback"),
            Endpoint::Health => (Method::GET, "/health"),
            Endpoint::Metrics => (Method::GET, "/metrics"),
            Endpoint::OpenApi => (Method::GET, "/openapi.json"),
            Endpoint::DocsRoot => (Method::GET, "/docs"),
            Endpoint::DocsIndex => (Method::GET, "/docs/"),
            Endpoint::DocsFile => (Method::GET, "/docs/{file}"),
            Endpoint::ListOffers => (Method::GET, "/admin/offers"),
            Endpoint::CreateOffer => (Method::POST, "/admin/offers"),
            Endpoint::GetOffer => (Method::GET, "/admin/offers/{id}"),
            Endpoint::ReplaceOffer => (Method::PUT, "/admin/offers/{id}"),
            Endpoint::PatchOffer => (Method::PATCH, "/admin/offers/{id}"),
            Endpoint::DeleteOffer => (Method::DELETE, "/admin/offers/{id}"),
            Endpoint::Stats => (Method::GET, "/admin/stats"),
            Endpoint::UpdateWeights => (Method::POST, "/admin/update-weights"),
            Endpoint::PostbackLog => (Method::GET, "/admin/postbacks"),
        }
    }

    /// Whether the endpoint is part of the admin API (bearer token required).
    pub fn is_admin(self) -> bool {
        self.operation().1.starts_with("/admin/")
    }
}

/// Finds the endpoint for `method` and `path`. A trailing `/` is ignored under `/admin`.
pub fn resolve<'a>(method: &Method, path: &'a str) -> Resolved<'a> {
    let path = if path.starts_with("/admin/") { path.trim_end_matches('/') } else { path };
    let mut path_exists = false;
    for endpoint in Endpoint::ALL {
        let (endpoint_method, template) = endpoint.operation();
        let Some(parameter) = match_template(template, path) else { continue };
        if endpoint_method == *method {
            return Resolved::Found(endpoint, parameter);
        }
        path_exists = true;
    }
    if path_exists { Resolved::MethodNotAllowed } else { Resolved::NotFound }
}

/// The methods `path` answers to, as an `Allow` header lists them (`GET, POST`); empty if none.
pub fn allowed_methods(path: &str) -> String {
    let path = if path.starts_with("/admin/") { path.trim_end_matches('/') } else { path };
    let mut allowed = String::new();
    for endpoint in Endpoint::ALL {
        let (method, template) = endpoint.operation();
        if match_template(template, path).is_some() {
            if !allowed.is_empty() {
                allowed.push_str(", ");
            }
            allowed.push_str(method.as_str());
        }
    }
    allowed
}

/// Matches `path` against a template whose last segment may be a `{parameter}`; returns the
/// parameter's raw value (`Some(None)` for a template without one).
fn match_template<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let Some(prefix) = template.strip_suffix('}') else {
        return (template == path).then_some(None);
    };
    let (prefix, _) = prefix.rsplit_once('{')?;
    let value = path.strip_prefix(prefix)?;
    (!value.is_empty() && !value.contains('/')).then_some(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_their_endpoint() {
        assert_eq!(resolve(&Method::GET, "/click"), Resolved::Found(Endpoint::Click, None));
        assert_eq!(resolve(&Method::POST, "/postback"), Resolved::Found(Endpoint::PostbackPost, None));
        assert_eq!(resolve(&Method::DELETE, "/admin/offers/12"), Resolved::Found(Endpoint::DeleteOffer, Some("12")));
        assert_eq!(resolve(&Method::GET, "/admin/offers/"), Resolved::Found(Endpoint::ListOffers, None));
        assert_eq!(resolve(&Method::GET, "/docs/index.css"), Resolved::Found(Endpoint::DocsFile, Some("index.css")));
    }

    #[test]
    fn wrong_methods_and_paths_are_told_apart() {
        assert_eq!(resolve(&Method::HEAD, "/click"), Resolved::Found(Endpoint::ClickHead, None));
        assert_eq!(resolve(&Method::POST, "/click"), Resolved::MethodNotAllowed);
        assert_eq!(resolve(&Method::POST, "/admin/offers/3"), Resolved::MethodNotAllowed);
        assert_eq!(resolve(&Method::GET, "/clicks"), Resolved::NotFound);
        assert_eq!(resolve(&Method::GET, "/admin/offers/3/x"), Resolved::NotFound);
        assert_eq!(resolve(&Method::GET, "/docs//"), Resolved::NotFound);
    }

    #[test]
    fn allowed_methods_list_every_method_of_a_path() {
        assert_eq!(allowed_methods("/click"), "GET, HEAD");
        assert_eq!(allowed_methods("/postback"), "GET, POST");
        assert_eq!(allowed_methods("/admin/offers/3/"), "GET, PUT, PATCH, DELETE");
        assert_eq!(allowed_methods("/nowhere"), "");
    }

    #[test]
    fn every_endpoint_resolves_to_itself() {
        for endpoint in Endpoint::ALL {
            let (method, template) = endpoint.operation();
            let path = template.replace("{id}", "7").replace("{file}", "index.html");
            let parameter = template.ends_with('}').then(|| path.rsplit('/').next().unwrap_or(""));
            assert_eq!(resolve(&method, &path), Resolved::Found(endpoint, parameter), "{template}");
        }
    }
}
