//! Digest windows in the state file: gathering the members of a window,
//! claiming them for one send (`outbox.digest_id`, schema 5), and marking
//! them together. Each step is one IMMEDIATE transaction, so a crash leaves
//! either the window open or the whole digest claimed, never half of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::rows::{delivery_from_row, from_ms, to_ms, DELIVERY_COLUMNS, DELIVERY_FROM};
use crate::domain::{AccountId, Delivery, DeliveryId};
use crate::store::{AttemptOutcome, DigestMembership, DigestWindow, Gathered};

/// The unclaimed pending item deliveries of a window: ?1 account, ?2 sink,
/// ?3 recipient (NULL: every recipient).
const OPEN: &str = "account = ?1 AND sink = ?2 AND status = 'pending' AND digest_id IS NULL \
     AND item_id IS NOT NULL AND (?3 IS NULL OR recipient = ?3)";

/// See [`crate::store::Store::gather_digest`].
pub(super) fn gather(
    conn: &mut Connection,
    account: &AccountId,
    member: DeliveryId,
    window: &DigestWindow<'_>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Gathered> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT status, digest_id FROM outbox WHERE id = ?1 AND account = ?2",
            params![member.0, account.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let gathered = match row {
        Some((status, Some(digest))) if status == "pending" && digest == member.0 => {
            Gathered::Send {
                digest: member,
                members: members(&tx, account, member)?,
            }
        }
        Some((status, None)) if status == "pending" => {
            open_or_claim(&tx, account, member, window, now)?
        }
        _ => Gathered::Elsewhere,
    };
    tx.commit()?;
    Ok(gathered)
}

/// The window of an unclaimed member: still open (its members wait for its
/// end), or due (claimed by `member`).
fn open_or_claim(
    tx: &Transaction<'_>,
    account: &AccountId,
    member: DeliveryId,
    window: &DigestWindow<'_>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Gathered> {
    let key = params![account.as_str(), window.sink, window.recipient];
    let first: Option<i64> = tx.query_row(
        &format!("SELECT MIN(created_at) FROM outbox WHERE {OPEN}"),
        key,
        |row| row.get(0),
    )?;
    // Not a member of this window at all (an alert, another recipient).
    let Some(first) = first else {
        return Ok(Gathered::Elsewhere);
    };
    let first = from_ms(first, 0)?;
    match crate::digest::timing(first, window.length, now) {
        crate::digest::Timing::WaitUntil(until) => {
            tx.execute(
                &format!(
                    "UPDATE outbox SET next_attempt_at = ?4 WHERE {OPEN} AND next_attempt_at < ?4"
                ),
                params![
                    account.as_str(),
                    window.sink,
                    window.recipient,
                    to_ms(until)
                ],
            )?;
            Ok(Gathered::Wait { until })
        }
        crate::digest::Timing::Due => {
            tx.execute(
                &format!(
                    "UPDATE outbox SET digest_id = ?4, next_attempt_at = \
                     CASE WHEN id = ?4 THEN next_attempt_at ELSE NULL END WHERE {OPEN}"
                ),
                params![account.as_str(), window.sink, window.recipient, member.0],
            )?;
            Ok(Gathered::Send {
                digest: member,
                members: members(tx, account, member)?,
            })
        }
    }
}

/// The pending members of digest `digest`, oldest first.
fn members(
    tx: &Transaction<'_>,
    account: &AccountId,
    digest: DeliveryId,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ?1 \
         AND o.digest_id = ?2 AND o.status = 'pending' ORDER BY o.created_at, o.id"
    ))?;
    let rows = stmt.query_map(params![account.as_str(), digest.0], delivery_from_row)?;
    rows.collect()
}

/// See [`crate::store::Store::record_digest`]; 0 when the account has no
/// pending member of `digest`.
pub(super) fn record(
    conn: &mut Connection,
    account: &AccountId,
    digest: DeliveryId,
    outcome: &AttemptOutcome,
    at: DateTime<Utc>,
    latency: Duration,
) -> rusqlite::Result<usize> {
    const MEMBERS: &str = "account = ?1 AND digest_id = ?2 AND status = 'pending'";
    let latency_ms = i64::try_from(latency.as_millis()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let logged = tx.execute(
        &format!(
            "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
             SELECT id, ?3, ?4, ?5, ?6 FROM outbox WHERE {MEMBERS} ORDER BY id"
        ),
        params![
            account.as_str(),
            digest.0,
            to_ms(at),
            outcome.as_str(),
            outcome.error(),
            latency_ms
        ],
    )?;
    tx.execute(
        &format!(
            "UPDATE outbox SET attempts = attempts + 1, status = ?3, next_attempt_at = \
             CASE WHEN id = ?2 THEN ?4 ELSE NULL END, last_error = COALESCE(?5, last_error), \
             updated_at = ?6 WHERE {MEMBERS}"
        ),
        params![
            account.as_str(),
            digest.0,
            outcome.status().as_str(),
            outcome.next_attempt_at().map(to_ms),
            outcome.error(),
            to_ms(at)
        ],
    )?;
    tx.commit()?;
    Ok(logged)
}

/// See [`crate::store::Store::digest_of`].
pub(super) fn membership(
    conn: &Connection,
    account: &AccountId,
    id: DeliveryId,
) -> rusqlite::Result<Option<DigestMembership>> {
    let found: Option<(i64, Option<i64>, i64)> = conn
        .query_row(
            "SELECT m.digest_id, l.next_attempt_at, (SELECT COUNT(*) FROM outbox c \
             WHERE c.account = m.account AND c.digest_id = m.digest_id) FROM outbox m \
             LEFT JOIN outbox l ON l.id = m.digest_id AND l.account = m.account \
             WHERE m.id = ?1 AND m.account = ?2 AND m.digest_id IS NOT NULL",
            params![id.0, account.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    found
        .map(|(digest, next, members)| {
            Ok(DigestMembership {
                digest: DeliveryId(digest),
                next_attempt_at: next.map(|ms| from_ms(ms, 1)).transpose()?,
                members: u64::try_from(members).unwrap_or_default(),
            })
        })
        .transpose()
}

/// See [`crate::store::Store::digests_waiting`].
pub(super) fn waiting(
    conn: &Connection,
    account: &AccountId,
    sinks: &[String],
    now: DateTime<Utc>,
) -> rusqlite::Result<u64> {
    let sinks = serde_json::to_string(sinks)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
    conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE account = ?1 AND status = 'pending' \
         AND item_id IS NOT NULL AND ((digest_id IS NOT NULL AND id != digest_id) \
         OR (digest_id IS NULL AND attempts = 0 AND next_attempt_at > ?2 \
         AND sink IN (SELECT value FROM json_each(?3))))",
        params![account.as_str(), to_ms(now), sinks],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap_or_default())
}
