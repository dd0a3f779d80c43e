//! Secrets (passwords, tokens, webhook URLs) as a type that never prints.
//!
//! `Debug` and `Display` show `***`; the value is reachable only through
//! [`Secret::expose`], so every place that uses a secret is easy to audit.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A string that must never reach a log, an error message or the outbox.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value read from config or an API answer.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The plain value, for the one call that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The pieces of a credential URL (a webhook URL) that must not come back
/// in an error text: the URL itself, its path and query, every query value,
/// the last path segment and every segment that is not a plain word (Slack,
/// Teams and Discord put their tokens there; `services`, `webhooks` or
/// `triggers` stay readable). Raw and percent-decoded, longest first, for
/// [`mask`]; pieces under four characters are left alone.
pub fn url_parts(url: &str) -> Vec<String> {
    let mut parts = vec![url.to_string()];
    if let Ok(parsed) = url::Url::parse(url) {
        parts.push(parsed.path().to_string());
        parts.extend(parsed.query().map(str::to_string));
        parts.extend(parsed.query_pairs().map(|(_, v)| v.into_owned()));
        let segments: Vec<&str> = parsed.path_segments().into_iter().flatten().collect();
        let last = segments.len().saturating_sub(1);
        for (at, segment) in segments.into_iter().enumerate() {
            let word = segment.chars().all(|c| c.is_ascii_alphabetic());
            if at == last || !word {
                parts.push(segment.to_string());
                parts.push(percent_decode(segment));
            }
        }
    }
    keep_maskable(parts)
}

/// A header value and its words (`Bearer abc…` leaks as `abc…` too).
pub fn value_parts(value: &str) -> Vec<String> {
    let mut parts = vec![value.to_string()];
    parts.extend(value.split_whitespace().map(str::to_string));
    keep_maskable(parts)
}

fn keep_maskable(mut parts: Vec<String>) -> Vec<String> {
    parts.retain(|p| p.chars().count() >= 4);
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    parts
}

/// `%xx` and `+` decoded as in a query string (a URL's secret pieces are
/// masked in both spellings).
pub(crate) fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `text` with every occurrence of every part replaced by `***`, longest
/// part first so a whole URL is masked before its pieces.
pub fn mask(text: &str, parts: &[String]) -> String {
    let mut out = text.to_string();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        out = out.replace(part.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_mask_a_webhook_url_and_every_token_in_it() {
        let url = "https://hooks.slack.com/services/T0AAA/B0BBB/s3cr%2Bet?sig=abcdef&x=1";
        let parts = url_parts(url);
        let echoed = format!(
            "bad url {url}; token T0AAA B0BBB s3cr%2Bet s3cr+et; sig abcdef; path /services/T0AAA/B0BBB/s3cr%2Bet"
        );
        let masked = mask(&echoed, &parts);
        for secret in [
            "T0AAA",
            "B0BBB",
            "s3cr",
            "abcdef",
            "hooks.slack.com/services",
        ] {
            assert!(!masked.contains(secret), "{secret} in {masked}");
        }
        assert!(
            masked.starts_with("bad url ***; token *** *** *** ***"),
            "{masked}"
        );
    }

    #[test]
    fn value_parts_mask_a_bearer_token_alone() {
        let parts = value_parts("Bearer tok-123456");
        assert_eq!(mask("invalid tok-123456", &parts), "invalid ***");
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
