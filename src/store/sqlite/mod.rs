//! The SQLite backend: one file (`watch.state`) holding every account's
//! snapshot, fired records, outbox and alerts. The only module that names
//! `rusqlite`; split by concern: [`schema`] (versions, migrations, backups),
//! [`snapshot`], [`outbox`], [`alerts`] and [`rows`] (decoding).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};

use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, EventKind, ExportId, NewDelivery, Snapshot,
};
use crate::store::{
    AlertRecord, AttemptOutcome, AttemptWrite, CommitStats, DigestMembership, DigestWindow,
    Gathered, ItemHistory, NewAlert, PollCommit, SinkActivity, SlackLookup, Store, StoreError,
};

mod alerts;
mod checkpoint;
mod digest;
mod dump;
mod outbox;
mod rows;
mod schema;
mod slack_cache;
mod snapshot;
mod status;
#[cfg(test)]
mod tests;

pub use schema::SCHEMA_VERSION;

/// The state file. One connection behind a mutex: SQLite serialises writers
/// anyway and every call is short. `Send + Sync`; shared as `Arc<dyn Store>`
/// by the poller, the delivery workers and the `outbox`/`why` commands.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Copies the WAL back into the file off the commit path; `None` if its
    /// thread could not start (then SQLite checkpoints in the commits).
    checkpoints: Option<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating with mode 0600 on unix, before SQLite touches it) the
    /// state file, sets WAL + busy_timeout(5s) + foreign_keys, migrates forward.
    /// A file that is not SQLite, or from a newer schema, is refused untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = schema::open(path)?;
        let checkpoints = Self::checkpointer(&conn, path);
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            checkpoints,
        })
    }

    /// The checkpoint thread, if its connection opens and its thread starts;
    /// else checkpoints stay in the commits (SQLite's default), with a
    /// warning.
    fn checkpointer(conn: &Connection, path: &Path) -> Option<checkpoint::Checkpointer> {
        let started = schema::open_for_checkpoints(path)
            .map_err(|e| e.to_string())
            .and_then(|second| checkpoint::Checkpointer::start(second).map_err(|e| e.to_string()))
            .and_then(|c| {
                schema::checkpoint_elsewhere(conn)
                    .map(|()| c)
                    .map_err(|e| e.to_string())
            });
        match started {
            Ok(checkpoints) => Some(checkpoints),
            Err(error) => {
                tracing::warn!(state = %path.display(), %error,
                    "no checkpoint thread; the state file checkpoints in its commits");
                None
            }
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection, naming the file in any error. A poisoned
    /// mutex is recovered: an unfinished transaction rolls back when dropped.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn: MutexGuard<'_, Connection> = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changes = conn.total_changes();
        let result = f(&mut conn).map_err(|source| sqlite_err(&self.path, source));
        if let Some(checkpoints) = &self.checkpoints {
            if conn.total_changes() != changes {
                checkpoints.wrote();
            }
        }
        result
    }
}

