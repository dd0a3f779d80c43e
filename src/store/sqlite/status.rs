//! The status page's reads: bounded lists of deliveries and each sink's
//! latest outcomes. Kept apart from [`super::outbox`], which the delivery
//! path uses, so the page's queries are easy to find and to keep cheap.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{delivery_from_row, from_ms, DELIVERY_COLUMNS, DELIVERY_FROM};
use crate::domain::{AccountId, Delivery, DeliveryStatus, ExportId};
use crate::store::SinkActivity;

/// See [`crate::store::Store::recent_deliveries`]. Walks the primary key
/// backwards, so it reads `limit` rows whatever the outbox size.
pub(super) fn recent(
    conn: &Connection,
    account: &AccountId,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE o.account = ?1 \
         AND (?2 IS NULL OR o.status = ?2) ORDER BY o.id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![account.as_str(), status.map(DeliveryStatus::as_str), limit],
        delivery_from_row,
    )?;
    rows.collect()
}

/// See [`crate::store::Store::sink_activity`]: one pass over the attempt log
/// for the times, then one indexed look-up per failing sink for its error.
pub(super) fn sink_activity(
    conn: &Connection,
    account: &AccountId,
) -> rusqlite::Result<Vec<SinkActivity>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.sink, MAX(CASE WHEN l.outcome = 'sent' THEN l.at END), \
         MAX(CASE WHEN l.outcome != 'sent' THEN l.at END) \
         FROM attempts_log l JOIN outbox o ON o.id = l.delivery_id \
         WHERE o.account = ?1 GROUP BY o.sink ORDER BY o.sink",
    )?;
    let rows = stmt.query_map([account.as_str()], |row| {
        let at = |i| -> rusqlite::Result<_> {
            let ms: Option<i64> = row.get(i)?;
            ms.map(|ms| from_ms(ms, i)).transpose()
        };
        Ok(SinkActivity {
            sink: row.get(0)?,
            last_success_at: at(1)?,
            last_error_at: at(2)?,
            last_error: None,
        })
    })?;
    let mut sinks = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    for sink in sinks.iter_mut().filter(|s| s.last_error_at.is_some()) {
        sink.last_error = last_error(conn, account, &sink.sink)?;
    }
    Ok(sinks)
}

/// The error of the sink's latest failed attempt.
fn last_error(
    conn: &Connection,
    account: &AccountId,
    sink: &str,
) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.error FROM attempts_log l JOIN outbox o ON o.id = l.delivery_id \
         WHERE o.account = ?1 AND o.sink = ?2 AND l.outcome != 'sent' \
         ORDER BY l.at DESC, l.id DESC LIMIT 1",
    )?;
    let mut rows = stmt.query(params![account.as_str(), sink])?;
    match rows.next()? {
        Some(row) => row.get(0),
        None => Ok(None),
    }
}

/// See [`crate::store::Store::item_names`]: one primary-key look-up per id.
pub(super) fn item_names(
    conn: &Connection,
    account: &AccountId,
    ids: &[ExportId],
) -> rusqlite::Result<BTreeMap<ExportId, String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT action_name FROM snapshot_items WHERE account = ?1 AND item_id = ?2",
    )?;
    let mut names = BTreeMap::new();
    for id in ids {
        let name: Option<String> = stmt
            .query_row(params![account.as_str(), id.0], |row| row.get(0))
            .optional()?;
        if let Some(name) = name {
            names.insert(*id, name);
        }
    }
    Ok(names)
}
