//! Row decoding for the PostgreSQL backend: rows back into domain types,
//! with the same stored forms as the SQLite file (BIGINT unix milliseconds;
//! the API's `CreatedDate` as RFC 3339 text), so `state copy` is lossless.
//! A row that does not decode is an error naming the column.

use chrono::{DateTime, Utc};
use postgres::Row;

use crate::domain::{
    AlertState, Delivery, DeliveryId, ExportId, ExportItem, ExportStatus, RenderedMessage, Subject,
};

/// What can go wrong below the [`crate::store::StoreError`] boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// The driver or the server refused.
    #[error(transparent)]
    Db(#[from] postgres::Error),
    /// A stored value that does not decode (or encode).
    #[error("column {column}: {reason}")]
    Decode {
        column: &'static str,
        reason: String,
    },
}

/// Results below the store boundary.
pub(crate) type PgResult<T> = Result<T, PgError>;

/// The snapshot columns [`item_from_row`] reads, in order.
pub(super) const ITEM_COLUMNS: &str = "item_id, status, downloadable, attempts, action_name, \
     action_url, requested_by, created_date";

/// The outbox columns [`delivery_from_row`] reads; `o` is the outbox, `a`
/// the LEFT JOINed alerts row (see [`DELIVERY_FROM`]).
pub(super) const DELIVERY_COLUMNS: &str = "o.id, o.item_id, o.event, o.sink, o.recipient, \
     o.message, o.status, o.attempts, o.next_attempt_at, o.last_error, o.created_at, \
     a.condition, a.state";

/// The FROM clause that goes with [`DELIVERY_COLUMNS`].
pub(super) const DELIVERY_FROM: &str = "outbox o LEFT JOIN alerts a ON a.id = o.alert_id";

/// One `snapshot_items` row (selected as [`ITEM_COLUMNS`]).
pub(super) fn item_from_row(row: &Row) -> PgResult<ExportItem> {
    let created: String = row.try_get(7)?;
    let created_date = DateTime::parse_from_rfc3339(&created)
        .map_err(|err| decode_err("created_date", err))?
        .with_timezone(&Utc);
    Ok(ExportItem {
        id: ExportId(row.try_get(0)?),
        status: status_from_text(&row.try_get::<_, String>(1)?),
        downloadable: row.try_get(2)?,
        attempts: row.try_get(3)?,
        action_name: row.try_get(4)?,
        action_url: row.try_get(5)?,
        requested_by: row.try_get(6)?,
        created_date,
    })
}

/// One outbox row (selected as [`DELIVERY_COLUMNS`] from [`DELIVERY_FROM`]).
pub(super) fn delivery_from_row(row: &Row) -> PgResult<Delivery> {
    let message: String = row.try_get(5)?;
    let message: RenderedMessage =
        serde_json::from_str(&message).map_err(|err| decode_err("message", err))?;
    let next: Option<i64> = row.try_get(8)?;
    let attempts: i64 = row.try_get(7)?;
    Ok(Delivery {
        id: DeliveryId(row.try_get(0)?),
        subject: subject_col(row)?,
        event: parsed_col(row, 2, "event")?,
        sink: row.try_get(3)?,
        recipient: row.try_get(4)?,
        message,
        status: parsed_col(row, 6, "status")?,
        attempts: u32::try_from(attempts).map_err(|err| decode_err("attempts", err))?,
        next_attempt_at: next.map(|ms| from_ms(ms, "next_attempt_at")).transpose()?,
        last_error: row.try_get(9)?,
        created_at: time_col(row, 10, "created_at")?,
    })
}

fn subject_col(row: &Row) -> PgResult<Subject> {
    if let Some(id) = row.try_get::<_, Option<i64>>(1)? {
        return Ok(Subject::Item(ExportId(id)));
    }
    let condition = parsed_col(row, 11, "condition")?;
    let state: AlertState = parsed_col(row, 12, "state")?;
    Ok(Subject::Alert { condition, state })
}

/// A TEXT column parsed with `FromStr` (event, status, condition, state).
pub(super) fn parsed_col<T: std::str::FromStr<Err = String>>(
    row: &Row,
    idx: usize,
    column: &'static str,
) -> PgResult<T> {
    row.try_get::<_, String>(idx)?
        .parse()
        .map_err(|reason| PgError::Decode { column, reason })
}

/// A NOT NULL millisecond timestamp column.
pub(super) fn time_col(row: &Row, idx: usize, column: &'static str) -> PgResult<DateTime<Utc>> {
    from_ms(row.try_get(idx)?, column)
}

/// The stored form of a time: unix milliseconds.
pub(super) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Unix milliseconds back to a time.
pub(super) fn from_ms(ms: i64, column: &'static str) -> PgResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| PgError::Decode {
        column,
        reason: format!("{ms} is not a timestamp in milliseconds"),
    })
}

/// A decoding (or encoding) failure in `column`.
pub(super) fn decode_err(column: &'static str, err: impl std::fmt::Display) -> PgError {
    PgError::Decode {
        column,
        reason: err.to_string(),
    }
}

/// The snapshot's `status` column: the API's code as text, or a status name
/// the bot does not know (written by `ExportStatus::raw`).
pub(super) fn status_from_text(text: &str) -> ExportStatus {
    text.parse::<i64>()
        .map_or_else(|_| ExportStatus::from_name(text), ExportStatus::from)
}
