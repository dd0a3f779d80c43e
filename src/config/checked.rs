//! The checked configuration and the one pure step ([`validate`]) that makes
//! it from the raw file: durations, URLs, time zones, sink kinds and routes are
//! parsed here, so every later module works with values that are known good.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use url::Url;

use super::raw::{RawConfig, RawCrayon, RawDelivery, RawRoute, RawSink, RawWatch};
use super::ConfigError;
use crate::address::{single_address, single_mailbox};
use crate::domain::EventKind;
use crate::secret::Secret;

/// The whole checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub crayon: CrayonConfig,
    pub watch: WatchConfig,
    pub delivery: DeliveryConfig,
    pub portal: Url,
    pub timezone: chrono_tz::Tz,
    pub ca_file: Option<PathBuf>,
    pub server_listen: Option<SocketAddr>,
    pub alerts: Option<AlertsConfig>,
    pub templates_dir: Option<PathBuf>,
    pub sinks: BTreeMap<String, SinkConfig>,
    pub routes: Vec<RouteConfig>,
    /// Keyed on the lowercased requester address.
    pub recipients: BTreeMap<String, RecipientConfig>,
    /// Things that are allowed but probably not meant (printed by `check`).
    pub warnings: Vec<String>,
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
    pub vars: BTreeMap<String, String>,
}

/// A sink's kind with exactly the settings that kind needs.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Console,
    Webhook {
        url: Secret,
        headers: BTreeMap<String, Secret>,
    },
    Slack {
        url: Secret,
    },
    Teams {
        url: Secret,
    },
    Discord {
        webhook_url: Option<Secret>,
        bot_token: Option<Secret>,
        api_base: Option<Url>,
    },
    Email(Box<EmailConfig>),
}

impl SinkKind {
    /// The kind's name as written in `kind = "…"` and used in template names.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Console => "console",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Slack { .. } => "slack",
            SinkKind::Teams { .. } => "teams",
            SinkKind::Discord { .. } => "discord",
            SinkKind::Email(_) => "email",
        }
    }

    /// The template parts a message for this kind is made of.
    pub fn parts(&self) -> &'static [&'static str] {
        match self {
            SinkKind::Console => &["text"],
            SinkKind::Email(_) => &["subject", "text", "html"],
            _ => &["json"],
        }
    }
}

/// How the email sink protects its SMTP session, from `smtp`'s scheme and
/// `tls`. There is no "opportunistic" mode: `smtp://` never falls back to
/// plain text when the server does not offer STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: STARTTLS is required (port 587 unless given).
    StartTls,
    /// `smtps://`: TLS from the first byte (port 465 unless given).
    Implicit,
    /// `tls = "none"`: plain SMTP, only for loopback or `allow_insecure`.
    None,
}

/// `kind = "email"` settings, checked: addresses are parsed, the TLS mode is
/// decided, and a sink that could never send anything is refused.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp: Url,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    /// Send to the item's `RequestedBy` (or its `[recipients]` redirect).
    pub requester: bool,
    /// Lowercase domains; `None` = every requester's domain.
    pub requester_domains: Option<Vec<String>>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    /// When set, messages are written as `.eml` files into this folder
    /// instead of being sent (the demo). Not a `bot.toml` key.
    pub pickup_dir: Option<PathBuf>,
}

impl EmailConfig {
    /// True when `to`, `cc` or `bcc` names someone: the sink then has people
    /// to send to even when the requester is skipped.
    pub fn has_fixed_recipients(&self) -> bool {
        !(self.to.is_empty() && self.cc.is_empty() && self.bcc.is_empty())
    }
}

/// One `[[routes]]` entry; globs are compiled by the router.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub events: Option<BTreeSet<EventKind>>,
    pub requested_by: Option<String>,
    pub action_name: Option<String>,
    pub sinks: Vec<String>,
}

