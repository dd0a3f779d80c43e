//! The outbox side of the state file: deliveries (`outbox`) and their attempt
//! log (`attempts_log`). Every query names the account.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::rows::{
    delivery_from_row, from_ms, status_col, time_col, to_ms, DELIVERY_COLUMNS, DELIVERY_FROM,
};
use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, Disposition, ExportId, NewDelivery,
};
use crate::store::{AttemptRecord, AttemptWrite, NewRow, RowSubject};

/// Inserts item deliveries (pending, due `now`; or skipped/dead with the
/// reason as `last_error`); returns how many.
pub(super) fn insert_deliveries(
    tx: &Transaction<'_>,
    account: &AccountId,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    for d in deliveries {
        insert_row(tx, account, &NewRow::from_delivery(d), now)?;
    }
    Ok(deliveries.len())
}

/// Inserts one outbox row.
pub(super) fn insert_row(
    tx: &Transaction<'_>,
    account: &AccountId,
    row: &NewRow<'_>,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (account, item_id, alert_id, event, sink, recipient, message, \
         status, attempts, next_attempt_at, last_error, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11, ?11)",
    )?;
    let now_ms = to_ms(now);
    let message = serde_json::to_string(row.message)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
    let (status, next, reason) = match row.disposition {
        Disposition::Pending => (DeliveryStatus::Pending, Some(now_ms), None),
        Disposition::Skipped(reason) => (DeliveryStatus::Skipped, None, Some(reason)),
        Disposition::Dead(reason) => (DeliveryStatus::Dead, None, Some(reason)),
    };
    let (item_id, alert_id) = match row.subject {
        RowSubject::Item(id) => (Some(id.0), None),
        RowSubject::Alert(id) => (None, Some(id)),
    };
    stmt.execute(params![
        account.as_str(),
        item_id,
        alert_id,
        row.event.as_str(),
        row.sink,
        row.recipient,
        message,
        status.as_str(),
        next,
        reason,
        now_ms,
    ])?;
    Ok(())
}

/// See [`crate::store::Store::due_deliveries`].
pub(super) fn due(
    conn: &Connection,
    account: &AccountId,
    now: DateTime<Utc>,
    limit: usize,
    exclude: &HashSet<DeliveryId>,
) -> rusqlite::Result<Vec<Delivery>> {
    let fetch = limit.saturating_add(exclude.len());
    let fetch = i64::try_from(fetch).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ?1 \
         AND o.status = 'pending' AND o.next_attempt_at <= ?2 \
         ORDER BY o.next_attempt_at, o.id LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![account.as_str(), to_ms(now), fetch])?;
    let mut due = Vec::new();
    // The id first: an excluded row (in flight, parked) is skipped before
    // its message JSON is decoded, and reading stops at `limit`.
    while due.len() < limit {
        let Some(row) = rows.next()? else { break };
        if !exclude.contains(&DeliveryId(row.get(0)?)) {
            due.push(delivery_from_row(row)?);
        }
    }
    Ok(due)
}

/// See [`crate::store::Store::due_ids`]: [`due`] without the messages.
pub(super) fn due_ids(
    conn: &Connection,
    account: &AccountId,
    now: DateTime<Utc>,
    limit: usize,
    exclude: &HashSet<DeliveryId>,
) -> rusqlite::Result<Vec<(DeliveryId, String)>> {
    let fetch = limit.saturating_add(exclude.len());
    let fetch = i64::try_from(fetch).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, o.sink FROM outbox o WHERE o.account = ?1 \
         AND o.status = 'pending' AND o.next_attempt_at <= ?2 \
         ORDER BY o.next_attempt_at, o.id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![account.as_str(), to_ms(now), fetch])?;
    let mut due = Vec::new();
    while due.len() < limit {
        let Some(row) = rows.next()? else { break };
        let id = DeliveryId(row.get(0)?);
        if !exclude.contains(&id) {
            due.push((id, row.get(1)?));
        }
    }
    Ok(due)
}

