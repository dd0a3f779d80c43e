//! The long-running pieces: building everything a config describes, the `run`
//! loop (poll every interval, back off while the API fails, deliver
//! continuously, stop cleanly) and `once` (one poll, one attempt per due
//! delivery).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use chrono::Utc;

use crate::alerts::{Alerts, Observation};
use crate::config::{Config, ConfigError};
use crate::crayon::{CrayonClient, CrayonError, CrayonSettings};
use crate::dispatch::{Dispatcher, DrainSummary};
use crate::domain::AccountId;
use crate::poll::{PollError, PollReport, Watcher};
use crate::render::{RenderError, Renderer};
use crate::retention;
use crate::server;
use crate::sinks::{self, BuildError, Sinks};
use crate::state_lock::{LockError, StateLock};
use crate::store::{Store, StoreError};
use crate::telemetry::Health;

/// How often `run` prunes old sent deliveries and fired records.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prune rounds `run` does at start and hourly: enough to catch up on a
/// large backlog (`once` does one per call).
const RUN_PRUNE_ROUNDS: usize = 100;

/// Why the service could not start or stopped. `is_config` tells the CLI
/// which exit code applies (2: fix the config; 1: runtime).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Sink(#[from] BuildError),
    #[error(transparent)]
    Crayon(#[from] CrayonError),
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(transparent)]
    Poll(#[from] PollError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Reload(String),
    #[error("cannot listen on {listen} ([server] listen): {source}")]
    Listen {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl ServiceError {
    /// True when the fix is in the config or templates (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ServiceError::Render(_)
                | ServiceError::Sink(_)
                | ServiceError::Crayon(CrayonError::CaFile { .. })
        )
    }
}

/// Everything one config needs at run time, built once.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// The account polled and delivered for (the single account of a v0.1 config).
    pub account: AccountId,
    pub client: Arc<CrayonClient>,
    pub renderer: Arc<Renderer>,
    pub dispatcher: Dispatcher,
}

impl App {
    /// Builds templates, sinks and the Crayon client, then opens the state.
    pub fn build(config: Config) -> Result<App, ServiceError> {
        let client = CrayonClient::new(crayon_settings(&config))?;
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let sinks = Sinks::build(&config, &sinks::http_client(&config)?)?;
        let store = crate::store::open(&config.watch.state)?;
        Ok(Self::assemble(config, store, client, renderer, sinks))
    }

    /// Puts checked parts together (shared by `build` and reload).
    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        client: CrayonClient,
        renderer: Renderer,
        sinks: Sinks,
    ) -> App {
        let config = Arc::new(config);
        let dispatcher = Dispatcher::new(&config, store.clone(), Arc::new(sinks));
        App {
            config,
            store,
            account: AccountId::default_account(),
            client: Arc::new(client),
            renderer: Arc::new(renderer),
            dispatcher,
        }
    }

    /// A watcher over this app's parts, as `run` and `once` use it (public
    /// so benchmarks and load examples drive the very same cycle).
    pub fn watcher(&self) -> Watcher {
        Watcher::new(
            self.config.clone(),
            self.client.clone(),
            self.store.clone(),
            self.renderer.clone(),
        )
    }

    /// `once`: under the state lock (refused while `run` or another `once`
    /// holds it), one poll, then one attempt for every due delivery, then
    /// the same prune `run` does hourly (so a cron-driven deployment does not
    /// grow its state forever).
    pub async fn once(&self) -> Result<(PollReport, DrainSummary), ServiceError> {
        let _lock = StateLock::acquire(&self.config.watch.state)?;
        let report = self.watcher().poll().await?;
        let summary = self.dispatcher.drain_due().await.map_err(PollError::from)?;
        self.dispatcher.close_sinks().await;
        self.prune(1);
        Ok((report, summary))
    }

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
        self.prune(RUN_PRUNE_ROUNDS);
        let health = Arc::new(Health::new(self.config.watch.interval));
        let server = self.serve(&health, &shutdown).await?;
        let wake = Arc::new(Notify::new());
        let deliveries = self.spawn_dispatcher(&shutdown, &wake);
        let mut poller = Poller::new(&self);
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
                    poller = Poller::new(&self);
                    tracing::info!("config reloaded; it applies from this poll on");
                }
            }
        }
        health.stopped();
        deliveries.stop().await;
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

    /// A new App for `config`, sharing this one's state file.
    fn reconfigured(&self, config: Config) -> Result<App, ServiceError> {
        if config.watch.state != self.config.watch.state {
            return Err(ServiceError::Reload(
                "watch.state cannot change while running; restart the service".into(),
            ));
        }
        if config.server_listen != self.config.server_listen {
            tracing::warn!("server.listen changes take effect at the next restart");
        }
        let client = CrayonClient::new(crayon_settings(&config))?;
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let sinks = Sinks::build(&config, &sinks::http_client(&config)?)?;
        Ok(Self::assemble(
            config,
            self.store.clone(),
            client,
            renderer,
            sinks,
        ))
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
            if poller.last_prune.elapsed() >= PRUNE_EVERY {
                self.prune(RUN_PRUNE_ROUNDS);
                poller.last_prune = tokio::time::Instant::now();
            }
            let result = poller.watcher.poll().await;
            health.polled(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if poller.observe(&result, &*self.store, &self.account) {
                wake.notify_one();
            }
            let wait = match result {
                Ok(report) => {
                    poller.streak.succeeded();
                    if report.deliveries > 0 {
                        wake.notify_one();
                    }
                    interval
                }
                Err(e) => poller.streak.failed(&e, interval),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return LoopExit::Shutdown,
                true = next_request(reload.as_deref_mut()) => return LoopExit::Reload,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One bounded prune (`rounds` of [`retention::PRUNE_BATCH`] at most).
    fn prune(&self, rounds: usize) {
        let (store, delivery) = (self.store.as_ref(), &self.config.delivery);
        retention::prune(store, &self.account, delivery, Utc::now(), rounds);
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
    last_prune: tokio::time::Instant,
    alerts: Option<Alerts>,
    seen: Observation,
}

impl Poller {
    fn new(app: &App) -> Self {
        let last_success = app.store.last_success_at(&app.account).ok().flatten();
        Poller {
            watcher: app.watcher(),
            streak: FailureStreak::default(),
            last_prune: tokio::time::Instant::now(),
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

/// The Crayon client's settings from the checked config.
pub fn crayon_settings(config: &Config) -> CrayonSettings {
    let c = &config.crayon;
    CrayonSettings {
        base_url: c.base_url.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
        username: c.username.clone(),
        password: c.password.clone(),
        scope: c.scope.clone(),
        timeout: c.timeout,
        max_body: c.max_body,
        ca_file: config.ca_file.clone(),
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
