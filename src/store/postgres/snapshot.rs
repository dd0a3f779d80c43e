//! The snapshot side in PostgreSQL: the last polled queue per account
//! (`snapshot_items`, `poll_state`), the fired records (`fired`), and the one
//! transaction a poll commits. Bulk writes go as arrays (`UNNEST`), so a
//! baseline of 100k items is a handful of round trips, not 100k.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use postgres::{GenericClient, Transaction};

use super::outbox::insert_deliveries;
use super::rows::{from_ms, item_from_row, parsed_col, time_col, to_ms, PgResult, ITEM_COLUMNS};
use crate::domain::{AccountId, Change, EventKind, ExportId, ExportItem, Snapshot};
use crate::store::{CommitStats, PollCommit};

/// See [`crate::store::Store::load_snapshot`].
pub(super) fn load(db: &mut impl GenericClient, account: &AccountId) -> PgResult<Option<Snapshot>> {
    let row = db.query_opt(
        "SELECT nr_of_days FROM poll_state WHERE account = $1",
        &[&account.as_str()],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let nr_of_days: i64 = row.try_get(0)?;
    let nr_of_days =
        u32::try_from(nr_of_days).map_err(|e| super::rows::decode_err("nr_of_days", e))?;
    let rows = db.query(
        &format!("SELECT {ITEM_COLUMNS} FROM snapshot_items WHERE account = $1"),
        &[&account.as_str()],
    )?;
    let items = rows
        .iter()
        .map(|row| item_from_row(row).map(|item| (item.id, item)))
        .collect::<PgResult<_>>()?;
    Ok(Some(Snapshot { items, nr_of_days }))
}

/// See [`crate::store::Store::last_success_at`].
pub(super) fn last_success_at(
    db: &mut impl GenericClient,
    account: &AccountId,
) -> PgResult<Option<DateTime<Utc>>> {
    let row = db.query_opt(
        "SELECT last_success_at FROM poll_state WHERE account = $1",
        &[&account.as_str()],
    )?;
    row.map(|row| from_ms(row.try_get(0)?, "last_success_at"))
        .transpose()
}

/// See [`crate::store::Store::already_fired`]: one query for all pairs.
pub(super) fn already_fired(
    db: &mut impl GenericClient,
    account: &AccountId,
    pairs: &[(ExportId, EventKind)],
) -> PgResult<HashSet<(ExportId, EventKind)>> {
    let ids: Vec<i64> = pairs.iter().map(|(id, _)| id.0).collect();
    let events: Vec<&str> = pairs.iter().map(|(_, e)| e.as_str()).collect();
    let rows = db.query(
        "SELECT f.item_id, f.event FROM fired f \
         JOIN UNNEST($2::BIGINT[], $3::TEXT[]) AS p (item_id, event) \
         ON f.item_id = p.item_id AND f.event = p.event WHERE f.account = $1",
        &[&account.as_str(), &ids, &events],
    )?;
    rows.iter()
        .map(|row| Ok((ExportId(row.try_get(0)?), parsed_col(row, 1, "event")?)))
        .collect()
}

/// See [`crate::store::Store::commit_poll`]: ONE transaction; `before` runs
/// first inside it (the leader's fencing check) and can refuse the commit.
pub(super) fn commit_poll(
    tx: &mut Transaction<'_>,
    commit: &PollCommit<'_>,
) -> PgResult<CommitStats> {
    let (items_written, items_deleted) = write_snapshot(tx, commit)?;
    tx.execute(
        "INSERT INTO poll_state (account, nr_of_days, last_success_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account) DO UPDATE SET nr_of_days = excluded.nr_of_days, \
         last_success_at = excluded.last_success_at",
        &[
            &commit.account.as_str(),
            &i64::from(commit.snapshot.nr_of_days),
            &to_ms(commit.now),
        ],
    )?;
    let fired = insert_fired(tx, commit)?;
    let deliveries = insert_deliveries(tx, commit.account, commit.deliveries, commit.now)?;
    Ok(CommitStats {
        items_written,
        items_deleted,
        fired,
        deliveries,
    })
}

/// Upserts new/changed items and deletes gone ones; with no previous
/// snapshot the account's rows are replaced wholesale.
fn write_snapshot(tx: &mut Transaction<'_>, commit: &PollCommit<'_>) -> PgResult<(usize, usize)> {
    let account = commit.account.as_str();
    let mut deleted = 0;
    if commit.previous.is_none() {
        deleted += tx.execute("DELETE FROM snapshot_items WHERE account = $1", &[&account])?;
    }
    let computed: Vec<Change<'_>>;
    let changes = match commit.changes {
        Some(changes) => changes,
        None => {
            computed = Snapshot::changes(commit.previous, commit.snapshot).collect();
            &computed
        }
    };
    let mut upserts = Vec::new();
    let mut gone = Vec::new();
    for change in changes {
        match *change {
            Change::Appeared(item) | Change::Changed(_, item) => upserts.push(item),
            Change::Gone(item) => gone.push(item.id.0),
        }
    }
    if !gone.is_empty() {
        deleted += tx.execute(
            "DELETE FROM snapshot_items WHERE account = $1 AND item_id = ANY($2)",
            &[&account, &gone],
        )?;
    }
    upsert_items(tx, account, &upserts)?;
    Ok((
        upserts.len(),
        usize::try_from(deleted).unwrap_or(usize::MAX),
    ))
}

/// One statement for all rows, as parallel arrays.
pub(super) fn upsert_items(
    tx: &mut Transaction<'_>,
    account: &str,
    items: &[&ExportItem],
) -> PgResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = items.iter().map(|i| i.id.0).collect();
    let status: Vec<String> = items.iter().map(|i| i.status.raw()).collect();
    let downloadable: Vec<bool> = items.iter().map(|i| i.downloadable).collect();
    let attempts: Vec<i64> = items.iter().map(|i| i.attempts).collect();
    let names: Vec<&str> = items.iter().map(|i| i.action_name.as_str()).collect();
    let urls: Vec<&str> = items.iter().map(|i| i.action_url.as_str()).collect();
    let by: Vec<Option<&str>> = items.iter().map(|i| i.requested_by.as_deref()).collect();
    let created: Vec<String> = items
        .iter()
        .map(|i| i.created_date.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .collect();
    tx.execute(
        "INSERT INTO snapshot_items (account, item_id, status, downloadable, attempts, \
         action_name, action_url, requested_by, created_date) \
         SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BOOLEAN[], $5::BIGINT[], \
         $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[]) \
         ON CONFLICT (account, item_id) DO UPDATE SET status = excluded.status, \
         downloadable = excluded.downloadable, attempts = excluded.attempts, \
         action_name = excluded.action_name, action_url = excluded.action_url, \
         requested_by = excluded.requested_by, created_date = excluded.created_date",
        &[
            &account,
            &ids,
            &status,
            &downloadable,
            &attempts,
            &names,
            &urls,
            &by,
            &created,
        ],
    )?;
    Ok(())
}

fn insert_fired(tx: &mut Transaction<'_>, commit: &PollCommit<'_>) -> PgResult<usize> {
    let ids: Vec<i64> = commit.fired.iter().map(|(id, _)| id.0).collect();
    let events: Vec<&str> = commit.fired.iter().map(|(_, e)| e.as_str()).collect();
    let n = tx.execute(
        "INSERT INTO fired (account, item_id, event, fired_at) \
         SELECT $1, p.item_id, p.event, $4 FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS p (item_id, event) \
         ON CONFLICT DO NOTHING",
        &[&commit.account.as_str(), &ids, &events, &to_ms(commit.now)],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The stored item, if it is still in the account's snapshot.
pub(super) fn stored_item(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: ExportId,
) -> PgResult<Option<ExportItem>> {
    db.query_opt(
        &format!("SELECT {ITEM_COLUMNS} FROM snapshot_items WHERE account = $1 AND item_id = $2"),
        &[&account.as_str(), &id.0],
    )?
    .map(|row| item_from_row(&row))
    .transpose()
}

/// The item's fired records (event, fired_at), oldest first.
pub(super) fn fired_for_item(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: ExportId,
) -> PgResult<Vec<(EventKind, DateTime<Utc>)>> {
    let rows = db.query(
        "SELECT event, fired_at FROM fired WHERE account = $1 AND item_id = $2 \
         ORDER BY fired_at, event",
        &[&account.as_str(), &id.0],
    )?;
    rows.iter()
        .map(|row| Ok((parsed_col(row, 0, "event")?, time_col(row, 1, "fired_at")?)))
        .collect()
}

/// Deletes up to `limit` of the account's fired records older than `before`
/// whose item is no longer in the stored snapshot, oldest first.
pub(super) fn prune_fired(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
    limit: i64,
) -> PgResult<usize> {
    let n = tx.execute(
        "DELETE FROM fired WHERE (account, item_id, event) IN (SELECT f.account, f.item_id, \
         f.event FROM fired f WHERE f.account = $1 AND f.fired_at < $2 AND NOT EXISTS \
         (SELECT 1 FROM snapshot_items s WHERE s.account = f.account AND s.item_id = f.item_id) \
         ORDER BY f.fired_at LIMIT $3)",
        &[&account.as_str(), &to_ms(before), &limit],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
