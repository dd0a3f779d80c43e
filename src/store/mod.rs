//! The bot's persistent state behind one trait: per account, the last
//! successfully polled snapshot of the export queue, the record of which
//! (item, event) pairs already fired, the outbox of deliveries with their
//! attempt log, and the alerts the bot sent about itself.
//!
//! The poller, the dispatcher, the alerts, the CLI and the metrics all speak
//! to a `&dyn Store` ([`Store`] is object-safe, `Send + Sync`), so a second
//! backend is one new folder implementing it; [`contract`] is the behaviour
//! suite every backend runs. The trait is synchronous, as the state always
//! was: every call is short and SQLite is in-process; the PostgreSQL backend
//! bridges to its driver off the async runtime (see `postgres::conn`).
//!
//! Everything one poll changes is written in a single transaction
//! ([`Store::commit_poll`]), so a crash at any point either keeps the old state
//! or the complete new one: events never fire twice and pending deliveries are
//! never lost.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, EventKind, ExportId, NewDelivery, Snapshot,
};

#[cfg(test)]
pub(crate) mod contract;
pub mod copy;
mod error;
pub mod location;
/// The throwaway PostgreSQL cluster the tests share (one per test binary).
#[cfg(test)]
#[path = "../../tests/it/pg_cluster.rs"]
pub(crate) mod pg_cluster;
pub mod postgres;
pub mod sqlite;
mod types;

pub use error::StoreError;
pub use location::{LocationError, PgUrl, StateLocation};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::*;

/// Opens the state a config names (`watch.state`): an SQLite file, or a
/// PostgreSQL database for a `postgres://` URL (several replicas).
pub fn open(location: &StateLocation) -> Result<Arc<dyn Store>, StoreError> {
    match location {
        StateLocation::File(path) => open_file(path),
        StateLocation::Postgres(url) => Ok(Arc::new(PostgresStore::open(url)?)),
    }
}

