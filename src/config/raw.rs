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
    /// `[crayon]`: the API and its credentials (the account `default`), or
    /// the defaults of every `[accounts.NAME]`.
    #[serde(default)]
    pub crayon: RawCrayon,
    /// `[accounts.NAME]`: several Crayon logins, each over `[crayon]`'s keys.
    #[serde(default)]
    pub accounts: BTreeMap<String, super::accounts::RawAccount>,
    /// `[watch]`: polling and which events fire.
    #[serde(default)]
    pub watch: RawWatch,
    /// `[delivery]`: retries, concurrency and retention of records.
    #[serde(default)]
    pub delivery: RawDelivery,
    /// `[links]`: links shown in messages.
    #[serde(default)]
    pub links: RawLinks,
    /// `[display]`: how dates are shown.
    #[serde(default)]
    pub display: RawDisplay,
    /// `[tls]`: an extra CA file.
    #[serde(default)]
    pub tls: RawTls,
    /// `[server]`: the health and metrics listener; absent = off.
    pub server: Option<RawServer>,
    /// `[alerts]`: where the bot reports its own troubles; absent = off.
    pub alerts: Option<RawAlerts>,
    /// `[templates]`: user templates overriding the built-ins.
    #[serde(default)]
    pub templates: RawTemplates,
    /// `[sinks.NAME]`: the destinations, by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, RawSink>,
    /// `[[routes]]`: which events go to which sinks; none = every event to every sink.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// `[recipients."addr"]`: per-requester addresses, keyed on RequestedBy (case-insensitive).
    #[serde(default)]
    pub recipients: BTreeMap<String, RawRecipient>,
}

/// `[crayon]`: where the API is and the password-grant credentials; with
/// `[accounts]`, the defaults every account takes (each key optional here,
/// required once merged: validation names the missing one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCrayon {
    /// The API root, e.g. `https://api.crayon.com/`.
    pub base_url: Option<String>,
    /// OAuth2 client id (password grant).
    pub client_id: Option<String>,
    /// OAuth2 client secret; usually `${VAR}`.
    pub client_secret: Option<Secret>,
    /// The Crayon user the bot signs in as.
    pub username: Option<String>,
    /// That user's password; usually `${VAR}`.
    pub password: Option<Secret>,
    /// OAuth2 scope (default `CustomerApi`).
    pub scope: Option<String>,
    /// Per-request timeout (default `30s`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest queue answer read, e.g. `64MiB` (the default); bigger fails the poll.
    pub max_body: Option<String>,
}

/// `[watch]`: how often to poll and what to notify about.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWatch {
    /// Time between polls (default `60s`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The state: a file path (SQLite: snapshot, fired events, outbox; lock beside
    /// it; default `state.db`) or a `postgres://` URL (may carry `${PGPASSWORD}`).
    pub state: String,
    /// How long a leader's lease lasts (PostgreSQL state only).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// With no stored state: `baseline` (record, notify nothing; default) or `notify`.
    pub first_run: String,
    /// Events that fire: downloadable, failed, queued, removed, expiring (default the first two).
    pub events: Vec<String>,
    /// `expiring` fires when a downloadable item leaves the queue within this (default `1d`).
    #[serde(with = "humantime_serde")]
    pub remind_before: Duration,
    /// Items created longer ago than this fire no downloadable/failed/queued (default `3d`).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Also reload when bot.toml or the templates change on disk (default false; SIGHUP always reloads).
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
            remind_before: Duration::from_secs(86_400),
            reload: false,
        }
    }
}

/// `[delivery]`: retry policy and how long records are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDelivery {
    /// Attempts before a delivery is dead (default 8).
    pub max_attempts: u32,
    /// First retry delay (default `2s`), doubling per attempt.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Cap on a retry delay, and on how long a server-asked wait is honoured (default `10m`).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Sends in flight per sink, unless the sink sets its own (default 4).
    pub concurrency: usize,
    /// How long sent and skipped deliveries are kept (default `30d`).
    #[serde(with = "humantime_serde")]
    pub keep_sent: Duration,
    /// How long fired-event records are kept (default `90d`).
    #[serde(with = "humantime_serde")]
    pub keep_fired: Duration,
    /// How long sends in flight may finish on stop (default `10s`).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where attached export files are spooled when the state is PostgreSQL
    /// (a file state spools beside itself); default the temp dir.
    pub spool_dir: Option<std::path::PathBuf>,
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
            spool_dir: None,
        }
    }
}

/// `[links]`: where people open their exports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLinks {
    /// Where people open and download their exports.
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
    /// IANA zone for dates shown in messages (default `UTC`).
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
    /// PEM root certificate(s) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `[server]`: the health, metrics and status-page listener (off when absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of `/livez`, `/healthz`, `/metrics`, e.g. `127.0.0.1:9187`.
    pub listen: String,
    /// Bearer token for `/`, `/api/status` and `/metrics`; required when
    /// `listen` is not a loopback address (`"${STATUS_TOKEN}"`).
    pub token: Option<Secret>,
}

