//! The Slack lookup cache in the state file (`slack_lookups`): one row per
//! (sink, lower-cased address), replaced on every lookup, read only while
//! not expired. Expired rows are simply overwritten by the next lookup.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{time_col, to_ms};
use crate::store::SlackLookup;

/// See [`crate::store::Store::slack_lookup`].
pub(super) fn get(
    conn: &Connection,
    sink: &str,
    address: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<SlackLookup>> {
    conn.query_row(
        "SELECT user_id, expires_at FROM slack_lookups \
         WHERE sink = ?1 AND address = ?2 AND expires_at > ?3",
        params![sink, key(address), to_ms(now)],
        |row| {
            Ok(SlackLookup {
                user_id: row.get(0)?,
                expires_at: time_col(row, 1)?,
            })
        },
    )
    .optional()
}

/// See [`crate::store::Store::remember_slack_lookup`].
pub(super) fn put(
    conn: &Connection,
    sink: &str,
    address: &str,
    lookup: &SlackLookup,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO slack_lookups (sink, address, user_id, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (sink, address) DO UPDATE SET \
         user_id = excluded.user_id, expires_at = excluded.expires_at",
        params![sink, key(address), lookup.user_id, to_ms(lookup.expires_at)],
    )
    .map(drop)
}

/// Addresses are compared case-insensitively.
fn key(address: &str) -> String {
    address.trim().to_lowercase()
}
