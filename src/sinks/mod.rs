//! Sinks: where a rendered message goes. A sink sends one message and only
//! *classifies* a failure (retry, retry after N s, permanent); backoff, limits
//! and bookkeeping live in the shared dispatcher (`crate::app::dispatch`).

mod console;
mod discord;
pub mod email;
mod http;
mod limits;
pub mod registry;
pub mod slack;
mod teams;
#[cfg(test)]
pub mod testkit;
mod webhook;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use console::ConsoleSink;
pub use discord::DiscordSink;
pub use email::EmailSink;
pub use http::{transport_error, HttpSink};
pub use registry::{build, SinkKind};

use crate::attach::Attachment;
use crate::config::Config;
use crate::domain::Delivery;

/// How a send failed, as far as retrying is concerned. Messages never hold a
/// secret (no webhook URL, no token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again after the usual backoff (5xx, timeouts, resets).
    #[error("{0}")]
    Retryable(String),
    /// The server said when to come back (429 Retry-After, Discord retry_after).
    #[error("{message} (retry after {})", whole_millis(*after))]
    RetryAfter { after: Duration, message: String },
    /// Retrying cannot help (4xx other than 408/429, a refused address).
    #[error("{0}")]
    Permanent(String),
    /// Nobody to send it to, found only at send time (e.g. Slack knows no
    /// user with the requester's address): recorded as `skipped` with the
    /// reason, not a failure and not an alert.
    #[error("{0}")]
    Skip(String),
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
            SendError::Skip(m) => SendError::Skip(f(m)),
        }
    }
}

/// A server's wait as people read it, to the millisecond (`1s 500ms`, not
/// `1s` and not `1s 500ms 123us`).
fn whole_millis(wait: Duration) -> humantime::FormattedDuration {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis))
}

/// Why a sink could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
}

/// One configured sink: sends one delivery's rendered message once and
/// classifies a failure. A trait (not an enum of kinds) so test sinks live
/// in test code ([`testkit`]) and a kind's wire code stays in its folder.
pub trait Sink: Send + Sync {
    /// Sends one delivery's rendered message.
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a>;

    /// Sends one delivery's rendered message with the export's file
    /// (`attach = true`, #16). Kinds that cannot carry a file keep the
    /// default, which sends the message alone.
    fn send_with<'a>(
        &'a self,
        delivery: &'a Delivery,
        attachment: Option<&'a Attachment>,
    ) -> SendFuture<'a> {
        let _ = attachment;
        self.send(delivery)
    }

    /// Ends the sink's open sessions before the process exits (SMTP QUIT):
    /// after `once` and `send-test`, and after `run`'s drain at shutdown;
    /// nothing for sinks whose connections need no goodbye.
    fn close(&self) -> CloseFuture<'_> {
        Box::pin(std::future::ready(()))
    }
}

/// What [`Sink::send`] returns: a boxed future, so sinks can be `dyn`.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// What [`Sink::close`] returns.
pub type CloseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Every enabled sink of a config, by name.
pub struct Sinks {
    sinks: BTreeMap<String, Arc<dyn Sink>>,
}

impl Sinks {
    /// Builds every enabled sink; the first failure names its sink.
    pub fn build(config: &Config, http: &reqwest::Client) -> Result<Sinks, BuildError> {
        let sinks = config
            .sinks
            .values()
            .filter(|s| s.enabled)
            .map(|s| {
                let sink = build(
                    s,
                    http,
                    config.ca_file.as_deref(),
                    Some(&config.watch.state),
                )?;
                Ok((s.name.clone(), sink))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(Sinks { sinks })
    }

    /// A set of ready-made sinks (tests).
    #[cfg(test)]
    pub fn from_sinks(sinks: BTreeMap<String, Arc<dyn Sink>>) -> Sinks {
        Sinks { sinks }
    }

    /// The sink of that name, if configured and enabled.
    pub fn get(&self, name: &str) -> Option<&dyn Sink> {
        self.sinks.get(name).map(|s| &**s)
    }

    /// Ends open sessions politely (SMTP QUIT) before the process exits.
    pub async fn close(&self) {
        for sink in self.sinks.values() {
            sink.close().await;
        }
    }
}

/// The HTTP client every HTTP sink shares: rustls with the system roots
/// (plus `tls.ca_file`; [`crate::tls`]), bounded timeouts. Redirects are
/// never followed and no `Referer` is sent: a followed 307/308 re-sends the body and headers (and
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
    let extra = match &config.ca_file {
        Some(path) => {
            let ca = crate::http_body::load_ca_file(path).map_err(|e| BuildError::Sink {
                sink: "tls.ca_file".into(),
                message: e.to_string(),
            })?;
            ca.certs
        }
        None => Vec::new(),
    };
    builder = builder.use_preconfigured_tls(crate::tls::http_client_config(&extra));
    builder.build().map_err(|e| BuildError::Sink {
        sink: "http".into(),
        message: e.without_url().to_string(),
    })
}

#[cfg(test)]
mod send_error_tests {
    use super::*;

    #[test]
    fn a_sub_second_wait_is_shown_not_rounded_to_zero() {
        let shown = |after| {
            SendError::RetryAfter {
                after,
                message: "429".into(),
            }
            .to_string()
        };
        assert_eq!(shown(Duration::from_millis(250)), "429 (retry after 250ms)");
        assert_eq!(
            shown(Duration::from_secs_f64(1.5002)),
            "429 (retry after 1s 500ms)"
        );
        assert_eq!(shown(Duration::from_secs(30)), "429 (retry after 30s)");
    }
}
