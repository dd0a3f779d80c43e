//! Small checks every part of the config shares: event lists, URLs (https
//! unless loopback), rates, non-zero durations, snake_case names. Pure, and
//! each error names its key.

use std::collections::BTreeSet;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use crate::domain::EventKind;
use crate::secret::Secret;

pub(super) fn parse_events(key: &str, list: &[String]) -> Result<BTreeSet<EventKind>, ConfigError> {
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

/// `text` as an URL, or an error on `key` with an example.
pub fn parse_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    Url::parse(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("not a valid URL ({e}), e.g. \"https://example.com/\""),
        )
    })
}

/// Webhook URLs are credentials: they are checked without ever being echoed.
pub fn check_webhook_url(key: &str, url: &Secret) -> Result<(), ConfigError> {
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

pub(super) fn parse_rate(key: &str, text: &str) -> Result<(u32, Duration), ConfigError> {
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

/// A sink's `digest` window: a humantime duration above 0 and at most 24h
/// (a longer wait is a message lost in practice).
pub(super) fn parse_digest(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let window = humantime::parse_duration(text.trim()).map_err(|_| {
        ConfigError::invalid(key, format!("{text:?} is not a duration (e.g. \"15m\")"))
    })?;
    if window.is_zero() || window > crate::digest::MAX_WINDOW {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} must be more than 0 and at most 24h"),
        ));
    }
    Ok(window)
}

pub(super) fn nonzero(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(ConfigError::invalid(
            key,
            "must be longer than zero (e.g. \"60s\")",
        ))
    } else {
        Ok(d)
    }
}

pub(super) fn is_snake_case(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
