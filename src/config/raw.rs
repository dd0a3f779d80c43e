//! `bot.toml` as written: every section and key the file may hold, with
//! defaults. Unknown keys are errors (`deny_unknown_fields`), so a typo never
//! passes silently. These structs are only ever turned into the checked
//! [`super::Config`] by [`super::validate`]; nothing else reads them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub crayon: RawCrayon,
    #[serde(default)]
    pub watch: RawWatch,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub links: RawLinks,
    #[serde(default)]
    pub display: RawDisplay,
    #[serde(default)]
    pub tls: RawTls,
    pub server: Option<RawServer>,
    pub alerts: Option<RawAlerts>,
    #[serde(default)]
    pub templates: RawTemplates,
    #[serde(default)]
    pub sinks: BTreeMap<String, RawSink>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub recipients: BTreeMap<String, RawRecipient>,
}

/// `[crayon]`: where the API is and the password-grant credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCrayon {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub username: String,
    pub password: Secret,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_max_body")]
    pub max_body: String,
}

fn default_scope() -> String {
    "CustomerApi".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_body() -> String {
    "64MiB".into()
}

/// `[watch]`: how often to poll and what to notify about.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWatch {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A file path, or a `postgres://` URL (may carry `${PGPASSWORD}`).
    pub state: String,
    /// How long a leader's lease lasts (PostgreSQL state only).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub first_run: String,
    pub events: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    pub reload: bool,
}

impl Default for RawWatch {
    fn default() -> Self {
        RawWatch {
            interval: Duration::from_secs(60),
            state: "state.db".into(),
            lease: Duration::from_secs(15),
            first_run: "baseline".into(),
            events: vec!["downloadable".into(), "failed".into()],
            max_age: Duration::from_secs(3 * 86_400),
            reload: false,
        }
    }
}

/// `[delivery]`: retry policy and how long records are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDelivery {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub keep_sent: Duration,
    #[serde(with = "humantime_serde")]
    pub keep_fired: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery {
            max_attempts: 8,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            concurrency: 4,
            keep_sent: Duration::from_secs(30 * 86_400),
            keep_fired: Duration::from_secs(90 * 86_400),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[links]`: where people open their exports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLinks {
    pub portal: String,
}

impl Default for RawLinks {
    fn default() -> Self {
        RawLinks {
            portal: "https://cloudiq.crayon.com/".into(),
        }
    }
}

/// `[display]`: how dates are shown in messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDisplay {
    pub timezone: String,
}

impl Default for RawDisplay {
    fn default() -> Self {
        RawDisplay {
            timezone: "UTC".into(),
        }
    }
}

/// `[tls]`: an extra CA for corporate proxies or private endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<PathBuf>,
}

/// `[server]`: the health, metrics and status-page listener (off when absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    /// Bearer token for `/`, `/api/status` and `/metrics`; required when
    /// `listen` is not a loopback address (`"${STATUS_TOKEN}"`).
    pub token: Option<Secret>,
}

/// `[alerts]`: where the bot reports its own troubles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub sink: String,
    #[serde(default = "default_alert_after", with = "humantime_serde")]
    pub after: Duration,
    #[serde(default = "default_alert_repeat", with = "humantime_serde")]
    pub repeat: Duration,
}

fn default_alert_after() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_alert_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// `[templates]`: the folder of user templates overriding the built-ins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub dir: Option<PathBuf>,
}

/// `[sinks.NAME]`. One flat struct for every kind (so each scalar can be
/// overridden from the environment); which keys a kind accepts is checked in
/// validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub kind: String,
    pub enabled: Option<bool>,
    pub concurrency: Option<usize>,
    pub rate_limit: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    // slack, teams, webhook
    pub url: Option<Secret>,
    pub headers: Option<BTreeMap<String, Secret>>,
    // discord
    pub webhook_url: Option<Secret>,
    pub bot_token: Option<Secret>,
    pub api_base: Option<String>,
    // email
    pub smtp: Option<String>,
    pub tls: Option<String>,
    pub allow_insecure: Option<bool>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Option<String>,
    pub requester: Option<bool>,
    pub requester_domains: Option<Vec<String>>,
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    pub reply_to: Option<String>,
    pub helo_name: Option<String>,
}

/// `[[routes]]`: which events go to which sinks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub events: Option<Vec<String>>,
    pub requested_by: Option<String>,
    pub action_name: Option<String>,
    pub sinks: Vec<String>,
}

/// `[recipients."addr"]`: per-requester addresses on each platform.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipient {
    pub discord_user_id: Option<String>,
    pub slack_user_id: Option<String>,
    pub email: Option<String>,
}

impl RawSink {
    /// The kind-specific keys this entry sets, so validation can refuse a
    /// key the sink's kind does not read (each kind lists its own keys in
    /// its folder under `src/sinks/`). A new key is a field above and a
    /// line here.
    pub fn present_keys(&self) -> Vec<&'static str> {
        let flags = [
            ("url", self.url.is_some()),
            ("headers", self.headers.is_some()),
            ("webhook_url", self.webhook_url.is_some()),
            ("bot_token", self.bot_token.is_some()),
            ("api_base", self.api_base.is_some()),
            ("smtp", self.smtp.is_some()),
            ("tls", self.tls.is_some()),
            ("allow_insecure", self.allow_insecure.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("from", self.from.is_some()),
            ("requester", self.requester.is_some()),
            ("requester_domains", self.requester_domains.is_some()),
            ("to", self.to.is_some()),
            ("cc", self.cc.is_some()),
            ("bcc", self.bcc.is_some()),
            ("reply_to", self.reply_to.is_some()),
            ("helo_name", self.helo_name.is_some()),
        ];
        flags
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect()
    }
}
