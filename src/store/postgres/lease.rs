//! The leader lease: one `leader_lease` row naming the holder, its expiry
//! (the database's clock, so replicas' clocks do not matter) and a
//! generation that grows with every change of leader. Renewing keeps the
//! generation; taking over an expired lease increments it.
//!
//! Fencing: once a store has been asked to lead, every poll commit and every
//! delivery status write first reads the row `FOR SHARE` in its own
//! transaction and is refused ([`StoreError::Fenced`]) unless the
//! generation is still the one this store won. A takeover's UPDATE waits
//! for that share lock, so a paused or partitioned former leader can never
//! commit after a new leader started.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use postgres::{GenericClient, Transaction};

use super::rows::PgResult;
use crate::store::StoreError;

/// No fencing: this store was never asked to lead (CLI commands, tests).
const UNFENCED: i64 = 0;
/// Asked to lead but not leading now: every fenced write is refused.
const NOT_LEADER: i64 = -1;

/// The generation this store won, shared by its writers.
#[derive(Debug, Default)]
pub(super) struct Fence(AtomicI64);

impl Fence {
    /// Records the outcome of a lease attempt.
    pub(super) fn set(&self, generation: Option<i64>) {
        self.0
            .store(generation.unwrap_or(NOT_LEADER), Ordering::SeqCst);
    }

    /// The generation to renew, if this store holds one.
    pub(super) fn held(&self) -> Option<i64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|g| *g > 0)
    }

    /// Inside `tx`: refuses unless the lease row still has our generation
    /// (and holds a share lock on it until `tx` ends). `Ok(Err(current))`
    /// when refused.
    pub(super) fn check(&self, tx: &mut Transaction<'_>) -> PgResult<Result<(), (i64, i64)>> {
        let held = self.0.load(Ordering::SeqCst);
        if held == UNFENCED {
            return Ok(Ok(()));
        }
        let row = tx.query_opt(
            "SELECT generation FROM leader_lease WHERE name = 'leader' FOR SHARE",
            &[],
        )?;
        let current: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        Ok(if current == held {
            Ok(())
        } else {
            Err((held, current))
        })
    }
}

/// The error for a refused write.
pub(super) fn fenced(location: String, (held, current): (i64, i64)) -> StoreError {
    StoreError::Fenced {
        location,
        held,
        current,
    }
}

/// Takes the lease if it is free or expired (a new generation), or renews
/// it if `holder` has it at `generation`; `None` when another holds it.
pub(super) fn acquire_or_renew(
    db: &mut impl GenericClient,
    holder: &str,
    generation: Option<i64>,
    ttl: Duration,
) -> PgResult<Option<i64>> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let row = db.query_opt(
        "INSERT INTO leader_lease AS l (name, holder, generation, expires_at) \
         VALUES ('leader', $1, 1, now() + $2::BIGINT * interval '1 millisecond') \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_at = excluded.expires_at, \
         generation = CASE WHEN l.expires_at <= now() THEN l.generation + 1 \
             ELSE l.generation END \
         WHERE l.expires_at <= now() OR (l.holder = $1 AND l.generation = $3) \
         RETURNING generation",
        &[&holder, &ttl_ms, &generation.unwrap_or(0)],
    )?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(Into::into)
}

/// Ends `holder`'s lease at once (clean shutdown), so a standby need not
/// wait for it to expire.
pub(super) fn release(db: &mut impl GenericClient, holder: &str, generation: i64) -> PgResult<()> {
    db.execute(
        "UPDATE leader_lease SET expires_at = now() WHERE name = 'leader' \
         AND holder = $1 AND generation = $2",
        &[&holder, &generation],
    )?;
    Ok(())
}
