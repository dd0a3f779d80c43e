//! Sinks: where a rendered message goes. A sink sends one message and only
//! *classifies* a failure (retry, retry after N s, permanent); backoff, limits
//! and bookkeeping live in the shared dispatcher (`crate::dispatch`).

mod console;
mod discord;
pub mod email;
mod http;
mod limits;
#[cfg(test)]
pub mod scripted;
mod slack;
mod teams;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use console::ConsoleSink;
pub use discord::DiscordSink;
pub use email::EmailSink;
pub use http::{transport_error, HttpSink};

use crate::config::{Config, SinkConfig, SinkKind};
use crate::domain::Delivery;

/// How a send failed, as far as retrying is concerned. Messages never hold a
/// secret (no webhook URL, no token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again after the usual backoff (5xx, timeouts, resets).
    #[error("{0}")]
    Retryable(String),
    /// The server said when to come back (429 Retry-After, Discord retry_after).
    #[error("{message} (retry after {}s)", after.as_secs())]
    RetryAfter { after: Duration, message: String },
    /// Retrying cannot help (4xx other than 408/429, a refused address).
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// The same class with its text rewritten (e.g. a secret redacted).
    pub fn map_message(self, f: impl Fn(String) -> String) -> SendError {
        match self {
            SendError::Retryable(m) => SendError::Retryable(f(m)),
            SendError::RetryAfter { after, message } => SendError::RetryAfter {
                after,
                message: f(message),
            },
            SendError::Permanent(m) => SendError::Permanent(f(m)),
        }
    }
}

/// Why a sink could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
}

/// One configured sink.
pub enum Sink {
    Console(ConsoleSink),
    /// The generic webhook, Slack and Teams: a JSON POST to a secret URL.
    Http(HttpSink),
    #[cfg(test)]
    Scripted(std::sync::Arc<scripted::ScriptedSink>),
    Email(Box<EmailSink>),
    /// Boxed: serenity's client is large and sinks live in a map.
    Discord(Box<DiscordSink>),
}

impl Sink {
    /// Builds the sink for one `[sinks.NAME]` entry, sharing `http` (one
    /// connection pool and TLS stack for every HTTP sink); `ca_file` is the
    /// extra root CA of `[tls]` for sinks with their own TLS stack (email).
    pub fn build(
        config: &SinkConfig,
        http: &reqwest::Client,
        ca_file: Option<&Path>,
    ) -> Result<Sink, BuildError> {
        Ok(match &config.kind {
            SinkKind::Console => Sink::Console(ConsoleSink::stdout()),
            SinkKind::Webhook { url, headers } => {
                Sink::Http(HttpSink::new(http.clone(), url.clone(), headers.clone()))
            }
            SinkKind::Slack { url } | SinkKind::Teams { url } => {
                Sink::Http(HttpSink::new(http.clone(), url.clone(), BTreeMap::new()))
            }
            SinkKind::Discord {
                webhook_url,
                bot_token,
                api_base,
            } => Sink::Discord(Box::new(
                DiscordSink::new(
                    http.clone(),
                    webhook_url.as_ref(),
                    bot_token.as_ref(),
                    api_base.as_ref(),
                )
                .map_err(|message| BuildError::Sink {
                    sink: config.name.clone(),
                    message,
                })?,
            )),
            SinkKind::Email(email) => EmailSink::new(email, ca_file, config.concurrency)
                .map(|sink| Sink::Email(Box::new(sink)))
                .map_err(|e| BuildError::Sink {
                    sink: config.name.clone(),
                    message: e.to_string(),
                })?,
        })
    }

    /// Ends the sink's open sessions (SMTP QUIT); a no-op for HTTP sinks,
    /// whose connections need no goodbye.
    pub async fn close(&self) {
        if let Sink::Email(email) = self {
            email.close().await;
        }
    }

    /// Sends one delivery's rendered message.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        match self {
            Sink::Console(sink) => sink.send(delivery),
            Sink::Http(sink) => sink.send(delivery).await,
            #[cfg(test)]
            Sink::Scripted(sink) => sink.send(),
            Sink::Email(sink) => sink.send(delivery).await,
            Sink::Discord(sink) => sink.send(delivery).await,
        }
    }
}

/// Shortens a rendered JSON payload to the platform limits of `kind`
/// (Slack blocks and texts, the Teams body size, Discord content and
/// embeds), so an oversized message is cut rather than refused and lost.
/// True when it changed anything.
pub fn fit_payload(kind: &SinkKind, payload: &mut serde_json::Value) -> bool {
    match kind {
        SinkKind::Slack { .. } => slack::fit(payload),
        SinkKind::Teams { .. } => teams::fit(payload),
        SinkKind::Discord { .. } => discord::fit(payload),
        _ => false,
    }
}

/// Every enabled sink of a config, by name.
pub struct Sinks {
    sinks: BTreeMap<String, Sink>,
}

impl Sinks {
    /// Builds every enabled sink; the first failure names its sink.
    pub fn build(config: &Config, http: &reqwest::Client) -> Result<Sinks, BuildError> {
        let sinks = config
            .sinks
            .values()
            .filter(|s| s.enabled)
            .map(|s| {
                let sink = Sink::build(s, http, config.ca_file.as_deref())?;
                Ok((s.name.clone(), sink))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(Sinks { sinks })
    }

    /// A set of ready-made sinks (tests).
    #[cfg(test)]
    pub fn from_sinks(sinks: BTreeMap<String, Sink>) -> Sinks {
        Sinks { sinks }
    }

    /// The sink of that name, if configured and enabled.
    pub fn get(&self, name: &str) -> Option<&Sink> {
        self.sinks.get(name)
    }

    /// Ends open sessions politely (SMTP QUIT) before a one-shot run exits.
    pub async fn close(&self) {
        for sink in self.sinks.values() {
            sink.close().await;
        }
    }
}

/// The HTTP client every HTTP sink shares: rustls with the system roots (plus
/// `tls.ca_file`), bounded timeouts. Redirects are never followed and no
/// `Referer` is sent: a followed 307/308 re-sends the body and headers (and
/// the webhook URL as `Referer`) to another host, a followed 301/302 turns
/// the POST into a GET that "succeeds" with nothing delivered. A 3xx is a
/// permanent failure instead (see `http::redirect_error`). Discord's
/// serenity client runs on this one too.
pub fn http_client(config: &Config) -> Result<reqwest::Client, BuildError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("crayon-export-bot/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .referer(false);
    if let Some(path) = &config.ca_file {
        let ca = crate::http_body::load_ca_file(path).map_err(|e| BuildError::Sink {
            sink: "tls.ca_file".into(),
            message: e.to_string(),
        })?;
        for cert in ca.certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| BuildError::Sink {
        sink: "http".into(),
        message: e.without_url().to_string(),
    })
}
