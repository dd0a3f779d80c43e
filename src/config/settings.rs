//! The checked configuration's types: what [`validate`](super::validate)
//! produces and every later module reads. Values here are known good.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::domain::{AccountId, EventKind};
use crate::secret::Secret;
use crate::sinks::SinkKind;

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every Crayon account polled, sorted by name (one, `default`, for a
    /// config with `[crayon]` alone).
    pub accounts: Vec<AccountConfig>,
    pub watch: WatchConfig,
    pub delivery: DeliveryConfig,
    pub portal: Url,
    pub timezone: chrono_tz::Tz,
    pub ca_file: Option<PathBuf>,
    pub server_listen: Option<SocketAddr>,
    /// `server.token`: what `/`, `/api/status` and `/metrics` require as a
    /// bearer token (always set when `server_listen` is not loopback).
    pub server_token: Option<Secret>,
    pub alerts: Option<AlertsConfig>,
    pub templates_dir: Option<PathBuf>,
    pub sinks: BTreeMap<String, SinkConfig>,
    pub routes: Vec<RouteConfig>,
    /// Keyed on the lowercased requester address.
    pub recipients: BTreeMap<String, RecipientConfig>,
    /// Each sink's quiet time, by sink name (only sinks that set one).
    pub quiet: BTreeMap<String, SinkQuiet>,
    /// Things that are allowed but probably not meant (printed by `check`).
    pub warnings: Vec<String>,
}

/// One account (`[accounts.NAME]` over `[crayon]`, or `[crayon]` alone as
/// `default`), checked: its login, its schedule and its template variables.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    pub id: AccountId,
    pub crayon: CrayonConfig,
    /// Time between this account's polls (`interval`, else `watch.interval`).
    pub interval: Duration,
    /// What templates see as `account.vars`.
    pub vars: BTreeMap<String, String>,
}

impl Config {
    /// The account named `id`, if configured.
    pub fn account(&self, id: &AccountId) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| &a.id == id)
    }
}

/// `[crayon]`, checked.
#[derive(Debug, Clone)]
pub struct CrayonConfig {
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub username: String,
    pub password: Secret,
    pub scope: String,
    pub timeout: Duration,
    pub max_body: u64,
}

/// What to do on the very first poll of an empty state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// Record the queue without notifying.
    Baseline,
    /// Treat everything as new.
    Notify,
}

/// `[watch]`, checked.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub interval: Duration,
    /// The SQLite file or the PostgreSQL URL (its password a secret).
    pub state: crate::store::StateLocation,
    /// The leader lease (PostgreSQL): renewed every third of it; a standby
    /// takes over within it plus one interval.
    pub lease: Duration,
    pub first_run: FirstRun,
    pub events: BTreeSet<EventKind>,
    pub max_age: Duration,
    /// `expiring` fires when a downloadable item leaves the queue within this.
    pub remind_before: Duration,
    pub reload: bool,
}

/// `[delivery]`, checked.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub concurrency: usize,
    pub keep_sent: Duration,
    pub keep_fired: Duration,
    pub shutdown_grace: Duration,
    /// `delivery.spool_dir`: the attachment spool for a PostgreSQL state.
    pub spool_dir: Option<PathBuf>,
}

/// `[alerts]`, checked (the sink exists).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub sink: String,
    pub after: Duration,
    pub repeat: Duration,
}

/// One `[sinks.NAME]`, checked.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub enabled: bool,
    pub concurrency: usize,
    /// At most this many sends per period.
    pub rate_limit: Option<(u32, Duration)>,
    /// `digest`: gather messages per recipient this long, then send one.
    pub digest: Option<Duration>,
    pub vars: BTreeMap<String, String>,
    /// `attach = true`: the export's file goes with the message, up to
    /// this many bytes (`attach_max`); `None` when off.
    pub attach: Option<crate::attach::AttachSettings>,
}

/// One `[[routes]]` entry; globs are compiled by the router.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub events: Option<BTreeSet<EventKind>>,
    pub requested_by: Option<String>,
    pub action_name: Option<String>,
    pub sinks: Vec<String>,
    /// Only these accounts' events (`None`: every account's).
    pub accounts: Option<BTreeSet<AccountId>>,
}

/// One `[recipients."addr"]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientConfig {
    pub discord_user_id: Option<String>,
    pub slack_user_id: Option<String>,
    /// The requester's Teams user principal name, mentioned in Teams cards.
    pub teams_upn: Option<String>,
    pub email: Option<String>,
    /// This person's zone: per-person sinks read quiet time in it.
    pub timezone: Option<chrono_tz::Tz>,
}

/// One sink's `quiet_hours`/`quiet_days`, and the zone they are read in
/// when the recipient has none of their own (`None`: `display.timezone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkQuiet {
    pub window: crate::quiet::QuietWindow,
    pub timezone: Option<chrono_tz::Tz>,
}
