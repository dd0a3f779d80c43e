//! `kind = "discord"` (reads `webhook_url`, `bot_token`, `api_base`): posts
//! the rendered `json` part through serenity's HTTP client, either by
//! executing a webhook or, in bot mode, as a DM to the requester mapped in
//! `[recipients]`.
//!
//! serenity builds every request (routes, `Authorization`, `api_base` via
//! `HttpBuilder::proxy`); its ratelimiter is disabled in every mode because
//! it retries 429s without limit and ignores the proxy otherwise. Requests
//! are executed on the shared reqwest client and the raw answer is
//! classified here, since serenity's `ErrorResponse` drops the 429's
//! `retry_after` and headers, and its `url` holds the webhook token.

mod answer;
mod fit;
mod settings;
mod upload;
#[cfg(test)]
mod wire_tests;

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

pub use fit::fit;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serenity::http::{Http, HttpBuilder, LightMethod, Request, Route};
use serenity::model::id::{ChannelId, UserId, WebhookId};
pub use settings::{alert_problem, origin, KIND};
use url::Url;

use super::http::transport_error;
use crate::http_body::read_capped;

/// A DM channel object is well under a kilobyte; this is generous.
const DM_CHANNEL_LIMIT: u64 = 64 * 1024;
use super::{SendError, SendFuture, Sink};
use crate::domain::Delivery;
use crate::secret::Secret;

/// Where messages go.
enum Mode {
    /// Execute this webhook (the token is the credential).
    Webhook { id: WebhookId, token: Secret },
    /// DM each delivery's recipient (a Discord user id) as the bot.
    Bot,
}

/// A Discord sink. Holds no gateway connection: HTTP only.
pub struct DiscordSink {
    http: Http,
    client: reqwest::Client,
    mode: Mode,
    /// DM channel per user, so a second message skips the channel lookup.
    dm_channels: Mutex<HashMap<UserId, ChannelId>>,
    /// Webhook URL pieces and the bot token, masked in every error text.
    secrets: Vec<String>,
}

/// The part of Discord's channel object a DM needs.
#[derive(Deserialize)]
struct DmChannel {
    id: ChannelId,
}

impl DiscordSink {
    /// A sink over the shared `client`: webhook mode when `webhook_url` is
    /// set, else bot mode with `bot_token`. `api_base` replaces
    /// `https://discord.com` (tests, API proxies). Errors never show the
    /// URL or token.
    pub fn new(
        client: reqwest::Client,
        webhook_url: Option<&Secret>,
        bot_token: Option<&Secret>,
        api_base: Option<&Url>,
    ) -> Result<DiscordSink, String> {
        let mut secrets = Vec::new();
        let mode = match (webhook_url, bot_token) {
            (Some(url), _) => {
                let (id, token) = parse_webhook_url(url.expose())?;
                secrets.extend(crate::secret::url_parts(url.expose()));
                secrets.push(token.expose().to_string());
                Mode::Webhook { id, token }
            }
            (None, Some(token)) => {
                secrets.extend(crate::secret::value_parts(token.expose()));
                Mode::Bot
            }
            (None, None) => return Err("set webhook_url or bot_token".into()),
        };
        secrets.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut builder = HttpBuilder::new(bot_token.map_or("", Secret::expose))
            .client(client.clone())
            .ratelimiter_disabled(true);
        if let Some(base) = api_base {
            builder = builder.proxy(base.as_str().trim_end_matches('/'));
        }
        Ok(DiscordSink {
            http: builder.build(),
            client,
            mode,
            dm_channels: Mutex::default(),
            secrets,
        })
    }

    /// Sends one delivery's rendered `json` part once and classifies the
    /// answer.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let body = delivery.message.part("json").as_bytes().to_vec();
        match &self.mode {
            Mode::Webhook { id, token } => {
                let route = Route::WebhookWithToken {
                    webhook_id: *id,
                    token: token.expose(),
                };
                let request = Request::new(route, LightMethod::Post)
                    .params(Some(vec![("wait", "true".to_string())]))
                    .body(Some(body));
                self.execute(request, false).await.map(drop)
            }
            Mode::Bot => {
                let user = parse_user(delivery.recipient.as_deref())?;
                let channel_id = self.dm_channel(user).await?;
                let route = Route::ChannelMessages { channel_id };
                let request = Request::new(route, LightMethod::Post).body(Some(body));
                self.execute(request, true).await.map(drop)
            }
        }
    }

    /// The DM channel with `user`: `POST /users/@me/channels` once, then
    /// from the cache.
    async fn dm_channel(&self, user: UserId) -> Result<ChannelId, SendError> {
        if let Some(id) = self.cache().get(&user) {
            return Ok(*id);
        }
        let body = serde_json::json!({ "recipient_id": user.to_string() }).to_string();
        let request =
            Request::new(Route::UserMeDmChannels, LightMethod::Post).body(Some(body.into_bytes()));
        let answer = self.execute(request, true).await?;
        let not_understood =
            |why: String| SendError::Retryable(format!("Discord's DM channel answer {why}"));
        let body = read_capped(answer, DM_CHANNEL_LIMIT)
            .await
            .map_err(|e| not_understood(e.to_string()))?;
        let channel: DmChannel = serde_json::from_slice(&body)
            .map_err(|e| not_understood(format!("is not understood: {e}")))?;
        self.cache().insert(user, channel.id);
        Ok(channel.id)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, ChannelId>> {
        self.dm_channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds `request` with serenity, sends it on the shared client and
    /// classifies the answer. Webhook calls carry no `Authorization`.
    async fn execute(
        &self,
        request: Request<'_>,
        authorized: bool,
    ) -> Result<reqwest::Response, SendError> {
        self.execute_with(request, authorized, None).await
    }

    /// [`DiscordSink::execute`], with `form` as a `multipart/form-data`
    /// body in place of serenity's JSON one (a message with a file).
    async fn execute_with(
        &self,
        request: Request<'_>,
        authorized: bool,
        form: Option<reqwest::multipart::Form>,
    ) -> Result<reqwest::Response, SendError> {
        let built = request
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .and_then(|b| b.build().map_err(serenity::Error::from))
            .map_err(|e| self.redact(answer::from_serenity(e)));
        let mut built = built?;
        if !authorized {
            built.headers_mut().remove(AUTHORIZATION);
        }
        if let Some(form) = form {
            built = upload::with_form(&self.client, built, form)
                .map_err(|e| self.redact(transport_error(e)))?;
        }
        let response = self
            .client
            .execute(built)
            .await
            .map_err(|e| self.redact(transport_error(e)))?;
        answer::check(response, &self.secrets)
            .await
            .map_err(|e| self.redact(e))
    }

    /// Removes the webhook token (and URL) or the bot token from an error's
    /// text: the texts are built without URLs, but Discord or a proxy at
    /// `api_base` may echo a credential in its answer.
    fn redact(&self, error: SendError) -> SendError {
        error.map_message(|m| crate::secret::mask(&m, &self.secrets))
    }
}

impl Sink for DiscordSink {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(DiscordSink::send(self, delivery))
    }

    fn send_with<'a>(
        &'a self,
        delivery: &'a Delivery,
        attachment: Option<&'a crate::attach::Attachment>,
    ) -> SendFuture<'a> {
        Box::pin(DiscordSink::send_with(self, delivery, attachment))
    }
}