/// One `[recipients."addr"]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientConfig {
    pub discord_user_id: Option<String>,
    pub slack_user_id: Option<String>,
    pub email: Option<String>,
}

/// Turns the raw file into a checked config. Pure: relative paths are resolved
/// against `base_dir` (the config file's folder) but nothing is read.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let delivery = check_delivery(raw.delivery)?;
    let sinks = raw
        .sinks
        .into_iter()
        .map(|(name, sink)| check_sink(name, sink, delivery.concurrency))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let routes = raw
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, route)| check_route(i, route, &sinks))
        .collect::<Result<Vec<_>, _>>()?;
    let alerts = raw.alerts.map(|a| check_alerts(a, &sinks)).transpose()?;
    warn_unrouted(&sinks, &routes, alerts.as_ref(), &mut warnings);
    let server_listen = match raw.server {
        Some(s) => Some(s.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!(
                    "{:?} is not an address:port (e.g. \"127.0.0.1:9187\")",
                    s.listen
                ),
            )
        })?),
        None => None,
    };
    Ok(Config {
        crayon: check_crayon(raw.crayon)?,
        watch: check_watch(raw.watch, base_dir, raw.tls.ca_file.as_deref())?,
        delivery,
        portal: parse_url("links.portal", &raw.links.portal)?,
        timezone: raw.display.timezone.parse().map_err(|_| {
            ConfigError::invalid(
                "display.timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. \"Europe/Oslo\" or \"UTC\")",
                    raw.display.timezone
                ),
            )
        })?,
        ca_file: raw.tls.ca_file.map(|p| base_dir.join(p)),
        server_listen,
        alerts,
        templates_dir: raw.templates.dir.map(|p| base_dir.join(p)),
        sinks,
        routes,
        recipients: raw
            .recipients
            .into_iter()
            .map(|(addr, r)| {
                let entry = RecipientConfig {
                    discord_user_id: r.discord_user_id,
                    slack_user_id: r.slack_user_id,
                    email: check_recipient_email(&addr, r.email)?,
                };
                Ok((addr.trim().to_lowercase(), entry))
            })
            .collect::<Result<_, ConfigError>>()?,
        warnings,
    })
}

fn check_crayon(raw: RawCrayon) -> Result<CrayonConfig, ConfigError> {
    let mut base_url = parse_url("crayon.base_url", &raw.base_url)?;
    if !base_url.path().ends_with('/') {
        base_url.set_path(&format!("{}/", base_url.path()));
    }
    require_https_unless_loopback("crayon.base_url", &base_url)?;
    for (key, value) in [
        ("crayon.client_id", &raw.client_id),
        ("crayon.username", &raw.username),
    ] {
        if value.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must not be empty"));
        }
    }
    let max_body = raw
        .max_body
        .parse::<bytesize::ByteSize>()
        .map_err(|_| {
            ConfigError::invalid(
                "crayon.max_body",
                format!("{:?} is not a size (e.g. \"64MiB\")", raw.max_body),
            )
        })?
        .as_u64();
    Ok(CrayonConfig {
        base_url,
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        username: raw.username,
        password: raw.password,
        scope: raw.scope,
        timeout: nonzero("crayon.timeout", raw.timeout)?,
        max_body,
    })
}

fn check_watch(
    raw: RawWatch,
    base_dir: &Path,
    ca_file: Option<&Path>,
) -> Result<WatchConfig, ConfigError> {
    let first_run = match raw.first_run.as_str() {
        "baseline" => FirstRun::Baseline,
        "notify" => FirstRun::Notify,
        other => {
            return Err(ConfigError::invalid(
                "watch.first_run",
                format!("{other:?} is not \"baseline\" or \"notify\""),
            ))
        }
    };
    Ok(WatchConfig {
        interval: nonzero("watch.interval", raw.interval)?,
        state: check_state(&raw.state, base_dir, ca_file)?,
        lease: check_lease(raw.lease)?,
        first_run,
        events: parse_events("watch.events", &raw.events)?,
        max_age: raw.max_age,
        reload: raw.reload,
    })
}