/// See [`crate::store::Store::next_due_at`].
pub(super) fn next_due_at(
    conn: &Connection,
    account: &AccountId,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let ms: Option<i64> = conn.query_row(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE account = ?1 AND status = 'pending'",
        [account.as_str()],
        |row| row.get(0),
    )?;
    ms.map(|ms| from_ms(ms, 0)).transpose()
}

/// See [`crate::store::Store::record_attempts`]: every attempt in one
/// transaction, one flag per attempt (false when the delivery is not the
/// account's, nothing written for it).
pub(super) fn record_attempts(
    conn: &mut Connection,
    account: &AccountId,
    attempts: &[AttemptWrite],
) -> rusqlite::Result<Vec<bool>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut found = Vec::with_capacity(attempts.len());
    {
        let mut update = tx.prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, status = ?3, next_attempt_at = ?4, \
             last_error = COALESCE(?5, last_error), updated_at = ?6 WHERE id = ?1 AND account = ?2",
        )?;
        let mut log = tx.prepare_cached(
            "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for a in attempts {
            let (outcome, at) = (&a.outcome, to_ms(a.at));
            let next = outcome.next_attempt_at().map(to_ms);
            let changed = update.execute(params![
                a.id.0,
                account.as_str(),
                outcome.status().as_str(),
                next,
                outcome.error(),
                at
            ])?;
            found.push(changed > 0);
            if changed > 0 {
                let latency_ms = i64::try_from(a.latency.as_millis()).unwrap_or(i64::MAX);
                log.execute(params![
                    a.id.0,
                    at,
                    outcome.as_str(),
                    outcome.error(),
                    latency_ms
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(found)
}

/// See [`crate::store::Store::defer`].
pub(super) fn defer(
    conn: &Connection,
    account: &AccountId,
    id: DeliveryId,
    until: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE outbox SET next_attempt_at = ?3 \
         WHERE id = ?1 AND account = ?2 AND status = 'pending'",
        params![id.0, account.as_str(), to_ms(until)],
    )?;
    Ok(changed > 0)
}

/// See [`crate::store::Store::get_delivery`].
pub(super) fn get(
    conn: &Connection,
    account: &AccountId,
    id: DeliveryId,
) -> rusqlite::Result<Option<Delivery>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.id = ?1 AND o.account = ?2"
    ))?
    .query_row(params![id.0, account.as_str()], delivery_from_row)
    .optional()
}

/// See [`crate::store::Store::get_deliveries`]: one query per 500 ids.
pub(super) fn get_many(
    conn: &Connection,
    account: &AccountId,
    ids: &[DeliveryId],
) -> rusqlite::Result<Vec<Delivery>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ? AND o.id IN ({marks})"
        ))?;
        let args = std::iter::once(Value::Text(account.as_str().to_owned()))
            .chain(chunk.iter().map(|id| Value::Integer(id.0)));
        let rows = stmt.query_map(rusqlite::params_from_iter(args), delivery_from_row)?;
        for delivery in rows {
            found.push(delivery?);
        }
    }
    Ok(found)
}

/// See [`crate::store::Store::list_deliveries`].
pub(super) fn list(
    conn: &Connection,
    account: &AccountId,
    status: Option<DeliveryStatus>,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ?1 \
         AND (?2 IS NULL OR o.status = ?2) ORDER BY o.id DESC"
    ))?;
    let rows = stmt.query_map(
        params![account.as_str(), status.map(DeliveryStatus::as_str)],
        delivery_from_row,
    )?;
    rows.collect()
}

/// See [`crate::store::Store::retry_dead`].
pub(super) fn retry_dead(
    conn: &Connection,
    account: &AccountId,
    id: Option<DeliveryId>,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1, \
         digest_id = NULL, updated_at = ?1 WHERE account = ?2 AND status = 'dead' AND (?3 IS NULL OR id = ?3)",
        params![to_ms(now), account.as_str(), id.map(|id| id.0)],
    )
}

