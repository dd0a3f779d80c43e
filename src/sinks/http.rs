//! JSON over HTTP POST: the generic `webhook` sink (and the transport under
//! the chat webhooks). Sends the rendered `json` part as the body and maps the
//! answer onto [`SendError`]: 2xx delivered (Teams' 202 included), 408/429/5xx
//! retryable (honouring `Retry-After`), other 4xx permanent with the body's
//! first line as the reason.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::SendError;
use crate::domain::Delivery;
use crate::secret::Secret;

/// How much of an error body is kept for the outbox's `last_error`.
const ERROR_BODY_LIMIT: usize = 2048;

/// A sink that POSTs JSON to one URL (a secret: it is never logged).
pub struct HttpSink {
    client: reqwest::Client,
    url: Secret,
    headers: BTreeMap<String, Secret>,
}

impl HttpSink {
    /// A sink posting to `url` with extra `headers` over the shared client.
    pub fn new(client: reqwest::Client, url: Secret, headers: BTreeMap<String, Secret>) -> Self {
        HttpSink {
            client,
            url,
            headers,
        }
    }

    /// POSTs the message's `json` part once and classifies the answer.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let headers = self.header_map()?;
        let response = self
            .client
            .post(self.url.expose())
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .body(delivery.message.part("json").to_string())
            .send()
            .await
            .map_err(transport_error)?;
        classify(response).await
    }

    fn header_map(&self) -> Result<HeaderMap, SendError> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::Permanent(format!("header name {name:?} is not valid")))?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                SendError::Permanent(format!(
                    "the value of header {name} is not valid (not shown)"
                ))
            })?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(map)
    }
}

/// A failure before any answer: always worth retrying. The URL is stripped
/// because it is a credential.
pub fn transport_error(error: reqwest::Error) -> SendError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let cause = std::error::Error::source(&error)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    SendError::Retryable(format!("{kind}{cause}"))
}

/// Maps an HTTP answer onto delivered / retry / permanent.
pub async fn classify(response: reqwest::Response) -> Result<(), SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = error_body(response).await;
    let message = if body.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {body}", status.as_u16())
    };
    Err(match (status, retry_after) {
        (StatusCode::TOO_MANY_REQUESTS, Some(after)) => SendError::RetryAfter { after, message },
        (s, Some(after)) if s.is_server_error() => SendError::RetryAfter { after, message },
        (StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT, None) => {
            SendError::Retryable(message)
        }
        (s, _) if s.is_server_error() => SendError::Retryable(message),
        _ => SendError::Permanent(message),
    })
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error answer, as one line.
async fn error_body(response: reqwest::Response) -> String {
    one_line(&read_limited(response).await)
}

/// The first [`ERROR_BODY_LIMIT`] bytes of an answer's body (an error
/// answer is never read whole: a misbehaving server cannot fill memory).
pub async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(ERROR_BODY_LIMIT);
    bytes
}

/// A body as one short line for the outbox's `last_error`.
pub fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::shorten(&line, 300)
}

/// `Retry-After` in seconds or as an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }
}
