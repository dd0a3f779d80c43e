//! The bot's persistent state: one SQLite file holding, per account, the last
//! successfully polled snapshot of the export queue, the record of which
//! (item, event) pairs already fired, and the outbox of deliveries with their
//! attempt log.
//!
//! Everything one poll changes is written in a single transaction
//! ([`Store::commit_poll`]), so a crash at any point either keeps the old state
//! or the complete new one: events never fire twice and pending deliveries are
//! never lost. The file carries a schema version (`PRAGMA user_version`);
//! opening migrates forward after making a backup copy, and a file written by a
//! newer build is refused untouched.
//!
//! Timestamps are stored as INTEGER unix milliseconds (so they round-trip at
//! millisecond precision), except the API's `CreatedDate`, stored as RFC 3339
//! text exactly as precise as it was parsed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior,
};

use crate::domain::{
    Change, Delivery, DeliveryId, DeliveryStatus, Disposition, EventKind, ExportId, ExportItem,
    ExportStatus, NewDelivery, RenderedMessage, Snapshot,
};

/// The schema version this build writes; files at a lower version are migrated
/// forward, files at a higher one are refused.
pub const SCHEMA_VERSION: i64 = 2;

/// The migrations, in order: `MIGRATIONS[n - 1]` takes the file to version `n`.
/// Forward-only: once released, an entry is never edited, only appended to.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: snapshot, poll bookkeeping, fired records, outbox.
    "CREATE TABLE poll_state (
        account TEXT PRIMARY KEY NOT NULL,
        nr_of_days INTEGER NOT NULL,
        last_success_at INTEGER NOT NULL
    );
    CREATE TABLE snapshot_items (
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        status INTEGER NOT NULL,
        downloadable INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        action_name TEXT NOT NULL,
        action_url TEXT NOT NULL,
        requested_by TEXT NULL,
        created_date TEXT NOT NULL,
        PRIMARY KEY (account, item_id)
    );
    CREATE TABLE fired (
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        fired_at INTEGER NOT NULL,
        PRIMARY KEY (account, item_id, event)
    );
    CREATE INDEX fired_by_time ON fired (fired_at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        sink TEXT NOT NULL,
        recipient TEXT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NULL,
        last_error TEXT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE INDEX outbox_by_item ON outbox (account, item_id);",
    // 2: one row per delivery attempt, for `why` and post-mortems.
    "CREATE TABLE attempts_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT NULL,
        latency_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_log_by_delivery ON attempts_log (delivery_id);",
];

/// How long a statement waits for another process (e.g. `outbox list` while
/// `run` is running) to release its lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const DELIVERY_COLUMNS: &str = "id, item_id, event, sink, recipient, message, status, attempts, \
     next_attempt_at, last_error, created_at";

/// Everything that can go wrong with the state file. Every message names the
/// file, since the operator's fix (restore, move, upgrade the bot) is about it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file (or its directory) could not be created.
    #[error("cannot create state file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite could not open the file at all.
    #[error("cannot open state file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file exists but is not an SQLite database; it is left untouched.
    #[error("state file {} is not a readable SQLite database: {source}", path.display())]
    NotSqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file is an SQLite database of something else (tables, but no schema
    /// version); it is left untouched rather than mixed with ours.
    #[error(
        "state file {} is an SQLite database that crayon-export-bot did not create \
         (it has tables but no schema version); refusing to touch it",
        path.display()
    )]
    Foreign { path: PathBuf },
    /// The file was written by a newer build; it is left untouched.
    #[error(
        "state file {} was written by a newer crayon-export-bot (schema {found}, this build \
         knows up to {known}); refusing to touch it",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The backup copy taken before a migration failed; nothing was migrated.
    #[error(
        "cannot back up state file {} to {} before upgrading it: {source}",
        path.display(),
        backup.display()
    )]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A migration step failed and was rolled back.
    #[error("cannot upgrade state file {} to schema {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        source: rusqlite::Error,
    },
    /// `record_attempt` named a delivery that is not in the outbox (pruned?).
    #[error("state file {}: no delivery {id} in the outbox", path.display())]
    UnknownDelivery { path: PathBuf, id: DeliveryId },
    /// Any other SQLite failure (including rows that do not decode).
    #[error("state file {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// The state file, shared by the poller, the delivery workers and the
/// `outbox`/`why` commands. One connection behind a mutex: SQLite serialises
/// writers anyway and every call is short. `Send + Sync`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Everything one successful poll writes, committed atomically by
/// [`Store::commit_poll`].
#[derive(Debug, Clone, Copy)]
pub struct PollCommit<'a> {
    /// The account polled (`DEFAULT_ACCOUNT` for now).
    pub account: &'a str,
    /// The snapshot as loaded before this poll (`None`: no baseline yet); only
    /// the differences against it are written.
    pub previous: Option<&'a Snapshot>,
    /// The queue as this poll saw it.
    pub snapshot: &'a Snapshot,
    /// The items that differ from `previous`, when the caller already knows
    /// them (the poll does, see [`crate::polled::Polled`]; `previous` may then
    /// hold only those items and just tells baseline from not). `None`:
    /// found here by comparing `previous` and `snapshot`.
    pub changes: Option<&'a [Change<'a>]>,
    /// The (item, event) pairs that fired in this poll.
    pub fired: &'a [(ExportId, EventKind)],
    /// The deliveries those events cause.
    pub deliveries: &'a [NewDelivery],
    /// The poll's time: `last_success_at`, `fired_at`, first `next_attempt_at`.
    pub now: DateTime<Utc>,
}

/// What a [`Store::commit_poll`] wrote, for the per-poll log line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitStats {
    /// Snapshot rows inserted or updated (unchanged items are not rewritten).
    pub items_written: usize,
    /// Snapshot rows removed because the item left the queue.
    pub items_deleted: usize,
    /// Fired records newly inserted (pairs already recorded are ignored).
    pub fired: usize,
    /// Outbox rows inserted (pending and skipped).
    pub deliveries: usize,
}

