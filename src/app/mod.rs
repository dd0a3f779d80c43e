//! The long-running pieces: building everything a config describes, the `run`
//! loop (poll every interval, back off while the API fails, deliver
//! continuously, stop cleanly) and `once` (one poll, one attempt per due
//! delivery).

pub mod alerts;
pub mod dispatch;
pub mod leading;
pub mod poll;
pub mod reload;
mod run;
pub mod server;
pub mod telemetry;

pub use run::Reloads;

use std::sync::Arc;

use chrono::Utc;

use crate::app::dispatch::{Dispatcher, DrainSummary};
use crate::app::poll::{PollError, PollReport, Watcher};
use crate::config::{Config, ConfigError};
use crate::crayon::{CrayonClient, CrayonError, CrayonSettings};
use crate::domain::AccountId;
use crate::render::{RenderError, Renderer};
use crate::retention;
use crate::sinks::{self, BuildError, Sinks};
use crate::state_lock::{LockError, StateLock};
use crate::store::{Store, StoreError};

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
    #[error(transparent)]
    Spool(#[from] crate::attach::SpoolError),
    #[error("{0}")]
    Reload(String),
    /// `once` against a shared state while a `run` replica holds the lease.
    #[error("another replica leads (it holds the leader lease of state {state}); `once` does nothing while it runs")]
    NotLeader { state: String },
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
    /// The export files' spool, when a sink has `attach = true` (kept
    /// across reloads: its files belong to pending deliveries).
    pub spool: Option<Arc<crate::attach::Spool>>,
}

impl App {
    /// Builds templates, sinks and the Crayon client, then opens the state.
    pub fn build(config: Config) -> Result<App, ServiceError> {
        let client = CrayonClient::new(crayon_settings(&config))?;
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let sinks = Sinks::build(&config, &sinks::http_client(&config)?)?;
        let store = crate::store::open(&config.watch.state)?;
        let spool = open_spool(&config, None)?;
        Ok(Self::assemble(
            config, store, client, renderer, sinks, spool,
        ))
    }

    /// Puts checked parts together (shared by `build` and reload).
    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        client: CrayonClient,
        renderer: Renderer,
        sinks: Sinks,
        spool: Option<Arc<crate::attach::Spool>>,
    ) -> App {
        let config = Arc::new(config);
        let renderer = Arc::new(renderer);
        let client = Arc::new(client);
        let mut dispatcher =
            Dispatcher::new(&config, store.clone(), Arc::new(sinks), renderer.clone());
        if let Some(spool) = &spool {
            dispatcher = dispatcher.with_attacher(dispatch::Attacher {
                client: client.clone(),
                spool: spool.clone(),
            });
        }
        App {
            config,
            store,
            account: AccountId::default_account(),
            client,
            renderer,
            dispatcher,
            spool,
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
    /// With a shared (PostgreSQL) state it takes the leader lease for the
    /// call, refusing while a `run` replica leads, and gives it up after.
    pub async fn once(&self) -> Result<(PollReport, DrainSummary), ServiceError> {
        let _lock = StateLock::acquire(&self.config.watch.state)?;
        let holder = crate::leadership::holder_id();
        if self
            .store
            .try_lead(&holder, self.config.watch.lease)?
            .is_none()
        {
            return Err(ServiceError::NotLeader {
                state: self.store.location(),
            });
        }
        let result = self.once_leading().await;
        if let Err(e) = self.store.step_down(&holder) {
            tracing::warn!(error = %e, "could not give the leader lease up");
        }
        result
    }

    async fn once_leading(&self) -> Result<(PollReport, DrainSummary), ServiceError> {
        let report = self.watcher().poll().await?;
        let summary = self.dispatcher.drain_due().await.map_err(PollError::from)?;
        self.dispatcher.close_sinks().await;
        self.prune(1);
        Ok((report, summary))
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
        let spool = open_spool(&config, self.spool.clone())?;
        Ok(Self::assemble(
            config,
            self.store.clone(),
            client,
            renderer,
            sinks,
            spool,
        ))
    }

    /// One bounded prune (`rounds` of [`retention::PRUNE_BATCH`] at most).
    fn prune(&self, rounds: usize) {
        let (store, delivery) = (self.store.as_ref(), &self.config.delivery);
        retention::prune(store, &self.account, delivery, Utc::now(), rounds);
    }
}

/// The spool when some sink attaches the export file: `kept` (a reload
/// keeps the running one), else opened now (which clears orphans).
fn open_spool(
    config: &Config,
    kept: Option<Arc<crate::attach::Spool>>,
) -> Result<Option<Arc<crate::attach::Spool>>, ServiceError> {
    if !config
        .sinks
        .values()
        .any(|s| s.enabled && s.attach.is_some())
    {
        return Ok(kept);
    }
    if let Some(spool) = kept {
        return Ok(Some(spool));
    }
    let dir =
        crate::attach::Spool::folder_for(&config.watch.state, config.delivery.spool_dir.as_deref());
    Ok(Some(Arc::new(crate::attach::Spool::open(&dir)?)))
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