/// Opens an SQLite state file.
pub fn open_file(path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

/// The operations on the bot's state. Every one is scoped to one account
/// (those by delivery id too: another account's delivery is not found), so
/// the same item id in two accounts is two items and one account's outbox is
/// never sent, retried, pruned or counted through another.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the state lives, for log lines and messages (never a secret).
    fn location(&self) -> String;

    /// The stored snapshot; `None` if the account was never polled
    /// successfully (no baseline yet).
    fn load_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError>;

    /// When the account was last polled successfully (alerts count from it,
    /// also across restarts); `None` before the first successful poll.
    fn last_success_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Which of these (id, event) pairs already fired for the account (they
    /// must never fire again, even after the item left and re-entered the queue).
    fn already_fired(
        &self,
        account: &AccountId,
        pairs: &[(ExportId, EventKind)],
    ) -> Result<HashSet<(ExportId, EventKind)>, StoreError>;

    /// Writes one poll's results atomically: the snapshot changes (only rows
    /// that differ from `previous`; everything when it is `None`), the poll
    /// bookkeeping, the fired records and the deliveries (pending, due now; or
    /// skipped/dead with the reason as `last_error`). Any error writes nothing.
    fn commit_poll(&self, commit: &PollCommit<'_>) -> Result<CommitStats, StoreError>;

    /// Adds item deliveries outside a poll, atomically; returns how many.
    fn enqueue(
        &self,
        account: &AccountId,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// The account's pending deliveries with `next_attempt_at <= now`, earliest
    /// due first (then oldest id), at most `limit`, leaving out `exclude`.
    fn due_deliveries(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The ids and sinks of what [`due_deliveries`](Store::due_deliveries)
    /// would return (same order, same exclusion), without decoding the
    /// messages: the dispatcher parks a burst beyond a sink's window by id,
    /// and reads each message once, when it is sent. The default reads the
    /// full rows; a backend may read just the two columns.
    fn due_ids(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<(DeliveryId, String)>, StoreError> {
        let due = self.due_deliveries(account, now, limit, exclude)?;
        Ok(due.into_iter().map(|d| (d.id, d.sink)).collect())
    }

    /// Every account with a delivery still to send (pending, whatever its
    /// `next_attempt_at`: due, retrying, held for quiet hours or waiting in
    /// a digest window), sorted: at start, `run` and `once` drain the
    /// outboxes of accounts that left the config too, so no notification is
    /// lost with the account.
    fn accounts_with_pending(&self) -> Result<Vec<AccountId>, StoreError>;

    /// The sinks each of `items` still has pending deliveries to (any
    /// `next_attempt_at`), as (item, sink) pairs in no particular order:
    /// after each attempt the dispatcher asks whether the export files it
    /// holds are still needed, without reading every pending message. The
    /// default reads the pending rows in full; a backend may look the items
    /// up by index.
    fn pending_sinks_of_items(
        &self,
        account: &AccountId,
        items: &[ExportId],
    ) -> Result<Vec<(ExportId, String)>, StoreError> {
        let pending = self.list_deliveries(account, Some(DeliveryStatus::Pending))?;
        Ok(pending
            .into_iter()
            .filter_map(|d| Some((d.subject.item()?, d.sink)))
            .filter(|(item, _)| items.contains(item))
            .collect())
    }

    /// Earliest `next_attempt_at` among the account's pending deliveries;
    /// `None` when nothing is pending.
    fn next_due_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records one attempt: `attempts += 1`, one attempt-log row, the status
    /// per outcome; `last_error` keeps the latest error text. A delivery that
    /// is not the account's is [`StoreError::UnknownDelivery`].
    fn record_attempt(
        &self,
        account: &AccountId,
        id: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<(), StoreError>;

    /// Records many attempts in ONE transaction, each as [`record_attempt`](Store::record_attempt)
    /// would: the dispatcher's batched writes (one commit per batch, not per
    /// delivery). The inner results follow `attempts` in order; one that is
    /// not the account's is [`StoreError::UnknownDelivery`] and writes
    /// nothing while the others are written. An outer error writes nothing.
    fn record_attempts(
        &self,
        account: &AccountId,
        attempts: &[AttemptWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// For a due item delivery `member` of a sink with a digest: in one
    /// transaction, either keeps its window open (every unclaimed pending
    /// member of the window waits until the first one's `created_at` +
    /// `length`), or claims the window (all its unclaimed pending members,
    /// whatever their own next attempt, get the digest id `member`; all but
    /// `member` lose their own `next_attempt_at`, so only the leader comes
    /// due) and returns it; a member already claimed returns its digest's
    /// members again if it leads it (after a crash or a retry).
    fn gather_digest(
        &self,
        account: &AccountId,
        member: DeliveryId,
        window: &DigestWindow<'_>,
        now: DateTime<Utc>,
    ) -> Result<Gathered, StoreError>;

    /// Records one attempt of digest `digest` for every pending member in
    /// one transaction (as [`Store::record_attempt`] does for one: attempts,
    /// status, an attempt-log row each; a retry time only on the leader).
    /// Returns how many members; none is [`StoreError::UnknownDelivery`].
    fn record_digest(
        &self,
        account: &AccountId,
        digest: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<usize, StoreError>;

    /// The digest delivery `id` was claimed into, if any, and when that
    /// digest is next tried (`outbox list`, `why`).
    fn digest_of(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<DigestMembership>, StoreError>;

    /// How many of the account's item deliveries wait for a digest: those
    /// of `sinks` (the sinks with a digest) gathering in an open window,
    /// and the members of claimed digests waiting with their leader
    /// (`/metrics`).
    fn digests_waiting(
        &self,
        account: &AccountId,
        sinks: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Moves one of the account's pending deliveries to `until` without
    /// counting an attempt (quiet hours: nothing was tried). False when it
    /// is not the account's, or no longer pending (sent or dead meanwhile).
    fn defer(
        &self,
        account: &AccountId,
        id: DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// One of the account's deliveries by id.
    fn get_delivery(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Several of the account's deliveries by id in one read (the
    /// dispatcher refilling a sink's window: one query, not one per
    /// delivery); ids not found (another account's, pruned) are left out.
    /// In no particular order.
    fn get_deliveries(
        &self,
        account: &AccountId,
        ids: &[DeliveryId],
    ) -> Result<Vec<Delivery>, StoreError>;

    /// The account's deliveries (or those with one status), newest first.
    fn list_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// At most `limit` of the account's deliveries (or those with one
    /// status), newest first: the status page's read, bounded however large
    /// the outbox grows. Their `message` may be left empty (the page never
    /// shows it). The default reads the whole list; a backend should
    /// override it with a bounded query.
    fn recent_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut all = self.list_deliveries(account, status)?;
        all.truncate(limit);
        Ok(all)
    }

    /// The `ActionName` of those of `ids` still in the stored snapshot, so
    /// the status page can name the items it lists without loading the
    /// whole queue. The default loads the snapshot; a backend should
    /// override it with keyed look-ups.
    fn item_names(
        &self,
        account: &AccountId,
        ids: &[ExportId],
    ) -> Result<BTreeMap<ExportId, String>, StoreError> {
        let Some(snapshot) = self.load_snapshot(account)? else {
            return Ok(BTreeMap::new());
        };
        Ok(ids
            .iter()
            .filter_map(|id| Some((*id, snapshot.items.get(id)?.action_name.clone())))
            .collect())
    }

    /// Per sink with an attempt among the account's `window` most recently
    /// recorded attempts, sorted by sink: when one of those last succeeded
    /// and the latest failed one with its error (the status page's sink
    /// table; the window bounds the read however long the attempt log grows).
    fn sink_activity(
        &self,
        account: &AccountId,
        window: usize,
    ) -> Result<Vec<SinkActivity>, StoreError>;

    /// Dead → pending, due `now`, attempts reset to 0 (one delivery, or all the
    /// account's dead ones when `id` is `None`); `last_error` is kept. Returns
    /// how many changed (0 if the id is not dead or not the account's).
    fn retry_dead(
        &self,
        account: &AccountId,
        id: Option<DeliveryId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// Deletes the account's sent and skipped deliveries last updated before
    /// `sent_before` (with their attempts), and fired records older than
    /// `fired_before` whose item is no longer in the stored snapshot. Pending
    /// and dead deliveries, and the latest alert of each kind, are kept.
    /// At most `limit` deliveries and `limit` fired records go per call (the
    /// oldest first), so one call's work is bounded however large the
    /// backlog; call again while a count comes back equal to `limit`.
    /// Returns (deliveries, fired records) removed.
    fn prune(
        &self,
        account: &AccountId,
        sent_before: DateTime<Utc>,
        fired_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, usize), StoreError>;

    /// For `why ITEM_ID`: the stored item, its fired records and its item
    /// deliveries (never alerts) with their attempt logs.
    fn item_history(&self, account: &AccountId, id: ExportId) -> Result<ItemHistory, StoreError>;

    /// The account's delivery counts by (sink, status), sorted, for `/metrics`.
    fn outbox_counts(
        &self,
        account: &AccountId,
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError>;

    /// Records alerts (the alert memory) and their deliveries atomically.
    fn record_alerts(
        &self,
        account: &AccountId,
        alerts: &[NewAlert],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    /// The latest alert sent per (condition, state): the alerts' memory
    /// across restarts ("once per repeat").
    fn alert_history(&self, account: &AccountId) -> Result<Vec<AlertRecord>, StoreError>;

    /// How many of the account's deliveries are dead, and the newest one's
    /// error, leaving out `except_sink` (the alert sink never alerts about itself).
    fn dead_count(
        &self,
        account: &AccountId,
        except_sink: &str,
    ) -> Result<(u64, Option<String>), StoreError>;

    /// Whether the store holds no state at all (no account, delivery, fired
    /// record or alert): `state copy` only writes into an empty one.
    fn is_empty(&self) -> Result<bool, StoreError>;

    /// Every row of every table, read consistently, for `state copy`.
    fn export(&self) -> Result<copy::Dump, StoreError>;

    /// Writes a dump (ids kept) in one transaction, refusing with
    /// [`StoreError::TargetNotEmpty`] if the store holds state by then.
    fn import(&self, dump: &copy::Dump) -> Result<(), StoreError>;

    /// Takes or renews the leader lease for `holder` (one per process) for
    /// `ttl`; the generation won, or `None` while another replica leads.
    /// From the first call on, this store's poll commits and delivery
    /// writes are fenced: refused ([`StoreError::Fenced`]) unless it still
    /// holds that generation. Default (SQLite): always the leader, the
    /// state file's lock already makes this the only process.
    fn try_lead(&self, holder: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let _ = (holder, ttl);
        Ok(Some(1))
    }

    /// Gives the lease up at once (clean shutdown), so a standby takes over
    /// without waiting for it to expire; later fenced writes are refused.
    fn step_down(&self, holder: &str) -> Result<(), StoreError> {
        let _ = holder;
        Ok(())
    }

    /// The Slack sink `sink`'s cached `users.lookupByEmail` answer for
    /// `address` (case-insensitive), unless it expired by `now`: a burst of
    /// messages to one requester must make one lookup, also across restarts.
    fn slack_lookup(
        &self,
        sink: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SlackLookup>, StoreError>;

    /// Remembers (replaces) that answer until `lookup.expires_at`.
    fn remember_slack_lookup(
        &self,
        sink: &str,
        address: &str,
        lookup: &SlackLookup,
    ) -> Result<(), StoreError>;
}