/// The result of one delivery attempt, as the delivery worker decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Sent,
    /// Transient failure; try again at this time.
    Retry {
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Refused for good or attempts exhausted.
    Dead { error: String },
}

impl AttemptOutcome {
    /// The name written to the attempt log (`sent`, `retry`, `dead`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
        }
    }

    /// The delivery's new (status, next_attempt_at in ms) after this outcome.
    fn columns(&self) -> (DeliveryStatus, Option<i64>) {
        match self {
            Self::Sent => (DeliveryStatus::Sent, None),
            Self::Retry {
                next_attempt_at, ..
            } => (DeliveryStatus::Pending, Some(to_ms(*next_attempt_at))),
            Self::Dead { .. } => (DeliveryStatus::Dead, None),
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Self::Sent => None,
            Self::Retry { error, .. } | Self::Dead { error } => Some(error),
        }
    }
}

/// What the `why ITEM_ID` command shows about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemHistory {
    /// The item as last polled, if it is still in the stored snapshot.
    pub item: Option<ExportItem>,
    /// The events that fired for it and when, oldest first.
    pub fired: Vec<(EventKind, DateTime<Utc>)>,
    /// Its deliveries, oldest first, each with its attempts, oldest first.
    pub deliveries: Vec<(Delivery, Vec<AttemptRecord>)>,
}

/// One row of a delivery's attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt finished.
    pub at: DateTime<Utc>,
    /// `sent`, `retry` or `dead` (see [`AttemptOutcome::as_str`]).
    pub outcome: String,
    /// The error text, for failed attempts.
    pub error: Option<String>,
    /// How long the attempt took.
    pub latency_ms: i64,
}

