//! Retention: how far back `delivery.keep_sent`, `delivery.keep_fired` and
//! `outbox purge --sent-before` reach, and the prune both `run` (hourly) and
//! `once` (every call) perform. Any duration is accepted: one longer than
//! chrono's calendar (`1000000y`) reaches back to its start, which means
//! "keep everything", instead of overflowing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::DeliveryConfig;
use crate::domain::AccountId;
use crate::store::Store;

/// `now - keep`, saturating at the earliest time chrono represents.
pub fn cutoff(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Rows of each kind one prune round deletes at most, so a round's
/// transaction stays short however large the backlog.
pub const PRUNE_BATCH: usize = 5_000;

/// Deletes sent/skipped deliveries older than `keep_sent` and fired records
/// older than `keep_fired`, in at most `rounds` rounds of [`PRUNE_BATCH`]
/// (`once` does one round per call: bounded work; `run` catches up on a
/// large backlog hourly); logs what it removed. A failure is logged and
/// left for the next prune: it never stops a poll or a delivery.
pub fn prune(
    store: &dyn Store,
    account: &AccountId,
    delivery: &DeliveryConfig,
    now: DateTime<Utc>,
    rounds: usize,
) {
    let sent_before = cutoff(now, delivery.keep_sent);
    let fired_before = cutoff(now, delivery.keep_fired);
    let (mut deliveries, mut fired) = (0, 0);
    for _ in 0..rounds {
        match store.prune(account, sent_before, fired_before, PRUNE_BATCH) {
            Ok((d, f)) => {
                (deliveries, fired) = (deliveries + d, fired + f);
                if d < PRUNE_BATCH && f < PRUNE_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune old records");
                break;
            }
        }
    }
    if deliveries + fired > 0 {
        tracing::info!(deliveries, fired, "pruned old records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_ordinary_keep_reaches_back_exactly_that_far() {
        let keep = Duration::from_secs(30 * 86_400);
        assert_eq!(cutoff(now(), keep), now() - chrono::Duration::days(30));
    }

    #[test]
    fn an_absurd_keep_saturates_at_the_start_of_time_instead_of_panicking() {
        let million_years = humantime::parse_duration("1000000y").unwrap();
        assert_eq!(cutoff(now(), million_years), DateTime::<Utc>::MIN_UTC);
        assert_eq!(cutoff(now(), Duration::MAX), DateTime::<Utc>::MIN_UTC);
    }
}
