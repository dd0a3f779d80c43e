//! Digest windows in PostgreSQL, as in the SQLite file
//! (`store::sqlite::digest`): gather, claim (`outbox.digest_id`, schema 2)
//! and mark together, each in one (fenced) transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Transaction};

use super::rows::{delivery_from_row, from_ms, to_ms, PgResult, DELIVERY_COLUMNS, DELIVERY_FROM};
use crate::domain::{AccountId, Delivery, DeliveryId};
use crate::store::{AttemptOutcome, DigestMembership, DigestWindow, Gathered};

/// The unclaimed pending item deliveries of a window: $1 account, $2 sink,
/// $3 recipient (NULL: every recipient).
const OPEN: &str = "account = $1 AND sink = $2 AND status = 'pending' AND digest_id IS NULL \
     AND item_id IS NOT NULL AND ($3::TEXT IS NULL OR recipient = $3)";

/// See [`crate::store::Store::gather_digest`].
pub(super) fn gather(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    member: DeliveryId,
    window: &DigestWindow<'_>,
    now: DateTime<Utc>,
) -> PgResult<Gathered> {
    let row = tx.query_opt(
        "SELECT status, digest_id FROM outbox WHERE id = $1 AND account = $2 FOR UPDATE",
        &[&member.0, &account.as_str()],
    )?;
    let Some(row) = row else {
        return Ok(Gathered::Elsewhere);
    };
    let (status, digest): (String, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
    Ok(match digest {
        _ if status != "pending" => Gathered::Elsewhere,
        Some(digest) if digest == member.0 => Gathered::Send {
            digest: member,
            members: members(tx, account, member)?,
        },
        Some(_) => Gathered::Elsewhere,
        None => open_or_claim(tx, account, member, window, now)?,
    })
}

fn open_or_claim(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    member: DeliveryId,
    window: &DigestWindow<'_>,
    now: DateTime<Utc>,
) -> PgResult<Gathered> {
    let (sink, recipient) = (window.sink, window.recipient);
    let row = tx.query_one(
        &format!("SELECT MIN(created_at) FROM outbox WHERE {OPEN}"),
        &[&account.as_str(), &sink, &recipient],
    )?;
    let Some(first) = row.try_get::<_, Option<i64>>(0)? else {
        return Ok(Gathered::Elsewhere);
    };
    let first = from_ms(first, "created_at")?;
    match crate::digest::timing(first, window.length, now) {
        crate::digest::Timing::WaitUntil(until) => {
            tx.execute(
                &format!(
                    "UPDATE outbox SET next_attempt_at = $4 WHERE {OPEN} AND next_attempt_at < $4"
                ),
                &[&account.as_str(), &sink, &recipient, &to_ms(until)],
            )?;
            Ok(Gathered::Wait { until })
        }
        crate::digest::Timing::Due => {
            tx.execute(
                &format!(
                    "UPDATE outbox SET digest_id = $4, next_attempt_at = \
                     CASE WHEN id = $4 THEN next_attempt_at ELSE NULL END WHERE {OPEN}"
                ),
                &[&account.as_str(), &sink, &recipient, &member.0],
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
    tx: &mut Transaction<'_>,
    account: &AccountId,
    digest: DeliveryId,
) -> PgResult<Vec<Delivery>> {
    let rows = tx.query(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND o.digest_id = $2 AND o.status = 'pending' ORDER BY o.created_at, o.id"
        ),
        &[&account.as_str(), &digest.0],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::record_digest`]; 0 when the account has no
/// pending member of `digest`.
pub(super) fn record(
    tx: &mut Transaction<'_>,
    account: &AccountId,
    digest: DeliveryId,
    outcome: &AttemptOutcome,
    at: DateTime<Utc>,
    latency: Duration,
) -> PgResult<usize> {
    const MEMBERS: &str = "account = $1 AND digest_id = $2 AND status = 'pending'";
    let latency_ms = i64::try_from(latency.as_millis()).unwrap_or(i64::MAX);
    let logged = tx.execute(
        &format!(
            "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
             SELECT id, $3, $4, $5, $6 FROM outbox WHERE {MEMBERS} ORDER BY id"
        ),
        &[
            &account.as_str(),
            &digest.0,
            &to_ms(at),
            &outcome.as_str(),
            &outcome.error(),
            &latency_ms,
        ],
    )?;
    tx.execute(
        &format!(
            "UPDATE outbox SET attempts = attempts + 1, status = $3, next_attempt_at = \
             CASE WHEN id = $2 THEN $4::BIGINT ELSE NULL END, \
             last_error = COALESCE($5, last_error), updated_at = $6 WHERE {MEMBERS}"
        ),
        &[
            &account.as_str(),
            &digest.0,
            &outcome.status().as_str(),
            &outcome.next_attempt_at().map(to_ms),
            &outcome.error(),
            &to_ms(at),
        ],
    )?;
    Ok(usize::try_from(logged).unwrap_or(usize::MAX))
}

/// See [`crate::store::Store::digest_of`].
pub(super) fn membership(
    db: &mut impl GenericClient,
    account: &AccountId,
    id: DeliveryId,
) -> PgResult<Option<DigestMembership>> {
    let row = db.query_opt(
        "SELECT m.digest_id, l.next_attempt_at, (SELECT COUNT(*) FROM outbox c \
         WHERE c.account = m.account AND c.digest_id = m.digest_id) FROM outbox m \
         LEFT JOIN outbox l ON l.id = m.digest_id AND l.account = m.account \
         WHERE m.id = $1 AND m.account = $2 AND m.digest_id IS NOT NULL",
        &[&id.0, &account.as_str()],
    )?;
    let Some(row) = row else { return Ok(None) };
    let next: Option<i64> = row.try_get(1)?;
    Ok(Some(DigestMembership {
        digest: DeliveryId(row.try_get(0)?),
        next_attempt_at: next.map(|ms| from_ms(ms, "next_attempt_at")).transpose()?,
        members: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or_default(),
    }))
}

/// See [`crate::store::Store::digests_waiting`].
pub(super) fn waiting(
    db: &mut impl GenericClient,
    account: &AccountId,
    sinks: &[String],
    now: DateTime<Utc>,
) -> PgResult<u64> {
    let row = db.query_one(
        "SELECT COUNT(*) FROM outbox WHERE account = $1 AND status = 'pending' \
         AND item_id IS NOT NULL AND ((digest_id IS NOT NULL AND id != digest_id) \
         OR (digest_id IS NULL AND attempts = 0 AND next_attempt_at > $2 \
         AND sink = ANY($3)))",
        &[&account.as_str(), &to_ms(now), &sinks],
    )?;
    Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or_default())
}