/// `watch.state`: a path relative to `bot.toml`, or a PostgreSQL URL that
/// also trusts `tls.ca_file`. The error never repeats the URL (a secret).
fn check_state(
    text: &str,
    base_dir: &Path,
    ca_file: Option<&Path>,
) -> Result<crate::store::StateLocation, ConfigError> {
    let mut state = crate::store::StateLocation::parse(text, base_dir)
        .map_err(|err| ConfigError::invalid("watch.state", err.to_string()))?;
    if let crate::store::StateLocation::Postgres(url) = &mut state {
        url.set_ca_file(ca_file.map(|p| base_dir.join(p)));
    }
    Ok(state)
}

/// `watch.lease`: at least 3s, so a renewal every third of it is sane.
fn check_lease(lease: Duration) -> Result<Duration, ConfigError> {
    if lease < Duration::from_secs(3) {
        return Err(ConfigError::invalid(
            "watch.lease",
            "must be at least 3s (it is renewed every third of it)",
        ));
    }
    Ok(lease)
}

fn check_delivery(raw: RawDelivery) -> Result<DeliveryConfig, ConfigError> {
    if raw.max_attempts == 0 {
        return Err(ConfigError::invalid(
            "delivery.max_attempts",
            "must be at least 1",
        ));
    }
    if raw.concurrency == 0 {
        return Err(ConfigError::invalid(
            "delivery.concurrency",
            "must be at least 1",
        ));
    }
    if raw.backoff_max < raw.backoff_initial {
        return Err(ConfigError::invalid(
            "delivery.backoff_max",
            "must not be shorter than delivery.backoff_initial",
        ));
    }
    Ok(DeliveryConfig {
        max_attempts: raw.max_attempts,
        backoff_initial: nonzero("delivery.backoff_initial", raw.backoff_initial)?,
        backoff_max: raw.backoff_max,
        concurrency: raw.concurrency,
        keep_sent: raw.keep_sent,
        keep_fired: raw.keep_fired,
        shutdown_grace: raw.shutdown_grace,
    })
}

/// Keys each kind accepts besides the common ones (`kind`, `enabled`,
/// `concurrency`, `rate_limit`, `vars`).
fn allowed_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "console" => &[],
        "webhook" => &["url", "headers"],
        "slack" | "teams" => &["url"],
        "discord" => &["webhook_url", "bot_token", "api_base"],
        "email" => &[
            "smtp",
            "tls",
            "allow_insecure",
            "username",
            "password",
            "from",
            "requester",
            "requester_domains",
            "to",
            "cc",
            "bcc",
        ],
        _ => return None,
    })
}

fn present_keys(s: &RawSink) -> Vec<&'static str> {
    let flags = [
        ("url", s.url.is_some()),
        ("headers", s.headers.is_some()),
        ("webhook_url", s.webhook_url.is_some()),
        ("bot_token", s.bot_token.is_some()),
        ("api_base", s.api_base.is_some()),
        ("smtp", s.smtp.is_some()),
        ("tls", s.tls.is_some()),
        ("allow_insecure", s.allow_insecure.is_some()),
        ("username", s.username.is_some()),
        ("password", s.password.is_some()),
        ("from", s.from.is_some()),
        ("requester", s.requester.is_some()),
        ("requester_domains", s.requester_domains.is_some()),
        ("to", s.to.is_some()),
        ("cc", s.cc.is_some()),
        ("bcc", s.bcc.is_some()),
    ];
    flags
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
}

