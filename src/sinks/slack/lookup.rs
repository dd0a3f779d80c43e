//! Who a requester is in Slack: `users.lookupByEmail`, cached in the state
//! (found: 7 days, not found: 1 hour; keyed case-insensitively per sink) and
//! single-flight per address, so a burst of messages to one requester makes
//! one lookup even when the sends run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{Duration, Utc};

use super::api::{Api, ApiError};
use crate::sinks::SendError;
use crate::store::{SlackLookup, Store};

/// How long a found user is trusted.
pub const HIT_FOR: Duration = Duration::days(7);
/// How long "no such user" is trusted (they may join soon).
pub const MISS_FOR: Duration = Duration::hours(1);

/// The lookups of one sink.
pub struct Directory {
    sink: String,
    state: Option<crate::store::StateLocation>,
    store: OnceLock<Option<Arc<dyn Store>>>,
    memory: Mutex<HashMap<String, SlackLookup>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Directory {
    /// Lookups of sink `sink`, remembered in the state file at `state`
    /// (opened on the first lookup), else only in memory.
    pub fn new(sink: &str, state: Option<crate::store::StateLocation>) -> Directory {
        Directory {
            sink: sink.to_string(),
            state,
            store: OnceLock::new(),
            memory: Mutex::default(),
            flights: Mutex::default(),
        }
    }

    /// The Slack user id of `address`, `None` when Slack knows no such user.
    pub async fn user_for(&self, api: &Api, address: &str) -> Result<Option<String>, SendError> {
        let key = address.trim().to_lowercase();
        if let Some(known) = self.cached(&key) {
            return Ok(known.user_id);
        }
        let flight = self.flight(&key);
        let _turn = flight.lock().await;
        if let Some(known) = self.cached(&key) {
            return Ok(known.user_id);
        }
        let user_id = lookup(api, &key).await?;
        let ttl = if user_id.is_some() { HIT_FOR } else { MISS_FOR };
        let found = SlackLookup {
            user_id,
            expires_at: Utc::now() + ttl,
        };
        self.remember(&key, &found);
        Ok(found.user_id)
    }

    /// A lookup not yet expired, from memory or the state.
    fn cached(&self, key: &str) -> Option<SlackLookup> {
        let now = Utc::now();
        let fresh = |l: &SlackLookup| l.expires_at > now;
        if let Some(hit) = self.lock_memory().get(key).filter(|l| fresh(l)) {
            return Some(hit.clone());
        }
        let stored = self.store()?.slack_lookup(&self.sink, key, now);
        let stored = stored
            .map_err(|e| tracing::warn!(sink = %self.sink, error = %e, "cannot read the Slack lookup cache"))
            .ok()
            .flatten()?;
        self.lock_memory().insert(key.to_string(), stored.clone());
        Some(stored)
    }

    fn remember(&self, key: &str, found: &SlackLookup) {
        self.lock_memory().insert(key.to_string(), found.clone());
        if let Some(store) = self.store() {
            if let Err(e) = store.remember_slack_lookup(&self.sink, key, found) {
                tracing::warn!(sink = %self.sink, error = %e, "cannot write the Slack lookup cache");
            }
        }
    }

    /// The one in-flight guard of `key`.
    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.retain(|_, f| Arc::strong_count(f) > 1);
        flights.entry(key.to_string()).or_default().clone()
    }

    fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store
            .get_or_init(|| {
                let location = self.state.as_ref()?;
                crate::store::open(location)
                    .map_err(|e| tracing::warn!(sink = %self.sink, error = %e, "Slack lookups are cached in memory only"))
                    .ok()
            })
            .as_ref()
    }

    fn lock_memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, SlackLookup>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `users.lookupByEmail`: `users_not_found` is an answer (no such user), any
/// other failure is the send's failure.
async fn lookup(api: &Api, address: &str) -> Result<Option<String>, SendError> {
    match api.form("users.lookupByEmail", &[("email", address)]).await {
        Ok(answer) => {
            let id = answer["user"]["id"].as_str().filter(|id| is_user_id(id));
            Ok(id.map(str::to_string))
        }
        Err(e) if e.slack_error() == Some("users_not_found") => Ok(None),
        Err(e) => Err(ApiError::into_send_error(e)),
    }
}

/// `U…` or `W…` (Enterprise Grid), capitals and digits: safe inside `<@…>`.
pub fn is_user_id(text: &str) -> bool {
    text.len() >= 3
        && text.starts_with(['U', 'W'])
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
