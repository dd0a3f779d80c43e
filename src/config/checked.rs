//! The checked configuration and the one pure step ([`validate`]) that makes
//! it from the raw file: durations, URLs, time zones, sink kinds and routes are
//! parsed here, so every later module works with values that are known good.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use super::checks::{check_webhook_url, is_loopback, parse_url, require_https_unless_loopback};
use super::checks::{is_snake_case, nonzero, parse_digest, parse_events, parse_rate};
use super::raw::{RawConfig, RawDelivery, RawRoute, RawServer, RawSink, RawWatch};
pub use super::settings::*;
use super::ConfigError;
use crate::address::single_address;
use crate::domain::AccountId;
use crate::secret::Secret;
pub use crate::sinks::email::{EmailConfig, SmtpSecurity};
use crate::sinks::registry;
pub use crate::sinks::SinkKind;

/// Turns the raw file into a checked config. Pure: relative paths are resolved
/// against `base_dir` (the config file's folder) but nothing is read.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let delivery = check_delivery(raw.delivery)?;
    let quiet = raw
        .sinks
        .iter()
        .filter_map(|(name, sink)| {
            super::quiet::check_sink_quiet(name, sink)
                .map(|q| q.map(|q| (name.clone(), q)))
                .transpose()
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let interval = nonzero("watch.interval", raw.watch.interval)?;
    let accounts = super::accounts::check_accounts(raw.crayon, raw.accounts, interval)?;
    let names = super::accounts::names(&accounts);
    let sinks = raw
        .sinks
        .into_iter()
        .map(|(name, sink)| check_sink(name, sink, delivery.concurrency))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let routes = raw
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, route)| check_route(i, route, &sinks, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let alerts = raw.alerts.map(|a| check_alerts(a, &sinks)).transpose()?;
    warn_unrouted(&sinks, &routes, alerts.as_ref(), &mut warnings);
    let (server_listen, server_token) = check_server(raw.server)?;
    Ok(Config {
        accounts,
        watch: check_watch(raw.watch, base_dir, raw.tls.ca_file.as_deref())?,
        delivery,
        portal: parse_url("links.portal", &raw.links.portal)?,
        timezone: super::quiet::parse_zone("display.timezone", &raw.display.timezone)?,
        ca_file: raw.tls.ca_file.map(|p| base_dir.join(p)),
        server_listen,
        server_token,
        alerts,
        templates_dir: raw.templates.dir.map(|p| base_dir.join(p)),
        sinks,
        routes,
        quiet,
        recipients: raw
            .recipients
            .into_iter()
            .map(|(addr, r)| {
                let entry = RecipientConfig {
                    discord_user_id: r.discord_user_id,
                    slack_user_id: r.slack_user_id,
                    teams_upn: r.teams_upn,
                    email: check_recipient_email(&addr, r.email)?,
                    timezone: super::quiet::check_recipient_zone(&addr, r.timezone.as_deref())?,
                };
                Ok((addr.trim().to_lowercase(), entry))
            })
            .collect::<Result<_, ConfigError>>()?,
        warnings,
    })
}

/// `[server]`: the address, and the token that must guard it unless only
/// this machine can reach it (a non-loopback `listen` without one is refused).
fn check_server(
    raw: Option<RawServer>,
) -> Result<(Option<SocketAddr>, Option<Secret>), ConfigError> {
    let Some(raw) = raw else {
        return Ok((None, None));
    };
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::invalid(
            "server.listen",
            format!(
                "{:?} is not an address:port (e.g. \"127.0.0.1:9187\")",
                raw.listen
            ),
        )
    })?;
    let token = raw.token.filter(|t| !t.expose().trim().is_empty());
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ConfigError::invalid(
            "server.token",
            format!(
                "is required when server.listen ({listen}) is not a loopback address: \
                 set server.token = \"${{STATUS_TOKEN}}\" (the status page and /metrics then need it)"
            ),
        ));
    }
    Ok((Some(listen), token))
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
        remind_before: nonzero("watch.remind_before", raw.remind_before)?,
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
        spool_dir: raw.spool_dir,
    })
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
    let spec = registry::spec(&raw.kind).ok_or_else(|| {
        ConfigError::invalid(
            key("kind"),
            format!(
                "unknown sink kind {:?} (expected {})",
                raw.kind,
                registry::kind_list()
            ),
        )
    })?;
    if let Some(extra) = raw
        .present_keys()
        .into_iter()
        .find(|k| !spec.keys.contains(k))
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
    let kind = (spec.check)(&name, &raw)?;
    let attach = crate::attach::check_config(&name, &raw, kind.attach_limit())?;
    let digest = match &raw.digest {
        Some(text) => Some(parse_digest(&key("digest"), text)?),
        None => None,
    };
    let sink = SinkConfig {
        kind,
        attach,
        name: name.clone(),
        enabled: raw.enabled.unwrap_or(true),
        concurrency,
        rate_limit,
        digest,
        vars: raw.vars,
    };
    Ok((name, sink))
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
    accounts: &BTreeSet<AccountId>,
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
        accounts: route_accounts(index, raw.accounts, accounts)?,
    })
}

/// `routes[i].accounts`: every name a configured account.
fn route_accounts(
    index: usize,
    listed: Option<Vec<String>>,
    accounts: &BTreeSet<AccountId>,
) -> Result<Option<BTreeSet<AccountId>>, ConfigError> {
    let Some(listed) = listed else {
        return Ok(None);
    };
    let key = format!("routes[{index}].accounts");
    if listed.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "must name at least one account (or be left out)",
        ));
    }
    listed
        .iter()
        .map(|name| match AccountId::new(name) {
            Ok(id) if accounts.contains(&id) => Ok(id),
            _ => Err(ConfigError::invalid(
                &key,
                format!("no account named {name:?} (define [accounts.{name}])"),
            )),
        })
        .collect::<Result<BTreeSet<_>, _>>()
        .map(Some)
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
    if let Some(problem) = sink.kind.alert_problem() {
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
