//! The long-running pieces: building everything a config describes, the `run`
//! loop (poll every interval, back off while the API fails, deliver
//! continuously, stop cleanly) and `once` (one poll, one attempt per due
//! delivery).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crayon::{CrayonClient, CrayonError, CrayonSettings};
use crate::dispatch::{Dispatcher, DrainSummary};
use crate::poll::{PollError, PollReport, Watcher};
use crate::render::{RenderError, Renderer};
use crate::sinks::{self, BuildError, Sinks};
use crate::state::{StateError, Store};

/// How often `run` prunes old sent deliveries and fired records.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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
    State(#[from] StateError),
    #[error("another crayon-export-bot is already running on {state} (lock {lock} is held); stop it first")]
    Locked { state: PathBuf, lock: PathBuf },
    #[error("cannot create lock file {path}: {source}")]
    LockFile {
        path: PathBuf,
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
    pub store: Arc<Store>,
    pub client: Arc<CrayonClient>,
    pub renderer: Arc<Renderer>,
    pub dispatcher: Dispatcher,
}

impl App {
    /// Builds templates, sinks and the Crayon client, then opens the state.
    pub fn build(config: Config) -> Result<App, ServiceError> {
        let client = CrayonClient::new(crayon_settings(&config))?;
        Self::build_with_client(config, client)
    }

    /// As [`App::build`] with a given Crayon client (tests, the demo).
    pub fn build_with_client(config: Config, client: CrayonClient) -> Result<App, ServiceError> {
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let http = sinks::http_client(&config)?;
        let sinks = Sinks::build(&config, &http)?;
        let store = Arc::new(Store::open(&config.watch.state)?);
        let config = Arc::new(config);
        let dispatcher = Dispatcher::new(&config, store.clone(), Arc::new(sinks));
        Ok(App {
            config,
            store,
            client: Arc::new(client),
            renderer: Arc::new(renderer),
            dispatcher,
        })
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

    /// `once`: one poll, then one attempt for every due delivery.
    pub async fn once(&self) -> Result<(PollReport, DrainSummary), OnceError> {
        let report = self.watcher().poll().await.map_err(OnceError::Poll)?;
        let summary = self
            .dispatcher
            .drain_due()
            .await
            .map_err(|e| OnceError::Poll(e.into()))?;
        Ok((report, summary))
    }

    /// `run`: polls every interval and delivers continuously until
    /// `shutdown`; then lets sends in flight finish within the grace period.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        let _lock = lock_state(&self.config.watch.state)?;
        log_startup(&self.config);
        self.prune();
        let wake = Arc::new(Notify::new());
        let dispatcher = self.dispatcher.clone();
        let grace = self.config.delivery.shutdown_grace;
        let deliveries = tokio::spawn({
            let (shutdown, wake) = (shutdown.clone(), wake.clone());
            async move { dispatcher.run(shutdown, wake, grace).await }
        });
        self.poll_loop(&shutdown, &wake).await;
        let _ = deliveries.await;
        tracing::info!("stopped");
        Ok(())
    }

    async fn poll_loop(&self, shutdown: &CancellationToken, wake: &Notify) {
        let mut watcher = self.watcher();
        let mut streak = FailureStreak::default();
        let interval = self.config.watch.interval;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.prune();
                last_prune = tokio::time::Instant::now();
            }
            let wait = match watcher.poll().await {
                Ok(report) => {
                    streak.succeeded();
                    if report.deliveries > 0 {
                        wake.notify_one();
                    }
                    interval
                }
                Err(e) => streak.failed(&e, interval),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn prune(&self) {
        let now = chrono::Utc::now();
        let ago =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let delivery = &self.config.delivery;
        match self
            .store
            .prune(ago(delivery.keep_sent), ago(delivery.keep_fired))
        {
            Ok((deliveries, fired)) if deliveries + fired > 0 => {
                tracing::info!(deliveries, fired, "pruned old records")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune old records"),
        }
    }
}

/// Why `once` did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error(transparent)]
    Poll(PollError),
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
        interval * factor
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

/// Holds `<state>.lock` exclusively while `run` runs, so two services never
/// share a state file (read-only commands do not take it).
fn lock_state(state: &Path) -> Result<File, ServiceError> {
    let mut lock = state.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| ServiceError::LockFile {
            path: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => Err(ServiceError::Locked {
            state: state.to_path_buf(),
            lock,
        }),
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
        interval_secs = config.watch.interval.as_secs(),
        sinks = %sinks.join(","),
        routes = config.routes.len(),
        "crayon-export-bot starting"
    );
}
