//! Prometheus metrics (`crayon_export_bot_*`, labelled by `account`) and
//! the health state that `/livez` and `/healthz` report (in `health`,
//! re-exported here), with the last poll's facts the status page shows. Metric recording is a no-op until a recorder is installed, so
//! commands without `[server]` pay nothing.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use super::health::{Health, Measure, PollFacts, Verdict};
use crate::domain::{AccountId, DeliveryStatus, EventKind};

const POLL_DURATION: &str = "crayon_export_bot_poll_duration_seconds";

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(POLL_DURATION.into()), &buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            metrics::gauge!("crayon_export_bot_build_info", "version" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
            Some(handle)
        })
        .clone()
}

/// The duration and item count of the poll that just ended, recorded where
/// the poll measures them and picked up by [`Health::polled`] right after.
/// Process-wide, for the single-account [`Health::polled`]; the run loop
/// passes each account's measure explicitly instead.
static LAST_MEASURE: Mutex<Option<Measure>> = Mutex::new(None);

fn measured(duration: Duration, items: Option<usize>) {
    *LAST_MEASURE.lock().unwrap_or_else(|e| e.into_inner()) = Some((duration, items));
}

/// The measure of the poll that ended last (taken once).
pub(super) fn take_measure() -> Option<Measure> {
    LAST_MEASURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

/// A successful poll of `account`: its duration, the queue size and when
/// it happened.
pub fn poll_succeeded(account: &AccountId, duration: Duration, items: usize, at: DateTime<Utc>) {
    measured(duration, Some(items));
    let account = account.to_string();
    metrics::counter!("crayon_export_bot_polls_total", "account" => account.clone(), "outcome" => "ok").increment(1);
    metrics::histogram!(POLL_DURATION, "account" => account.clone()).record(duration.as_secs_f64());
    metrics::gauge!("crayon_export_bot_queue_items", "account" => account.clone())
        .set(items as f64);
    metrics::gauge!("crayon_export_bot_last_success_timestamp_seconds", "account" => account)
        .set(at.timestamp_millis() as f64 / 1000.0);
}

/// A failed poll of `account`.
pub fn poll_failed(account: &AccountId, duration: Duration) {
    measured(duration, None);
    let account = account.to_string();
    metrics::counter!("crayon_export_bot_polls_total", "account" => account.clone(), "outcome" => "error").increment(1);
    metrics::histogram!(POLL_DURATION, "account" => account).record(duration.as_secs_f64());
}

/// An event that fired for `account` (after the at-most-once filter).
pub fn event_fired(account: &AccountId, kind: EventKind) {
    metrics::counter!("crayon_export_bot_events_total", "account" => account.to_string(), "event" => kind.as_str()).increment(1);
}

/// One delivery attempt's outcome (`sent`, `retry`, `dead`) for `account`.
pub fn delivery_attempted(account: &AccountId, sink: &str, outcome: &'static str) {
    metrics::counter!("crayon_export_bot_deliveries_total", "account" => account.to_string(), "sink" => sink.to_string(), "outcome" => outcome)
        .increment(1);
}

/// `account`'s outbox pending and dead counts per sink, as gauges.
pub fn outbox_counts(
    account: &AccountId,
    counts: &[(String, DeliveryStatus, u64)],
    sinks: &[String],
) {
    for sink in sinks {
        let count = |status| {
            counts
                .iter()
                .filter(|(s, st, _)| s == sink && *st == status)
                .map(|(_, _, n)| *n)
                .sum::<u64>() as f64
        };
        let account = account.to_string();
        metrics::gauge!("crayon_export_bot_outbox_pending", "account" => account.clone(), "sink" => sink.clone())
            .set(count(DeliveryStatus::Pending));
        metrics::gauge!("crayon_export_bot_outbox_dead", "account" => account, "sink" => sink.clone())
            .set(count(DeliveryStatus::Dead));
    }
}

/// How many of the account's deliveries wait for `reason` (`digest`:
/// gathering in a digest window or waiting with their claimed digest), as a
/// gauge (quiet hours set `reason="quiet_hours"` on the same metric).
pub fn deliveries_deferred(account: &AccountId, reason: &'static str, count: u64) {
    metrics::gauge!("crayon_deliveries_deferred", "account" => account.to_string(), "reason" => reason)
        .set(count as f64);
}

#[cfg(test)]
mod tests {
    use super::super::health::facts;
    use super::*;

    #[test]
    fn health_starts_then_needs_recent_successes() {
        let health = Health::new(Duration::from_millis(20));
        assert_eq!(health.verdict(), Verdict::Starting);
        assert!(health.alive());
        std::thread::sleep(Duration::from_millis(80));
        health.polled(Err("HTTP 500".into()));
        match health.verdict() {
            Verdict::Failing(reason) => assert!(reason.contains("HTTP 500"), "{reason}"),
            other => panic!("{other:?}"),
        }
        health.polled(Ok(()));
        assert_eq!(health.verdict(), Verdict::Ok);
        health.stopped();
        assert!(!health.alive());
    }

    #[test]
    fn poll_facts_carry_the_measure_and_the_next_poll_backs_off_like_the_loop() {
        let interval = Duration::from_secs(60);
        let measure = Some((Duration::from_millis(1234), Some(17)));
        let ok = facts(Ok(()), measure, 0, interval);
        assert_eq!(
            (ok.result, ok.items, ok.duration_ms),
            ("ok", Some(17), Some(1234))
        );
        assert_eq!(ok.next_at - ok.at, chrono::Duration::seconds(60));
        let failed = facts(Err("HTTP 503".into()), measure, 1, interval);
        assert_eq!((failed.result, failed.items), ("error", None));
        assert_eq!(failed.error.as_deref(), Some("HTTP 503"));
        let waits: Vec<_> = (1..=5)
            .map(|n| {
                let f = facts(Err("x".into()), None, n, interval);
                (f.next_at - f.at).num_seconds()
            })
            .collect();
        assert_eq!(waits, [120, 240, 480, 600, 600]);
    }

    /// Other tests in this process may poll too, so only what this Health
    /// decides itself is asserted here (the measure is checked above).
    #[test]
    fn health_keeps_the_last_poll_and_counts_failures() {
        let health = Health::new(Duration::from_secs(60));
        assert_eq!(health.last_poll(), None);
        health.polled(Err("HTTP 503".into()));
        health.polled(Err("HTTP 503".into()));
        let failed = health.last_poll().unwrap();
        assert_eq!(failed.result, "error");
        assert_eq!((failed.next_at - failed.at).num_seconds(), 240);
        health.polled(Ok(()));
        let ok = health.last_poll().unwrap();
        assert_eq!((ok.result, ok.error), ("ok", None));
        assert_eq!((ok.next_at - ok.at).num_seconds(), 60);
    }
}