fn check_sink(
    name: String,
    raw: RawSink,
    default_concurrency: usize,
) -> Result<(String, SinkConfig), ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    if !is_snake_case(&name) {
        return Err(ConfigError::invalid(
            format!("sinks.{name}"),
            "sink names must be lowercase snake_case (e.g. team_slack) so they can be set from the environment",
        ));
    }
    let allowed = allowed_keys(&raw.kind).ok_or_else(|| {
        ConfigError::invalid(
            key("kind"),
            format!(
                "unknown sink kind {:?} (expected slack, teams, discord, email, webhook or console)",
                raw.kind
            ),
        )
    })?;
    if let Some(extra) = present_keys(&raw)
        .into_iter()
        .find(|k| !allowed.contains(k))
    {
        return Err(ConfigError::invalid(
            key(extra),
            format!("not a setting of a {} sink", raw.kind),
        ));
    }
    let concurrency = raw.concurrency.unwrap_or(default_concurrency);
    if concurrency == 0 {
        return Err(ConfigError::invalid(
            key("concurrency"),
            "must be at least 1",
        ));
    }
    let rate_limit = match &raw.rate_limit {
        Some(text) => Some(parse_rate(&key("rate_limit"), text)?),
        None => None,
    };
    let sink = SinkConfig {
        kind: check_kind(&name, raw.kind.clone(), &raw)?,
        name: name.clone(),
        enabled: raw.enabled.unwrap_or(true),
        concurrency,
        rate_limit,
        vars: raw.vars,
    };
    Ok((name, sink))
}

fn check_kind(name: &str, kind: String, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let webhook = |k: &str, v: &Option<Secret>| -> Result<Secret, ConfigError> {
        let url = v
            .clone()
            .ok_or_else(|| ConfigError::invalid(key(k), "is required for this sink kind"))?;
        check_webhook_url(&key(k), &url)?;
        Ok(url)
    };
    Ok(match kind.as_str() {
        "console" => SinkKind::Console,
        "webhook" => SinkKind::Webhook {
            url: webhook("url", &raw.url)?,
            headers: check_headers(name, raw.headers.clone().unwrap_or_default())?,
        },
        "slack" => SinkKind::Slack {
            url: webhook("url", &raw.url)?,
        },
        "teams" => SinkKind::Teams {
            url: webhook("url", &raw.url)?,
        },
        "discord" => check_discord(name, raw)?,
        _ => SinkKind::Email(Box::new(check_email(name, raw)?)),
    })
}

fn check_discord(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    if raw.webhook_url.is_some() == raw.bot_token.is_some() {
        return Err(ConfigError::invalid(
            key("webhook_url"),
            "set exactly one of webhook_url (post to a channel) or bot_token (DM mapped requesters)",
        ));
    }
    if let Some(url) = &raw.webhook_url {
        check_webhook_url(&key("webhook_url"), url)?;
    }
    // The webhook token or bot token goes to api_base: never in clear.
    let api_base = match &raw.api_base {
        Some(text) => {
            let url = parse_url(&key("api_base"), text)?;
            require_https_unless_loopback(&key("api_base"), &url)?;
            Some(url)
        }
        None => None,
    };
    Ok(SinkKind::Discord {
        webhook_url: raw.webhook_url.clone(),
        bot_token: raw.bot_token.clone(),
        api_base,
    })
}

fn check_email(name: &str, raw: &RawSink) -> Result<EmailConfig, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let (smtp, security) = check_smtp(name, raw)?;
    let from = raw.from.as_deref().ok_or_else(|| {
        ConfigError::invalid(
            key("from"),
            "is required (e.g. \"Export Bot <exports@example.com>\")",
        )
    })?;
    let config = EmailConfig {
        smtp,
        security,
        username: raw.username.clone(),
        password: raw.password.clone(),
        from: mailbox(&key("from"), from)?,
        requester: raw.requester.unwrap_or(true),
        requester_domains: check_domains(&key("requester_domains"), &raw.requester_domains)?,
        to: mailboxes(&key("to"), &raw.to)?,
        cc: mailboxes(&key("cc"), &raw.cc)?,
        bcc: mailboxes(&key("bcc"), &raw.bcc)?,
        pickup_dir: None,
    };
    if raw.password.is_some() && raw.username.is_none() {
        return Err(ConfigError::invalid(
            key("username"),
            "is required when password is set",
        ));
    }
    if !config.requester && !config.has_fixed_recipients() {
        return Err(ConfigError::invalid(
            key("requester"),
            "is false and to, cc and bcc are empty, so this sink would never send anything",
        ));
    }
    Ok(config)
}

