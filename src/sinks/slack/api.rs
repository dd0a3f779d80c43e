//! Slack's Web API: `{api_base}METHOD` with `Authorization: Bearer`, each
//! method's arguments encoded as Slack documents them (JSON for the write
//! methods, a form for `users.lookupByEmail` and `auth.test`), and the
//! answer read as Slack means it: HTTP 200 with `{"ok": false, "error": …}`
//! is a failure, never a send.

use std::time::SystemTime;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response};
use serde_json::Value;
use url::Url;

use crate::http_body::read_capped;
use crate::secret::{mask, Secret};
use crate::sinks::http::{classify, retry_after, transport_error};
use crate::sinks::SendError;

/// A Web API answer is a small JSON object; this is generous.
const ANSWER_LIMIT: u64 = 256 * 1024;

/// Slack errors worth retrying with the usual backoff (the SPEC's list).
const TRANSIENT: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Why a Web API call did not answer `ok: true`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Slack answered `ok: false` with this error name (e.g. `users_not_found`).
    #[error("Slack {method}: {error}")]
    Slack {
        /// The Web API method called.
        method: &'static str,
        /// Slack's error name.
        error: String,
        /// `Retry-After` when the answer carried one.
        wait: Option<std::time::Duration>,
    },
    /// No usable answer: transport, HTTP status or an unreadable body.
    #[error("{0}")]
    Send(SendError),
}

impl ApiError {
    /// Slack's error name, if Slack gave one.
    pub fn slack_error(&self) -> Option<&str> {
        match self {
            ApiError::Slack { error, .. } => Some(error),
            ApiError::Send(_) => None,
        }
    }

    /// The dispatcher's class: `ratelimited` after `Retry-After`, the
    /// transient names with backoff, every other name dead naming it.
    pub fn into_send_error(self) -> SendError {
        match self {
            ApiError::Send(e) => e,
            ApiError::Slack {
                wait, ref error, ..
            } => {
                let message = self.to_string();
                match (error.as_str(), wait) {
                    ("ratelimited", Some(after)) => SendError::RetryAfter { after, message },
                    ("ratelimited", None) => SendError::Retryable(message),
                    (name, _) if TRANSIENT.contains(&name) => SendError::Retryable(message),
                    _ => SendError::Permanent(message),
                }
            }
        }
    }
}

/// The Web API as one bot (the token is masked in every error text).
pub struct Api {
    client: reqwest::Client,
    base: Url,
    token: Secret,
    secrets: Vec<String>,
}

impl Api {
    /// Calls go to `{base}METHOD` on the shared `client` as `token`.
    pub fn new(client: reqwest::Client, base: Url, token: Secret) -> Api {
        let mut secrets = crate::secret::value_parts(token.expose());
        secrets.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Api {
            client,
            base,
            token,
            secrets,
        }
    }

    /// A method that takes a JSON body (`chat.postMessage`, `conversations.open`).
    pub async fn json(&self, method: &'static str, body: &Value) -> Result<Value, ApiError> {
        let request = self
            .request(method)
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string());
        self.call(method, request).await
    }

    /// A method that takes form arguments only (`users.lookupByEmail`, `auth.test`).
    pub async fn form(
        &self,
        method: &'static str,
        args: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        self.call(method, self.request(method).form(args)).await
    }

    /// POSTs `file`'s bytes (streamed from the spool) to the `upload_url`
    /// that `files.getUploadURLExternal` gave. No token goes there, and
    /// only to https (or loopback, for tests); the URL, a credential of its
    /// own, is masked in every error.
    pub async fn upload(
        &self,
        upload_url: &str,
        file: &crate::attach::Attachment,
    ) -> Result<(), SendError> {
        const METHOD: &str = "Slack file upload";
        let url = Url::parse(upload_url)
            .ok()
            .filter(|u| {
                u.scheme() == "https" || (u.scheme() == "http" && crate::config::is_loopback(u))
            })
            .ok_or_else(|| {
                SendError::Retryable(format!("{METHOD}: the upload URL is not an https URL"))
            })?;
        let opened = tokio::fs::File::open(&file.path).await.map_err(|e| {
            SendError::Retryable(format!("{METHOD}: cannot read {}: {e}", file.name))
        })?;
        let mut secrets = self.secrets.clone();
        secrets.insert(0, upload_url.to_string());
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, file.content_type.as_str())
            .header(reqwest::header::CONTENT_LENGTH, file.size)
            .body(reqwest::Body::from(opened))
            .send()
            .await
            .map_err(transport_error)?;
        classify(response, &secrets)
            .await
            .map_err(|e| e.map_message(|m| format!("{METHOD}: {}", mask(&m, &secrets))))
    }

    fn request(&self, method: &str) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{method}", self.base.path()));
        self.client
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token.expose()))
    }

    async fn call(&self, method: &'static str, request: RequestBuilder) -> Result<Value, ApiError> {
        let response = request.send().await.map_err(|e| send(transport_error(e)))?;
        self.answer(method, response)
            .await
            .map_err(|e| self.redact(method, e))
    }

    /// A non-2xx is classified by the shared HTTP rule; a 2xx must be a JSON
    /// object with `ok: true`.
    async fn answer(&self, method: &'static str, response: Response) -> Result<Value, ApiError> {
        if !response.status().is_success() {
            let error = classify(response, &self.secrets).await.err();
            let error = error.unwrap_or_else(|| SendError::Retryable("no answer".into()));
            return Err(send(error.map_message(|m| format!("Slack {method}: {m}"))));
        }
        let wait = retry_after(response.headers(), SystemTime::now());
        let not_understood = |why: String| {
            send(SendError::Retryable(format!(
                "Slack {method}: the answer {why}"
            )))
        };
        let body = read_capped(response, ANSWER_LIMIT)
            .await
            .map_err(|e| not_understood(e.to_string()))?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|_| not_understood("is not JSON".into()))?;
        match value.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(value),
            Some(false) => Err(ApiError::Slack {
                method,
                error: error_name(&value),
                wait,
            }),
            None => Err(not_understood("has no \"ok\"".into())),
        }
    }

    /// Slack or a proxy may echo the token; it never reaches a log or the outbox.
    fn redact(&self, method: &'static str, error: ApiError) -> ApiError {
        match error {
            ApiError::Send(e) => send(e.map_message(|m| mask(&m, &self.secrets))),
            ApiError::Slack { error, wait, .. } => ApiError::Slack {
                method,
                error: mask(&error, &self.secrets),
                wait,
            },
        }
    }
}

fn send(error: SendError) -> ApiError {
    ApiError::Send(error)
}

/// Slack's error name: its first word only (letters, digits, `_`), so an
/// echoed request or token after it never reaches the outbox.
fn error_name(value: &Value) -> String {
    let name = value.get("error").and_then(Value::as_str).unwrap_or("");
    let word: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(80)
        .collect();
    if word.is_empty() {
        "unknown_error".into()
    } else {
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack(error: &str) -> SendError {
        ApiError::Slack {
            method: "chat.postMessage",
            error: error.into(),
            wait: None,
        }
        .into_send_error()
    }

    #[test]
    fn slack_errors_map_onto_the_dispatcher_classes() {
        for name in TRANSIENT.iter().chain(&["ratelimited"]) {
            assert!(matches!(slack(name), SendError::Retryable(_)), "{name}");
        }
        for name in [
            "invalid_auth",
            "channel_not_found",
            "msg_too_long",
            "whatever",
        ] {
            match slack(name) {
                SendError::Permanent(m) => assert!(m.contains(name), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
