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

/// Deletes sent/skipped deliveries older than `keep_sent` and fired records
/// older than `keep_fired`; logs what it removed. A failure is logged and
/// left for the next prune: it never stops a poll or a delivery.
pub fn prune(
    store: &dyn Store,
    account: &AccountId,
    delivery: &DeliveryConfig,
    now: DateTime<Utc>,
) {
    let sent_before = cutoff(now, delivery.keep_sent);
    let fired_before = cutoff(now, delivery.keep_fired);
    match store.prune(account, sent_before, fired_before) {
        Ok((deliveries, fired)) if deliveries + fired > 0 => {
            tracing::info!(deliveries, fired, "pruned old records")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not prune old records"),
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
