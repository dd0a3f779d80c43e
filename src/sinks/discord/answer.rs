//! Discord's answers and serenity's errors, mapped onto [`SendError`]. With
//! serenity's ratelimiter off, a 429 is ours to read: the body's
//! `retry_after` (seconds, fractional), else `Retry-After`, else
//! `X-RateLimit-Reset-After`. serenity's own `ErrorResponse` keeps neither,
//! which is why the sink reads the raw answer. The status rule itself is
//! [`classify_status`], the one every HTTP sink uses.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;
use serenity::http::{DiscordJsonSingleError, HttpError};

use crate::http_body::{one_line, read_prefix};

use crate::sinks::http::{
    classify_status, redirect_error, retry_after, seconds_wait, transport_error, ERROR_BODY_LIMIT,
};
use crate::sinks::SendError;

/// The parts of Discord's error body we use.
#[derive(Debug, Default)]
struct ErrorBody {
    message: Option<String>,
    code: Option<i64>,
    retry_after: Option<f64>,
    errors: Vec<DiscordJsonSingleError>,
}

impl ErrorBody {
    /// Each field on its own, so an odd `errors` shape cannot hide
    /// `retry_after`. `None` when the body is not a JSON object.
    fn parse(bytes: &[u8]) -> Option<ErrorBody> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let field = |key: &str| value.get(key);
        value.is_object().then(|| ErrorBody {
            message: field("message").and_then(Value::as_str).map(str::to_string),
            code: field("code").and_then(Value::as_i64),
            retry_after: field("retry_after").and_then(Value::as_f64),
            errors: field("errors")
                .and_then(|e| serenity::http::deserialize_errors(e.clone()).ok())
                .unwrap_or_default(),
        })
    }
}

/// Passes a successful answer through; classifies any other, with
/// `secrets` masked in the text taken from the body before it is cut.
pub async fn check(
    response: reqwest::Response,
    secrets: &[String],
) -> Result<reqwest::Response, SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if let Some(redirect) = redirect_error(status, response.headers()) {
        return Err(redirect);
    }
    let header_wait = header_wait(response.headers(), SystemTime::now());
    let bytes = read_prefix(response, ERROR_BODY_LIMIT).await;
    let body = ErrorBody::parse(&bytes);
    let wait = body
        .as_ref()
        .and_then(|b| b.retry_after)
        .and_then(seconds_wait)
        .or(header_wait);
    let detail = match &body {
        Some(body) => describe(body, secrets),
        None => one_line(&bytes, secrets),
    };
    let message = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {detail}", status.as_u16())
    };
    Err(classify_status(status, wait, message))
}

/// Maps an error serenity itself raised (building a request, or an answer
/// it read). The text may hold the webhook token (`ErrorResponse.url`): the
/// caller redacts it.
pub fn from_serenity(error: serenity::Error) -> SendError {
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(answer)) => classify_status(
            answer.status_code,
            None,
            format!(
                "HTTP {}: {} (code {})",
                answer.status_code.as_u16(),
                answer.error.message,
                answer.error.code
            ),
        ),
        serenity::Error::Http(HttpError::Request(e)) => transport_error(e),
        other => SendError::Permanent(format!("cannot build the Discord request: {other}")),
    }
}

fn header_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    retry_after(headers, now).or_else(|| {
        let value = headers.get("x-ratelimit-reset-after")?.to_str().ok()?;
        seconds_wait(value.trim().parse().ok()?)
    })
}

/// `message (code N); path: problem; …` from Discord's error body.
fn describe(body: &ErrorBody, secrets: &[String]) -> String {
    let mut text = body.message.clone().unwrap_or_default();
    if let Some(code) = body.code {
        text.push_str(&format!(" (code {code})"));
    }
    for e in &body.errors {
        text.push_str(&format!("; {}: {}", e.path, e.message));
    }
    one_line(text.trim().as_bytes(), secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::http::MAX_SERVER_WAIT;

    #[test]
    fn rate_limit_headers_are_read_when_the_body_says_nothing() {
        let now = SystemTime::UNIX_EPOCH;
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset-after", "2.25".parse().unwrap());
        assert_eq!(
            header_wait(&headers, now),
            Some(Duration::from_millis(2250))
        );
        headers.insert("retry-after", "4".parse().unwrap());
        assert_eq!(header_wait(&headers, now), Some(Duration::from_secs(4)));
        headers.insert("retry-after", "-1".parse().unwrap());
        headers.remove("x-ratelimit-reset-after");
        assert_eq!(header_wait(&headers, now), None);
    }

    #[test]
    fn huge_or_odd_rate_limit_waits_never_panic() {
        let now = SystemTime::UNIX_EPOCH;
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset-after", "1e30".parse().unwrap());
        assert_eq!(header_wait(&headers, now), Some(MAX_SERVER_WAIT));
        headers.insert("x-ratelimit-reset-after", "NaN".parse().unwrap());
        assert_eq!(header_wait(&headers, now), None);
        let body = ErrorBody::parse(br#"{"retry_after": 1e300}"#).unwrap();
        assert_eq!(
            body.retry_after.and_then(seconds_wait),
            Some(MAX_SERVER_WAIT)
        );
    }

    #[test]
    fn an_error_body_is_described_with_its_field_errors() {
        let body = ErrorBody::parse(
            br#"{"code": 50035, "message": "Invalid Form Body", "errors": {"embeds": {"0": {"description": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 4096 or fewer in length."}]}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            describe(&body, &[]),
            "Invalid Form Body (code 50035); embeds.0.description: Must be 4096 or fewer in length."
        );
    }

    #[test]
    fn retry_after_survives_an_odd_errors_shape() {
        let body = ErrorBody::parse(
            br#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false, "errors": 5}"#,
        )
        .unwrap();
        assert_eq!(body.retry_after, Some(1.5));
        assert_eq!(describe(&body, &[]), "You are being rate limited.");
        assert!(ErrorBody::parse(b"\"just a string\"").is_none());
    }

    #[test]
    fn serenity_build_errors_are_permanent() {
        let error = serenity::Error::Http(HttpError::InvalidWebhook);
        assert!(matches!(from_serenity(error), SendError::Permanent(_)));
    }
}
