//! The status page's reads on PostgreSQL: bounded lists of deliveries
//! (message bodies left out) and each sink's latest outcomes, as the SQLite
//! backend's `status.rs` does.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::rows::{delivery_from_row, time_col, PgResult, DELIVERY_COLUMNS, DELIVERY_FROM};
use crate::domain::{AccountId, Delivery, DeliveryStatus, ExportId};
use crate::store::SinkActivity;

/// [`DELIVERY_COLUMNS`] with an empty message: the page never shows bodies.
fn columns_without_message() -> String {
    DELIVERY_COLUMNS.replacen("o.message,", r#"'{"parts":{}}',"#, 1)
}

/// See [`crate::store::Store::recent_deliveries`].
pub(super) fn recent(
    db: &mut impl GenericClient,
    account: &AccountId,
    status: Option<DeliveryStatus>,
    limit: usize,
) -> PgResult<Vec<Delivery>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = db.query(
        &format!(
            "SELECT {} FROM {DELIVERY_FROM} WHERE o.account = $1 \
             AND ($2::TEXT IS NULL OR o.status = $2) ORDER BY o.id DESC LIMIT $3",
            columns_without_message()
        ),
        &[
            &account.as_str(),
            &status.map(DeliveryStatus::as_str),
            &limit,
        ],
    )?;
    rows.iter().map(delivery_from_row).collect()
}

/// See [`crate::store::Store::sink_activity`]: the newest `window` attempts,
/// each sink's first success and first failure seen walking back.
pub(super) fn sink_activity(
    db: &mut impl GenericClient,
    account: &AccountId,
    window: usize,
) -> PgResult<Vec<SinkActivity>> {
    let window = i64::try_from(window).unwrap_or(i64::MAX);
    let rows = db.query(
        "SELECT o.sink, l.outcome, l.at, l.error FROM attempts_log l \
         JOIN outbox o ON o.id = l.delivery_id WHERE o.account = $1 \
         ORDER BY l.id DESC LIMIT $2",
        &[&account.as_str(), &window],
    )?;
    let mut sinks: BTreeMap<String, SinkActivity> = BTreeMap::new();
    for row in &rows {
        let sink: String = row.try_get(0)?;
        let sent = row.try_get::<_, &str>(1)? == "sent";
        let entry = sinks.entry(sink.clone()).or_insert_with(|| SinkActivity {
            sink,
            last_success_at: None,
            last_error_at: None,
            last_error: None,
        });
        if sent && entry.last_success_at.is_none() {
            entry.last_success_at = Some(time_col(row, 2, "at")?);
        } else if !sent && entry.last_error_at.is_none() {
            entry.last_error_at = Some(time_col(row, 2, "at")?);
            entry.last_error = row.try_get(3)?;
        }
    }
    Ok(sinks.into_values().collect())
}

/// See [`crate::store::Store::item_names`]: one keyed query for all ids.
pub(super) fn item_names(
    db: &mut impl GenericClient,
    account: &AccountId,
    ids: &[ExportId],
) -> PgResult<BTreeMap<ExportId, String>> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let rows = db.query(
        "SELECT item_id, action_name FROM snapshot_items WHERE account = $1 \
         AND item_id = ANY($2)",
        &[&account.as_str(), &ids],
    )?;
    rows.iter()
        .map(|row| Ok((ExportId(row.try_get(0)?), row.try_get(1)?)))
        .collect()
}
