//! The `run` loop: poll every interval (backing off while the API fails),
//! deliver continuously through one dispatcher, reload on request, and stop
//! cleanly, letting sends in flight finish within the grace period.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::app::alerts::{Alerts, Observation};
use crate::app::dispatch::Dispatcher;
use crate::app::leading::Leading;
use crate::app::poll::{PollError, PollReport, Watcher};
use crate::app::server;
use crate::app::telemetry::Health;
use crate::config::{Config, ConfigError};
use crate::domain::AccountId;
use crate::leadership::{self, holder_id};
use crate::state_lock::StateLock;
use crate::store::{Store, StoreError};

use super::{App, ServiceError};

/// How often `run` prunes old sent deliveries and fired records.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prune rounds `run` does at start and hourly: enough to catch up on a
/// large backlog (`once` does one per call).
const RUN_PRUNE_ROUNDS: usize = 100;

impl App {
    /// `run`: polls every interval and delivers continuously until
    /// `shutdown`; then lets sends in flight finish within the grace period.
    /// Each request on `reloads` re-reads config and templates: a bad one is
    /// refused (the running config stays), a good one takes effect at the
    /// next poll, pending deliveries untouched; sends in flight finish (and
    /// are recorded) under the config they started with.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reloads: Option<Reloads>,
    ) -> Result<(), ServiceError> {
        let _lock = StateLock::acquire(&self.config.watch.state)?;
        log_startup(&self.config);
        let health = Arc::new(Health::new(self.config.watch.interval));
        let lease = Lease::start(&self, &health);
        self.dispatcher = self.dispatcher.clone().with_leading(lease.leading.clone());
        let server = self.serve(&health, &shutdown).await?;
        let wake = Arc::new(Notify::new());
        let deliveries = self.spawn_dispatcher(&shutdown, &wake);
        let mut poller = Poller::new(&self, lease.leading.clone(), None);
        loop {
            let requests = reloads.as_mut().map(|r| &mut r.requests);
            match self
                .poll_loop(&mut poller, &shutdown, &wake, &health, requests)
                .await
            {
                LoopExit::Shutdown => break,
                LoopExit::Reload => {
                    let Some(next) = reloads.as_ref().and_then(|r| self.reload(r)) else {
                        continue;
                    };
                    deliveries.reconfigure(&next);
                    self = next;
                    poller = Poller::new(&self, lease.leading.clone(), poller.last_prune);
                    tracing::info!("config reloaded; it applies from this poll on");
                }
            }
        }
        health.stopped();
        deliveries.stop().await;
        lease.stop().await;
        if let Some(server) = server {
            let _ = server.await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    async fn serve(
        &self,
        health: &Arc<Health>,
        shutdown: &CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, ServiceError> {
        let Some(listen) = self.config.server_listen else {
            return Ok(None);
        };
        server::serve(
            listen,
            health.clone(),
            self.store.clone(),
            server::Settings::from_config(&self.config),
            shutdown.clone(),
        )
        .await
        .map(Some)
        .map_err(|source| ServiceError::Listen { listen, source })
    }

    /// Starts the one dispatcher loop of this `run`; reloads hand it their
    /// new dispatcher through [`Deliveries::reconfigure`].
    fn spawn_dispatcher(&self, shutdown: &CancellationToken, wake: &Arc<Notify>) -> Deliveries {
        let stop = shutdown.child_token();
        let dispatcher = self.dispatcher.clone();
        let (swap, reloads) = watch::channel(dispatcher.clone());
        let task = tokio::spawn({
            let (stop, wake) = (stop.clone(), wake.clone());
            async move { dispatcher.run_with_reloads(stop, wake, reloads).await }
        });
        Deliveries { stop, swap, task }
    }

    /// Loads and builds the new config; `None` (with an error log) when it
    /// is refused.
    fn reload(&self, reloads: &Reloads) -> Option<App> {
        let result = (reloads.load)()
            .map_err(ServiceError::from)
            .and_then(|config| self.reconfigured(config));
        match result {
            Ok(app) => Some(app),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running config stays");
                None
            }
        }
    }

    async fn poll_loop(
        &self,
        poller: &mut Poller,
        shutdown: &CancellationToken,
        wake: &Notify,
        health: &Health,
        mut reload: Option<&mut mpsc::Receiver<()>>,
    ) -> LoopExit {
        let interval = self.config.watch.interval;
        loop {
            let standby = !poller.leading.open();
            let wait = if standby {
                interval
            } else {
                self.poll_once(poller, wake, health).await
            };
            tokio::select! {
                _ = shutdown.cancelled() => return LoopExit::Shutdown,
                true = next_request(reload.as_deref_mut()) => return LoopExit::Reload,
                () = poller.leading.changed(), if standby => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One poll as the leader (with the hourly prune); returns the wait
    /// until the next one. A poll refused because the lease was lost is no
    /// failure: no alert, no backoff, the new leader polls.
    async fn poll_once(&self, poller: &mut Poller, wake: &Notify, health: &Health) -> Duration {
        let interval = self.config.watch.interval;
        if poller
            .last_prune
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            self.prune(RUN_PRUNE_ROUNDS);
            poller.last_prune = Some(tokio::time::Instant::now());
        }
        let result = poller.watcher.poll().await;
        if let Err(PollError::State(e @ StoreError::Fenced { .. })) = &result {
            tracing::warn!(error = %e, "lost the leader lease; this poll was not committed");
            return interval;
        }
        health.polled(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if poller.observe(&result, &*self.store, &self.account) {
            wake.notify_one();
        }
        match result {
            Ok(report) => {
                poller.streak.succeeded();
                if report.deliveries > 0 {
                    wake.notify_one();
                }
                interval
            }
            Err(e) => poller.streak.failed(&e, interval),
        }
    }
}

/// The leader lease of one `run`: the lease task and the gate following it.
struct Lease {
    leading: Leading,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    follow: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts taking and renewing the lease (SQLite: granted at once).
    fn start(app: &App, health: &Arc<Health>) -> Lease {
        let stop = CancellationToken::new();
        let lease = app.config.watch.lease;
        let (role, task) = leadership::spawn(app.store.clone(), lease, holder_id(), stop.clone());
        let (leading, follow) = Leading::follow(role, lease, health.clone());
        Lease {
            leading,
            stop,
            task,
            follow,
        }
    }

    /// Gives the lease up (after the sends in flight were recorded), so a
    /// standby takes over at once.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = self.follow.await;
    }
}

/// Where reload requests come from (SIGHUP, file changes) and how the new
/// config is read.
pub struct Reloads {
    pub requests: mpsc::Receiver<()>,
    pub load: Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>,
}

/// Why the poll loop returned.
enum LoopExit {
    Shutdown,
    Reload,
}

/// The poll loop's state, kept across refused reloads.
struct Poller {
    watcher: Watcher,
    streak: FailureStreak,
    /// The last prune; `None` until the first poll as the leader.
    last_prune: Option<tokio::time::Instant>,
    /// Polls run only while this process leads.
    leading: Leading,
    alerts: Option<Alerts>,
    seen: Observation,
}

impl Poller {
    fn new(app: &App, leading: Leading, last_prune: Option<tokio::time::Instant>) -> Self {
        let last_success = app.store.last_success_at(&app.account).ok().flatten();
        Poller {
            watcher: app.watcher(),
            streak: FailureStreak::default(),
            last_prune,
            leading,
            alerts: Alerts::new(&app.config, app.store.clone(), app.renderer.clone()),
            seen: Observation {
                last_success: last_success.or_else(|| Some(Utc::now())),
                ..Observation::default()
            },
        }
    }

    /// Feeds one poll's outcome to the alerts; true when alerts were queued.
    fn observe(
        &mut self,
        result: &Result<PollReport, PollError>,
        store: &dyn Store,
        account: &AccountId,
    ) -> bool {
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
        self.seen.dead = store.dead_count(account, alerts.sink()).unwrap_or_default();
        match alerts.evaluate(&self.seen, now) {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "cannot queue an alert");
                false
            }
        }
    }
}

/// The running dispatcher loop. It lives as long as `run`: a reload swaps
/// the dispatcher it starts new sends with, so sends in flight are never
/// abandoned (and sent again) because the config changed.
struct Deliveries {
    stop: CancellationToken,
    swap: watch::Sender<Dispatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Deliveries {
    /// New sends use `app`'s sinks, limits and retry policy from now on.
    fn reconfigure(&self, app: &App) {
        self.swap.send_replace(app.dispatcher.clone());
    }

    /// Stops taking new deliveries and waits for sends in flight (bounded
    /// by the shutdown grace period).
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Resolves to `true` at the next reload request; never when there is no
/// source (or it closed).
async fn next_request(rx: Option<&mut mpsc::Receiver<()>>) -> bool {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(()) => {
                while rx.try_recv().is_ok() {}
                true
            }
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Tracks a run of failed polls: one warning when it starts (with the cause),
/// quieter logs while it lasts, the wait doubling up to 10 × interval.
#[derive(Debug, Default)]
struct FailureStreak {
    failures: u32,
}

impl FailureStreak {
    fn failed(&mut self, error: &PollError, interval: Duration) -> Duration {
        self.failures += 1;
        let credentials = matches!(error, PollError::Api(e) if e.is_credentials());
        match (self.failures, credentials) {
            (1, true) => tracing::error!(
                error = %error,
                "the Crayon API refuses the credentials; fix [crayon] and reload or restart"
            ),
            (1, false) => tracing::warn!(error = %error, "poll failed; retrying with backoff"),
            _ => tracing::debug!(error = %error, failures = self.failures, "poll failed again"),
        }
        let factor = 2u32.saturating_pow(self.failures.min(4)).min(10);
        interval.saturating_mul(factor)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "polls work again");
        }
        self.failures = 0;
    }
}

fn log_startup(config: &Config) {
    let sinks: Vec<String> = config
        .sinks
        .values()
        .map(|s| {
            let off = if s.enabled { "" } else { " (disabled)" };
            format!("{}:{}{off}", s.name, s.kind.name())
        })
        .collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        state = %config.watch.state.display(),
        interval = %humantime::format_duration(config.watch.interval),
        sinks = %sinks.join(","),
        routes = config.routes.len(),
        "crayon-export-bot starting"
    );
}