/// `[alerts]`: where the bot reports its own troubles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// The sink (by name) that receives the bot's own alerts.
    pub sink: String,
    /// How long a trouble lasts before it is alerted (default `15m`).
    #[serde(default = "default_alert_after", with = "humantime_serde")]
    pub after: Duration,
    /// How often an ongoing trouble is alerted again (default `4h`).
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
    /// Folder of user templates; built-ins are compiled into the binary.
    pub dir: Option<PathBuf>,
}

/// `[sinks.NAME]`. One flat struct for every kind (so each scalar can be
/// overridden from the environment); which keys a kind accepts is checked in
/// validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// slack, teams, discord, email, webhook or console.
    pub kind: String,
    /// False keeps the sink configured but sends nothing (default true).
    pub enabled: Option<bool>,
    /// Sends in flight for this sink (default `delivery.concurrency`).
    pub concurrency: Option<usize>,
    /// At most this many sends, e.g. `1/s`.
    pub rate_limit: Option<String>,
    /// Gather this sink's messages per recipient for this long (e.g.
    /// `15m`), then send one; every kind.
    pub digest: Option<String>,
    /// Free-form values templates see as `sink.vars`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Quiet time, local, wrapping midnight: `{ from = "19:00", to = "07:30" }`;
    /// a delivery due inside it waits until it ends.
    pub quiet_hours: Option<RawQuietHours>,
    /// Whole quiet days, e.g. `["sat", "sun"]`.
    pub quiet_days: Option<Vec<String>>,
    /// IANA zone of this sink's quiet time (default `display.timezone`; a
    /// per-person sink uses the recipient's `[recipients]` zone first).
    pub timezone: Option<String>,
    // slack, teams, webhook
    /// slack, teams, webhook: the endpoint (a secret: it authorizes posting).
    pub url: Option<Secret>,
    /// webhook: extra request headers (values are secrets).
    pub headers: Option<BTreeMap<String, Secret>>,
    // discord
    /// discord: the channel webhook.
    pub webhook_url: Option<Secret>,
    /// discord: a bot token, to DM mapped requesters instead.
    pub bot_token: Option<Secret>,
    /// discord: send API calls elsewhere (tests, proxies).
    pub api_base: Option<String>,
    // slack in bot_token mode
    pub channel: Option<String>,
    // email
    /// email: `smtp://` (STARTTLS required) or `smtps://` (implicit TLS) host and port.
    pub smtp: Option<String>,
    /// email: `none` for plain SMTP, only to loopback or with `allow_insecure`.
    pub tls: Option<String>,
    /// email: permit `tls = "none"` to a non-loopback host.
    pub allow_insecure: Option<bool>,
    /// email: SMTP AUTH user.
    pub username: Option<String>,
    /// email: SMTP AUTH password.
    pub password: Option<Secret>,
    /// email: the From address.
    pub from: Option<String>,
    /// email: send to the item's RequestedBy (default true).
    pub requester: Option<bool>,
    /// email: if set, only requesters in these domains get mail.
    pub requester_domains: Option<Vec<String>>,
    /// email: fixed To addresses, added to the requester.
    pub to: Option<Vec<String>>,
    /// email: fixed Cc addresses.
    pub cc: Option<Vec<String>>,
    /// email: fixed Bcc addresses.
    pub bcc: Option<Vec<String>>,
    pub reply_to: Option<String>,
    pub helo_name: Option<String>,
    // email, discord, slack in bot_token mode
    /// Send the export's file with the message (#16).
    pub attach: Option<bool>,
    /// Largest file attached, e.g. `10MiB` (default per kind).
    pub attach_max: Option<String>,
}

/// `quiet_hours = { from, to }` of a sink, as written (`HH:MM`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    /// When quiet time starts, e.g. `19:00`.
    pub from: String,
    /// When it ends, e.g. `07:30` (earlier than `from`: the next day).
    pub to: String,
}

/// `[[routes]]`: which events go to which sinks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Events this route takes (default every enabled event).
    pub events: Option<Vec<String>>,
    /// Glob on RequestedBy, case-insensitive (optional).
    pub requested_by: Option<String>,
    /// Glob on the export's ActionName (optional).
    pub action_name: Option<String>,
    /// Sinks (by name) that receive the matching events.
    pub sinks: Vec<String>,
    /// Only these accounts' events (default every account).
    pub accounts: Option<Vec<String>>,
}

/// `[recipients."addr"]`: per-requester addresses on each platform.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipient {
    /// Discord user to DM (bot_token sinks).
    pub discord_user_id: Option<String>,
    /// Slack user to mention or DM.
    pub slack_user_id: Option<String>,
    /// UPN to mention on Teams (else RequestedBy).
    pub teams_upn: Option<String>,
    /// Address to mail instead of RequestedBy.
    pub email: Option<String>,
    /// This person's IANA zone: per-person sinks read their quiet time in it.
    pub timezone: Option<String>,
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
            ("channel", self.channel.is_some()),
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
            ("attach", self.attach.is_some()),
            ("attach_max", self.attach_max.is_some()),
        ];
        flags
            .into_iter()
            .filter_map(|(k, present)| present.then_some(k))
            .collect()
    }
}
