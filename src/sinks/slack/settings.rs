//! `[sinks.NAME]` keys of `kind = "slack"`: exactly one of `url` (an
//! incoming webhook) or `bot_token` (the Web API as an app, which can DM the
//! requester), plus `channel` and `api_base` for the app.

use url::Url;

use crate::config::{parse_url, require_https_unless_loopback, ConfigError, RawSink};
use crate::secret::Secret;
use crate::sinks::registry::SinkKind;
use crate::sinks::webhook::required_url;

/// Where the Web API lives unless `api_base` says otherwise.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api/";

/// A Slack sink in `bot_token` mode: what the app needs to post.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The `xoxb-` bot token (a credential: never logged or shown).
    pub bot_token: Secret,
    /// Post in this channel and mention the requester; `None`: DM them.
    pub channel: Option<String>,
    /// `{api_base}METHOD` is called; ends in `/`.
    pub api_base: Url,
}

/// Checks the Slack keys of sink `name` into webhook or app settings.
pub fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    if raw.url.is_some() == raw.bot_token.is_some() {
        return Err(ConfigError::invalid(
            key("url"),
            "set exactly one of url (an incoming webhook) or bot_token (the Web API as an app)",
        ));
    }
    let Some(token) = &raw.bot_token else {
        for (k, set) in [
            ("channel", raw.channel.is_some()),
            ("api_base", raw.api_base.is_some()),
            ("attach", raw.attach.is_some()),
            ("attach_max", raw.attach_max.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(key(k), "is read only with bot_token"));
            }
        }
        return Ok(SinkKind::Slack {
            url: required_url(name, "url", &raw.url)?,
        });
    };
    check_token(&key("bot_token"), token)?;
    let channel = raw.channel.as_deref().map(str::trim);
    if let Some(channel) = channel {
        check_channel(&key("channel"), channel)?;
    }
    Ok(SinkKind::SlackApp(Box::new(AppSettings {
        bot_token: token.clone(),
        channel: channel.map(str::to_string),
        api_base: api_base(&key("api_base"), raw.api_base.as_deref())?,
    })))
}

/// A bot token starts `xoxb-`; a user (`xoxp-`) or app-level (`xapp-`) token
/// would act as someone else or not post at all. The value is never shown.
fn check_token(key: &str, token: &Secret) -> Result<(), ConfigError> {
    let value = token.expose();
    if !value.starts_with("xoxb-") {
        return Err(ConfigError::invalid(
            key,
            "must be a Slack bot token (starting xoxb-; the value is not shown)",
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            "contains whitespace (a trailing newline from a file?); the value is not shown",
        ));
    }
    Ok(())
}

/// A channel id (`C…`, `G…`, `D…`), not a `#name`: names change and
/// `chat.postMessage` by name needs another scope.
fn check_channel(key: &str, channel: &str) -> Result<(), ConfigError> {
    let id_like = channel.len() >= 9
        && channel.starts_with(['C', 'G', 'D'])
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if id_like {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{channel:?} is not a Slack channel id (like C0123ABCD; copy it from the channel's details)"),
        ))
    }
}

/// `api_base` (default Slack's), https unless loopback (the token goes
/// there), always ending in `/` so `METHOD` joins onto it.
fn api_base(key: &str, text: Option<&str>) -> Result<Url, ConfigError> {
    let text = text.unwrap_or(DEFAULT_API_BASE);
    let mut url = parse_url(key, text)?;
    require_https_unless_loopback(key, &url)?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A DM-mode app has no channel for the bot's alerts (they have no requester).
pub fn alert_problem(settings: &AppSettings) -> Option<&'static str> {
    settings.channel.is_none().then_some(
        "a Slack sink in bot_token mode without channel DMs requesters and cannot carry alerts; set channel",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_bot_tokens_and_are_never_echoed() {
        for bad in ["xoxp-user-SECRET1", "SECRET1", "xoxb-SECRET1\n"] {
            let err = check_token("sinks.s.bot_token", &Secret::new(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("sinks.s.bot_token"), "{text}");
            assert!(!text.contains("SECRET1"), "{text}");
        }
        assert!(check_token("k", &Secret::new("xoxb-1-2-abc")).is_ok());
    }

    #[test]
    fn channels_are_ids_and_api_bases_end_in_a_slash() {
        assert!(check_channel("k", "C0123ABCD").is_ok());
        assert!(check_channel("k", "#general").is_err());
        let url = api_base("k", Some("http://127.0.0.1:9/api")).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/api/");
        assert!(api_base("k", Some("http://slack.example.com/api/")).is_err());
        assert_eq!(api_base("k", None).unwrap().as_str(), DEFAULT_API_BASE);
    }
}
