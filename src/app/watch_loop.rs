//! One account's poll loop in `run`: its own schedule (first poll offset so
//! that many accounts spread over the interval), its own Crayon client and
//! token cache, failure backoff and streak, alerts and prune. Every account
//! runs as its own task, so one account hanging or refusing credentials
//! delays no other account's polls or deliveries.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::app::alerts::{Alerts, Observation};
use crate::app::leading::Leading;
use crate::app::poll::{PollError, PollReport, Watcher};
use crate::app::telemetry::Health;
use crate::config::Config;
use crate::crayon::CrayonClient;
use crate::domain::AccountId;
use crate::render::Renderer;
use crate::retention;
use crate::store::{Store, StoreError};

/// How often `run` prunes old sent deliveries and fired records.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prune rounds `run` does at start and hourly: enough to catch up on a
/// large backlog (`once` does one per call).
const RUN_PRUNE_ROUNDS: usize = 100;

/// What one account's loop polls with; a reload sends it a new one.
#[derive(Clone)]
pub struct AccountParts {
    pub id: AccountId,
    pub interval: Duration,
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub renderer: Arc<Renderer>,
    pub client: Arc<CrayonClient>,
}

impl AccountParts {
    /// A fresh watcher over these parts (no snapshot loaded yet).
    pub fn watcher(&self) -> Watcher {
        Watcher::new(
            self.config.clone(),
            self.client.clone(),
            self.store.clone(),
            self.renderer.clone(),
        )
        .for_account(&self.id)
    }
}

/// A running account loop: stop it, or hand it a reloaded config.
pub struct AccountLoop {
    stop: CancellationToken,
    parts: watch::Sender<AccountParts>,
    task: tokio::task::JoinHandle<()>,
}

/// What the loop shares with the rest of `run`.
pub struct Shared {
    pub leading: Leading,
    pub health: Arc<Health>,
    /// Notified when this account's outbox got something to send.
    pub wake: Arc<Notify>,
}

impl AccountLoop {
    /// Starts polling `parts.id`, the first poll after `first_in` (the
    /// account's place in the spread over the interval).
    pub fn spawn(
        parts: AccountParts,
        shared: Shared,
        first_in: Duration,
        shutdown: &CancellationToken,
    ) -> AccountLoop {
        let stop = shutdown.child_token();
        let (tx, rx) = watch::channel(parts.clone());
        let state = LoopState::new(parts, shared, None);
        let task = tokio::spawn(state.run(stop.clone(), rx, first_in));
        AccountLoop {
            stop,
            parts: tx,
            task,
        }
    }

    /// The account's next polls use `parts` (and it polls at once, as a
    /// reload always did).
    pub fn reconfigure(&self, parts: AccountParts) {
        self.parts.send_replace(parts);
    }

    /// Asks the loop to stop (see [`AccountLoop::stop`] to wait for it).
    pub fn cancel(&self) {
        self.stop.cancel();
    }

    /// Stops the loop (an account removed by a reload, or shutdown).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The loop's state, kept across reloads where it makes sense.
struct LoopState {
    parts: AccountParts,
    shared: Shared,
    watcher: Watcher,
    streak: FailureStreak,
    /// The last prune; `None` until the first poll as the leader.
    last_prune: Option<tokio::time::Instant>,
    alerts: Option<Alerts>,
    seen: Observation,
}

impl LoopState {
    fn new(parts: AccountParts, shared: Shared, last_prune: Option<tokio::time::Instant>) -> Self {
        let last_success = parts.store.last_success_at(&parts.id).ok().flatten();
        let alerts = Alerts::new(
            &parts.config,
            parts.store.clone(),
            parts.renderer.clone(),
            &parts.id,
        );
        LoopState {
            watcher: parts.watcher(),
            streak: FailureStreak::default(),
            last_prune,
            alerts,
            seen: Observation {
                last_success: last_success.or_else(|| Some(Utc::now())),
                ..Observation::default()
            },
            parts,
            shared,
        }
    }

