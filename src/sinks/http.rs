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

    /// POSTs the message's `json` part once and classifies the answer. The
    /// error text (which ends up in logs and the outbox) has every part of
    /// the URL and of the extra headers masked: a server may echo them.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let secrets = self.secret_parts();
        self.send_once(delivery, &secrets)
            .await
            .map_err(|e| e.map_message(|m| crate::secret::mask(&m, &secrets)))
    }

    async fn send_once(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), SendError> {
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
        classify(response, secrets).await
    }

    /// What must not appear in an error text: URL pieces and header values.
    fn secret_parts(&self) -> Vec<String> {
        let mut parts = crate::secret::url_parts(self.url.expose());
        for value in self.headers.values() {
            parts.extend(crate::secret::value_parts(value.expose()));
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts
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

/// Maps an HTTP answer onto delivered / retry / permanent; `secrets` are
/// masked in the error body before it is shortened.
pub async fn classify(response: reqwest::Response, secrets: &[String]) -> Result<(), SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = one_line(&read_limited(response).await, secrets);
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

/// A whole success body, refused (as `Err` with the limit) once it passes
/// `limit` bytes, whatever `Content-Length` claims: for the few answers a
/// sink must read (Discord's DM channel), so a misbehaving server or proxy
/// at `api_base` cannot fill memory.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("the answer is larger than {limit} bytes");
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", e.without_url()))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A body as one short line for the outbox's `last_error`, with `secrets`
/// masked before and after whitespace is collapsed and before it is cut
/// (a cut through a token would otherwise keep its first characters).
pub fn one_line(bytes: &[u8], secrets: &[String]) -> String {
    let text = crate::secret::mask(&String::from_utf8_lossy(bytes), secrets);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::shorten(&crate::secret::mask(&line, secrets), 300)
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
    use crate::domain::{
        DeliveryId, DeliveryStatus, EventKind, ExportId, RenderedMessage, Subject,
    };
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn delivery() -> Delivery {
        let mut message = RenderedMessage::default();
        message.parts.insert("json".into(), "{}".into());
        Delivery {
            id: DeliveryId(1),
            subject: Subject::Item(ExportId(7)),
            event: EventKind::Downloadable,
            sink: "audit".into(),
            recipient: None,
            message,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            created_at: chrono::Utc::now(),
        }
    }

    /// A server that echoes the request (path, query, headers) in its error
    /// body must not get the credential into the outbox's `last_error`.
    #[tokio::test]
    async fn error_texts_never_echo_the_url_or_header_secrets() {
        let server = MockServer::start().await;
        let url = format!(
            "{}/hooks/T0SECRET/B0SECRET/tok-xyzzy?sig=SIG123",
            server.uri()
        );
        let echo = format!(
            "no such hook {url} (token tok-xyzzy, sig SIG123, key hdr-VALUE-9, auth Bearer beta-77)"
        );
        for status in [403, 500] {
            server.reset().await;
            Mock::given(wiremock::matchers::any())
                .respond_with(ResponseTemplate::new(status).set_body_string(echo.clone()))
                .mount(&server)
                .await;
            let headers = BTreeMap::from([
                ("x-api-key".to_string(), Secret::new("hdr-VALUE-9")),
                ("authorization".to_string(), Secret::new("Bearer beta-77")),
            ]);
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let sink = HttpSink::new(client, Secret::new(url.clone()), headers);
            let error = sink.send(&delivery()).await.unwrap_err().to_string();
            for secret in [
                "T0SECRET",
                "B0SECRET",
                "xyzzy",
                "SIG123",
                "hdr-VALUE",
                "beta-77",
            ] {
                assert!(!error.contains(secret), "{secret} in {error}");
            }
            assert!(
                error.starts_with(&format!("HTTP {status}: no such hook ***")),
                "{error}"
            );
        }
    }

    /// The text is cut to 300 characters: a cut through a token must not
    /// keep its first half (masking happens before the cut).
    #[test]
    fn a_token_cut_by_the_length_limit_is_still_masked() {
        let token = "tok-0123456789abcdefghij";
        let secrets = crate::secret::url_parts(&format!("https://h.example.com/hooks/{token}"));
        for pad in 270..300 {
            let body = format!("{} {token} trailing words", "x".repeat(pad));
            let line = one_line(body.as_bytes(), &secrets);
            assert!(!line.contains("tok-0"), "pad {pad}: {line}");
        }
    }

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
