//! `[sinks.NAME]` keys of `kind = "discord"`: exactly one of `webhook_url`
//! (post to a channel) or `bot_token` (DM mapped requesters), and an optional
//! `api_base` that must be https (the token goes there).

use url::Url;

use crate::config::{check_webhook_url, parse_url, require_https_unless_loopback};
use crate::config::{ConfigError, RawSink};
use crate::secret::Secret;
use crate::sinks::registry::{KindSpec, SinkKind};
use crate::sinks::webhook::origin_of;

/// The registry entry of `kind = "discord"`.
pub const KIND: KindSpec = KindSpec {
    name: "discord",
    keys: &[
        "webhook_url",
        "bot_token",
        "api_base",
        "attach",
        "attach_max",
    ],
    check,
};

fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
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

/// Where a Discord sink sends: `api_base`, else the webhook's host, else
/// discord.com; as an origin (the webhook path is the credential).
pub fn origin(webhook_url: Option<&Secret>, api_base: Option<&Url>) -> Option<Url> {
    let url = match (api_base, webhook_url) {
        (Some(base), _) => base.clone(),
        (None, Some(url)) => Url::parse(url.expose()).ok()?,
        (None, None) => Url::parse("https://discord.com/").ok()?,
    };
    Some(origin_of(url))
}

/// A bot-mode sink DMs requesters, and alerts have none.
pub fn alert_problem(bot_mode: bool) -> Option<&'static str> {
    bot_mode.then_some(
        "a Discord sink in bot_token (DM) mode cannot carry alerts; use a webhook_url sink",
    )
}
