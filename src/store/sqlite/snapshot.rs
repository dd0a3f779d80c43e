//! The snapshot side of the state file: the last polled queue per account
//! (`snapshot_items`, `poll_state`) and the fired records (`fired`), and the
//! one transaction a poll commits.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::outbox::insert_deliveries;
use super::rows::{event_col, from_ms, item_from_row, time_col, to_ms, ITEM_COLUMNS};
use crate::domain::{AccountId, Change, EventKind, ExportId, ExportItem, Snapshot};
use crate::store::{CommitStats, PollCommit};

/// See [`crate::store::Store::load_snapshot`].
pub(super) fn load(conn: &Connection, account: &AccountId) -> rusqlite::Result<Option<Snapshot>> {
    let nr_of_days: Option<u32> = conn
        .query_row(
            "SELECT nr_of_days FROM poll_state WHERE account = ?1",
            [account.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let Some(nr_of_days) = nr_of_days else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM snapshot_items WHERE account = ?1"
    ))?;
    let items = stmt
        .query_map([account.as_str()], item_from_row)?
        .map(|item| item.map(|item| (item.id, item)))
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Snapshot { items, nr_of_days }))
}

/// See [`crate::store::Store::last_success_at`].
pub(super) fn last_success_at(
    conn: &Connection,
    account: &AccountId,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let ms: Option<i64> = conn
        .query_row(
            "SELECT last_success_at FROM poll_state WHERE account = ?1",
            [account.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    ms.map(|ms| from_ms(ms, 0)).transpose()
}

/// See [`crate::store::Store::already_fired`].
pub(super) fn already_fired(
    conn: &Connection,
    account: &AccountId,
    pairs: &[(ExportId, EventKind)],
) -> rusqlite::Result<HashSet<(ExportId, EventKind)>> {
    let mut stmt = conn
        .prepare_cached("SELECT 1 FROM fired WHERE account = ?1 AND item_id = ?2 AND event = ?3")?;
    let mut found = HashSet::new();
    for &(id, event) in pairs {
        if stmt.exists(params![account.as_str(), id.0, event.as_str()])? {
            found.insert((id, event));
        }
    }
    Ok(found)
}

/// See [`crate::store::Store::commit_poll`]: ONE immediate transaction.
pub(super) fn commit_poll(
    conn: &mut Connection,
    commit: &PollCommit<'_>,
) -> rusqlite::Result<CommitStats> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (items_written, items_deleted) = write_snapshot(&tx, commit)?;
    tx.execute(
        "INSERT INTO poll_state (account, nr_of_days, last_success_at) \
         VALUES (?1, ?2, ?3) ON CONFLICT (account) DO UPDATE SET \
         nr_of_days = excluded.nr_of_days, last_success_at = excluded.last_success_at",
        params![
            commit.account.as_str(),
            commit.snapshot.nr_of_days,
            to_ms(commit.now)
        ],
    )?;
    let fired = insert_fired(&tx, commit)?;
    let deliveries = insert_deliveries(&tx, commit.account, commit.deliveries, commit.now)?;
    tx.commit()?;
    Ok(CommitStats {
        items_written,
        items_deleted,
        fired,
        deliveries,
    })
}

/// Upserts new/changed items and deletes gone ones; with no previous snapshot
/// the account's rows are replaced wholesale. Returns (written, deleted).
fn write_snapshot(
    tx: &Transaction<'_>,
    commit: &PollCommit<'_>,
) -> rusqlite::Result<(usize, usize)> {
    let account = commit.account.as_str();
    let (mut written, mut deleted) = (0, 0);
    if commit.previous.is_none() {
        deleted += tx.execute("DELETE FROM snapshot_items WHERE account = ?1", [account])?;
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
                upsert_item(tx, account, item)?;
                written += 1;
            }
            Change::Gone(item) => deleted += delete.execute(params![account, item.id.0])?,
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
            commit.account.as_str(),
            id.0,
            event.as_str(),
            to_ms(commit.now)
        ])?;
    }
    Ok(inserted)
}

/// The stored item, if it is still in the account's snapshot.
pub(super) fn stored_item(
    conn: &Connection,
    account: &AccountId,
    id: ExportId,
) -> rusqlite::Result<Option<ExportItem>> {
    conn.query_row(
        &format!("SELECT {ITEM_COLUMNS} FROM snapshot_items WHERE account = ?1 AND item_id = ?2"),
        params![account.as_str(), id.0],
        item_from_row,
    )
    .optional()
}

/// The item's fired records (event, fired_at), oldest first.
pub(super) fn fired_for_item(
    conn: &Connection,
    account: &AccountId,
    id: ExportId,
) -> rusqlite::Result<Vec<(EventKind, DateTime<Utc>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event, fired_at FROM fired WHERE account = ?1 AND item_id = ?2 \
         ORDER BY fired_at, event",
    )?;
    let rows = stmt.query_map(params![account.as_str(), id.0], |row| {
        Ok((event_col(row, 0)?, time_col(row, 1)?))
    })?;
    rows.collect()
}

/// Deletes up to `limit` of the account's fired records older than `before`
/// whose item is no longer in the stored snapshot (one still listed must
/// never fire again), oldest first.
pub(super) fn prune_fired(
    tx: &Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
    limit: i64,
) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM fired WHERE rowid IN (SELECT rowid FROM fired WHERE account = ?1 \
         AND fired_at < ?2 AND NOT EXISTS (SELECT 1 FROM snapshot_items s \
         WHERE s.account = fired.account AND s.item_id = fired.item_id) \
         ORDER BY fired_at LIMIT ?3)",
        params![account.as_str(), to_ms(before), limit],
    )
}
