//! The one dispatcher for every sink: takes due deliveries from the outbox,
//! sends each through its sink under the sink's concurrency limit, and records
//! the outcome (sent, retry at a backoff time, dead). The outbox is the only
//! queue, so a crash loses nothing and a retry waits in the state file.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeliveryConfig, SinkConfig};
use crate::domain::{AccountId, Delivery, DeliveryId};
use crate::sinks::{SendError, Sinks};
use crate::store::{AttemptOutcome, Store, StoreError};

/// How many due deliveries are taken from the outbox per round, and the most
/// that `run` keeps in flight (spawned, waiting for a permit or sending).
const BATCH: usize = 256;

/// `run` takes more from the outbox only once its in-flight tasks drop to
/// this. Taking after every completed send re-read (and re-decoded) every
/// row still in flight each time: quadratic in a burst (1,000 deliveries
/// cost ~1.8 s of CPU, see BENCHMARKS.md).
const REFILL_BELOW: usize = BATCH / 2;

/// Retry arithmetic: exponential backoff from `backoff_initial`, doubling up
/// to `backoff_max`, with jitter; dead after `max_attempts`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(d: &DeliveryConfig) -> Self {
        RetryPolicy {
            max_attempts: d.max_attempts,
            initial: d.backoff_initial,
            max: d.backoff_max,
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait after attempt number `attempt` (1-based).
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max)
    }

    /// The wait after attempt `attempt`: uniformly random between the initial
    /// backoff and the ceiling, so many failing deliveries spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff_ceiling(attempt);
        let floor = self.initial.min(ceiling);
        let span = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(fastrand::u64(0..=span))
    }

    /// What to record after attempt number `attempt` ended with `result`.
    pub fn outcome(
        &self,
        attempt: u32,
        result: &Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> AttemptOutcome {
        let (error, wait) = match result {
            Ok(()) => return AttemptOutcome::Sent,
            Err(SendError::Permanent(message)) => {
                return AttemptOutcome::Dead {
                    error: message.clone(),
                }
            }
            Err(SendError::Retryable(message)) => (message.clone(), self.backoff(attempt)),
            Err(e @ SendError::RetryAfter { after, .. }) => (e.to_string(), *after),
        };
        if attempt >= self.max_attempts {
            return AttemptOutcome::Dead {
                error: format!("gave up after {attempt} attempts: {error}"),
            };
        }
        let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        AttemptOutcome::Retry {
            error,
            next_attempt_at: now.checked_add_signed(wait).unwrap_or(now),
        }
    }
}

/// The time the dispatcher schedules by. `Tokio` follows tokio's clock, so
/// tests with `tokio::time::pause()` see retries happen at virtual times.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Tokio {
        wall_at_start: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that starts at the current wall time and then advances with
    /// tokio's (possibly paused) time.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            wall_at_start: Utc::now(),
            start: tokio::time::Instant::now(),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio {
                wall_at_start,
                start,
            } => {
                let elapsed = chrono::Duration::from_std(start.elapsed()).unwrap_or_default();
                *wall_at_start + elapsed
            }
        }
    }
}

type RateLimiter = governor::DefaultDirectRateLimiter;

/// A sink's limits: sends in flight, and optionally sends per period.
struct SinkLimits {
    in_flight: Arc<Semaphore>,
    rate: Option<RateLimiter>,
}

impl SinkLimits {
    fn new(sink: &SinkConfig) -> Self {
        let rate = sink.rate_limit.and_then(|(count, period)| {
            let burst = NonZeroU32::new(count)?;
            let quota = governor::Quota::with_period(period / count)?.allow_burst(burst);
            Some(governor::RateLimiter::direct(quota))
        });
        SinkLimits {
            in_flight: Arc::new(Semaphore::new(sink.concurrency)),
            rate,
        }
    }
}

/// Sends deliveries. Cheap to clone (shared state behind `Arc`s).
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    /// Whose outbox this dispatcher drains (the single account of a v0.1 config).
    account: AccountId,
    sinks: Arc<Sinks>,
    policy: RetryPolicy,
    limits: Arc<HashMap<String, SinkLimits>>,
    in_flight: Arc<Mutex<HashSet<DeliveryId>>>,
    clock: Clock,
}

/// What one round of `drain_due` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainSummary {
    pub sent: usize,
    pub retrying: usize,
    pub dead: usize,
}

impl DrainSummary {
    /// True when every attempted delivery was delivered.
    pub fn all_sent(&self) -> bool {
        self.retrying == 0 && self.dead == 0
    }