/// `smtp` and `tls`: `smtp://` = STARTTLS required, `smtps://` = implicit
/// TLS, `tls = "none"` = plain, accepted only for loopback hosts or with
/// `allow_insecure = true`.
fn check_smtp(name: &str, raw: &RawSink) -> Result<(Url, SmtpSecurity), ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let text = raw.smtp.as_deref().ok_or_else(|| {
        ConfigError::invalid(
            key("smtp"),
            "is required (e.g. \"smtp://mail.example.com:587\")",
        )
    })?;
    let smtp = parse_url(&key("smtp"), text)?;
    if smtp.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            key("smtp"),
            "needs a host (e.g. \"smtp://mail.example.com:587\")",
        ));
    }
    let security = smtp_security(name, smtp.scheme(), raw.tls.as_deref())?;
    let insecure_ok = smtp_is_loopback(&smtp) || raw.allow_insecure.unwrap_or(false);
    if security == SmtpSecurity::None && !insecure_ok {
        return Err(ConfigError::invalid(
            key("tls"),
            "\"none\" sends mail and passwords in clear: it is accepted only for a loopback host or with allow_insecure = true",
        ));
    }
    Ok((smtp, security))
}

/// The TLS mode from the scheme and `tls` (whose only value is "none").
fn smtp_security(name: &str, scheme: &str, tls: Option<&str>) -> Result<SmtpSecurity, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    match (scheme, tls) {
        ("smtp", None) => Ok(SmtpSecurity::StartTls),
        ("smtps", None) => Ok(SmtpSecurity::Implicit),
        ("smtp", Some("none")) => Ok(SmtpSecurity::None),
        ("smtps", Some("none")) => Err(ConfigError::invalid(
            key("tls"),
            "\"none\" contradicts smtps:// (implicit TLS); use smtp://host:25 for plain SMTP",
        )),
        ("smtp" | "smtps", Some(other)) => Err(ConfigError::invalid(
            key("tls"),
            format!("{other:?} is not a TLS mode: the only value is \"none\" (the scheme of smtp picks STARTTLS or implicit TLS)"),
        )),
        _ => Err(ConfigError::invalid(
            key("smtp"),
            "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)",
        )),
    }
}

/// Like [`is_loopback`] for `smtp://` URLs, whose hosts the `url` crate
/// keeps as opaque text (an IPv4 address is not parsed for unknown schemes).
fn smtp_is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d
            .parse::<std::net::IpAddr>()
            .map_or(d.eq_ignore_ascii_case("localhost"), |ip| ip.is_loopback()),
        _ => is_loopback(url),
    }
}

fn mailbox(key: &str, text: &str) -> Result<Mailbox, ConfigError> {
    single_mailbox(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not one email address ({e}); e.g. \"Export Bot <exports@example.com>\""),
        )
    })
}

fn mailboxes(key: &str, list: &Option<Vec<String>>) -> Result<Vec<Mailbox>, ConfigError> {
    list.iter()
        .flatten()
        .enumerate()
        .map(|(i, text)| mailbox(&format!("{key}[{i}]"), text))
        .collect()
}

