//! The registry of sink kinds: the one enum of kinds with exactly the
//! settings each needs, the table that maps `kind = "…"` to its folder's
//! validation, and every `match` over kinds (exhaustive, no `_ =>`), so adding
//! a kind is a change the compiler walks you through: a folder under
//! `src/sinks/`, a variant and a line in [`KINDS`] here, and its templates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use url::Url;

use super::email::EmailConfig;
use super::{console, discord, email, slack, teams, webhook, BuildError, Sink};
use crate::config::{ConfigError, RawSink, SinkConfig};
use crate::secret::Secret;

/// A sink's kind with exactly the settings that kind needs (checked).
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// `kind = "console"`: stdout.
    Console,
    /// `kind = "webhook"`: a JSON POST with extra headers.
    Webhook {
        /// The secret URL (a credential: never logged).
        url: Secret,
        /// Extra headers, values secret (e.g. `Authorization`).
        headers: BTreeMap<String, Secret>,
    },
    /// `kind = "slack"`: an incoming-webhook URL.
    Slack {
        /// The secret incoming-webhook URL.
        url: Secret,
    },
    /// `kind = "slack"` with `bot_token`: an app on the Web API that DMs the
    /// requester or posts in `channel` mentioning them (boxed: rarely used).
    SlackApp(Box<slack::AppSettings>),
    /// `kind = "teams"`: a Workflows webhook URL.
    Teams {
        /// The secret Workflows trigger URL.
        url: Secret,
    },
    /// `kind = "discord"`: a channel webhook or a bot that DMs requesters.
    Discord {
        /// Post to this channel webhook (exclusive with `bot_token`).
        webhook_url: Option<Secret>,
        /// DM mapped requesters as this bot.
        bot_token: Option<Secret>,
        /// Replaces `https://discord.com` (tests, API proxies).
        api_base: Option<Url>,
    },
    /// `kind = "email"`: SMTP (boxed: the largest settings).
    Email(Box<EmailConfig>),
}

/// What the config layer needs to know about one kind before it exists: its
/// name, the keys it accepts besides the common ones (`kind`, `enabled`,
/// `concurrency`, `rate_limit`, `vars`), and how to check them.
pub struct KindSpec {
    /// As written in `kind = "…"` and used in template names.
    pub name: &'static str,
    /// The kind's own keys in `[sinks.NAME]`.
    pub keys: &'static [&'static str],
    /// Checks the kind's keys of sink `name` into its settings.
    pub check: fn(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError>,
}

/// Every kind, one line each (this order is the one error messages list).
pub const KINDS: &[KindSpec] = &[
    slack::KIND,
    teams::KIND,
    discord::KIND,
    email::KIND,
    webhook::KIND,
    console::KIND,
];

/// The kind called `name`, if there is one.
pub fn spec(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.name == name)
}

