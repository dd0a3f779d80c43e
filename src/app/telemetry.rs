//! Prometheus metrics (`crayon_export_bot_*`) and the health state that
//! `/livez` and `/healthz` report, with the last poll's facts the status page
//! shows. Metric recording is a no-op until a recorder is installed, so
//! commands without `[server]` pay nothing.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::domain::{DeliveryStatus, EventKind};
use crate::status::Role;

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
/// Process-wide like the metrics recorder: one poll loop per process.
static LAST_MEASURE: Mutex<Option<(Duration, Option<usize>)>> = Mutex::new(None);

fn measured(duration: Duration, items: Option<usize>) {
    *LAST_MEASURE.lock().unwrap_or_else(|e| e.into_inner()) = Some((duration, items));
}

/// A successful poll: its duration, the queue size and when it happened.
pub fn poll_succeeded(duration: Duration, items: usize, at: DateTime<Utc>) {
    measured(duration, Some(items));
    metrics::counter!("crayon_export_bot_polls_total", "outcome" => "ok").increment(1);
    metrics::histogram!(POLL_DURATION).record(duration.as_secs_f64());
    metrics::gauge!("crayon_export_bot_queue_items").set(items as f64);
    metrics::gauge!("crayon_export_bot_last_success_timestamp_seconds")
        .set(at.timestamp_millis() as f64 / 1000.0);
}

/// A failed poll.
pub fn poll_failed(duration: Duration) {
    measured(duration, None);
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

/// How many deliveries wait for `reason` (`digest`: gathering in a digest
/// window or waiting with their claimed digest), as a gauge.
pub fn deliveries_deferred(reason: &'static str, count: u64) {
    metrics::gauge!("crayon_deliveries_deferred", "reason" => reason).set(count as f64);
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
    failures: u32,
    last_poll: Option<PollFacts>,
    stopped: bool,
    /// Leading (polls expected) or standing by (no polls, healthy anyway).
    leader: bool,
    /// When polls became expected: start, or the last takeover.
    leading_since: Instant,
}

/// What the status page shows about the latest poll of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollFacts {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// `ok` or `error`.
    pub result: &'static str,
    /// The error, when it failed (as `/healthz` reports it).
    pub error: Option<String>,
    /// Items in the queue, when it succeeded.
    pub items: Option<usize>,
    /// How long it took, when measured.
    pub duration_ms: Option<u64>,
    /// When the next poll is due: one interval later, or the run loop's
    /// backoff after failures (2, 4, 8, then 10 intervals).
    pub next_at: DateTime<Utc>,
}

/// The `/healthz` verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Starting,
    /// Another replica leads; this one polls nothing and is healthy.
    Standby,
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
                failures: 0,
                last_poll: None,
                stopped: false,
                leader: true,
                leading_since: now,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HealthInner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The poll loop finished a poll; its duration and item count come from
    /// [`poll_succeeded`]/[`poll_failed`], called by the poll itself.
    pub fn polled(&self, result: Result<(), String>) {
        let measure = LAST_MEASURE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let interval = self.interval;
        self.with(|h| {
            h.last_tick = Instant::now();
            match &result {
                Ok(()) => {
                    h.last_success = Some(h.last_tick);
                    h.last_error = None;
                    h.failures = 0;
                }
                Err(e) => {
                    h.last_error = Some(e.clone());
                    h.failures = h.failures.saturating_add(1);
                }
            }
            h.last_poll = Some(facts(result, measure, h.failures, interval));
        });
    }

    /// The latest poll's facts; `None` before the first poll ended.
    pub fn last_poll(&self) -> Option<PollFacts> {
        self.with(|h| h.last_poll.clone())
    }

    /// The lease task's verdict: leading or standing by. A takeover starts
    /// a fresh `Starting` window, so the first polls have time to succeed.
    pub fn set_role(&self, leader: bool) {
        self.with(|h| {
            if leader && !h.leader {
                h.leading_since = Instant::now();
                h.last_tick = h.leading_since;
            }
            h.leader = leader;
        });
    }

    /// This replica's role, for `/healthz` and the status page.
    pub fn role(&self) -> Role {
        if self.with(|h| h.leader) {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// The poll loop ended (shutdown).
    pub fn stopped(&self) {
        self.with(|h| h.stopped = true);
    }

    /// Alive: the loop runs and has ticked recently (failed polls back off
    /// up to 10 × interval, so that is allowed, plus a margin).
    pub fn alive(&self) -> bool {
        let limit = self.interval * 11 + Duration::from_secs(60);
        self.with(|h| !h.stopped && (!h.leader || h.last_tick.elapsed() <= limit))
    }

    /// Healthy while the last successful poll is younger than 3 × interval;
    /// `Starting` during the first 3 intervals.
    pub fn verdict(&self) -> Verdict {
        let window = self.interval * 3;
        self.with(|h| match h.last_success {
            _ if !h.leader => Verdict::Standby,
            Some(at) if at.elapsed() <= window => Verdict::Ok,
            _ if h.leading_since.elapsed() <= window && h.failures == 0 => Verdict::Starting,
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

/// One poll's facts. The next poll's time mirrors the run loop's schedule:
/// one interval after a success, `min(2^min(failures, 4), 10)` intervals
/// after failures.
fn facts(
    result: Result<(), String>,
    measure: Option<(Duration, Option<usize>)>,
    failures: u32,
    interval: Duration,
) -> PollFacts {
    let at = Utc::now();
    let factor = match failures {
        0 => 1,
        n => 2u32.saturating_pow(n.min(4)).min(10),
    };
    let wait = chrono::Duration::from_std(interval.saturating_mul(factor))
        .unwrap_or(chrono::Duration::MAX);
    PollFacts {
        at,
        result: if result.is_ok() { "ok" } else { "error" },
        items: measure
            .and_then(|(_, items)| items)
            .filter(|_| result.is_ok()),
        duration_ms: measure.map(|(d, _)| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        error: result.err(),
        next_at: at.checked_add_signed(wait).unwrap_or(at),
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