    fn add(&mut self, outcome: &AttemptOutcome) {
        match outcome {
            AttemptOutcome::Sent => self.sent += 1,
            AttemptOutcome::Retry { .. } => self.retrying += 1,
            AttemptOutcome::Dead { .. } => self.dead += 1,
        }
    }
}

impl Dispatcher {
    /// Ends the sinks' open sessions (SMTP QUIT); for `once`, before exit.
    pub async fn close_sinks(&self) {
        self.sinks.close().await;
    }

    /// A dispatcher over the configured sinks, each limited to its
    /// `concurrency`.
    pub fn new(config: &Config, store: Arc<dyn Store>, sinks: Arc<Sinks>) -> Self {
        let limits = config
            .sinks
            .values()
            .map(|s| (s.name.clone(), SinkLimits::new(s)))
            .collect();
        Dispatcher {
            store,
            account: AccountId::default_account(),
            sinks,
            policy: RetryPolicy::from(&config.delivery),
            limits: Arc::new(limits),
            in_flight: Arc::default(),
            clock: Clock::System,
        }
    }

    /// The same dispatcher scheduling by another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// One attempt for every delivery due now (what `once` does): no waiting
    /// out backoffs.
    pub async fn drain_due(&self) -> Result<DrainSummary, StoreError> {
        let mut summary = DrainSummary::default();
        let start = self.clock.now();
        let mut attempted: HashSet<DeliveryId> = HashSet::new();
        loop {
            let batch = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                let exclude: HashSet<DeliveryId> = in_flight.union(&attempted).copied().collect();
                self.store
                    .due_deliveries(&self.account, start, BATCH, &exclude)?
            };
            if batch.is_empty() {
                return Ok(summary);
            }
            let mut tasks = JoinSet::new();
            for delivery in batch {
                attempted.insert(delivery.id);
                let this = self.clone();
                tasks.spawn(async move { this.deliver(delivery).await });
            }
            while let Some(joined) = tasks.join_next().await {
                if let Ok(outcome) = joined {
                    summary.add(&outcome?);
                }
            }
        }
    }

    /// Delivers continuously until `shutdown`: due deliveries are sent as
    /// their time comes; `wake` is notified when a poll enqueued new ones. On
    /// shutdown, sends in flight get `grace` to finish; the rest stay pending.
    pub async fn run(&self, shutdown: CancellationToken, wake: Arc<Notify>, grace: Duration) {
        let mut tasks = JoinSet::new();
        loop {
            if tasks.len() <= REFILL_BELOW {
                match self.take_due(self.clock.now(), BATCH - tasks.len()) {
                    Ok(due) => {
                        for delivery in due {
                            let this = self.clone();
                            tasks.spawn(async move { this.deliver(delivery).await });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
                }
            }
            let sleep = self.until_next_due();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "sends still in flight after the shutdown grace period; they stay pending"
            );
        }
    }

    fn until_next_due(&self) -> Duration {
        let cap = Duration::from_secs(30);
        match self.store.next_due_at(&self.account) {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(cap),
            _ => cap,
        }
        .max(Duration::from_millis(20))
    }

    /// At most `limit` due deliveries not already being sent, marked as in
    /// flight.
    fn take_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let due = self
            .store
            .due_deliveries(&self.account, now, limit, &in_flight)?;
        in_flight.extend(due.iter().map(|d| d.id));
        Ok(due)
    }

    /// One attempt for one delivery, recorded in the outbox and logged.
    pub async fn deliver(&self, delivery: Delivery) -> Result<AttemptOutcome, StoreError> {
        let limits = self.limits.get(&delivery.sink);
        let permit = match limits {
            Some(limits) => Some(limits.in_flight.clone().acquire_owned().await),
            None => None,
        };
        if let Some(rate) = limits.and_then(|l| l.rate.as_ref()) {
            rate.until_ready().await;
        }
        let started = tokio::time::Instant::now();
        // The bot's own record of a send starting (the HTTP and SMTP
        // libraries' logs are muted: they can carry webhook tokens).
        tracing::debug!(
            delivery = delivery.id.0,
            sink = %delivery.sink,
            item = %delivery.subject,
            attempt = delivery.attempts + 1,
            "sending"
        );
        let result = match self.sinks.get(&delivery.sink) {
            Some(sink) => sink.send(&delivery).await,
            None => Err(SendError::Permanent(format!(
                "sink {:?} is not configured or is disabled",
                delivery.sink
            ))),
        };
        drop(permit);
        let latency = started.elapsed();
        let attempt = delivery.attempts + 1;
        let now = self.clock.now();
        let outcome = self.policy.outcome(attempt, &result, now);
        log_attempt(&delivery, attempt, &outcome, latency);
        let recorded =
            self.store
                .record_attempt(&self.account, delivery.id, &outcome, now, latency);
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&delivery.id);
        recorded.map(|()| outcome)
    }
}