/// "slack, teams, … or console": the kinds for an error message.
pub fn kind_list() -> String {
    let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

impl SinkKind {
    /// The kind's name as written in `kind = "…"` and used in template names.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Console => console::KIND.name,
            SinkKind::Webhook { .. } => webhook::KIND.name,
            SinkKind::Slack { .. } | SinkKind::SlackApp(_) => slack::KIND.name,
            SinkKind::Teams { .. } => teams::KIND.name,
            SinkKind::Discord { .. } => discord::KIND.name,
            SinkKind::Email(_) => email::KIND.name,
        }
    }

    /// The template parts a message for this kind is made of.
    pub fn parts(&self) -> &'static [&'static str] {
        match self {
            SinkKind::Console => &["text"],
            SinkKind::Email(_) => &["subject", "text", "html"],
            SinkKind::Webhook { .. }
            | SinkKind::Slack { .. }
            | SinkKind::SlackApp(_)
            | SinkKind::Teams { .. }
            | SinkKind::Discord { .. } => &["json"],
        }
    }

    /// The platform's size budget for a rendered `json` part: the function
    /// the renderer cuts a payload with (true when it changed anything).
    pub fn fit(&self) -> crate::render::Fit {
        match self {
            SinkKind::Slack { .. } | SinkKind::SlackApp(_) => slack::fit,
            SinkKind::Teams { .. } => teams::fit,
            SinkKind::Discord { .. } => discord::fit,
            SinkKind::Console | SinkKind::Webhook { .. } | SinkKind::Email(_) => no_fit,
        }
    }

    /// Scheme, host and port of where the sink sends (`check --online`
    /// asks it); `None` for kinds without an HTTP host.
    pub fn http_origin(&self) -> Option<Url> {
        match self {
            SinkKind::Webhook { url, .. } | SinkKind::Slack { url } | SinkKind::Teams { url } => {
                webhook::origin(url)
            }
            SinkKind::Discord {
                webhook_url,
                api_base,
                ..
            } => discord::origin(webhook_url.as_ref(), api_base.as_ref()),
            // `check --online` calls auth.test instead (see `slack_auth_test`).
            SinkKind::SlackApp(_) | SinkKind::Console | SinkKind::Email(_) => None,
        }
    }

    /// The default `attach_max` of a kind that can send the export's file
    /// (the platform's usual upload limit); `None` where `attach` is refused.
    pub fn attach_limit(&self) -> Option<u64> {
        const MIB: u64 = 1024 * 1024;
        match self {
            SinkKind::Email(_) | SinkKind::Discord { .. } => Some(10 * MIB),
            SinkKind::SlackApp(_) => Some(100 * MIB),
            SinkKind::Console
            | SinkKind::Webhook { .. }
            | SinkKind::Slack { .. }
            | SinkKind::Teams { .. } => None,
        }
    }

    /// Why this sink cannot carry the bot's own alerts (which have no
    /// requester), if it cannot.
    pub fn alert_problem(&self) -> Option<&'static str> {
        match self {
            SinkKind::Email(email) => email::alert_problem(email),
            SinkKind::Discord { bot_token, .. } => discord::alert_problem(bot_token.is_some()),
            SinkKind::SlackApp(app) => slack::alert_problem(app),
            SinkKind::Console
            | SinkKind::Webhook { .. }
            | SinkKind::Slack { .. }
            | SinkKind::Teams { .. } => None,
        }
    }
}

/// `check --online` for a Slack app: `auth.test` names the workspace and
/// bot (`None` for every other kind).
pub async fn slack_auth_test(
    kind: &SinkKind,
    name: &str,
    http: &reqwest::Client,
) -> Option<Result<String, String>> {
    let SinkKind::SlackApp(app) = kind else {
        return None;
    };
    let sink = slack::SlackAppSink::new(name, http.clone(), app, None);
    Some(sink.auth_test().await)
}

/// The fit of kinds whose size the platform does not limit.
fn no_fit(_: &mut Value) -> bool {
    false
}

/// Builds the sink for one `[sinks.NAME]` entry, sharing `http` (one
/// connection pool and TLS stack for every HTTP sink); `ca_file` is the
/// extra root CA of `[tls]` for sinks with their own TLS stack (email);
/// `state` is the state (file or database), where a Slack app caches its
/// lookups.
pub fn build(
    config: &SinkConfig,
    http: &reqwest::Client,
    ca_file: Option<&Path>,
    state: Option<&crate::store::StateLocation>,
) -> Result<Arc<dyn Sink>, BuildError> {
    let failed = |message: String| BuildError::Sink {
        sink: config.name.clone(),
        message,
    };
    Ok(match &config.kind {
        SinkKind::Console => Arc::new(console::ConsoleSink::stdout()),
        SinkKind::Webhook { url, headers } => webhook::build(http, url, headers),
        SinkKind::Slack { url } | SinkKind::Teams { url } => {
            webhook::build(http, url, &BTreeMap::new())
        }
        SinkKind::SlackApp(app) => Arc::new(slack::SlackAppSink::new(
            &config.name,
            http.clone(),
            app,
            state.cloned(),
        )),
        SinkKind::Discord {
            webhook_url,
            bot_token,
            api_base,
        } => Arc::new(
            discord::DiscordSink::new(
                http.clone(),
                webhook_url.as_ref(),
                bot_token.as_ref(),
                api_base.as_ref(),
            )
            .map_err(failed)?,
        ),
        SinkKind::Email(email) => Arc::new(
            email::EmailSink::new(email, ca_file, config.concurrency)
                .map_err(|e| failed(e.to_string()))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_and_listed() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            kind_list(),
            "slack, teams, discord, email, webhook or console"
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(spec("email").is_some() && spec("pager").is_none());
    }
}
