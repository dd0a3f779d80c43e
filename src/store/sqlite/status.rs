//! The status page's reads: bounded lists of deliveries and each sink's
//! latest outcomes. Kept apart from [`super::outbox`], which the delivery
//! path uses, so the page's queries are easy to find and to keep cheap.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{delivery_from_row, time_col, DELIVERY_COLUMNS, DELIVERY_FROM};
use crate::domain::{AccountId, Delivery, DeliveryStatus, ExportId};
use crate::store::SinkActivity;

/// [`DELIVERY_COLUMNS`] with an empty message in place of the stored one:
/// the page never shows message bodies (an email's HTML part runs to
/// kilobytes), so they are neither read nor decoded.
fn columns_without_message() -> String {
    const EMPTY: &str = r#"'{"parts":{}}'"#;
    debug_assert!(DELIVERY_COLUMNS.contains("o.message,"));
    DELIVERY_COLUMNS.replacen("o.message,", &format!("{EMPTY},"), 1)
}

/// See [`crate::store::Store::recent_deliveries`]. Without a status it
/// walks the primary key backwards (`+o.account` keeps SQLite off the
/// account index, which would read and sort every row): `limit` rows read
/// whatever the outbox size. With one, it picks ids through the status
/// index, then reads only the `limit` rows it returns.
pub(super) fn recent(
    conn: &Connection,
    account: &AccountId,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let columns = columns_without_message();
    let sql = match status {
        None => format!(
            "SELECT {columns} FROM {DELIVERY_FROM} WHERE +o.account = ?1 \
             ORDER BY o.id DESC LIMIT ?2"
        ),
        Some(_) => format!(
            "SELECT {columns} FROM {DELIVERY_FROM} WHERE o.id IN \
             (SELECT id FROM outbox WHERE +account = ?1 AND status = ?2 \
             ORDER BY id DESC LIMIT ?3) ORDER BY o.id DESC"
        ),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = match status.map(DeliveryStatus::as_str) {
        None => stmt.query_map(params![account.as_str(), limit], delivery_from_row),
        Some(status) => stmt.query_map(params![account.as_str(), status, limit], delivery_from_row),
    }?;
    rows.collect()
}

/// See [`crate::store::Store::sink_activity`]: one backwards walk over the
/// newest `window` attempts (primary key order is the order they were
/// recorded), keeping each sink's first success and first failure seen.
pub(super) fn sink_activity(
    conn: &Connection,
    account: &AccountId,
    window: usize,
) -> rusqlite::Result<Vec<SinkActivity>> {
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT o.sink, l.outcome, l.at, l.error FROM attempts_log l \
         JOIN outbox o ON o.id = l.delivery_id WHERE +o.account = ?1 \
         ORDER BY l.id DESC LIMIT ?2",
    )?;
    let mut sinks: BTreeMap<String, SinkActivity> = BTreeMap::new();
    let mut rows = stmt.query(params![account.as_str(), window])?;
    while let Some(row) = rows.next()? {
        let sink: String = row.get(0)?;
        let sent = row.get_ref(1)?.as_str()? == "sent";
        let entry = sinks.entry(sink.clone()).or_insert_with(|| SinkActivity {
            sink,
            last_success_at: None,
            last_error_at: None,
            last_error: None,
        });
        if sent && entry.last_success_at.is_none() {
            entry.last_success_at = Some(time_col(row, 2)?);
        } else if !sent && entry.last_error_at.is_none() {
            entry.last_error_at = Some(time_col(row, 2)?);
            entry.last_error = row.get(3)?;
        }
    }
    Ok(sinks.into_values().collect())
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