/// Lowercased, without a leading `@`; each must look like a domain.
fn check_domains(
    key: &str,
    list: &Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = list else { return Ok(None) };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let domain = d.trim().trim_start_matches('@').to_ascii_lowercase();
            match single_address(&format!("x@{domain}")) {
                Ok(_) => Ok(domain),
                Err(_) => Err(ConfigError::invalid(
                    format!("{key}[{i}]"),
                    format!("{d:?} is not a domain (e.g. \"example.com\")"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A `[recipients."addr"]` redirect must be exactly one address.
fn check_recipient_email(
    requester: &str,
    email: Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(email) = email else { return Ok(None) };
    match single_address(&email) {
        Ok(address) => Ok(Some(address.to_string())),
        Err(e) => Err(ConfigError::invalid(
            format!("recipients.\"{requester}\".email"),
            format!("{email:?} is not one email address ({e})"),
        )),
    }
}

fn check_route(
    index: usize,
    raw: RawRoute,
    sinks: &BTreeMap<String, SinkConfig>,
) -> Result<RouteConfig, ConfigError> {
    let key = |k: &str| format!("routes[{index}].{k}");
    if raw.sinks.is_empty() {
        return Err(ConfigError::invalid(
            key("sinks"),
            "must name at least one sink",
        ));
    }
    if let Some(missing) = raw.sinks.iter().find(|s| !sinks.contains_key(*s)) {
        return Err(ConfigError::invalid(
            key("sinks"),
            format!("no sink named {missing:?} (define [sinks.{missing}])"),
        ));
    }
    for (k, glob) in [
        ("requested_by", &raw.requested_by),
        ("action_name", &raw.action_name),
    ] {
        if let Some(glob) = glob {
            globset::Glob::new(glob)
                .map_err(|e| ConfigError::invalid(key(k), format!("bad glob: {e}")))?;
        }
    }
    let events = match &raw.events {
        Some(list) => Some(parse_events(&key("events"), list)?),
        None => None,
    };
    Ok(RouteConfig {
        events,
        requested_by: raw.requested_by,
        action_name: raw.action_name,
        sinks: raw.sinks,
    })
}

/// The alert sink must exist and be able to send without a requester.
fn check_alerts(
    raw: super::raw::RawAlerts,
    sinks: &BTreeMap<String, SinkConfig>,
) -> Result<AlertsConfig, ConfigError> {
    let sink = sinks.get(&raw.sink).ok_or_else(|| {
        ConfigError::invalid(
            "alerts.sink",
            format!("no sink named {:?} (define [sinks.{}])", raw.sink, raw.sink),
        )
    })?;
    let problem = match &sink.kind {
        SinkKind::Email(email) if !email.has_fixed_recipients() => Some(
            "an email sink used for alerts needs `to`, `cc` or `bcc` (alerts have no requester)",
        ),
        SinkKind::Discord {
            bot_token: Some(_), ..
        } => Some(
            "a Discord sink in bot_token (DM) mode cannot carry alerts; use a webhook_url sink",
        ),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(ConfigError::invalid("alerts.sink", problem));
    }
    Ok(AlertsConfig {
        sink: raw.sink,
        after: raw.after,
        repeat: raw.repeat,
    })
}

fn warn_unrouted(
    sinks: &BTreeMap<String, SinkConfig>,
    routes: &[RouteConfig],
    alerts: Option<&AlertsConfig>,
    warnings: &mut Vec<String>,
) {
    if routes.is_empty() {
        return;
    }
    let alert_sink = alerts.map(|a| a.sink.as_str());
    for name in sinks.keys().filter(|n| Some(n.as_str()) != alert_sink) {
        if !routes.iter().any(|r| r.sinks.contains(name)) {
            warnings.push(format!(
                "sink {name:?} is not named by any [[routes]] entry, so it never receives anything"
            ));
        }
    }
}

fn parse_events(key: &str, list: &[String]) -> Result<BTreeSet<EventKind>, ConfigError> {
    list.iter()
        .map(|e| match e.parse::<EventKind>() {
            Ok(EventKind::Alert) => Err(ConfigError::invalid(
                key,
                "\"alert\" is not a queue event (the bot's own alerts are set in [alerts])",
            )),
            Ok(kind) => Ok(kind),
            Err(m) => Err(ConfigError::invalid(key, m)),
        })
        .collect()
}

fn parse_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    Url::parse(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("not a valid URL ({e}), e.g. \"https://example.com/\""),
        )
    })
}

/// Every extra header as reqwest will send it, so a value it would refuse
/// (typically a secret read from a file with its trailing newline) fails
/// `check` instead of killing every delivery. Errors name the header, never
/// its value.
fn check_headers(
    sink: &str,
    headers: BTreeMap<String, Secret>,
) -> Result<BTreeMap<String, Secret>, ConfigError> {
    for (name, value) in &headers {
        let key = format!("sinks.{sink}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                key,
                "is not a valid HTTP header name (letters, digits and -, e.g. \"X-Api-Key\")",
            ));
        }
        if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
            return Err(ConfigError::invalid(
                key,
                header_value_problem(value.expose()),
            ));
        }
    }
    Ok(headers)
}

