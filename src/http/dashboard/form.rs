//! Form bodies and query strings of the dashboard, decoded strictly (bad escapes and non-UTF-8 are
//! refused, as everywhere else in the router).

use hyper::body::Incoming;

use crate::app::App;
use crate::http::query::pairs;
use crate::http::read_body;

/// The fields of a form body or a query string, in order.
#[derive(Debug, Default)]
pub(super) struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Reads and decodes an `application/x-www-form-urlencoded` body.
    pub(super) async fn read(app: &App, body: Incoming) -> Result<Form, String> {
        let bytes = read_body(body, app.config().header_read_timeout).await.map_err(|e| e.message().to_owned())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| "the form is not valid UTF-8".to_owned())?;
        Form::parse(text)
    }

    /// Decodes `key=value&...`.
    pub(super) fn parse(text: &str) -> Result<Form, String> {
        let fields = pairs(text)
            .map(|pair| pair.map(|(key, value)| (key.into_owned(), value.into_owned())))
            .collect::<Result<_, _>>()
            .map_err(|error| error.to_string())?;
        Ok(Form { fields })
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The value of `name`, trimmed; `None` when absent or blank.
    pub(super) fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_and_blank_ones_are_not_filled() {
        let form = Form::parse("name=Casino+%C3%84&weight=&csrf=abc").unwrap();
        assert_eq!(form.get("name"), Some("Casino Ä"));
        assert_eq!(form.get("weight"), Some(""));
        assert_eq!(form.filled("weight"), None);
        assert_eq!(form.get("missing"), None);
        assert!(Form::parse("name=%zz").is_err());
    }
}
