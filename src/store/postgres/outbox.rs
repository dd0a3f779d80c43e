//! The outbox side in PostgreSQL: deliveries (`outbox`) and their attempt
//! log (`attempts_log`). Every query names the account.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Statement, Transaction};

use super::rows::{
    decode_err, delivery_from_row, from_ms, parsed_col, time_col, to_ms, PgResult,
    DELIVERY_COLUMNS, DELIVERY_FROM,
};
use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, Disposition, ExportId, NewDelivery,
};
use crate::store::{AttemptRecord, AttemptWrite, NewRow, RowSubject};

/// Inserts item deliveries; returns how many.
pub(super) fn insert_deliveries(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> PgResult<usize> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    let stmt = prepare_insert(tx)?;
    for d in deliveries {
        let row = NewRow::from_delivery(d);
        insert_row(tx, &stmt, account, &row, now)?;
    }
    Ok(deliveries.len())
}

/// The statement [`insert_row`] runs, prepared once per transaction (one
/// round trip per row instead of two).
pub(super) fn prepare_insert(tx: &mut Transaction<'_>) -> PgResult<Statement> {
    Ok(tx.prepare(
        "INSERT INTO outbox (account, item_id, alert_id, event, sink, recipient, message, \
         status, attempts, next_attempt_at, last_error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, $11)",
    )?)
}

/// Inserts one outbox row with the statement from [`prepare_insert`].
pub(super) fn insert_row(
    tx: &mut Transaction<'_>,
    stmt: &Statement,
    account: &AccountId,
    row: &NewRow<'_>,
    now: DateTime<Utc>,
) -> PgResult<()> {
    let now_ms = to_ms(now);
    let message = serde_json::to_string(row.message).map_err(|e| decode_err("message", e))?;
    let (status, next, reason) = match row.disposition {
        Disposition::Pending => (DeliveryStatus::Pending, Some(now_ms), None),
        Disposition::Skipped(reason) => (DeliveryStatus::Skipped, None, Some(reason.as_str())),
        Disposition::Dead(reason) => (DeliveryStatus::Dead, None, Some(reason.as_str())),
    };
    let (item_id, alert_id) = match row.subject {
        RowSubject::Item(id) => (Some(id.0), None),
        RowSubject::Alert(id) => (None, Some(id)),
    };
    tx.execute(
        stmt,
        &[
            &account.as_str(),
            &item_id,
            &alert_id,
            &row.event.as_str(),
            &row.sink,
            &row.recipient,
            &message,
            &status.as_str(),
            &next,
            &reason,
            &now_ms,
        ],
    )?;
    Ok(())
}

