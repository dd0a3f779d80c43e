//! Row decoding: SQLite rows back into domain types. Timestamps are stored as
//! INTEGER unix milliseconds (so they round-trip at millisecond precision),
//! except the API's `CreatedDate`, stored as RFC 3339 text exactly as precise
//! as it was parsed. A row that does not decode is an error naming the column,
//! never a silently wrong value.

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::Row;

use crate::domain::{
    AlertState, Delivery, DeliveryId, DeliveryStatus, EventKind, ExportId, ExportItem,
    ExportStatus, RenderedMessage, Subject,
};

/// The snapshot columns [`item_from_row`] reads, in order.
pub(super) const ITEM_COLUMNS: &str = "item_id, status, downloadable, attempts, action_name, \
     action_url, requested_by, created_date";

/// The outbox columns [`delivery_from_row`] reads, in order; `o` is the
/// outbox, `a` the LEFT JOINed alerts row (see [`DELIVERY_FROM`]).
pub(super) const DELIVERY_COLUMNS: &str = "o.id, o.item_id, o.event, o.sink, o.recipient, \
     o.message, o.status, o.attempts, o.next_attempt_at, o.last_error, o.created_at, \
     a.condition, a.state";

/// The FROM clause that goes with [`DELIVERY_COLUMNS`].
pub(super) const DELIVERY_FROM: &str = "outbox o LEFT JOIN alerts a ON a.id = o.alert_id";

/// One `snapshot_items` row (selected as [`ITEM_COLUMNS`]).
pub(super) fn item_from_row(row: &Row<'_>) -> rusqlite::Result<ExportItem> {
    let created: String = row.get(7)?;
    let created_date = DateTime::parse_from_rfc3339(&created)
        .map_err(|err| decode_err(7, err.into()))?
        .with_timezone(&Utc);
    Ok(ExportItem {
        id: ExportId(row.get(0)?),
        status: status_from_sql(row.get(1)?),
        downloadable: row.get(2)?,
        attempts: row.get(3)?,
        action_name: row.get(4)?,
        action_url: row.get(5)?,
        requested_by: row.get(6)?,
        created_date,
    })
}

/// One outbox row (selected as [`DELIVERY_COLUMNS`] from [`DELIVERY_FROM`]).
pub(super) fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let message: String = row.get(5)?;
    let message: RenderedMessage =
        serde_json::from_str(&message).map_err(|err| decode_err(5, err.into()))?;
    let next_attempt_at: Option<i64> = row.get(8)?;
    Ok(Delivery {
        id: DeliveryId(row.get(0)?),
        subject: subject_col(row)?,
        event: parsed_col(row, 2)?,
        sink: row.get(3)?,
        recipient: row.get(4)?,
        message,
        status: parsed_col(row, 6)?,
        attempts: row.get(7)?,
        next_attempt_at: next_attempt_at.map(|ms| from_ms(ms, 8)).transpose()?,
        last_error: row.get(9)?,
        created_at: time_col(row, 10)?,
    })
}

/// The item id (column 1) or the joined alert (columns 11, 12).
fn subject_col(row: &Row<'_>) -> rusqlite::Result<Subject> {
    if let Some(id) = row.get::<_, Option<i64>>(1)? {
        return Ok(Subject::Item(ExportId(id)));
    }
    let condition = parsed_col(row, 11)?;
    let state: AlertState = parsed_col(row, 12)?;
    Ok(Subject::Alert { condition, state })
}

/// A TEXT column parsed with `FromStr` (event, status, condition, state).
pub(super) fn parsed_col<T: std::str::FromStr<Err = String>>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    row.get::<_, String>(idx)?
        .parse()
        .map_err(|err: String| decode_err(idx, err.into()))
}

/// An event column.
pub(super) fn event_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<EventKind> {
    parsed_col(row, idx)
}

/// A delivery status column.
pub(super) fn status_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DeliveryStatus> {
    parsed_col(row, idx)
}

/// A NOT NULL millisecond timestamp column.
pub(super) fn time_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    from_ms(row.get(idx)?, idx)
}

fn decode_err(idx: usize, err: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, err)
}

/// The stored form of a time: unix milliseconds.
pub(super) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Unix milliseconds back to a time; `idx` names the column in the error.
pub(super) fn from_ms(ms: i64, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Integer,
            format!("{ms} is not a timestamp in milliseconds").into(),
        )
    })
}

/// The `status` column holds the API's code, or, for a status that came only
/// as a name the bot does not know, that name as TEXT (SQLite keeps a
/// non-numeric TEXT in an INTEGER column), so it survives a round trip.
pub(super) fn status_to_sql(status: &ExportStatus) -> rusqlite::types::Value {
    match status.code() {
        Some(code) => rusqlite::types::Value::Integer(code),
        None => rusqlite::types::Value::Text(status.raw()),
    }
}

/// Reads what [`status_to_sql`] wrote.
fn status_from_sql(value: rusqlite::types::Value) -> ExportStatus {
    match value {
        rusqlite::types::Value::Text(name) => ExportStatus::from_name(&name),
        rusqlite::types::Value::Integer(code) => ExportStatus::from(code),
        _ => ExportStatus::Other(-1),
    }
}
