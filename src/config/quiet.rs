//! The quiet-time keys: `quiet_hours`, `quiet_days` and `timezone` of each
//! sink, and `timezone` of each `[recipients]` entry. Checked here so every
//! error names its key; the arithmetic itself is [`crate::quiet`].

use chrono_tz::Tz;

use super::raw::RawSink;
use super::ConfigError;
use super::SinkQuiet;
use crate::quiet::{QuietError, QuietWindow};

/// `text` as an IANA zone, or an error on `key` with an example.
pub(super) fn parse_zone(key: &str, text: &str) -> Result<Tz, ConfigError> {
    text.trim().parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not an IANA time zone (e.g. \"Europe/Oslo\" or \"UTC\")"),
        )
    })
}

/// A sink's quiet time; `None` when it sets neither `quiet_hours` nor
/// `quiet_days` (its `timezone` is still checked).
pub(super) fn check_sink_quiet(
    name: &str,
    raw: &RawSink,
) -> Result<Option<SinkQuiet>, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let timezone = raw
        .timezone
        .as_deref()
        .map(|tz| parse_zone(&key("timezone"), tz))
        .transpose()?;
    let hours = raw.quiet_hours.as_ref();
    let days = raw.quiet_days.as_deref().unwrap_or_default();
    let window = QuietWindow::parse(hours.map(|h| (h.from.as_str(), h.to.as_str())), days)
        .map_err(|e| {
            let which = match &e {
                QuietError::BadTime(t) if hours.is_some_and(|h| h.from == *t) => "quiet_hours.from",
                QuietError::BadTime(_) => "quiet_hours.to",
                QuietError::SameTimes(_) => "quiet_hours",
                QuietError::UnknownDay(_) | QuietError::AllDays => "quiet_days",
            };
            ConfigError::invalid(key(which), e.to_string())
        })?;
    Ok((!window.is_empty()).then_some(SinkQuiet { window, timezone }))
}

/// A `[recipients."addr"]` entry's `timezone`.
pub(super) fn check_recipient_zone(
    requester: &str,
    timezone: Option<&str>,
) -> Result<Option<Tz>, ConfigError> {
    timezone
        .map(|tz| parse_zone(&format!("recipients.\"{requester}\".timezone"), tz))
        .transpose()
}

#[cfg(test)]
mod tests;
