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
use crate::http_body::{error_chain, location_host, one_line, read_prefix};
use crate::secret::Secret;

/// How much of an error body is read for the outbox's `last_error`.
pub const ERROR_BODY_LIMIT: usize = 2048;

/// A sink that POSTs JSON to one URL (a secret: it is never logged).
///
/// What every send needs from the settings (the parsed URL, the header map,
/// the pieces to mask in error texts) is worked out once here, not per send:
/// at a burst's rate that per-send parsing was a visible share of the
/// dispatcher's CPU (BENCHMARKS.md, "Session 5").
pub struct HttpSink {
    client: reqwest::Client,
    /// The parsed URL, or why it cannot be used (then every send fails
    /// permanently with that reason; the config check refuses such URLs).
    target: Result<reqwest::Url, String>,
    headers: Result<HeaderMap, String>,
    /// What must not appear in an error text: URL pieces and header values.
    masks: Masks,
}

/// Secret pieces to mask; `Debug` shows only how many there are.
struct Masks(Vec<String>);

impl std::fmt::Debug for Masks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masks({} pieces, ***)", self.0.len())
    }
}

impl super::Sink for HttpSink {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> super::SendFuture<'a> {
        Box::pin(HttpSink::send(self, delivery))
    }
}

impl HttpSink {
    /// A sink posting to `url` with extra `headers` over the shared client.
    pub fn new(client: reqwest::Client, url: Secret, headers: BTreeMap<String, Secret>) -> Self {
        let target = reqwest::Url::parse(url.expose())
            .map_err(|e| format!("the sink's URL is not valid ({e}; not shown)"));
        HttpSink {
            client,
            target,
            headers: header_map(&headers),
            masks: Masks(secret_parts(&url, &headers)),
        }
    }

    /// POSTs the message's `json` part once and classifies the answer. The
    /// error text (which ends up in logs and the outbox) has every part of
    /// the URL and of the extra headers masked: a server may echo them.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let secrets = &self.masks.0;
        self.send_once(delivery, secrets)
            .await
            .map_err(|e| e.map_message(|m| crate::secret::mask(&m, secrets)))
    }

    async fn send_once(&self, delivery: &Delivery, secrets: &[String]) -> Result<(), SendError> {
        let url = self.target.clone().map_err(SendError::Permanent)?;
        let headers = self.headers.clone().map_err(SendError::Permanent)?;
        let response = self
            .client
            .post(url)
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .body(delivery.message.part("json").to_string())
            .send()
            .await
            .map_err(transport_error)?;
        classify(response, secrets).await
    }
}

/// What must not appear in an error text: URL pieces and header values,
/// longest first.
fn secret_parts(url: &Secret, headers: &BTreeMap<String, Secret>) -> Vec<String> {
    let mut parts = crate::secret::url_parts(url.expose());
    for value in headers.values() {
        parts.extend(crate::secret::value_parts(value.expose()));
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts
}

/// The extra headers as sent (values marked sensitive), or why one cannot
/// be sent (naming the header, never its value).
fn header_map(headers: &BTreeMap<String, Secret>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name {name:?} is not valid"))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("the value of header {name} is not valid (not shown)"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// A failure before any answer: always worth retrying. The URL is stripped
/// because it is a credential; the cause chain is kept because reqwest's own
/// text ("client error (Connect)") hides what went wrong, e.g. a certificate
/// the system roots and `tls.ca_file` do not trust.
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
        .map(|s| format!(": {}", error_chain(s)))
        .unwrap_or_default();
    SendError::Retryable(format!("{kind}{cause}"))
}

/// Redirects are never followed (a 307/308 would re-send the body and
/// headers to another host, a 301/302 would turn the POST into a body-less
/// GET): a 3xx is a permanent failure naming where it pointed. Only the
/// `Location`'s host is shown, never its path or query (they may carry the
/// credential).
pub fn redirect_error(status: StatusCode, headers: &HeaderMap) -> Option<SendError> {
    if !status.is_redirection() {
        return None;
    }
    Some(SendError::Permanent(format!(
        "HTTP {}: redirects to {}; redirects are not followed, configure the final URL",
        status.as_u16(),
        location_host(headers)
    )))
}

/// Maps an HTTP answer onto delivered / retry / permanent; `secrets` are
/// masked in the error body before it is shortened.
pub async fn classify(response: reqwest::Response, secrets: &[String]) -> Result<(), SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if let Some(redirect) = redirect_error(status, response.headers()) {
        return Err(redirect);
    }
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = one_line(&read_prefix(response, ERROR_BODY_LIMIT).await, secrets);
    let message = if body.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {body}", status.as_u16())
    };
    Err(classify_status(status, retry_after, message))
}