    async fn run(
        mut self,
        stop: CancellationToken,
        mut reloads: watch::Receiver<AccountParts>,
        first_in: Duration,
    ) {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(first_in) => {}
        }
        loop {
            let standby = !self.shared.leading.open();
            let wait = if standby {
                self.parts.interval
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    wait = self.poll_once() => wait,
                }
            };
            let mut leading = self.shared.leading.clone();
            tokio::select! {
                _ = stop.cancelled() => return,
                Ok(()) = reloads.changed() => {
                    let parts = reloads.borrow_and_update().clone();
                    self = LoopState::new(parts, self.shared, self.last_prune);
                }
                () = leading.changed(), if standby => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One poll as the leader (with the hourly prune); returns the wait
    /// until the next one. A poll refused because the lease was lost is no
    /// failure: no alert, no backoff, the new leader polls.
    async fn poll_once(&mut self) -> Duration {
        let interval = self.parts.interval;
        if self.last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            let (store, delivery) = (self.parts.store.as_ref(), &self.parts.config.delivery);
            retention::prune(
                store,
                &self.parts.id,
                delivery,
                Utc::now(),
                RUN_PRUNE_ROUNDS,
            );
            self.last_prune = Some(tokio::time::Instant::now());
        }
        let result = self.watcher.poll().await;
        if let Err(PollError::State(e @ StoreError::Fenced { .. })) = &result {
            tracing::warn!(account = %self.parts.id, error = %e,
                "lost the leader lease; this poll was not committed");
            return interval;
        }
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        let measure = self.watcher.last_measure();
        self.shared
            .health
            .polled_account(&self.parts.id, outcome, measure);
        if self.observe(&result) {
            self.shared.wake.notify_one();
        }
        match result {
            Ok(report) => {
                self.streak.succeeded(&self.parts.id);
                if report.deliveries > 0 {
                    self.shared.wake.notify_one();
                }
                interval
            }
            Err(e) => self.streak.failed(&e, interval, &self.parts.id),
        }
    }

    /// Feeds one poll's outcome to the alerts; true when alerts were queued.
    fn observe(&mut self, result: &Result<PollReport, PollError>) -> bool {
        let Some(alerts) = self.alerts.as_mut() else {
            return false;
        };
        let now = Utc::now();
        match result {
            Ok(_) => {
                self.seen.last_success = Some(now);
                self.seen.last_error = None;
                self.seen.credentials_refused = false;
            }
            Err(e) => {
                self.seen.last_error = Some(e.to_string());
                self.seen.credentials_refused =
                    matches!(e, PollError::Api(c) if c.is_credentials());
            }
        }
        let store = &self.parts.store;
        self.seen.dead = store
            .dead_count(&self.parts.id, alerts.sink())
            .unwrap_or_default();
        match alerts.evaluate(&self.seen, now) {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(account = %self.parts.id, error = %e, "cannot queue an alert");
                false
            }
        }
    }
}

/// Tracks a run of failed polls: one warning when it starts (with the cause),
/// quieter logs while it lasts, the wait doubling up to 10 × interval.
#[derive(Debug, Default)]
struct FailureStreak {
    failures: u32,
}

impl FailureStreak {
    fn failed(&mut self, error: &PollError, interval: Duration, account: &AccountId) -> Duration {
        self.failures += 1;
        let credentials = matches!(error, PollError::Api(e) if e.is_credentials());
        let table = if *account == AccountId::default_account() {
            "[crayon]".to_string()
        } else {
            format!("[accounts.{account}]")
        };
        match (self.failures, credentials) {
            (1, true) => tracing::error!(
                account = %account,
                error = %error,
                "the Crayon API refuses the credentials; fix {table} and reload or restart"
            ),
            (1, false) => tracing::warn!(account = %account, error = %error,
                "poll failed; retrying with backoff"),
            _ => tracing::debug!(account = %account, error = %error, failures = self.failures,
                "poll failed again"),
        }
        let factor = 2u32.saturating_pow(self.failures.min(4)).min(10);
        interval.saturating_mul(factor)
    }

    fn succeeded(&mut self, account: &AccountId) {
        if self.failures > 0 {
            tracing::info!(account = %account, failures = self.failures, "polls work again");
        }
        self.failures = 0;
    }
}
