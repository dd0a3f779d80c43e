//! The status page's facts (`GET /` and `GET /api/status`): what an operator
//! needs to see without a shell on the host. [`gather`] reads them from the
//! state and the poll loop's [`Health`] into one serializable [`StatusView`];
//! `/api/status` is that view as JSON and [`page`] renders it as HTML, so the
//! two never disagree.
//!
//! Every read is bounded ([`RECENT`], [`LISTED`], [`ATTEMPT_WINDOW`]) and nothing in the view is
//! a secret: delivery errors are stored masked, tokens and URLs never are.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::telemetry::{Health, PollFacts};
use crate::domain::{AccountId, Delivery, DeliveryStatus, ExportId};
use crate::store::{SinkActivity, Store, StoreError};

pub mod http;
pub mod page;

/// How many of the newest deliveries the page lists.
pub const RECENT: usize = 50;
/// At most this many dead and this many skipped deliveries are listed (the
/// totals are always shown; `outbox list --status dead` lists them all).
pub const LISTED: usize = 500;
/// Each sink's last success and last error are looked for among this many
/// of the newest delivery attempts.
pub const ATTEMPT_WINDOW: usize = 5_000;

/// Whether this replica polls and delivers (leader) or waits (standby).
/// SQLite state has a single replica, always the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Polls and delivers.
    Leader,
    /// Waits for the leader's lease to lapse.
    Standby,
}

/// What the status page is built from: the state, the poll loop's health,
/// the accounts and how to show times. Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct StatusSource {
    /// The bot's state.
    pub store: Arc<dyn Store>,
    /// The poll loop's health, holding the last poll's facts.
    pub health: Arc<Health>,
    /// The accounts shown; empty: every account `health` follows (what
    /// `run` passes, so a reload's accounts show up without a restart).
    pub accounts: Vec<AccountId>,
    /// `display.timezone`: the zone the HTML page shows times in.
    pub timezone: chrono_tz::Tz,
}

/// Why the status could not be gathered or rendered; names the account or
/// the template, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A read of the state failed.
    #[error("status of account {account}: {source}")]
    Store {
        /// The account being read.
        account: String,
        /// The store's error (names the state file).
        #[source]
        source: StoreError,
    },
    /// The built-in page template failed to render.
    #[error("status page template {template}: {message}")]
    Template {
        /// The template's name.
        template: &'static str,
        /// Tera's message.
        message: String,
    },
}

/// Everything the status page shows, as `/api/status` returns it (times are
/// RFC 3339 in UTC; the HTML page shows them in `display.timezone`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The bot's version.
    pub version: &'static str,
    /// This replica's role.
    pub role: Role,
    /// When the view was gathered.
    pub generated_at: DateTime<Utc>,
    /// The zone the page shows times in.
    pub timezone: String,
    /// One entry per account.
    pub accounts: Vec<AccountView>,
}

/// One account's part of the page.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    /// The account's name.
    pub account: String,
    /// The latest poll, `None` before the first one ended.
    pub last_poll: Option<PollFacts>,
    /// Deliveries per status (every status present, zero included).
    pub outbox: BTreeMap<&'static str, u64>,
    /// The newest [`RECENT`] deliveries, newest first.
    pub recent: Vec<DeliveryView>,
    /// Dead deliveries, newest first (at most [`LISTED`]; the total is in `outbox`).
    pub dead: Vec<DeliveryView>,
    /// Skipped deliveries, newest first (at most [`LISTED`]).
    pub skipped: Vec<DeliveryView>,
    /// Per sink: the last success and the last error.
    pub sinks: Vec<SinkView>,
}

/// One delivery as the page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The outbox id (for `outbox retry ID`).
    pub id: i64,
    /// When it was enqueued.
    pub at: DateTime<Utc>,
    /// The sink.
    pub sink: String,
    /// `2439` for an item, `alert:polls_failing` for an alert.
    pub subject: String,
    /// The item's `ActionName`, while the item is in the stored queue.
    pub item_name: Option<String>,
    /// The event (`downloadable`, `failed`, …, `alert`).
    pub event: &'static str,
    /// `pending`, `sent`, `dead` or `skipped`.
    pub status: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, or why it was skipped.
    pub reason: Option<String>,
}

/// One sink's latest outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct SinkView {
    /// The sink's name.
    pub sink: String,
    /// When a delivery to it last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When a delivery attempt to it last failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// That attempt's error.
    pub last_error: Option<String>,
}

/// Reads the facts for every account of `source`. Blocking (store reads):
/// call it off the async workers (`spawn_blocking`).
pub fn gather(source: &StatusSource, now: DateTime<Utc>) -> Result<StatusView, StatusError> {
    let listed = if source.accounts.is_empty() {
        source.health.accounts()
    } else {
        source.accounts.clone()
    };
    let accounts = listed
        .iter()
        .map(|account| {
            let last_poll = source.health.last_poll_of(account);
            gather_account(&*source.store, account, last_poll).map_err(|e| StatusError::Store {
                account: account.as_str().to_owned(),
                source: e,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(StatusView {
        version: env!("CARGO_PKG_VERSION"),
        role: source.health.role(),
        generated_at: now,
        timezone: source.timezone.name().to_owned(),
        accounts,
    })
}

fn gather_account(
    store: &dyn Store,
    account: &AccountId,
    last_poll: Option<PollFacts>,
) -> Result<AccountView, StoreError> {
    let recent = store.recent_deliveries(account, None, RECENT)?;
    let dead = store.recent_deliveries(account, Some(DeliveryStatus::Dead), LISTED)?;
    let skipped = store.recent_deliveries(account, Some(DeliveryStatus::Skipped), LISTED)?;
    let mut ids: Vec<ExportId> = [&recent, &dead, &skipped]
        .into_iter()
        .flatten()
        .filter_map(|d| d.subject.item())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = store.item_names(account, &ids)?;
    let view = |list: Vec<Delivery>| list.into_iter().map(|d| delivery_view(d, &names)).collect();
    Ok(AccountView {
        account: account.as_str().to_owned(),
        last_poll,
        outbox: by_status(&store.outbox_counts(account)?),
        recent: view(recent),
        dead: view(dead),
        skipped: view(skipped),
        sinks: store
            .sink_activity(account, ATTEMPT_WINDOW)?
            .into_iter()
            .map(sink_view)
            .collect(),
    })
}

/// Sums the (sink, status) counts per status, every status present.
fn by_status(counts: &[(String, DeliveryStatus, u64)]) -> BTreeMap<&'static str, u64> {
    let mut totals: BTreeMap<&'static str, u64> = [
        DeliveryStatus::Pending,
        DeliveryStatus::Sent,
        DeliveryStatus::Dead,
        DeliveryStatus::Skipped,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    for (_, status, n) in counts {
        *totals.entry(status.as_str()).or_default() += n;
    }
    totals
}

fn delivery_view(d: Delivery, names: &BTreeMap<ExportId, String>) -> DeliveryView {
    DeliveryView {
        id: d.id.0,
        at: d.created_at,
        item_name: d.subject.item().and_then(|id| names.get(&id).cloned()),
        subject: d.subject.to_string(),
        sink: d.sink,
        event: d.event.as_str(),
        status: d.status.as_str(),
        attempts: d.attempts,
        reason: d.last_error,
    }
}

fn sink_view(s: SinkActivity) -> SinkView {
    SinkView {
        sink: s.sink,
        last_success_at: s.last_success_at,
        last_error_at: s.last_error_at,
        last_error: s.last_error,
    }
}

#[cfg(test)]
mod tests;