/// The webhook id and token from `…/webhooks/{id}/{token}` on any host
/// (discord.com, a canary host, a proxy), without a network call.
pub fn parse_webhook_url(text: &str) -> Result<(WebhookId, Secret), String> {
    let bad = || {
        "webhook_url must look like https://discord.com/api/webhooks/ID/TOKEN (the value is not shown)"
            .to_string()
    };
    let url = Url::parse(text).map_err(|_| bad())?;
    let segments: Vec<&str> = url.path_segments().ok_or_else(bad)?.collect();
    let at = segments
        .iter()
        .position(|s| *s == "webhooks")
        .ok_or_else(bad)?;
    match segments.get(at + 1..) {
        Some([id, token, ..]) if !token.is_empty() => {
            let id: NonZeroU64 = id.parse().map_err(|_| bad())?;
            Ok((WebhookId::from(id), Secret::new(*token)))
        }
        _ => Err(bad()),
    }
}

fn parse_user(recipient: Option<&str>) -> Result<UserId, SendError> {
    let text = recipient.unwrap_or_default().trim();
    text.parse::<NonZeroU64>().map(UserId::from).map_err(|_| {
        SendError::Permanent(format!("discord_user_id {text:?} is not a Discord user id"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_give_id_and_token_without_a_request() {
        let (id, token) =
            parse_webhook_url("https://discord.com/api/webhooks/123456/tok-EN_x?wait=true")
                .unwrap();
        assert_eq!(id.get(), 123456);
        assert_eq!(token.expose(), "tok-EN_x");
        let (id, _) = parse_webhook_url("http://127.0.0.1:9/api/v10/webhooks/7/t").unwrap();
        assert_eq!(id.get(), 7);
    }

    #[test]
    fn bad_webhook_urls_are_refused_without_echoing_them() {
        for url in [
            "not a url",
            "https://discord.com/api/webhooks/123456",
            "https://discord.com/api/webhooks/0/secret-token",
            "https://discord.com/api/webhooks/abc/secret-token",
            "https://discord.com/api/channels/1/secret-token",
        ] {
            let err = parse_webhook_url(url).unwrap_err();
            assert!(
                !err.contains("secret-token") && !err.contains("123456"),
                "{err}"
            );
        }
    }

    #[test]
    fn recipients_must_be_snowflakes() {
        assert_eq!(parse_user(Some(" 42 ")).unwrap().get(), 42);
        for bad in [None, Some(""), Some("0"), Some("ann@example.com")] {
            assert!(matches!(parse_user(bad), Err(SendError::Permanent(_))));
        }
    }

    #[test]
    fn errors_never_carry_the_webhook_token() {
        let client = reqwest::Client::new();
        let url = Secret::new("https://discord.com/api/webhooks/1/SECRET-TOKEN");
        let sink = DiscordSink::new(client, Some(&url), None, None).unwrap();
        let leaked = SendError::Permanent(
            "HTTP 404 for https://discord.com/api/v10/webhooks/1/SECRET-TOKEN".into(),
        );
        let redacted = sink.redact(leaked).to_string();
        assert!(!redacted.contains("SECRET-TOKEN"), "{redacted}");
        assert!(redacted.contains("webhooks/1/***"), "{redacted}");
    }

    #[test]
    fn errors_never_carry_the_bot_token() {
        let client = reqwest::Client::new();
        let token = Secret::new("bot-TOKEN-s3cret");
        let sink = DiscordSink::new(client, None, Some(&token), None).unwrap();
        let leaked = SendError::Permanent("401: bad Authorization Bot bot-TOKEN-s3cret".into());
        let redacted = sink.redact(leaked).to_string();
        assert!(!redacted.contains("bot-TOKEN-s3cret"), "{redacted}");
    }
}