/// THE status rule of every HTTP sink (webhook, Slack, Teams, Discord), so
/// they cannot disagree: 408, 429 and 5xx are transient (after the server's
/// `wait` when it gave one, else the usual backoff); any other status
/// (4xx, and the 3xx that [`redirect_error`] words better) is permanent.
pub fn classify_status(status: StatusCode, wait: Option<Duration>, message: String) -> SendError {
    let transient = status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error();
    match (transient, wait) {
        (true, Some(after)) => SendError::RetryAfter { after, message },
        (true, None) => SendError::Retryable(message),
        (false, _) => SendError::Permanent(message),
    }
}

/// `Retry-After` in seconds or as an HTTP date, relative to `now`. Total:
/// garbage, negative or NaN is `None`; a huge number or a far date is a huge
/// wait (the dispatcher clamps it to `backoff_max`), never a panic.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_wait(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_SERVER_WAIT),
    )
}

/// The longest wait a server can ask for: very large, yet still a date
/// chrono can add to now (a `Duration::MAX` would overflow there and could
/// end up as "retry at once"). The dispatcher clamps further.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A server-given wait in (fractional) seconds: `None` for NaN or negative,
/// at most [`MAX_SERVER_WAIT`] however large (or infinite) the number.
pub fn seconds_wait(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    let wait = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
    Some(wait.min(MAX_SERVER_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        DeliveryId, DeliveryStatus, EventKind, ExportId, RenderedMessage, Subject,
    };
    use reqwest::header::LOCATION;
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
    fn statuses_map_onto_the_dispatcher_classes() {
        let wait = Some(Duration::from_millis(1500));
        let after = |status| classify_status(status, wait, "m".into());
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert_eq!(
                after(status),
                SendError::RetryAfter {
                    after: Duration::from_millis(1500),
                    message: "m".into()
                },
                "{status}"
            );
            assert!(matches!(
                classify_status(status, None, "m".into()),
                SendError::Retryable(_)
            ));
        }
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            assert!(matches!(after(status), SendError::Permanent(_)), "{status}");
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

    /// Server-given delays are total: garbage is ignored, a huge one is a
    /// huge wait (clamped by the dispatcher), nothing panics.
    #[test]
    fn retry_after_never_panics_on_huge_negative_or_nan_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let wait = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        for huge in ["99999999999999999999", "1e300", "inf"] {
            assert_eq!(wait(huge), Some(MAX_SERVER_WAIT), "{huge}");
        }
        for garbage in ["-1", "-0.5", "NaN", "-inf", ""] {
            assert_eq!(wait(garbage), None, "{garbage}");
        }
        let far = wait("Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(far, Some(MAX_SERVER_WAIT));
        let soon = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        assert_eq!(wait(&soon), Some(Duration::from_secs(3600)));
        assert_eq!(wait("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(seconds_wait(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(seconds_wait(f64::NAN), None);
        assert_eq!(seconds_wait(f64::MAX), Some(MAX_SERVER_WAIT));
        // Still a time the outbox can store: adding it to now does not overflow.
        let wait = chrono::Duration::from_std(MAX_SERVER_WAIT).unwrap();
        assert!(chrono::Utc::now().checked_add_signed(wait).is_some());
    }

    #[test]
    fn a_redirect_names_the_location_host_only() {
        let mut headers = HeaderMap::new();
        let at = "https://evil.example:8443/hooks/T0SECRET/tok?sig=SIG123";
        headers.insert(LOCATION, HeaderValue::from_static(at));
        let error = redirect_error(StatusCode::TEMPORARY_REDIRECT, &headers)
            .unwrap()
            .to_string();
        assert!(
            error.contains("HTTP 307") && error.contains("evil.example:8443"),
            "{error}"
        );
        assert!(
            !error.contains("T0SECRET") && !error.contains("SIG123"),
            "{error}"
        );
        headers.insert(LOCATION, HeaderValue::from_static("/hooks/T0SECRET/"));
        assert_eq!(location_host(&headers), "another path on the same host");
        assert!(redirect_error(StatusCode::OK, &headers).is_none());
    }
}
