//! `kind = "webhook"` (reads `url`, `headers`): the rendered `json` part
//! POSTed to a secret URL with optional extra headers. The wire code is
//! [`super::HttpSink`], shared with Slack and Teams, whose URL checks live
//! here too ([`required_url`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use url::Url;

use super::registry::{KindSpec, SinkKind};
use super::{HttpSink, Sink};
use crate::config::{check_webhook_url, ConfigError, RawSink};
use crate::secret::Secret;

/// The registry entry of `kind = "webhook"`.
pub const KIND: KindSpec = KindSpec {
    name: "webhook",
    keys: &["url", "headers"],
    check,
};

fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    Ok(SinkKind::Webhook {
        url: required_url(name, "url", &raw.url)?,
        headers: check_headers(name, raw.headers.clone().unwrap_or_default())?,
    })
}

/// The secret webhook URL at `sinks.NAME.KEY`: required, an URL, https
/// unless loopback; checked without ever being echoed.
pub fn required_url(name: &str, key: &str, value: &Option<Secret>) -> Result<Secret, ConfigError> {
    let key = format!("sinks.{name}.{key}");
    let url = value
        .clone()
        .ok_or_else(|| ConfigError::invalid(&key, "is required for this sink kind"))?;
    check_webhook_url(&key, &url)?;
    Ok(url)
}

/// The JSON POST of a webhook, Slack or Teams sink over the shared client.
pub fn build(
    http: &reqwest::Client,
    url: &Secret,
    headers: &BTreeMap<String, Secret>,
) -> Arc<dyn Sink> {
    Arc::new(HttpSink::new(http.clone(), url.clone(), headers.clone()))
}

/// Scheme, host and port of a secret URL: the path is left out, since for
/// webhooks it is the credential.
pub fn origin(url: &Secret) -> Option<Url> {
    Url::parse(url.expose()).ok().map(origin_of)
}

/// `url` cut to its origin (`/`, no query, no fragment).
pub fn origin_of(mut url: Url) -> Url {
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Every extra header as reqwest will send it, so a value it would refuse
/// (typically a secret read from a file with its trailing newline) fails
/// `check` instead of killing every delivery. Errors name the header, never
/// its value.
fn check_headers(
    sink: &str,
    headers: BTreeMap<String, Secret>,
) -> Result<BTreeMap<String, Secret>, ConfigError> {
    for (name, value) in &headers {
        let key = format!("sinks.{sink}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                key,
                "is not a valid HTTP header name (letters, digits and -, e.g. \"X-Api-Key\")",
            ));
        }
        if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
            return Err(ConfigError::invalid(
                key,
                header_value_problem(value.expose()),
            ));
        }
    }
    Ok(headers)
}

/// Why a header value cannot be sent, without quoting it.
fn header_value_problem(value: &str) -> &'static str {
    if value.ends_with('\n') || value.ends_with('\r') {
        "the value ends with a newline (a secret read from a file? strip it); the value is not shown"
    } else if value.contains(['\n', '\r']) {
        "the value contains a line break; the value is not shown"
    } else {
        "the value holds a control character, which HTTP headers cannot carry; the value is not shown"
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    /// Every value reqwest would refuse fails, naming the header and never
    /// showing the value.
    #[test]
    fn header_values_reqwest_would_refuse_are_refused_without_being_shown() {
        let cases = [
            ("Authorization", "Bearer s3cret-1\n", "ends with a newline"),
            (
                "Authorization",
                "Bearer s3cret-1\r\n",
                "ends with a newline",
            ),
            ("X-Key", "s3cret-1\nX-Other: y", "line break"),
            ("X-Key", "s3cret-1\u{7}", "control character"),
            ("Bad Name", "s3cret-1", "not a valid HTTP header name"),
        ];
        for (name, value, why) in cases {
            let headers = BTreeMap::from([(name.to_string(), Secret::new(value))]);
            let error = check_headers("audit", headers).unwrap_err().to_string();
            assert!(
                error.contains(&format!("sinks.audit.headers.{name}")),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
            assert!(!error.contains("s3cret-1"), "{error}");
        }
        let fine = BTreeMap::from([("X-Api-Key".to_string(), Secret::new("ok\tvalue"))]);
        assert!(check_headers("audit", fine).is_ok());
    }
}
