//! The one dispatcher for every sink: takes due deliveries from the outbox,
//! sends each through its sink under the sink's concurrency limit, and records
//! the outcome (sent, retry at a backoff time, dead). The outbox is the only
//! queue, so a crash loses nothing and a retry waits in the state file.
//!
//! `run` keeps a window per sink (`lanes`), so a slow or hung sink holds back
//! only its own deliveries; `attempt` is one send and its bookkeeping, made
//! so that nothing a sink does (panic included) loses the attempt.

mod attach;
mod attempt;
mod digest;
mod lanes;
mod quiet;
mod run;
mod writer;

pub use quiet::QuietPlan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use attach::Attacher;

use crate::config::{Config, DeliveryConfig, SinkConfig};
use crate::domain::{AccountId, Delivery, DeliveryId};
use crate::render::Renderer;
use crate::sinks::{SendError, Sinks};
use crate::store::{AttemptOutcome, Store, StoreError};

/// How many due deliveries `drain_due` takes from the outbox per round, and
/// the most that `run` keeps in flight per sink (spawned, waiting for the
/// sink's permit or sending).
const BATCH: usize = 256;

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
    /// A server-given wait (Retry-After, Discord's `retry_after`) is honoured
    /// up to `backoff_max`: a server asking for years must not park the
    /// delivery forever.
    pub fn outcome(
        &self,
        attempt: u32,
        result: &Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> AttemptOutcome {
        let (error, wait) = match result {
            Ok(()) => return AttemptOutcome::Sent,
            Err(SendError::Skip(reason)) => {
                return AttemptOutcome::Skipped {
                    reason: reason.clone(),
                }
            }
            Err(SendError::Permanent(message)) => {
                return AttemptOutcome::Dead {
                    error: message.clone(),
                }
            }
            Err(SendError::Retryable(message)) => (message.clone(), self.backoff(attempt)),
            Err(e @ SendError::RetryAfter { after, .. }) if *after <= self.max => {
                (e.to_string(), *after)
            }
            Err(SendError::RetryAfter { message, .. }) => (
                format!(
                    "{message} (retry after more than delivery.backoff_max; waiting {})",
                    humantime::format_duration(self.max)
                ),
                self.max,
            ),
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
    /// The settings these limits were made from, so a reload that keeps
    /// them keeps the limits too (sends started before it count).
    settings: (usize, Option<(u32, Duration)>),
    in_flight: Arc<Semaphore>,
    /// Attempts started and not yet recorded: [`UNRECORDED_PER_SLOT`] ×
    /// `concurrency`. A slot is freed when its outcome is queued for the
    /// write, so sends overlap writes; this bounds what a crash can send
    /// twice.
    unrecorded: Arc<Semaphore>,
    rate: Option<RateLimiter>,
}

/// How many attempts per sink slot may be started and not yet recorded
/// (sending, or sent with the write pending).
const UNRECORDED_PER_SLOT: usize = 2;

impl SinkLimits {
    fn new(sink: &SinkConfig) -> Self {
        let rate = sink.rate_limit.and_then(|(count, period)| {
            let burst = NonZeroU32::new(count)?;
            let quota = governor::Quota::with_period(period / count)?.allow_burst(burst);
            Some(governor::RateLimiter::direct(quota))
        });
        SinkLimits {
            settings: (sink.concurrency, sink.rate_limit),
            in_flight: Arc::new(Semaphore::new(sink.concurrency)),
            unrecorded: Arc::new(Semaphore::new(sink.concurrency * UNRECORDED_PER_SLOT)),
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
    /// The templates, for messages rendered again at send time (from the
    /// context stored with each delivery).
    renderer: Arc<Renderer>,
    /// The sinks with a `digest` window, by name (their config: kind and
    /// templates for the digest message).
    digests: Arc<HashMap<String, SinkConfig>>,
    policy: RetryPolicy,
    limits: Arc<HashMap<String, Arc<SinkLimits>>>,
    in_flight: Arc<Mutex<HashSet<DeliveryId>>>,
    clock: Clock,
    grace: Duration,
    /// Sends start only while this process leads (always, without a lease).
    leading: crate::app::leading::Leading,
    /// Each sink's settings (`attach`, and for the message rendered again).
    configs: Arc<BTreeMap<String, SinkConfig>>,
    /// Downloads export files for `attach = true` sinks; `None`: none attach.
    attacher: Option<Attacher>,
    /// The largest `attach_max` of any sink: the one download serves all.
    attach_cap: u64,
    /// Finished attempts waiting to be written, in batches (`writer`).
    writes: Arc<writer::Writes>,
    /// Each sink's quiet time, per recipient zone.
    quiet: Arc<QuietPlan>,
    /// The deliveries held for quiet hours (the gauge), kept across reloads.
    held: quiet::Held,
}

/// What one round of `drain_due` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainSummary {
    pub sent: usize,
    pub retrying: usize,
    pub dead: usize,
    /// Not attempted: held until their quiet hours end (not a failure).
    pub deferred: usize,
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
            AttemptOutcome::Skipped { .. } => {}
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
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        sinks: Arc<Sinks>,
        renderer: Arc<Renderer>,
    ) -> Self {
        let limits = config
            .sinks
            .values()
            .map(|s| (s.name.clone(), Arc::new(SinkLimits::new(s))))
            .collect();
        Dispatcher {
            store,
            account: AccountId::default_account(),
            sinks,
            renderer,
            digests: Arc::new(
                config
                    .sinks
                    .values()
                    .filter(|s| s.digest.is_some())
                    .map(|s| (s.name.clone(), s.clone()))
                    .collect(),
            ),
            policy: RetryPolicy::from(&config.delivery),
            limits: Arc::new(limits),
            in_flight: Arc::default(),
            clock: Clock::System,
            grace: config.delivery.shutdown_grace,
            leading: crate::app::leading::Leading::always(),
            attach_cap: config
                .sinks
                .values()
                .filter_map(|s| s.attach.map(|a| a.max))
                .max()
                .unwrap_or(0),
            configs: Arc::new(config.sinks.clone()),
            attacher: None,
            writes: Arc::default(),
            quiet: Arc::new(QuietPlan::new(config)),
            held: quiet::Held::default(),
        }
    }

    /// The same dispatcher sending export files with the messages of
    /// `attach = true` sinks.
    pub fn with_attacher(mut self, attacher: Attacher) -> Self {
        self.attacher = Some(attacher);
        self
    }

    /// The same dispatcher draining `account`'s outbox: the sinks, their
    /// limits (sends in flight, rate) and the record of sends in flight stay
    /// shared, so every account's deliveries to one sink count against the
    /// one `concurrency` and `rate_limit` of that sink.
    pub fn for_account(&self, account: &AccountId) -> Self {
        let mut this = self.clone();
        this.account = account.clone();
        this
    }

    /// Whose outbox this dispatcher drains.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The templates, for a message rendered again at send time.
    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.renderer
    }

    /// The same dispatcher scheduling by another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same dispatcher sending only while `leading` is open (`run`
    /// with a shared state: a standby or a stale leader sends nothing).
    pub fn with_leading(mut self, leading: crate::app::leading::Leading) -> Self {
        self.leading = leading;
        self
    }

    /// `self` (a reloaded config) taking over from `old`: the same record of
    /// sends in flight, and the same limits for each sink whose `concurrency`
    /// and `rate_limit` did not change, so sends still running under the old
    /// config count against them.
    pub(crate) fn succeeding(mut self, old: &Dispatcher) -> Self {
        let limits = self
            .limits
            .iter()
            .map(|(name, new)| match old.limits.get(name) {
                Some(kept) if kept.settings == new.settings => (name.clone(), kept.clone()),
                _ => (name.clone(), new.clone()),
            })
            .collect();
        self.limits = Arc::new(limits);
        self.in_flight = old.in_flight.clone();
        self.clock = old.clock.clone();
        self.leading = old.leading.clone();
        self.writes = old.writes.clone();
        self.held = old.held.clone();
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
                if self.hold_if_quiet(&delivery)?.is_some() {
                    summary.deferred += 1;
                    continue;
                }
                let this = self.clone();
                tasks.spawn(async move { this.deliver(delivery).await });
            }
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(outcome) => summary.add(&outcome?),
                    Err(e) => {
                        tracing::error!(error = %e, "a delivery task failed; it stays pending");
                        summary.retrying += 1;
                    }
                }
            }
        }
    }

    /// Delivers continuously until `shutdown`: due deliveries are sent as
    /// their time comes; `wake` is notified when a poll enqueued new ones. On
    /// shutdown, sends in flight get `grace` to finish; the rest stay pending.
    pub async fn run(&self, shutdown: CancellationToken, wake: Arc<Notify>, grace: Duration) {
        let mut this = self.clone();
        this.grace = grace;
        run::Runner::new(this).serve(shutdown, wake, None).await
    }

    /// `run` across reloads: each dispatcher sent on `reloads` (built from a
    /// reloaded config) takes over for the deliveries taken from then on,
    /// while sends already in flight finish under the config they started
    /// with and are recorded, never abandoned and sent again. The grace on
    /// shutdown is the latest config's `shutdown_grace`. It takes `self`, so
    /// once replaced nothing here holds the old sinks (`run` closes them
    /// when their last send is done).
    pub async fn run_with_reloads(
        self,
        shutdown: CancellationToken,
        wake: Arc<Notify>,
        reloads: watch::Receiver<Dispatcher>,
    ) {
        run::Runner::new(self)
            .serve(shutdown, wake, Some(reloads))
            .await
    }

    /// One attempt for one delivery, recorded in the outbox and logged. A
    /// member of a digest window that is not sent now (still gathering, or
    /// led by another member) records nothing and comes back `Skipped`
    /// with the reason, so no summary counts it as a failure.
    pub async fn deliver(&self, delivery: Delivery) -> Result<AttemptOutcome, StoreError> {
        self.deliver_until(delivery, &CancellationToken::new())
            .await
    }
}

fn log_attempt(
    account: &AccountId,
    delivery: &Delivery,
    attempt: u32,
    outcome: &AttemptOutcome,
    latency: Duration,
) {
    let latency_ms = latency.as_millis() as u64;
    crate::app::telemetry::delivery_attempted(account, &delivery.sink, outcome.as_str());
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
            account = %account,
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
            delivery = id, account = %account, sink, item, event, attempt, outcome = "retry", latency_ms,
            error = %error, next_attempt_at = %next_attempt_at.to_rfc3339(),
            "delivery attempt"
        ),
        AttemptOutcome::Dead { error } => tracing::error!(
            delivery = id, account = %account, sink, item, event, attempt, outcome = "dead", latency_ms,
            error = %error, "delivery attempt"
        ),
        AttemptOutcome::Skipped { reason } => tracing::info!(
            delivery = id, account = %account, sink, item, event, attempt, outcome = "skipped", latency_ms,
            reason = %reason, "delivery attempt"
        ),
    }
}

#[cfg(test)]
mod digest_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