/// See [`crate::store::Store::due_deliveries`].
pub(super) fn due(
    db: &mut impl GenericClient,
    account: &AccountId,
    now: DateTime<Utc>,
    limit: usize,
    exclude: &HashSet<DeliveryId>,
) -> PgResult<Vec<Delivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let exclude: Vec<i64> = exclude.iter().map(|id| id.0).collect();
    let rows = db.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND o.status = 'pending' AND o.next_attempt_at <= $2 AND NOT (o.id = ANY($3)) \
             ORDER BY o.next_attempt_at, o.id LIMIT $4"
        ),
        &[&account.as_str(), &to_ms(now), &exclude, &limit],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::next_due_at`].
pub(super) fn next_due_at(
    db: &mut impl GenericClient,
    account: &AccountId,
) -> PgResult<Option<DateTime<Utc>>> {
    let row = db.query_one(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE account = $1 AND status = 'pending'",
        &[&account.as_str()],
    )?;
    let ms: Option<i64> = row.try_get(0)?;
    ms.map(|ms| from_ms(ms, "next_attempt_at")).transpose()
}

/// See [`crate::store::Store::record_attempts`]: every attempt in the
/// caller's transaction, with the two statements prepared once; one flag per
/// attempt (false when the delivery is not the account's, nothing written).
pub(super) fn record_attempts(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    attempts: &[AttemptWrite],
) -> PgResult<Vec<bool>> {
    let update = tx.prepare(
        "UPDATE outbox SET attempts = attempts + 1, status = $3, next_attempt_at = $4, \
         last_error = COALESCE($5, last_error), updated_at = $6 WHERE id = $1 AND account = $2",
    )?;
    let log = tx.prepare(
        "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )?;
    let mut found = Vec::with_capacity(attempts.len());
    for a in attempts {
        let (outcome, at) = (&a.outcome, to_ms(a.at));
        let next = outcome.next_attempt_at().map(to_ms);
        let changed = tx.execute(
            &update,
            &[
                &a.id.0,
                &account.as_str(),
                &outcome.status().as_str(),
                &next,
                &outcome.error(),
                &at,
            ],
        )?;
        found.push(changed > 0);
        if changed > 0 {
            let latency_ms = i64::try_from(a.latency.as_millis()).unwrap_or(i64::MAX);
            let args: [&(dyn postgres::types::ToSql + Sync); 5] = [
                &a.id.0,
                &at,
                &outcome.as_str(),
                &outcome.error(),
                &latency_ms,
            ];
            tx.execute(&log, &args)?;
        }
    }
    Ok(found)
}

/// See [`crate::store::Store::defer`].
pub(super) fn defer(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    id: DeliveryId,
    until: DateTime<Utc>,
) -> PgResult<bool> {
    let changed = tx.execute(
        "UPDATE outbox SET next_attempt_at = $3 \
         WHERE id = $1 AND account = $2 AND status = 'pending'",
        &[&id.0, &account.as_str(), &to_ms(until)],
    )?;
    Ok(changed > 0)
}

/// See [`crate::store::Store::get_delivery`].
pub(super) fn get(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: DeliveryId,
) -> PgResult<Option<Delivery>> {
    db.query_opt(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.id = $1 AND o.account = $2"
        ),
        &[&id.0, &account.as_str()],
    )?
    .map(|row| delivery_from_row(&row))
    .transpose()
}

/// See [`crate::store::Store::get_deliveries`].
pub(super) fn get_many(
    db: &mut impl GenericClient,
    account: &AccountId,
    ids: &[DeliveryId],
) -> PgResult<Vec<Delivery>> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let rows = db.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND o.id = ANY($2)"
        ),
        &[&account.as_str(), &ids],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::list_deliveries`].