fn log_attempt(delivery: &Delivery, attempt: u32, outcome: &AttemptOutcome, latency: Duration) {
    let latency_ms = latency.as_millis() as u64;
    crate::telemetry::delivery_attempted(&delivery.sink, outcome.as_str());
    let item = delivery.subject.to_string();
    let (id, sink, item, event) = (
        delivery.id.0,
        delivery.sink.as_str(),
        item.as_str(),
        delivery.event.as_str(),
    );
    match outcome {
        AttemptOutcome::Sent => tracing::info!(
            delivery = id,
            sink,
            item,
            event,
            attempt,
            outcome = "sent",
            latency_ms,
            "delivery attempt"
        ),
        AttemptOutcome::Retry {
            error,
            next_attempt_at,
        } => tracing::warn!(
            delivery = id, sink, item, event, attempt, outcome = "retry", latency_ms,
            error = %error, next_attempt_at = %next_attempt_at.to_rfc3339(),
            "delivery attempt"
        ),
        AttemptOutcome::Dead { error } => tracing::error!(
            delivery = id, sink, item, event, attempt, outcome = "dead", latency_ms,
            error = %error, "delivery attempt"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Disposition, EventKind, ExportId, NewDelivery, Snapshot};
    use crate::sinks::scripted::ScriptedSink;
    use crate::sinks::Sink;
    use crate::store::{PollCommit, SqliteStore};

    /// A dispatcher over one scripted sink `s`, with one pending delivery.
    fn dispatcher_with(
        script: Vec<Result<(), SendError>>,
        dir: &tempfile::TempDir,
    ) -> (Dispatcher, Arc<ScriptedSink>) {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let clock = Clock::tokio();
        let delivery = NewDelivery {
            item_id: ExportId(1),
            event: EventKind::Downloadable,
            sink: "s".into(),
            recipient: None,
            message: Default::default(),
            disposition: Disposition::Pending,
        };
        let snapshot = Snapshot::default();
        store
            .commit_poll(&PollCommit {
                account: &AccountId::default_account(),
                previous: None,
                snapshot: &snapshot,
                changes: None,
                fired: &[(ExportId(1), EventKind::Downloadable)],
                deliveries: &[delivery],
                now: clock.now(),
            })
            .unwrap();
        let sink = Arc::new(ScriptedSink::new(script));
        let sinks = Sinks::from_sinks([("s".to_string(), Sink::Scripted(sink.clone()))].into());
        let dispatcher = Dispatcher {
            store,
            account: AccountId::default_account(),
            sinks: Arc::new(sinks),
            policy: policy(),
            limits: Arc::default(),
            in_flight: Arc::default(),
            clock,
        };
        (dispatcher, sink)
    }

    async fn run_until_calls(dispatcher: &Dispatcher, sink: &ScriptedSink, calls: usize) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (d, s) = (dispatcher.clone(), shutdown.clone());
            async move {
                d.run(s, Arc::new(Notify::new()), Duration::from_secs(1))
                    .await
            }
        });
        for _ in 0..10_000 {
            if sink.calls().len() >= calls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }

    fn gaps(calls: &[tokio::time::Instant]) -> Vec<u128> {
        calls
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_the_backoff_and_retry_after_in_virtual_time() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![
            Err(SendError::Retryable("HTTP 500".into())),
            Err(SendError::RetryAfter {
                after: Duration::from_secs(120),
                message: "HTTP 429".into(),
            }),
        ];
        let (dispatcher, sink) = dispatcher_with(script, &dir);
        run_until_calls(&dispatcher, &sink, 3).await;
        let gaps = gaps(&sink.calls());
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert!(
            (2_000..2_100).contains(&gaps[0]),
            "backoff after attempt 1: {gaps:?}"
        );
        assert!(
            (120_000..120_100).contains(&gaps[1]),
            "Retry-After honoured: {gaps:?}"
        );
        let delivery = dispatcher
            .store
            .get_delivery(&dispatcher.account, DeliveryId(1))
            .unwrap()
            .unwrap();
        assert_eq!(delivery.status, crate::domain::DeliveryStatus::Sent);
        assert_eq!(delivery.attempts, 3);
    }

    #[test]
    fn a_rate_limit_allows_its_burst_then_holds_back() {
        let sink = SinkConfig {
            name: "s".into(),
            kind: crate::config::SinkKind::Console,
            enabled: true,
            concurrency: 2,
            rate_limit: Some((3, Duration::from_secs(60))),
            vars: Default::default(),
        };
        let limits = SinkLimits::new(&sink);
        let rate = limits.rate.expect("a limiter");
        assert!((0..3).all(|_| rate.check().is_ok()));
        assert!(
            rate.check().is_err(),
            "the 4th send within the minute waits"
        );
        assert_eq!(limits.in_flight.available_permits(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_goes_dead_at_once_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![Err(SendError::Permanent(
            "HTTP 400: invalid_payload".into(),
        ))];
        let (dispatcher, sink) = dispatcher_with(script, &dir);
        run_until_calls(&dispatcher, &sink, 1).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(sink.calls().len(), 1);
        let delivery = dispatcher
            .store
            .get_delivery(&dispatcher.account, DeliveryId(1))
            .unwrap()
            .unwrap();
        assert_eq!(delivery.status, crate::domain::DeliveryStatus::Dead);
        assert_eq!(
            delivery.last_error.as_deref(),
            Some("HTTP 400: invalid_payload")
        );
    }

    #[tokio::test]
    async fn drain_due_attempts_every_due_delivery_once_even_past_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let failing = vec![Err(SendError::RetryAfter {
            after: Duration::ZERO,
            message: "HTTP 429".into(),
        })];
        let (dispatcher, sink) = dispatcher_with(failing, &dir);
        let more: Vec<NewDelivery> = (2..=BATCH as i64 + 50)
            .map(|id| NewDelivery {
                item_id: ExportId(id),
                event: EventKind::Downloadable,
                sink: "s".into(),
                recipient: None,
                message: Default::default(),
                disposition: Disposition::Pending,
            })
            .collect();
        dispatcher
            .store
            .enqueue(&dispatcher.account, &more, dispatcher.clock.now())
            .unwrap();
        let summary = dispatcher.drain_due().await.unwrap();
        assert_eq!(
            sink.calls().len(),
            BATCH + 50,
            "each due delivery exactly once"
        );
        assert_eq!(summary.sent, BATCH + 49);
        assert_eq!(
            summary.retrying, 1,
            "a zero Retry-After is not retried within the same drain"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_run_out_after_max_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let script = vec![Err(SendError::Retryable("HTTP 503".into())); 5];
        let (dispatcher, sink) = dispatcher_with(script, &dir);
        run_until_calls(&dispatcher, &sink, 3).await;
        let before = sink.calls().len();
        assert_eq!(before, 3);
        let delivery = dispatcher
            .store
            .get_delivery(&dispatcher.account, DeliveryId(1))
            .unwrap()
            .unwrap();
        assert_eq!(delivery.status, crate::domain::DeliveryStatus::Dead);
        assert!(delivery
            .last_error
            .unwrap()
            .contains("gave up after 3 attempts"));
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(10),
        }
    }

    fn now() -> DateTime<Utc> {
        "2024-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_inside_it() {
        let p = policy();
        let ceilings: Vec<u64> = (1..=5).map(|n| p.backoff_ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [2, 4, 8, 10, 10]);
        for n in 1..=5 {
            for _ in 0..50 {
                let d = p.backoff(n);
                assert!(d >= p.initial && d <= p.backoff_ceiling(n), "{n}: {d:?}");
            }
        }
    }

    #[test]
    fn outcomes_follow_the_error_class() {
        let p = policy();
        assert_eq!(p.outcome(1, &Ok(()), now()), AttemptOutcome::Sent);
        let dead = p.outcome(1, &Err(SendError::Permanent("HTTP 400: bad".into())), now());
        assert_eq!(
            dead,
            AttemptOutcome::Dead {
                error: "HTTP 400: bad".into()
            }
        );
        match p.outcome(1, &Err(SendError::Retryable("HTTP 500".into())), now()) {
            AttemptOutcome::Retry {
                next_attempt_at, ..
            } => {
                assert!(next_attempt_at >= now() + chrono::Duration::seconds(2));
                assert!(next_attempt_at <= now() + chrono::Duration::seconds(2));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_overrides_the_backoff() {
        let p = policy();
        let err = SendError::RetryAfter {
            after: Duration::from_secs(120),
            message: "HTTP 429".into(),
        };
        match p.outcome(2, &Err(err), now()) {
            AttemptOutcome::Retry {
                next_attempt_at, ..
            } => {
                assert_eq!(next_attempt_at, now() + chrono::Duration::seconds(120));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn attempts_run_out_into_dead_with_the_last_reason() {
        let p = policy();
        let outcome = p.outcome(3, &Err(SendError::Retryable("HTTP 503".into())), now());
        assert_eq!(
            outcome,
            AttemptOutcome::Dead {
                error: "gave up after 3 attempts: HTTP 503".into()
            }
        );
    }
}