/// Deletes up to `limit` of the account's sent and skipped deliveries last
/// updated before `before` (lowest ids first), with their attempt rows;
/// returns how many deliveries.
pub(super) fn prune_done(
    tx: &Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
    limit: i64,
) -> rusqlite::Result<usize> {
    const DONE: &str = "id IN (SELECT id FROM outbox WHERE account = ?1 \
        AND status IN ('sent', 'skipped') AND updated_at < ?2 ORDER BY id LIMIT ?3)";
    let args = params![account.as_str(), to_ms(before), limit];
    tx.execute(
        &format!(
            "DELETE FROM attempts_log WHERE delivery_id IN (SELECT id FROM outbox WHERE {DONE})"
        ),
        args,
    )?;
    tx.execute(&format!("DELETE FROM outbox WHERE {DONE}"), args)
}

/// The item's deliveries (never alerts), oldest first.
pub(super) fn for_item(
    conn: &Connection,
    account: &AccountId,
    id: ExportId,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ?1 \
         AND o.item_id = ?2 ORDER BY o.id"
    ))?;
    let rows = stmt.query_map(params![account.as_str(), id.0], delivery_from_row)?;
    rows.collect()
}

/// One delivery's attempt log, oldest first.
pub(super) fn attempts_for(
    conn: &Connection,
    id: DeliveryId,
) -> rusqlite::Result<Vec<AttemptRecord>> {
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

/// See [`crate::store::Store::outbox_counts`].
pub(super) fn counts(
    conn: &Connection,
    account: &AccountId,
) -> rusqlite::Result<Vec<(String, DeliveryStatus, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sink, status, COUNT(*) FROM outbox WHERE account = ?1 GROUP BY sink, status \
         ORDER BY sink, status",
    )?;
    let rows = stmt.query_map([account.as_str()], |row| {
        Ok((row.get(0)?, status_col(row, 1)?, row.get::<_, u64>(2)?))
    })?;
    rows.collect()
}

/// See [`crate::store::Store::dead_count`].
pub(super) fn dead_count(
    conn: &Connection,
    account: &AccountId,
    except_sink: &str,
) -> rusqlite::Result<(u64, Option<String>)> {
    const DEAD: &str = "account = ?1 AND status = 'dead' AND sink != ?2";
    conn.query_row(
        &format!(
            "SELECT COUNT(*), (SELECT last_error FROM outbox WHERE {DEAD} \
             ORDER BY updated_at DESC LIMIT 1) FROM outbox WHERE {DEAD}"
        ),
        params![account.as_str(), except_sink],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
    )
}

/// See [`crate::store::Store::accounts_with_pending`]. `status = 'pending'`
/// is the leading column of `outbox_due`, so this reads only the pending
/// rows' index range (a handful), never the sent history.
pub(super) fn accounts_with_pending(conn: &Connection) -> rusqlite::Result<Vec<AccountId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT account FROM outbox INDEXED BY outbox_due \
         WHERE status = 'pending' ORDER BY account",
    )?;
    let rows = stmt.query_map([], |row| {
        let name: String = row.get(0)?;
        AccountId::new(&name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
    })?;
    rows.collect()
}

/// See [`crate::store::Store::pending_sinks_of_items`]: one index lookup
/// (`outbox_by_item`) per item.
pub(super) fn pending_sinks_of_items(
    conn: &Connection,
    account: &AccountId,
    items: &[ExportId],
) -> rusqlite::Result<Vec<(ExportId, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sink FROM outbox WHERE account = ?1 AND item_id = ?2 AND status = 'pending'",
    )?;
    let mut found = Vec::new();
    for item in items {
        let sinks = stmt.query_map(params![account.as_str(), item.0], |row| row.get(0))?;
        for sink in sinks {
            found.push((*item, sink?));
        }
    }
    Ok(found)
}