impl Store {
    /// Opens (creating with mode 0600 on unix, before SQLite touches it) the
    /// state file, sets WAL + busy_timeout(5s) + foreign_keys, migrates forward.
    /// A file that is not SQLite, or from a newer schema, is refused untouched.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        create_private(path).map_err(|source| StateError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(path).map_err(|source| StateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let version = read_version(&conn, path)?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version == 0 && has_tables(&conn).map_err(|source| sqlite_err(path, source))? {
            return Err(StateError::Foreign {
                path: path.to_path_buf(),
            });
        }
        configure(&conn).map_err(|source| sqlite_err(path, source))?;
        if (1..SCHEMA_VERSION).contains(&version) {
            backup(&conn, path, version)?;
        }
        migrate(&conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The state file's path, for log lines and messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored snapshot for the account; `None` if this account was never
    /// polled successfully (no baseline yet).
    pub fn load_snapshot(&self, account: &str) -> Result<Option<Snapshot>, StateError> {
        self.with(|conn| {
            let nr_of_days: Option<u32> = conn
                .query_row(
                    "SELECT nr_of_days FROM poll_state WHERE account = ?1",
                    [account],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(nr_of_days) = nr_of_days else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT item_id, status, downloadable, attempts, action_name, action_url, \
                 requested_by, created_date FROM snapshot_items WHERE account = ?1",
            )?;
            let items = stmt
                .query_map([account], item_from_row)?
                .map(|item| item.map(|item| (item.id, item)))
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(Snapshot { items, nr_of_days }))
        })
    }

    /// When the account was last polled successfully (alerts count from it,
    /// also across restarts); `None` before the first successful poll.
    pub fn last_success_at(&self, account: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.with(|conn| {
            let ms: Option<i64> = conn
                .query_row(
                    "SELECT last_success_at FROM poll_state WHERE account = ?1",
                    [account],
                    |row| row.get(0),
                )
                .optional()?;
            ms.map(|ms| from_ms(ms, 0)).transpose()
        })
    }

    /// Which of these (id, event) pairs already fired for the account (they
    /// must never fire again, even after the item left and re-entered the queue).
    pub fn already_fired(
        &self,
        account: &str,
        pairs: &[(ExportId, EventKind)],
    ) -> Result<HashSet<(ExportId, EventKind)>, StateError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT 1 FROM fired WHERE account = ?1 AND item_id = ?2 AND event = ?3",
            )?;
            let mut found = HashSet::new();
            for &(id, event) in pairs {
                if stmt.exists(params![account, id.0, event.as_str()])? {
                    found.insert((id, event));
                }
            }
            Ok(found)
        })
    }

    /// Writes one poll's results in ONE transaction: the snapshot changes (only
    /// rows that differ from `previous`; everything when it is `None`), the
    /// account's poll row, the fired records and the deliveries (pending, due
    /// now; or skipped with the reason as `last_error`). Any error rolls all of
    /// it back, so the next poll sees the same previous state and retries.
    pub fn commit_poll(&self, commit: &PollCommit<'_>) -> Result<CommitStats, StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (items_written, items_deleted) = write_snapshot(&tx, commit)?;
            tx.execute(
                "INSERT INTO poll_state (account, nr_of_days, last_success_at) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (account) DO UPDATE SET \
                 nr_of_days = excluded.nr_of_days, last_success_at = excluded.last_success_at",
                params![
                    commit.account,
                    commit.snapshot.nr_of_days,
                    to_ms(commit.now)
                ],
            )?;
            let fired = insert_fired(&tx, commit)?;
            let deliveries = insert_deliveries(&tx, commit)?;
            tx.commit()?;
            Ok(CommitStats {
                items_written,
                items_deleted,
                fired,
                deliveries,
            })
        })
    }

    /// Pending deliveries with `next_attempt_at <= now`, earliest due first (then
    /// oldest id), at most `limit`, excluding ids in `exclude` (already in flight).
    pub fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<Delivery>, StateError> {
        let fetch = limit.saturating_add(exclude.len());
        let fetch = i64::try_from(fetch).unwrap_or(i64::MAX);
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE status = 'pending' \
                 AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![to_ms(now), fetch], delivery_from_row)?;
            let mut due = Vec::new();
            for delivery in rows {
                let delivery = delivery?;
                if due.len() < limit && !exclude.contains(&delivery.id) {
                    due.push(delivery);
                }
            }
            Ok(due)
        })
    }

    /// Earliest `next_attempt_at` among pending deliveries, so the delivery loop
    /// can sleep until then; `None` when nothing is pending.
    pub fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        self.with(|conn| {
            let ms: Option<i64> = conn.query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'",
                [],
                |row| row.get(0),
            )?;
            ms.map(|ms| from_ms(ms, 0)).transpose()
        })
    }

    /// Records one attempt: `attempts += 1`, appends a row to the attempt log
    /// (delivery id, at, outcome, error, latency) and sets the status per
    /// outcome (sent; pending again at the retry time; dead with its reason).
    /// `last_error` keeps the latest error text (a later `Sent` leaves it).
    /// An id not in the outbox is [`StateError::UnknownDelivery`].
    pub fn record_attempt(
        &self,
        id: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<(), StateError> {
        let (status, next) = outcome.columns();
        let latency_ms = i64::try_from(latency.as_millis()).unwrap_or(i64::MAX);
        let found = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, status = ?2, next_attempt_at = ?3, \
                 last_error = COALESCE(?4, last_error), updated_at = ?5 WHERE id = ?1",
                params![id.0, status.as_str(), next, outcome.error(), to_ms(at)],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id.0,
                    to_ms(at),
                    outcome.as_str(),
                    outcome.error(),
                    latency_ms
                ],
            )?;
            tx.commit()?;
            Ok(true)
        })?;
        if found {
            Ok(())
        } else {
            Err(StateError::UnknownDelivery {
                path: self.path.clone(),
                id,
            })
        }
    }

    /// One delivery by id (for `outbox retry ID` and the delivery workers).
    pub fn get_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StateError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = ?1"),
                [id.0],
                delivery_from_row,
            )
            .optional()
        })
    }

    /// All deliveries (or only those with one status), newest first, for
    /// `outbox list`.
    pub fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StateError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox \
                 WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"
            ))?;
            let rows = stmt.query_map([status.map(DeliveryStatus::as_str)], delivery_from_row)?;
            rows.collect()
        })
    }

    /// Dead → pending, due `now`, attempts reset to 0 (one delivery, or all dead
    /// ones when `id` is `None`); `last_error` is kept until the next attempt.
    /// Returns how many rows changed (0 if the id is not dead or unknown).
    pub fn retry_dead(
        &self,
        id: Option<DeliveryId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StateError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1, \
                 updated_at = ?1 WHERE status = 'dead' AND (?2 IS NULL OR id = ?2)",
                params![to_ms(now), id.map(|id| id.0)],
            )
        })
    }

    /// Deletes sent and skipped deliveries last updated before `sent_before`
    /// (with their attempt rows), and fired records older than `fired_before`
    /// whose item is no longer in the stored snapshot (a record for an item
    /// still listed is kept, so pruning can never make it fire again).
    /// Pending and dead deliveries are never pruned. Returns (deliveries, fired)
    /// removed.
    pub fn prune(
        &self,
        sent_before: DateTime<Utc>,
        fired_before: DateTime<Utc>,
    ) -> Result<(usize, usize), StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            const DONE: &str = "status IN ('sent', 'skipped') AND updated_at < ?1";
            tx.execute(
                &format!(
                    "DELETE FROM attempts_log WHERE delivery_id IN \
                     (SELECT id FROM outbox WHERE {DONE})"
                ),
                [to_ms(sent_before)],
            )?;
            let deliveries = tx.execute(
                &format!("DELETE FROM outbox WHERE {DONE}"),
                [to_ms(sent_before)],
            )?;
            let fired = tx.execute(
                "DELETE FROM fired WHERE fired_at < ?1 AND NOT EXISTS (SELECT 1 FROM \
                 snapshot_items s WHERE s.account = fired.account AND s.item_id = fired.item_id)",
                [to_ms(fired_before)],
            )?;
            tx.commit()?;
            Ok((deliveries, fired))
        })
    }

    /// For `why ITEM_ID`: the stored item (if still in the snapshot), its fired
    /// records (event, fired_at), and its deliveries with their attempt logs.
    pub fn item_history(&self, account: &str, id: ExportId) -> Result<ItemHistory, StateError> {
        self.with(|conn| {
            let item = conn
                .query_row(
                    "SELECT item_id, status, downloadable, attempts, action_name, action_url, \
                     requested_by, created_date FROM snapshot_items \
                     WHERE account = ?1 AND item_id = ?2",
                    params![account, id.0],
                    item_from_row,
                )
                .optional()?;
            let fired = fired_for_item(conn, account, id)?;
            let deliveries = deliveries_for_item(conn, account, id)?
                .into_iter()
                .map(|delivery| {
                    let attempts = attempts_for(conn, delivery.id)?;
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

    /// Delivery counts by (sink, status), sorted, for `/metrics` and summaries.
    pub fn outbox_counts(&self) -> Result<Vec<(String, DeliveryStatus, u64)>, StateError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sink, status, COUNT(*) FROM outbox GROUP BY sink, status \
                 ORDER BY sink, status",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get(0)?, status_col(row, 1)?, row.get::<_, u64>(2)?))
            })?;
            rows.collect()
        })
    }

    /// Runs `f` on the connection, naming the file in any error. A poisoned
    /// mutex is recovered: an unfinished transaction rolls back when dropped.
    /// Adds deliveries outside a poll (the bot's own alerts), in one
    /// transaction.
    pub fn enqueue(
        &self,
        account: &str,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<usize, StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = insert_rows(&tx, account, deliveries, now)?;
            tx.commit()?;
            Ok(n)
        })
    }

    /// For each `item_id` used by alert deliveries, when the latest was
    /// enqueued: the alerts' memory across restarts.
    pub fn alert_history(&self) -> Result<Vec<(i64, DateTime<Utc>)>, StateError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT item_id, MAX(created_at) FROM outbox WHERE event = 'alert' GROUP BY item_id",
            )?;
            let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, from_ms(row.get(1)?, 1)?)))?;
            rows.collect()
        })
    }

    /// How many deliveries are dead, and the newest one's error, leaving out
    /// `except_sink` (the alert sink never alerts about itself).
    pub fn dead_count(&self, except_sink: &str) -> Result<(u64, Option<String>), StateError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT COUNT(*), (SELECT last_error FROM outbox WHERE status = 'dead' AND sink != ?1 \
                 ORDER BY updated_at DESC LIMIT 1) FROM outbox WHERE status = 'dead' AND sink != ?1",
                params![except_sink],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
            )
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn: MutexGuard<'_, Connection> = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|source| sqlite_err(&self.path, source))
    }
}

