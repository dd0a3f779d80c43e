//! The Slack lookup cache on PostgreSQL (`slack_lookups`), as the SQLite
//! backend's `slack_cache.rs`: one row per (sink, lower-cased address),
//! replaced on every lookup, read only while not expired.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::rows::{from_ms, to_ms, PgResult};
use crate::store::SlackLookup;

/// See [`crate::store::Store::slack_lookup`].
pub(super) fn get(
    db: &mut impl GenericClient,
    sink: &str,
    address: &str,
    now: DateTime<Utc>,
) -> PgResult<Option<SlackLookup>> {
    let row = db.query_opt(
        "SELECT user_id, expires_at FROM slack_lookups \
         WHERE sink = $1 AND address = $2 AND expires_at > $3",
        &[&sink, &key(address), &to_ms(now)],
    )?;
    row.map(|row| {
        Ok(SlackLookup {
            user_id: row.try_get(0)?,
            expires_at: from_ms(row.try_get(1)?, "expires_at")?,
        })
    })
    .transpose()
}

/// See [`crate::store::Store::remember_slack_lookup`].
pub(super) fn put(
    db: &mut impl GenericClient,
    sink: &str,
    address: &str,
    lookup: &SlackLookup,
) -> PgResult<()> {
    db.execute(
        "INSERT INTO slack_lookups (sink, address, user_id, expires_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (sink, address) DO UPDATE SET \
         user_id = excluded.user_id, expires_at = excluded.expires_at",
        &[
            &sink,
            &key(address),
            &lookup.user_id,
            &to_ms(lookup.expires_at),
        ],
    )
    .map(drop)
    .map_err(Into::into)
}

/// Addresses are compared case-insensitively.
fn key(address: &str) -> String {
    address.trim().to_lowercase()
}