/// Any other SQLite failure on the file at `path`.
fn sqlite_err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Backend {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn load_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError> {
        self.with(|conn| snapshot::load(conn, account))
    }

    fn last_success_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|conn| snapshot::last_success_at(conn, account))
    }

    fn already_fired(
        &self,
        account: &AccountId,
        pairs: &[(ExportId, EventKind)],
    ) -> Result<HashSet<(ExportId, EventKind)>, StoreError> {
        self.with(|conn| snapshot::already_fired(conn, account, pairs))
    }

    fn commit_poll(&self, commit: &PollCommit<'_>) -> Result<CommitStats, StoreError> {
        self.with(|conn| snapshot::commit_poll(conn, commit))
    }

    fn enqueue(
        &self,
        account: &AccountId,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = outbox::insert_deliveries(&tx, account, deliveries, now)?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn due_deliveries(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|conn| outbox::due(conn, account, now, limit, exclude))
    }

    fn pending_sinks_of_items(
        &self,
        account: &AccountId,
        items: &[ExportId],
    ) -> Result<Vec<(ExportId, String)>, StoreError> {
        self.with(|conn| outbox::pending_sinks_of_items(conn, account, items))
    }

    fn due_ids(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<(DeliveryId, String)>, StoreError> {
        self.with(|conn| outbox::due_ids(conn, account, now, limit, exclude))
    }

    fn accounts_with_pending(&self) -> Result<Vec<AccountId>, StoreError> {
        self.with(|conn| outbox::accounts_with_pending(conn))
    }

    fn next_due_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with(|conn| outbox::next_due_at(conn, account))
    }

    fn record_attempt(
        &self,
        account: &AccountId,
        id: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<(), StoreError> {
        let write = AttemptWrite {
            id,
            outcome: outcome.clone(),
            at,
            latency,
        };
        let mut results = self.record_attempts(account, std::slice::from_ref(&write))?;
        results.pop().unwrap_or(Ok(()))
    }

    fn record_attempts(
        &self,
        account: &AccountId,
        attempts: &[AttemptWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let found = self.with(|conn| outbox::record_attempts(conn, account, attempts))?;
        let result = |(a, found): (&AttemptWrite, bool)| match found {
            true => Ok(()),
            false => Err(StoreError::UnknownDelivery {
                path: self.path.clone(),
                id: a.id,
            }),
        };
        Ok(attempts.iter().zip(found).map(result).collect())
    }

    fn gather_digest(
        &self,
        account: &AccountId,
        member: DeliveryId,
        window: &DigestWindow<'_>,
        now: DateTime<Utc>,
    ) -> Result<Gathered, StoreError> {
        self.with(|conn| digest::gather(conn, account, member, window, now))
    }

    fn record_digest(
        &self,
        account: &AccountId,
        digest: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<usize, StoreError> {
        match self.with(|conn| digest::record(conn, account, digest, outcome, at, latency))? {
            0 => Err(StoreError::UnknownDelivery {
                path: self.path.clone(),
                id: digest,
            }),
            members => Ok(members),
        }
    }

    fn digest_of(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<DigestMembership>, StoreError> {
        self.with(|conn| digest::membership(conn, account, id))
    }

    fn digests_waiting(
        &self,
        account: &AccountId,
        sinks: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.with(|conn| digest::waiting(conn, account, sinks, now))
    }

    fn defer(
        &self,
        account: &AccountId,
        id: DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| outbox::defer(conn, account, id, until))
    }

    fn get_delivery(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        self.with(|conn| outbox::get(conn, account, id))
    }

    fn get_deliveries(
        &self,
        account: &AccountId,
        ids: &[DeliveryId],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|conn| outbox::get_many(conn, account, ids))
    }

    fn list_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|conn| outbox::list(conn, account, status))
    }

    fn recent_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|conn| status::recent(conn, account, status, limit))
    }

    fn item_names(
        &self,
        account: &AccountId,
        ids: &[ExportId],
    ) -> Result<BTreeMap<ExportId, String>, StoreError> {
        self.with(|conn| status::item_names(conn, account, ids))
    }

    fn sink_activity(
        &self,
        account: &AccountId,
        window: usize,
    ) -> Result<Vec<SinkActivity>, StoreError> {
        self.with(|conn| status::sink_activity(conn, account, window))
    }

    fn retry_dead(
        &self,
        account: &AccountId,
        id: Option<DeliveryId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.with(|conn| outbox::retry_dead(conn, account, id, now))
    }

    fn prune(
        &self,
        account: &AccountId,
        sent_before: DateTime<Utc>,
        fired_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, usize), StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deliveries = outbox::prune_done(&tx, account, sent_before, limit)?;
            let fired = snapshot::prune_fired(&tx, account, fired_before, limit)?;
            alerts::prune(&tx, account, sent_before)?;
            tx.commit()?;
            Ok((deliveries, fired))
        })
    }

    fn item_history(&self, account: &AccountId, id: ExportId) -> Result<ItemHistory, StoreError> {
        self.with(|conn| {
            let item = snapshot::stored_item(conn, account, id)?;
            let fired = snapshot::fired_for_item(conn, account, id)?;
            let deliveries = outbox::for_item(conn, account, id)?
                .into_iter()
                .map(|delivery| {
                    let attempts = outbox::attempts_for(conn, delivery.id)?;
                    Ok((delivery, attempts))
                })
                .collect::<rusqlite::Result<_>>()?;
            Ok(ItemHistory {
                item,
                fired,
                deliveries,
            })
        })
    }

    fn outbox_counts(
        &self,
        account: &AccountId,
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError> {
        self.with(|conn| outbox::counts(conn, account))
    }

    fn record_alerts(
        &self,
        account: &AccountId,
        new: &[NewAlert],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.with(|conn| alerts::record(conn, account, new, now))
    }

    fn alert_history(&self, account: &AccountId) -> Result<Vec<AlertRecord>, StoreError> {
        self.with(|conn| alerts::history(conn, account))
    }

    fn dead_count(
        &self,
        account: &AccountId,
        except_sink: &str,
    ) -> Result<(u64, Option<String>), StoreError> {
        self.with(|conn| outbox::dead_count(conn, account, except_sink))
    }

    fn slack_lookup(
        &self,
        sink: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SlackLookup>, StoreError> {
        self.with(|conn| slack_cache::get(conn, sink, address, now))
    }

    fn remember_slack_lookup(
        &self,
        sink: &str,
        address: &str,
        lookup: &SlackLookup,
    ) -> Result<(), StoreError> {
        self.with(|conn| slack_cache::put(conn, sink, address, lookup))
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        self.with(|conn| dump::is_empty(conn))
    }

    fn export(&self) -> Result<crate::store::copy::Dump, StoreError> {
        self.with(dump::export)
    }

    fn import(&self, dump: &crate::store::copy::Dump) -> Result<(), StoreError> {
        if self.with(|conn| dump::import(conn, dump))? {
            Ok(())
        } else {
            Err(StoreError::TargetNotEmpty {
                location: self.location(),
            })
        }
    }
}