fn sqlite_err(path: &Path, source: rusqlite::Error) -> StateError {
    StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the file empty with mode 0600 if it does not exist, so SQLite (and
/// its -wal/-shm files, which copy the mode) never makes it world-readable.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// Reads `user_version` without writing anything, which is also where a file
/// that is not SQLite shows itself.
fn read_version(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StateError::NotSqlite {
                path: path.to_path_buf(),
                source,
            },
            _ => sqlite_err(path, source),
        })
}

fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master)", [], |row| {
        row.get(0)
    })
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "state file could not switch to WAL");
    }
    // WAL + NORMAL: a process crash (even SIGKILL) loses no committed
    // transaction; only a power loss can drop the last ones, and then a poll
    // rolls back whole (snapshot, fired records and deliveries together), so
    // its events fire again and nothing is lost; at worst a send is repeated.
    // It saves an fsync per commit (BENCHMARKS.md: 127 -> 116 ms at 100k items).
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
}

/// Copies the database to `<state>.v<old>.bak` (or `.v<old>.<n>.bak` if that
/// exists) with `VACUUM INTO`, which is consistent even in WAL mode. The copy
/// is created 0600 first, like the state file.
fn backup(conn: &Connection, path: &Path, version: i64) -> Result<PathBuf, StateError> {
    let backup = free_backup_path(path, version);
    create_private(&backup).map_err(|err| backup_err(path, &backup, err.into()))?;
    let text = backup
        .to_str()
        .ok_or_else(|| backup_err(path, &backup, "the path is not valid UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [text])
        .map_err(|err| backup_err(path, &backup, err.into()))?;
    tracing::info!(
        state = %path.display(),
        backup = %backup.display(),
        from = version,
        to = SCHEMA_VERSION,
        "state file backed up before upgrade"
    );
    Ok(backup)
}

/// The first of `<state>.v<old>.bak`, `<state>.v<old>.2.bak`, … that does not
/// exist: an earlier backup is never overwritten.
fn free_backup_path(path: &Path, version: i64) -> PathBuf {
    (1u32..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            match n {
                1 => name.push(format!(".v{version}.bak")),
                n => name.push(format!(".v{version}.{n}.bak")),
            }
            PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .expect("some backup name is free")
}

fn backup_err(
    path: &Path,
    backup: &Path,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> StateError {
    StateError::Backup {
        path: path.to_path_buf(),
        backup: backup.to_path_buf(),
        source,
    }
}

/// Applies every missing migration, each in its own IMMEDIATE transaction that
/// re-reads the version, so two processes opening at once do not both migrate.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StateError> {
    for version in 1..=SCHEMA_VERSION {
        apply_migration(conn, version).map_err(|source| StateError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        })?;
    }
    Ok(())
}

/// Takes the file to `version` if it is exactly one below it; otherwise no-op.
fn apply_migration(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current != version - 1 {
        return Ok(());
    }
    let index = usize::try_from(version - 1).expect("versions start at 1");
    tx.execute_batch(MIGRATIONS[index])?;
    tx.execute_batch(&format!("PRAGMA user_version = {version};"))?;
    tx.commit()
}

/// Upserts new/changed items and deletes gone ones; with no previous snapshot
/// the account's rows are replaced wholesale. Returns (written, deleted).
fn write_snapshot(
    tx: &Transaction<'_>,
    commit: &PollCommit<'_>,
) -> rusqlite::Result<(usize, usize)> {
    let (mut written, mut deleted) = (0, 0);
    if commit.previous.is_none() {
        deleted += tx.execute(
            "DELETE FROM snapshot_items WHERE account = ?1",
            [commit.account],
        )?;
    }
    let mut delete =
        tx.prepare_cached("DELETE FROM snapshot_items WHERE account = ?1 AND item_id = ?2")?;
    let computed: Vec<Change<'_>>;
    let changes = match commit.changes {
        Some(changes) => changes,
        None => {
            computed = Snapshot::changes(commit.previous, commit.snapshot).collect();
            &computed
        }
    };
    for change in changes {
        match *change {
            Change::Appeared(item) | Change::Changed(_, item) => {
                upsert_item(tx, commit.account, item)?;
                written += 1;
            }
            Change::Gone(item) => deleted += delete.execute(params![commit.account, item.id.0])?,
        }
    }
    Ok((written, deleted))
}

fn upsert_item(tx: &Transaction<'_>, account: &str, item: &ExportItem) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO snapshot_items (account, item_id, status, downloadable, attempts, \
         action_name, action_url, requested_by, created_date) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (account, item_id) DO UPDATE SET \
         status = excluded.status, downloadable = excluded.downloadable, \
         attempts = excluded.attempts, action_name = excluded.action_name, \
         action_url = excluded.action_url, requested_by = excluded.requested_by, \
         created_date = excluded.created_date",
    )?;
    upsert.execute(params![
        account,
        item.id.0,
        item.status.code(),
        item.downloadable,
        item.attempts,
        item.action_name,
        item.action_url,
        item.requested_by,
        item.created_date
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
    ])?;
    Ok(())
}

fn insert_fired(tx: &Transaction<'_>, commit: &PollCommit<'_>) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO fired (account, item_id, event, fired_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut inserted = 0;
    for (id, event) in commit.fired {
        inserted += stmt.execute(params![
            commit.account,
            id.0,
            event.as_str(),
            to_ms(commit.now)
        ])?;
    }
    Ok(inserted)
}

fn insert_deliveries(tx: &Transaction<'_>, commit: &PollCommit<'_>) -> rusqlite::Result<usize> {
    insert_rows(tx, commit.account, commit.deliveries, commit.now)
}

fn insert_rows(
    tx: &Transaction<'_>,
    account: &str,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
         attempts, next_attempt_at, last_error, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?10)",
    )?;
    let now_ms = to_ms(now);
    for delivery in deliveries {
        let message = serde_json::to_string(&delivery.message)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
        let (status, next, reason) = match &delivery.disposition {
            Disposition::Pending => (DeliveryStatus::Pending, Some(now_ms), None),
            Disposition::Skipped(reason) => (DeliveryStatus::Skipped, None, Some(reason)),
            Disposition::Dead(reason) => (DeliveryStatus::Dead, None, Some(reason)),
        };
        stmt.execute(params![
            account,
            delivery.item_id.0,
            delivery.event.as_str(),
            delivery.sink,
            delivery.recipient,
            message,
            status.as_str(),
            next,
            reason,
            now_ms,
        ])?;
    }
    Ok(deliveries.len())
}

