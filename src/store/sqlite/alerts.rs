//! The bot's own alerts in the state file: one `alerts` row per alert message
//! (the memory behind "once per repeat", which survives restarts and outbox
//! pruning), each delivered through an outbox row that points at it.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::outbox::insert_row;
use super::rows::{parsed_col, time_col, to_ms};
use crate::domain::{AccountId, EventKind};
use crate::store::{AlertRecord, NewAlert};
use crate::store::{NewRow, RowSubject};

/// See [`crate::store::Store::record_alerts`]: the alert rows and their
/// deliveries in one transaction; returns how many.
pub(super) fn record(
    conn: &mut Connection,
    account: &AccountId,
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for alert in alerts {
        tx.execute(
            "INSERT INTO alerts (account, condition, state, at) VALUES (?1, ?2, ?3, ?4)",
            params![
                account.as_str(),
                alert.condition.as_str(),
                alert.state.as_str(),
                to_ms(now)
            ],
        )?;
        let row = NewRow {
            subject: RowSubject::Alert(tx.last_insert_rowid()),
            event: EventKind::Alert,
            sink: &alert.sink,
            recipient: None,
            message: &alert.message,
            disposition: &alert.disposition,
        };
        insert_row(&tx, account, &row, now)?;
    }
    tx.commit()?;
    Ok(alerts.len())
}

/// See [`crate::store::Store::alert_history`]: the latest per (condition,
/// state), sorted by condition then state.
pub(super) fn history(
    conn: &Connection,
    account: &AccountId,
) -> rusqlite::Result<Vec<AlertRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT condition, state, MAX(at) FROM alerts WHERE account = ?1 \
         GROUP BY condition, state ORDER BY condition, state",
    )?;
    let rows = stmt.query_map([account.as_str()], |row| {
        Ok(AlertRecord {
            condition: parsed_col(row, 0)?,
            state: parsed_col(row, 1)?,
            at: time_col(row, 2)?,
        })
    })?;
    let mut records: Vec<AlertRecord> = rows.collect::<rusqlite::Result<_>>()?;
    records.sort_by_key(|r| (r.condition, r.state));
    Ok(records)
}

/// Deletes the account's alert rows older than `before` that no outbox row
/// points at any more and that are not the latest of their (condition,
/// state): the memory stays, the history does not grow forever.
pub(super) fn prune(
    tx: &Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM alerts WHERE account = ?1 AND at < ?2 \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.alert_id = alerts.id) \
         AND at < (SELECT MAX(l.at) FROM alerts l WHERE l.account = alerts.account \
             AND l.condition = alerts.condition AND l.state = alerts.state)",
        params![account.as_str(), to_ms(before)],
    )
}