pub(super) fn list(
    db: &mut impl GenericClient,
    account: &AccountId,
    status: Option<DeliveryStatus>,
) -> PgResult<Vec<Delivery>> {
    let rows = db.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND ($2::TEXT IS NULL OR o.status = $2) ORDER BY o.id DESC"
        ),
        &[&account.as_str(), &status.map(DeliveryStatus::as_str)],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::retry_dead`].
pub(super) fn retry_dead(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: Option<DeliveryId>,
    now: DateTime<Utc>,
) -> PgResult<usize> {
    let n = db.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1, \
         digest_id = NULL, updated_at = $1 WHERE account = $2 AND status = 'dead' AND ($3::BIGINT IS NULL OR id = $3)",
        &[&to_ms(now), &account.as_str(), &id.map(|id| id.0)],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Deletes up to `limit` of the account's sent and skipped deliveries last
/// updated before `before` (lowest ids first; their attempt rows cascade);
/// returns how many deliveries.
pub(super) fn prune_done(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
    limit: i64,
) -> PgResult<usize> {
    let n = tx.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE account = $1 \
         AND status IN ('sent', 'skipped') AND updated_at < $2 ORDER BY id LIMIT $3)",
        &[&account.as_str(), &to_ms(before), &limit],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The item's deliveries (never alerts), oldest first.
pub(super) fn for_item(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: ExportId,
) -> PgResult<Vec<Delivery>> {
    let rows = db.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND o.item_id = $2 ORDER BY o.id"
        ),
        &[&account.as_str(), &id.0],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// One delivery's attempt log, oldest first.
pub(super) fn attempts_for(
    db: &mut impl GenericClient,
    id: DeliveryId,
) -> PgResult<Vec<AttemptRecord>> {
    let rows = db.query(
        "SELECT at, outcome, error, latency_ms FROM attempts_log WHERE delivery_id = $1 \
         ORDER BY at, id",
        &[&id.0],
    )?;
    rows.iter()
        .map(|row| {
            Ok(AttemptRecord {
                at: time_col(row, 0, "at")?,
                outcome: row.try_get(1)?,
                error: row.try_get(2)?,
                latency_ms: row.try_get(3)?,
            })
        })
        .collect()
}

/// See [`crate::store::Store::outbox_counts`].
pub(super) fn counts(
    db: &mut impl GenericClient,
    account: &AccountId,
) -> PgResult<Vec<(String, DeliveryStatus, u64)>> {
    let rows = db.query(
        "SELECT sink, status, COUNT(*) FROM outbox WHERE account = $1 GROUP BY sink, status \
         ORDER BY sink COLLATE \"C\", status COLLATE \"C\"",
        &[&account.as_str()],
    )?;
    rows.iter()
        .map(|row| {
            let n: i64 = row.try_get(2)?;
            Ok((
                row.try_get(0)?,
                parsed_col(row, 1, "status")?,
                n.unsigned_abs(),
            ))
        })
        .collect()
}

/// See [`crate::store::Store::dead_count`].
pub(super) fn dead_count(
    db: &mut impl GenericClient,
    account: &AccountId,
    except_sink: &str,
) -> PgResult<(u64, Option<String>)> {
    const DEAD: &str = "account = $1 AND status = 'dead' AND sink <> $2";
    let row = db.query_one(
        &format!(
            "SELECT COUNT(*), (SELECT last_error FROM outbox WHERE {DEAD} \
             ORDER BY updated_at DESC, id DESC LIMIT 1) FROM outbox WHERE {DEAD}"
        ),
        &[&account.as_str(), &except_sink],
    )?;
    let n: i64 = row.try_get(0)?;
    Ok((n.unsigned_abs(), row.try_get(1)?))
}

/// See [`crate::store::Store::accounts_with_pending`]. `outbox_due` leads
/// with `(account, status)`: a loose index scan steps from one account to
/// the next (one index probe each, never the sent history), keeping those
/// with a pending row (one more probe each).
pub(super) fn accounts_with_pending(db: &mut impl GenericClient) -> PgResult<Vec<AccountId>> {
    let rows = db.query(
        "WITH RECURSIVE accounts(account) AS ( \
           (SELECT account FROM outbox ORDER BY account LIMIT 1) \
           UNION ALL \
           SELECT (SELECT o.account FROM outbox o WHERE o.account > a.account \
                   ORDER BY o.account LIMIT 1) \
           FROM accounts a WHERE a.account IS NOT NULL) \
         SELECT a.account FROM accounts a WHERE a.account IS NOT NULL AND EXISTS \
           (SELECT 1 FROM outbox o WHERE o.account = a.account AND o.status = 'pending') \
         ORDER BY a.account",
        &[],
    )?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            AccountId::new(&name).map_err(|e| decode_err("account", e))
        })
        .collect()
}

/// See [`crate::store::Store::pending_sinks_of_items`].
pub(super) fn pending_sinks_of_items(
    db: &mut impl GenericClient,
    account: &AccountId,
    items: &[ExportId],
) -> PgResult<Vec<(ExportId, String)>> {
    let ids: Vec<i64> = items.iter().map(|i| i.0).collect();
    let rows = db.query(
        "SELECT item_id, sink FROM outbox WHERE account = $1 AND item_id = ANY($2) \
         AND status = 'pending'",
        &[&account.as_str(), &ids],
    )?;
    rows.iter()
        .map(|row| Ok((ExportId(row.try_get(0)?), row.try_get(1)?)))
        .collect()
}