fn fired_for_item(
    conn: &Connection,
    account: &str,
    id: ExportId,
) -> rusqlite::Result<Vec<(EventKind, DateTime<Utc>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event, fired_at FROM fired WHERE account = ?1 AND item_id = ?2 \
         ORDER BY fired_at, event",
    )?;
    let rows = stmt.query_map(params![account, id.0], |row| {
        Ok((event_col(row, 0)?, time_col(row, 1)?))
    })?;
    rows.collect()
}

fn deliveries_for_item(
    conn: &Connection,
    account: &str,
    id: ExportId,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE account = ?1 AND item_id = ?2 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![account, id.0], delivery_from_row)?;
    rows.collect()
}

fn attempts_for(conn: &Connection, id: DeliveryId) -> rusqlite::Result<Vec<AttemptRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, outcome, error, latency_ms FROM attempts_log WHERE delivery_id = ?1 \
         ORDER BY at, id",
    )?;
    let rows = stmt.query_map([id.0], |row| {
        Ok(AttemptRecord {
            at: time_col(row, 0)?,
            outcome: row.get(1)?,
            error: row.get(2)?,
            latency_ms: row.get(3)?,
        })
    })?;
    rows.collect()
}

fn item_from_row(row: &Row<'_>) -> rusqlite::Result<ExportItem> {
    let created: String = row.get(7)?;
    let created_date = DateTime::parse_from_rfc3339(&created)
        .map_err(|err| decode_err(7, err.into()))?
        .with_timezone(&Utc);
    Ok(ExportItem {
        id: ExportId(row.get(0)?),
        status: ExportStatus::from(row.get::<_, i64>(1)?),
        downloadable: row.get(2)?,
        attempts: row.get(3)?,
        action_name: row.get(4)?,
        action_url: row.get(5)?,
        requested_by: row.get(6)?,
        created_date,
    })
}

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let message: String = row.get(5)?;
    let message: RenderedMessage =
        serde_json::from_str(&message).map_err(|err| decode_err(5, err.into()))?;
    let next_attempt_at: Option<i64> = row.get(8)?;
    Ok(Delivery {
        id: DeliveryId(row.get(0)?),
        item_id: ExportId(row.get(1)?),
        event: event_col(row, 2)?,
        sink: row.get(3)?,
        recipient: row.get(4)?,
        message,
        status: status_col(row, 6)?,
        attempts: row.get(7)?,
        next_attempt_at: next_attempt_at.map(|ms| from_ms(ms, 8)).transpose()?,
        last_error: row.get(9)?,
        created_at: time_col(row, 10)?,
    })
}

fn event_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<EventKind> {
    row.get::<_, String>(idx)?
        .parse()
        .map_err(|err: String| decode_err(idx, err.into()))
}

fn status_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DeliveryStatus> {
    row.get::<_, String>(idx)?
        .parse()
        .map_err(|err: String| decode_err(idx, err.into()))
}

fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_ms(row.get(idx)?, idx)
}

fn decode_err(idx: usize, err: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, err)
}

fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(ms: i64, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Integer,
            format!("{ms} is not a timestamp in milliseconds").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::DEFAULT_ACCOUNT;

    const SAMPLE: &[u8] = include_bytes!("../tests/fixtures/exports-sample.json");
    const V1_FIXTURE: &[u8] = include_bytes!("../tests/fixtures/state-v1.db");

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_717_000_000 + secs, 0).unwrap()
    }

    fn sample() -> Snapshot {
        Snapshot::parse(SAMPLE).unwrap().0
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    fn new_delivery(id: i64, sink: &str, skip: Option<&str>) -> NewDelivery {
        NewDelivery {
            item_id: ExportId(id),
            event: EventKind::Downloadable,
            sink: sink.to_owned(),
            recipient: Some("someone@example.com".to_owned()),
            message: RenderedMessage {
                parts: BTreeMap::from([("text".to_owned(), format!("item {id} is ready"))]),
            },
            disposition: match skip {
                Some(reason) => Disposition::Skipped(reason.to_owned()),
                None => Disposition::Pending,
            },
        }
    }

    fn commit<'a>(
        previous: Option<&'a Snapshot>,
        snapshot: &'a Snapshot,
        fired: &'a [(ExportId, EventKind)],
        deliveries: &'a [NewDelivery],
        now: DateTime<Utc>,
    ) -> PollCommit<'a> {
        PollCommit {
            account: DEFAULT_ACCOUNT,
            previous,
            snapshot,
            changes: None,
            fired,
            deliveries,
            now,
        }
    }

    /// A store with the sample baseline and one pending delivery (id 1) due at t(0).
    fn store_with_pending() -> (tempfile::TempDir, Store, DeliveryId) {
        let (dir, store) = temp_store();
        let snap = sample();
        let fired = [(ExportId(2439), EventKind::Downloadable)];
        let deliveries = [new_delivery(2439, "audit", None)];
        store
            .commit_poll(&commit(None, &snap, &fired, &deliveries, t(0)))
            .unwrap();
        let id = store.list_deliveries(None).unwrap()[0].id;
        (dir, store, id)
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[cfg(unix)]
    #[test]
    fn open_creates_a_private_file_at_the_current_schema() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = temp_store();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let conn = store.conn.lock().unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        // A fresh file is not "upgraded": no backup.
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".bak")
                })
                .count(),
            0
        );
    }

    #[test]
    fn open_in_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/state.db");
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Create { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn no_snapshot_before_the_first_poll() {
        let (_dir, store) = temp_store();
        assert_eq!(store.load_snapshot(DEFAULT_ACCOUNT).unwrap(), None);
        assert_eq!(store.last_success_at(DEFAULT_ACCOUNT).unwrap(), None);
        assert_eq!(store.next_due_at().unwrap(), None);
    }

    #[test]
    fn reopen_keeps_data() {
        let (dir, store, id) = store_with_pending();
        let path = store.path().to_path_buf();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.load_snapshot(DEFAULT_ACCOUNT).unwrap(),
            Some(sample())
        );
        assert_eq!(store.last_success_at(DEFAULT_ACCOUNT).unwrap(), Some(t(0)));
        let delivery = store.get_delivery(id).unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.message.part("text"), "item 2439 is ready");
        assert_eq!(delivery.recipient.as_deref(), Some("someone@example.com"));
        drop(dir);
    }

    #[test]
    fn commit_writes_only_changed_rows() {
        let (_dir, store) = temp_store();
        let first = sample();
        let stats = store
            .commit_poll(&commit(None, &first, &[], &[], t(0)))
            .unwrap();
        assert_eq!(
            stats,
            CommitStats {
                items_written: 2,
                ..CommitStats::default()
            }
        );
        let loaded = store.load_snapshot(DEFAULT_ACCOUNT).unwrap().unwrap();
        assert_eq!(loaded, first);

        let stats = store
            .commit_poll(&commit(Some(&loaded), &first, &[], &[], t(60)))
            .unwrap();
        assert_eq!(stats, CommitStats::default());
        assert_eq!(store.last_success_at(DEFAULT_ACCOUNT).unwrap(), Some(t(60)));

        let mut next = first.clone();
        next.items.remove(&ExportId(2438));
        next.items.get_mut(&ExportId(2439)).unwrap().attempts = 2;
        next.nr_of_days = 14;
        let stats = store
            .commit_poll(&commit(Some(&first), &next, &[], &[], t(120)))
            .unwrap();
        assert_eq!(
            stats,
            CommitStats {
                items_written: 1,
                items_deleted: 1,
                ..CommitStats::default()
            }
        );
        assert_eq!(store.load_snapshot(DEFAULT_ACCOUNT).unwrap(), Some(next));
    }

    #[test]
    fn commit_records_fired_and_deliveries() {
        let (_dir, store) = temp_store();
        let snap = sample();
        let fired = [
            (ExportId(2439), EventKind::Downloadable),
            (ExportId(2438), EventKind::Downloadable),
        ];
        let deliveries = [
            new_delivery(2439, "audit", None),
            new_delivery(2438, "mail", Some("no mapped address")),
        ];
        let stats = store
            .commit_poll(&commit(None, &snap, &fired, &deliveries, t(0)))
            .unwrap();
        assert_eq!((stats.fired, stats.deliveries), (2, 2));
        let list = store.list_deliveries(None).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].item_id, ExportId(2438), "newest first");
        assert_eq!(list[0].status, DeliveryStatus::Skipped);
        assert_eq!(list[0].last_error.as_deref(), Some("no mapped address"));
        assert_eq!(list[0].next_attempt_at, None);
        assert_eq!(list[1].status, DeliveryStatus::Pending);
        assert_eq!(list[1].next_attempt_at, Some(t(0)));
        assert_eq!(list[1].created_at, t(0));
        let skipped = store
            .list_deliveries(Some(DeliveryStatus::Skipped))
            .unwrap();
        assert_eq!(skipped, vec![list[0].clone()]);
        assert_eq!(
            store.outbox_counts().unwrap(),
            vec![
                ("audit".to_owned(), DeliveryStatus::Pending, 1),
                ("mail".to_owned(), DeliveryStatus::Skipped, 1),
            ]
        );
    }

    #[test]
    fn a_failing_insert_rolls_back_the_whole_poll() {
        let (_dir, store) = temp_store();
        let first = sample();
        store
            .commit_poll(&commit(None, &first, &[], &[], t(0)))
            .unwrap();
        store
            .conn
            .lock()
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        let mut next = first.clone();
        next.items.remove(&ExportId(2438));
        next.nr_of_days = 3;
        let fired = [(ExportId(2439), EventKind::Failed)];
        let deliveries = [new_delivery(2439, "audit", None)];
        let err = store
            .commit_poll(&commit(Some(&first), &next, &fired, &deliveries, t(60)))
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert!(
            err.to_string()
                .contains(&store.path().display().to_string()),
            "{err}"
        );
        assert_eq!(store.load_snapshot(DEFAULT_ACCOUNT).unwrap(), Some(first));
        assert_eq!(store.last_success_at(DEFAULT_ACCOUNT).unwrap(), Some(t(0)));
        assert!(store
            .already_fired(DEFAULT_ACCOUNT, &fired)
            .unwrap()
            .is_empty());
        assert!(store.list_deliveries(None).unwrap().is_empty());
    }

    #[test]
    fn already_fired_reports_only_recorded_pairs() {
        let (_dir, store) = temp_store();
        let snap = sample();
        let fired = [(ExportId(2439), EventKind::Downloadable)];
        store
            .commit_poll(&commit(None, &snap, &fired, &[], t(0)))
            .unwrap();
        let asked = [
            (ExportId(2439), EventKind::Downloadable),
            (ExportId(2439), EventKind::Failed),
            (ExportId(2438), EventKind::Downloadable),
        ];
        let found = store.already_fired(DEFAULT_ACCOUNT, &asked).unwrap();
        assert_eq!(
            found,
            HashSet::from([(ExportId(2439), EventKind::Downloadable)])
        );
        assert!(store.already_fired("other", &asked).unwrap().is_empty());
        // Recording the same pair again is not an error and not counted.
        let stats = store
            .commit_poll(&commit(Some(&snap), &snap, &fired, &[], t(60)))
            .unwrap();
        assert_eq!(stats.fired, 0);
    }

    #[test]
    fn due_deliveries_respect_time_limit_and_exclusions() {
        let (_dir, store) = temp_store();
        let snap = sample();
        let deliveries = [
            new_delivery(2439, "a", None),
            new_delivery(2439, "b", None),
            new_delivery(2438, "c", None),
        ];
        store
            .commit_poll(&commit(None, &snap, &[], &deliveries, t(0)))
            .unwrap();
        assert!(store
            .due_deliveries(t(-1), 10, &HashSet::new())
            .unwrap()
            .is_empty());
        let due = store.due_deliveries(t(0), 10, &HashSet::new()).unwrap();
        let sinks: Vec<_> = due.iter().map(|d| d.sink.as_str()).collect();
        assert_eq!(sinks, ["a", "b", "c"]);
        let exclude = HashSet::from([due[0].id]);
        let due2 = store.due_deliveries(t(0), 1, &exclude).unwrap();
        assert_eq!(due2.len(), 1);
        assert_eq!(due2[0].sink, "b");
        assert_eq!(store.next_due_at().unwrap(), Some(t(0)));
    }

    #[test]
    fn attempts_move_deliveries_through_their_states() {
        let (_dir, store, id) = store_with_pending();
        let retry = AttemptOutcome::Retry {
            error: "HTTP 503".to_owned(),
            next_attempt_at: t(30),
        };
        store
            .record_attempt(id, &retry, t(1), Duration::from_millis(120))
            .unwrap();
        let d = store.get_delivery(id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
        assert_eq!(d.next_attempt_at, Some(t(30)));
        assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
        assert!(store
            .due_deliveries(t(29), 10, &HashSet::new())
            .unwrap()
            .is_empty());
        assert_eq!(store.next_due_at().unwrap(), Some(t(30)));

        let dead = AttemptOutcome::Dead {
            error: "HTTP 404".to_owned(),
        };
        store
            .record_attempt(id, &dead, t(31), Duration::from_millis(80))
            .unwrap();
        let d = store.get_delivery(id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 2));
        assert_eq!(d.next_attempt_at, None);
        assert_eq!(d.last_error.as_deref(), Some("HTTP 404"));
        assert_eq!(store.next_due_at().unwrap(), None);

        assert_eq!(store.retry_dead(Some(id), t(40)).unwrap(), 1);
        let d = store.get_delivery(id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!(d.next_attempt_at, Some(t(40)));

        store
            .record_attempt(id, &AttemptOutcome::Sent, t(41), Duration::from_millis(50))
            .unwrap();
        let d = store.get_delivery(id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1));
        assert_eq!(d.next_attempt_at, None);
        assert!(store
            .due_deliveries(t(1000), 10, &HashSet::new())
            .unwrap()
            .is_empty());

        let history = store.item_history(DEFAULT_ACCOUNT, ExportId(2439)).unwrap();
        let outcomes: Vec<_> = history.deliveries[0]
            .1
            .iter()
            .map(|a| a.outcome.as_str())
            .collect();
        assert_eq!(outcomes, ["retry", "dead", "sent"]);
        assert_eq!(history.deliveries[0].1[0].latency_ms, 120);
        assert_eq!(
            history.deliveries[0].1[0].error.as_deref(),
            Some("HTTP 503")
        );
        assert_eq!(history.deliveries[0].1[2].error, None);
    }

    #[test]
    fn recording_an_unknown_delivery_is_an_error() {
        let (_dir, store) = temp_store();
        let err = store
            .record_attempt(DeliveryId(42), &AttemptOutcome::Sent, t(0), Duration::ZERO)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StateError::UnknownDelivery {
                    id: DeliveryId(42),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn retry_dead_all_touches_only_dead_ones() {
        let (_dir, store) = temp_store();
        let snap = sample();
        let deliveries = [
            new_delivery(2439, "a", None),
            new_delivery(2439, "b", None),
            new_delivery(2438, "c", None),
        ];
        store
            .commit_poll(&commit(None, &snap, &[], &deliveries, t(0)))
            .unwrap();
        let ids: Vec<_> = store
            .due_deliveries(t(0), 10, &HashSet::new())
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        let dead = AttemptOutcome::Dead {
            error: "no".to_owned(),
        };
        store
            .record_attempt(ids[0], &dead, t(1), Duration::ZERO)
            .unwrap();
        store
            .record_attempt(ids[1], &dead, t(1), Duration::ZERO)
            .unwrap();
        assert_eq!(
            store.retry_dead(Some(ids[2]), t(2)).unwrap(),
            0,
            "pending is not dead"
        );
        assert_eq!(store.retry_dead(None, t(2)).unwrap(), 2);
        assert!(store
            .list_deliveries(Some(DeliveryStatus::Dead))
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .due_deliveries(t(2), 10, &HashSet::new())
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn prune_removes_old_sent_and_fired_but_keeps_the_rest() {
        let (_dir, store) = temp_store();
        let snap = sample();
        let fired = [
            (ExportId(2439), EventKind::Downloadable),
            (ExportId(7), EventKind::Downloadable),
        ];
        let deliveries = [
            new_delivery(2439, "sent", None),
            new_delivery(2439, "dead", None),
            new_delivery(2439, "pending", None),
            new_delivery(2439, "skipped", Some("nobody")),
        ];
        store
            .commit_poll(&commit(None, &snap, &fired, &deliveries, t(0)))
            .unwrap();
        let by_sink = |sink: &str| {
            store
                .list_deliveries(None)
                .unwrap()
                .into_iter()
                .find(|d| d.sink == sink)
                .unwrap()
                .id
        };
        let dead = AttemptOutcome::Dead {
            error: "no".to_owned(),
        };
        store
            .record_attempt(
                by_sink("sent"),
                &AttemptOutcome::Sent,
                t(10),
                Duration::ZERO,
            )
            .unwrap();
        store
            .record_attempt(by_sink("dead"), &dead, t(10), Duration::ZERO)
            .unwrap();

        assert_eq!(
            store.prune(t(5), t(0)).unwrap(),
            (1, 0),
            "skipped at t0 < t5; sent at t10 kept"
        );
        let (deliveries, fired_removed) = store.prune(t(11), t(1)).unwrap();
        assert_eq!(deliveries, 1);
        assert_eq!(fired_removed, 1, "only the item no longer listed");
        let left: Vec<_> = store
            .list_deliveries(None)
            .unwrap()
            .into_iter()
            .map(|d| d.sink)
            .collect();
        assert_eq!(left, ["pending", "dead"]);
        let found = store.already_fired(DEFAULT_ACCOUNT, &fired).unwrap();
        assert_eq!(
            found,
            HashSet::from([(ExportId(2439), EventKind::Downloadable)])
        );
        let orphans: i64 = store
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM attempts_log WHERE delivery_id NOT IN (SELECT id FROM outbox)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
    }

    #[test]
    fn item_history_collects_item_fired_and_deliveries() {
        let (_dir, store, _id) = store_with_pending();
        let history = store.item_history(DEFAULT_ACCOUNT, ExportId(2439)).unwrap();
        assert_eq!(history.item.as_ref(), sample().items.get(&ExportId(2439)));
        assert_eq!(history.fired, vec![(EventKind::Downloadable, t(0))]);
        assert_eq!(history.deliveries.len(), 1);
        assert!(history.deliveries[0].1.is_empty());
        let none = store.item_history(DEFAULT_ACCOUNT, ExportId(1)).unwrap();
        assert_eq!(
            none,
            ItemHistory {
                item: None,
                fired: vec![],
                deliveries: vec![]
            }
        );
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 5;")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::TooNew {
                    found: 5,
                    known: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains("schema 5, this build knows up to 2"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for (name, garbage) in [
            ("short.db", b"definitely not a database\n".to_vec()),
            (
                "long.db",
                (0..8192u32).map(|i| (i * 31 % 251) as u8).collect(),
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &garbage).unwrap();
            let err = Store::open(&path).unwrap_err();
            assert!(
                matches!(err, StateError::NotSqlite { .. }),
                "{name}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("not a readable SQLite database"), "{text}");
            assert_eq!(std::fs::read(&path).unwrap(), garbage, "{name} changed");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no side files: {names:?}");
    }

    #[test]
    fn a_foreign_sqlite_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE mine (x);")
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_schema_1_fixture_upgrades_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, V1_FIXTURE).unwrap();
        let store = Store::open(&path).unwrap();

        let backup = dir.path().join("state.db.v1.bak");
        let old = Connection::open(&backup).unwrap();
        let version: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let outbox: i64 = old
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(outbox, 1);

        let snap = store.load_snapshot(DEFAULT_ACCOUNT).unwrap().unwrap();
        assert_eq!(snap, sample());
        let pair = [(ExportId(2439), EventKind::Downloadable)];
        assert_eq!(
            store.already_fired(DEFAULT_ACCOUNT, &pair).unwrap().len(),
            1
        );
        let history = store.item_history(DEFAULT_ACCOUNT, ExportId(2439)).unwrap();
        assert_eq!(history.deliveries.len(), 1);
        let (delivery, attempts) = &history.deliveries[0];
        assert_eq!(
            (delivery.sink.as_str(), delivery.status),
            ("audit", DeliveryStatus::Sent)
        );
        assert!(attempts.is_empty());
        // The new table works on the migrated file.
        store
            .record_attempt(delivery.id, &AttemptOutcome::Sent, t(0), Duration::ZERO)
            .unwrap();
        drop(store);
        // Reopening an up-to-date file makes no further backup.
        Store::open(&path).unwrap();
        assert!(!dir.path().join("state.db.v1.2.bak").exists());
    }

    #[test]
    fn an_existing_backup_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, V1_FIXTURE).unwrap();
        std::fs::write(dir.path().join("state.db.v1.bak"), b"older backup").unwrap();
        Store::open(&path).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("state.db.v1.bak")).unwrap(),
            b"older backup"
        );
        assert!(dir.path().join("state.db.v1.2.bak").exists());
    }

    /// Writes tests/fixtures/state-v1.db: a real schema-1 file (migration 1
    /// only, rollback journal, so one self-contained file). Run with
    /// `cargo test generate_state_v1_fixture -- --ignored`; set
    /// `STATE_V1_FIXTURE_OUT` to write elsewhere.
    #[test]
    #[ignore = "generates the schema-1 fixture"]
    fn generate_state_v1_fixture() {
        let out = std::env::var("STATE_V1_FIXTURE_OUT").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v1.db").to_owned()
        });
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("v1.db");
        let conn = Connection::open(&tmp).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE;").unwrap();
        apply_migration(&conn, 1).unwrap();
        let at = to_ms(
            DateTime::parse_from_rfc3339("2024-05-30T14:00:00Z")
                .unwrap()
                .to_utc(),
        );
        conn.execute(
            "INSERT INTO poll_state (account, nr_of_days, last_success_at) VALUES ('default', 7, ?1)",
            [at],
        )
        .unwrap();
        for item in sample().items.values() {
            conn.execute(
                "INSERT INTO snapshot_items VALUES ('default', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    item.id.0,
                    item.status.code(),
                    item.downloadable,
                    item.attempts,
                    item.action_name,
                    item.action_url,
                    item.requested_by,
                    item.created_date
                        .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO fired VALUES ('default', 2439, 'downloadable', ?1)",
            [at],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
             attempts, next_attempt_at, last_error, created_at, updated_at) VALUES ('default', \
             2439, 'downloadable', 'audit', NULL, '{\"parts\":{\"json\":\"{}\"}}', 'sent', 1, \
             NULL, NULL, ?1, ?2)",
            [at, at + 1500],
        )
        .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        drop(conn);
        let _ = std::fs::remove_file(&out);
        Connection::open(&tmp)
            .unwrap()
            .execute("VACUUM INTO ?1", [&out])
            .unwrap();
        eprintln!("wrote {out}");
    }
}
