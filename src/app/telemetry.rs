//! Prometheus metrics (`crayon_export_bot_*`) and the health state that
//! `/livez` and `/healthz` report. Recording is a no-op until a recorder is
//! installed, so commands without `[server]` pay nothing.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{DeliveryStatus, EventKind};

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

/// A successful poll: its duration, the queue size and when it happened.
pub fn poll_succeeded(duration: Duration, items: usize, at: DateTime<Utc>) {
    metrics::counter!("crayon_export_bot_polls_total", "outcome" => "ok").increment(1);
    metrics::histogram!(POLL_DURATION).record(duration.as_secs_f64());
    metrics::gauge!("crayon_export_bot_queue_items").set(items as f64);
    metrics::gauge!("crayon_export_bot_last_success_timestamp_seconds")
        .set(at.timestamp_millis() as f64 / 1000.0);
}

/// A failed poll.
pub fn poll_failed(duration: Duration) {
    metrics::counter!("crayon_export_bot_polls_total", "outcome" => "error").increment(1);
    metrics::histogram!(POLL_DURATION).record(duration.as_secs_f64());
}

/// An event that fired (after the at-most-once filter).
pub fn event_fired(kind: EventKind) {
    metrics::counter!("crayon_export_bot_events_total", "event" => kind.as_str()).increment(1);
}

/// One delivery attempt's outcome (`sent`, `retry`, `dead`).
pub fn delivery_attempted(sink: &str, outcome: &'static str) {
    metrics::counter!("crayon_export_bot_deliveries_total", "sink" => sink.to_string(), "outcome" => outcome)
        .increment(1);
}

/// The outbox's pending and dead counts per sink, as gauges.
pub fn outbox_counts(counts: &[(String, DeliveryStatus, u64)], sinks: &[String]) {
    for sink in sinks {
        let count = |status| {
            counts
                .iter()
                .filter(|(s, st, _)| s == sink && *st == status)
                .map(|(_, _, n)| *n)
                .sum::<u64>() as f64
        };
        metrics::gauge!("crayon_export_bot_outbox_pending", "sink" => sink.clone())
            .set(count(DeliveryStatus::Pending));
        metrics::gauge!("crayon_export_bot_outbox_dead", "sink" => sink.clone())
            .set(count(DeliveryStatus::Dead));
    }
}

/// What the health endpoints report, updated by the poll loop.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    interval: Duration,
    inner: Mutex<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    last_tick: Instant,
    last_success: Option<Instant>,
    last_error: Option<String>,
    stopped: bool,
}

/// The `/healthz` verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Starting,
    Failing(String),
}

impl Health {
    /// Health for a poll loop running every `interval`.
    pub fn new(interval: Duration) -> Self {
        let now = Instant::now();
        Health {
            started: now,
            interval,
            inner: Mutex::new(HealthInner {
                last_tick: now,
                last_success: None,
                last_error: None,
                stopped: false,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HealthInner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The poll loop finished a poll.
    pub fn polled(&self, result: Result<(), String>) {
        self.with(|h| {
            h.last_tick = Instant::now();
            match result {
                Ok(()) => {
                    h.last_success = Some(h.last_tick);
                    h.last_error = None;
                }
                Err(e) => h.last_error = Some(e),
            }
        });
    }

    /// The poll loop ended (shutdown).
    pub fn stopped(&self) {
        self.with(|h| h.stopped = true);
    }

    /// Alive: the loop runs and has ticked recently (failed polls back off
    /// up to 10 × interval, so that is allowed, plus a margin).
    pub fn alive(&self) -> bool {
        let limit = self.interval * 11 + Duration::from_secs(60);
        self.with(|h| !h.stopped && h.last_tick.elapsed() <= limit)
    }

    /// Healthy while the last successful poll is younger than 3 × interval;
    /// `Starting` during the first 3 intervals.
    pub fn verdict(&self) -> Verdict {
        let window = self.interval * 3;
        self.with(|h| match h.last_success {
            Some(at) if at.elapsed() <= window => Verdict::Ok,
            None if self.started.elapsed() <= window => Verdict::Starting,
            last => Verdict::Failing(match (&h.last_error, last) {
                (Some(e), _) => format!(
                    "no successful poll for {}s; last error: {e}",
                    since(last, self.started)
                ),
                (None, _) => format!("no successful poll for {}s", since(last, self.started)),
            }),
        })
    }
}

fn since(last: Option<Instant>, started: Instant) -> u64 {
    last.unwrap_or(started).elapsed().as_secs()
}

#[cfg(test)]
mod tests {
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
}
