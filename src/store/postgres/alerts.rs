//! The bot's own alerts in PostgreSQL: one `alerts` row per alert message
//! (the memory behind "once per repeat"), each delivered through an outbox
//! row that points at it.

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Transaction};

use super::outbox::{insert_row, prepare_insert};
use super::rows::{parsed_col, time_col, to_ms, PgResult};
use crate::domain::{AccountId, EventKind};
use crate::store::{AlertRecord, NewAlert};
use crate::store::{NewRow, RowSubject};

/// See [`crate::store::Store::record_alerts`]: the alert rows and their
/// deliveries in the caller's transaction; returns how many.
pub(super) fn record(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> PgResult<usize> {
    let stmt = prepare_insert(tx)?;
    for alert in alerts {
        let row = tx.query_one(
            "INSERT INTO alerts (account, condition, state, at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
            &[
                &account.as_str(),
                &alert.condition.as_str(),
                &alert.state.as_str(),
                &to_ms(now),
            ],
        )?;
        let row = NewRow {
            subject: RowSubject::Alert(row.try_get(0)?),
            event: EventKind::Alert,
            sink: &alert.sink,
            recipient: None,
            message: &alert.message,
            disposition: &alert.disposition,
        };
        insert_row(tx, &stmt, account, &row, now)?;
    }
    Ok(alerts.len())
}

/// See [`crate::store::Store::alert_history`]: the latest per (condition,
/// state), sorted by condition then state.
pub(super) fn history(
    db: &mut impl GenericClient,
    account: &AccountId,
) -> PgResult<Vec<AlertRecord>> {
    let rows = db.query(
        "SELECT condition, state, MAX(at) FROM alerts WHERE account = $1 \
         GROUP BY condition, state",
        &[&account.as_str()],
    )?;
    let mut records = rows
        .iter()
        .map(|row| {
            Ok(AlertRecord {
                condition: parsed_col(row, 0, "condition")?,
                state: parsed_col(row, 1, "state")?,
                at: time_col(row, 2, "at")?,
            })
        })
        .collect::<PgResult<Vec<_>>>()?;
    records.sort_by_key(|r| (r.condition, r.state));
    Ok(records)
}

/// Deletes the account's alert rows older than `before` that no outbox row
/// points at and that are not the latest of their (condition, state).
pub(super) fn prune(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    before: DateTime<Utc>,
) -> PgResult<u64> {
    Ok(tx.execute(
        "DELETE FROM alerts WHERE account = $1 AND at < $2 \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.alert_id = alerts.id) \
         AND at < (SELECT MAX(l.at) FROM alerts l WHERE l.account = alerts.account \
             AND l.condition = alerts.condition AND l.state = alerts.state)",
        &[&account.as_str(), &to_ms(before)],
    )?)
}