/// Why a header value cannot be sent, without quoting it.
fn header_value_problem(value: &str) -> &'static str {
    if value.ends_with('\n') || value.ends_with('\r') {
        "the value ends with a newline (a secret read from a file? strip it); the value is not shown"
    } else if value.contains(['\n', '\r']) {
        "the value contains a line break; the value is not shown"
    } else {
        "the value holds a control character, which HTTP headers cannot carry; the value is not shown"
    }
}

/// Webhook URLs are credentials: they are checked without ever being echoed.
fn check_webhook_url(key: &str, url: &Secret) -> Result<(), ConfigError> {
    let parsed = Url::parse(url.expose()).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("not a valid URL ({e}); the value is not shown"),
        )
    })?;
    require_https_unless_loopback(key, &parsed)
}

/// Plain `http://` is accepted only for loopback hosts (tests, local relays).
pub fn require_https_unless_loopback(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            "must be an https:// URL (http:// is allowed only for loopback hosts)",
        )),
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn parse_rate(key: &str, text: &str) -> Result<(u32, Duration), ConfigError> {
    let bad = || {
        ConfigError::invalid(
            key,
            format!("{text:?} is not a rate (e.g. \"1/s\", \"20/1m\")"),
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
        per.to_string()
    } else {
        format!("1{per}")
    };
    let period = humantime::parse_duration(&per).map_err(|_| bad())?;
    if count == 0 || period.is_zero() {
        return Err(bad());
    }
    Ok((count, period))
}

fn nonzero(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(ConfigError::invalid(
            key,
            "must be longer than zero (e.g. \"60s\")",
        ))
    } else {
        Ok(d)
    }
}

fn is_snake_case(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod header_tests {
    use super::*;

    /// Every value reqwest would refuse fails, naming the header and never
    /// showing the value.
    #[test]
    fn header_values_reqwest_would_refuse_are_refused_without_being_shown() {
        let cases = [
            ("Authorization", "Bearer s3cret-1\n", "ends with a newline"),
            (
                "Authorization",
                "Bearer s3cret-1\r\n",
                "ends with a newline",
            ),
            ("X-Key", "s3cret-1\nX-Other: y", "line break"),
            ("X-Key", "s3cret-1\u{7}", "control character"),
            ("Bad Name", "s3cret-1", "not a valid HTTP header name"),
        ];
        for (name, value, why) in cases {
            let headers = BTreeMap::from([(name.to_string(), Secret::new(value))]);
            let error = check_headers("audit", headers).unwrap_err().to_string();
            assert!(
                error.contains(&format!("sinks.audit.headers.{name}")),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
            assert!(!error.contains("s3cret-1"), "{error}");
        }
        let fine = BTreeMap::from([("X-Api-Key".to_string(), Secret::new("ok\tvalue"))]);
        assert!(check_headers("audit", fine).is_ok());
    }
}
