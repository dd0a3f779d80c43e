//! Talking to the real endpoints on request: `send-test` (one clearly marked
//! message through one sink, outside the outbox, never touching the fired
//! records) and `check --online` (credentials, reachability; sends nothing).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use url::Url;

use crate::app::crayon_settings;
use crate::config::{AccountConfig, Config, SinkKind};
use crate::crayon::CrayonClient;
use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, EventKind, Snapshot, Subject,
};
use crate::preview;
use crate::render::Renderer;
use crate::route::{self, Router, Target};
use crate::sinks;

/// Why a probe could not be made or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Preview(#[from] preview::PreviewError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Build(#[from] sinks::BuildError),
    #[error("sink {sink} refused the test message: {reason}")]
    Refused { sink: String, reason: String },
    #[error("sink {sink} has nobody to send the test to ({reason}); give an address with --to")]
    NoRecipient { sink: String, reason: String },
}

impl ProbeError {
    /// True when the fix is in the config or command line (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ProbeError::Refused { .. })
    }
}

/// Sends one `[TEST]` message through the sink named `name`. `to` overrides
/// the recipient of per-person sinks (email, Discord DMs).
pub async fn send_test(
    config: &Config,
    name: &str,
    to: Option<&str>,
) -> Result<String, ProbeError> {
    let sink_config = preview::sink(config, name)?;
    let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
    let http = sinks::http_client(config)?;
    let sink = sinks::build(sink_config, &http, config.ca_file.as_deref(), None)?;
    let (mut item, days) = preview::load_item(None)?;
    item.action_name = format!(
        "[TEST] {} (sent by crayon-export-bot send-test)",
        item.action_name
    );
    // Per-person sinks never write to the sample's (real) requester: the test
    // goes to `--to`, or only to the sink's fixed recipients.
    item.requested_by = to.map(str::to_string);
    let message = preview::render_message(
        config,
        &renderer,
        sink_config,
        EventKind::Downloadable,
        (&item, days),
        Utc::now(),
    )?;
    let router = Router::new(config);
    let requested_by = item.requested_by.as_deref();
    let view = crate::render::RecipientView::new(requested_by, router.recipient(requested_by));
    let recipient = match route::target(&sink_config.kind, requested_by, &view) {
        Target::Channel => None,
        // One test message to `--to` plus the fixed recipients (an old-style
        // row: the plain address, no per-recipient role).
        Target::Person(who)
        | Target::Mail {
            requester: Some(who),
            ..
        } => Some(who),
        Target::Mail {
            requester: None, ..
        } => None,
        Target::Skip(reason) => {
            return Err(ProbeError::NoRecipient {
                sink: name.to_string(),
                reason,
            })
        }
    };
    let delivery = Delivery {
        id: DeliveryId(0),
        subject: Subject::Item(item.id),
        event: EventKind::Downloadable,
        sink: name.to_string(),
        recipient,
        message,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        created_at: Utc::now(),
    };
    let sent = sink.send(&delivery).await;
    sink.close().await;
    sent.map_err(|e| ProbeError::Refused {
        sink: name.to_string(),
        reason: e.to_string(),
    })?;
    Ok(format!("ok: sink {name} accepted the test message"))
}

/// One line of `check --online`: what was checked and whether it worked.
pub struct OnlineCheck {
    pub what: String,
    pub result: Result<String, String>,
}

/// Logs in to every account (printing what its queue shows) and checks
/// that each enabled sink's host answers.
pub async fn online(config: &Config) -> Vec<OnlineCheck> {
    let only_default =
        config.accounts.len() == 1 && config.accounts[0].id == AccountId::default_account();
    let mut checks = Vec::new();
    for account in &config.accounts {
        let what = if only_default {
            "crayon credentials".to_string()
        } else {
            format!("crayon account {}", account.id)
        };
        let result = crayon_account(config, account).await;
        checks.push(OnlineCheck { what, result });
    }
    let http = match sinks::http_client(config) {
        Ok(http) => http,
        Err(e) => {
            checks.push(OnlineCheck {
                what: "http client".into(),
                result: Err(e.to_string()),
            });
            return checks;
        }
    };
    for sink in config.sinks.values().filter(|s| s.enabled) {
        if let SinkKind::Email(email) = &sink.kind {
            checks.push(OnlineCheck {
                what: format!("sink {} (email)", sink.name),
                result: smtp_session(email, config.ca_file.as_deref()).await,
            });
        }
        if let Some(result) = sinks::registry::slack_auth_test(&sink.kind, &sink.name, &http).await
        {
            checks.push(OnlineCheck {
                what: format!("sink {} (slack app)", sink.name),
                result,
            });
        }
        if let Some(origin) = sink.kind.http_origin() {
            checks.push(OnlineCheck {
                what: format!("sink {} ({})", sink.name, sink.kind.name()),
                result: host_answers(&http, origin).await,
            });
        }
    }
    checks
}

/// One account's login and queue: the token's lifetime, how many items the
/// queue holds and the distinct RequestedBy domains, so an operator learns
/// whether the login sees one user's queue or a whole organisation's.
async fn crayon_account(config: &Config, account: &AccountConfig) -> Result<String, String> {
    let client = CrayonClient::new(crayon_settings(config, account)).map_err(|e| e.to_string())?;
    let lifetime = client
        .check_credentials()
        .await
        .map_err(|e| e.to_string())?;
    let granted = format!("token granted (valid {}s)", lifetime.as_secs());
    let body = client
        .fetch_queue()
        .await
        .map_err(|e| format!("{granted}, but the queue could not be read: {e}"))?;
    let polled = Snapshot::parse_over(&body, &mut None)
        .map_err(|e| format!("{granted}, but the queue answer is malformed: {e}"))?;
    let items = polled.snapshot.items.values();
    let domains: BTreeSet<String> = items
        .filter_map(|i| i.requested_by.as_deref())
        .map(requester_domain)
        .collect();
    let shown: Vec<&str> = domains.iter().map(String::as_str).collect();
    Ok(format!(
        "{granted}; {} item(s) in the queue; RequestedBy domains: {}",
        polled.snapshot.items.len(),
        if shown.is_empty() {
            "(none)".to_string()
        } else {
            shown.join(", ")
        }
    ))
}

/// The domain part of a RequestedBy (lowercased), or the whole value when it
/// is not an address.
fn requester_domain(requested_by: &str) -> String {
    let who = requested_by.trim();
    who.rsplit_once('@')
        .map_or(who, |(_, domain)| domain.trim_end_matches('>'))
        .to_lowercase()
}

async fn host_answers(http: &reqwest::Client, origin: Url) -> Result<String, String> {
    let host = origin.host_str().unwrap_or("?").to_string();
    match http
        .head(origin)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(response) => Ok(format!(
            "{host} answers (HTTP {})",
            response.status().as_u16()
        )),
        Err(e) => Err(format!("{host}: {}", sinks::transport_error(e))),
    }
}

async fn smtp_session(
    email: &crate::config::EmailConfig,
    ca_file: Option<&std::path::Path>,
) -> Result<String, String> {
    let sink = sinks::EmailSink::new(email, ca_file, 1).map_err(|e| e.to_string())?;
    sink.check_connection().await
}
