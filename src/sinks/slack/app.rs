//! `kind = "slack"` with `bot_token`: the app posts through the Web API.
//! DM mode (no `channel`) finds the requester (`[recipients]` id, else a
//! cached `users.lookupByEmail`), opens the DM with `conversations.open` and
//! posts there; channel mode posts to `channel` and turns the requester's
//! address in the message into a `<@U…>` mention when Slack knows them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::api::{Api, ApiError};
use super::lookup::{is_user_id, Directory};
use super::settings::AppSettings;
use crate::domain::Delivery;
use crate::sinks::{SendError, SendFuture, Sink};

/// The DM channel of one user, opened once: concurrent sends wait on the
/// one `conversations.open` instead of each making their own.
type DmChannel = Arc<tokio::sync::Mutex<Option<String>>>;

/// A Slack app sink (the token lives in its [`Api`], masked in errors).
pub struct SlackAppSink {
    pub(super) api: Api,
    channel: Option<String>,
    directory: Directory,
    dm_channels: Mutex<HashMap<String, DmChannel>>,
}

impl SlackAppSink {
    /// The app of sink `name` over the shared `client`; lookups are cached
    /// in the state file at `state` when given.
    pub fn new(
        name: &str,
        client: reqwest::Client,
        settings: &AppSettings,
        state: Option<crate::store::StateLocation>,
    ) -> SlackAppSink {
        SlackAppSink {
            api: Api::new(
                client,
                settings.api_base.clone(),
                settings.bot_token.clone(),
            ),
            channel: settings.channel.clone(),
            directory: Directory::new(name, state),
            dm_channels: Mutex::default(),
        }
    }

    /// Posts one delivery's rendered `json` part (blocks + `text`) once.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let (body, _) = self.addressed(delivery).await?;
        let posted = self.api.json("chat.postMessage", &body).await;
        posted.map(drop).map_err(ApiError::into_send_error)
    }

    /// The rendered message with its `channel` set (and, in channel mode,
    /// the requester mentioned), and that channel.
    pub(super) async fn addressed(
        &self,
        delivery: &Delivery,
    ) -> Result<(Value, String), SendError> {
        let mut body: Value = serde_json::from_str(delivery.message.part("json"))
            .map_err(|e| SendError::Permanent(format!("the rendered message is not JSON: {e}")))?;
        let channel = match &self.channel {
            Some(channel) => {
                self.mention(&mut body, delivery.recipient.as_deref()).await;
                channel.clone()
            }
            None => self.dm_channel(delivery.recipient.as_deref()).await?,
        };
        body["channel"] = Value::String(channel.clone());
        Ok((body, channel))
    }

    /// The DM channel with the requester; skipped when there is nobody.
    async fn dm_channel(&self, recipient: Option<&str>) -> Result<String, SendError> {
        let who = recipient
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| SendError::Skip("no address to find the requester in Slack".into()))?;
        let user = match is_user_id(who) {
            true => who.to_string(),
            false => self
                .directory
                .user_for(&self.api, who)
                .await?
                .ok_or_else(|| {
                    SendError::Skip(format!(
                        "Slack has no user with the address {who} (users_not_found)"
                    ))
                })?,
        };
        let slot = self.dm_slot(&user);
        let mut known = slot.lock().await;
        if let Some(channel) = known.as_ref() {
            return Ok(channel.clone());
        }
        let users = serde_json::json!({ "users": user });
        let opened = self.api.json("conversations.open", &users).await;
        let opened = opened.map_err(ApiError::into_send_error)?;
        match opened["channel"]["id"].as_str() {
            Some(id) if !id.is_empty() => Ok(known.insert(id.to_string()).clone()),
            _ => Err(SendError::Retryable(
                "Slack conversations.open: the answer has no channel id".into(),
            )),
        }
    }

    fn dm_slot(&self, user: &str) -> DmChannel {
        let mut slots = self.dm_channels.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(user.to_string()).or_default().clone()
    }

    /// Channel mode: the requester's address becomes `<@U…>` where the
    /// message shows it, if Slack knows them. A failed lookup only costs the
    /// mention (logged): the message still goes out, never skipped.
    async fn mention(&self, body: &mut Value, recipient: Option<&str>) {
        let Some(address) = recipient.map(str::trim).filter(|a| a.contains('@')) else {
            return;
        };
        match self.directory.user_for(&self.api, address).await {
            Ok(Some(user)) => replace_strings(body, address, &format!("<@{user}>")),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Slack lookup failed; posting without the mention")
            }
        }
    }

    /// `auth.test`: the workspace and the bot's name (`check --online`).
    pub async fn auth_test(&self) -> Result<String, String> {
        let answer = self.api.form("auth.test", &[]).await;
        let answer = answer.map_err(|e| e.to_string())?;
        let field = |k: &str| answer[k].as_str().unwrap_or("?").to_string();
        Ok(format!(
            "workspace {} ({}), bot {}",
            field("team"),
            field("url"),
            field("user")
        ))
    }
}

impl Sink for SlackAppSink {
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(SlackAppSink::send(self, delivery))
    }

    fn send_with<'a>(
        &'a self,
        delivery: &'a Delivery,
        attachment: Option<&'a crate::attach::Attachment>,
    ) -> SendFuture<'a> {
        Box::pin(SlackAppSink::send_with(self, delivery, attachment))
    }
}

/// Replaces `from` with `to` in every string of `value` except link URLs.
fn replace_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, from, to)),
        Value::Object(map) => map
            .iter_mut()
            .filter(|(k, _)| k.as_str() != "url")
            .for_each(|(_, v)| replace_strings(v, from, to)),
        _ => {}
    }
}
