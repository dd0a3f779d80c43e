//! The `run` loop: one poll loop per account (`watch_loop`), one dispatcher
//! loop per account's outbox sharing the sinks' limits, reloads that add
//! and remove accounts (a removed account's outbox still drains, also one
//! removed while the bot was stopped), and a clean stop that lets sends in
//! flight finish within the grace period.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::dispatch::Dispatcher;
use crate::app::leading::Leading;
use crate::app::reload::RetiredSinks;
use crate::app::server;
use crate::app::telemetry::Health;
use crate::app::watch_loop::{AccountLoop, Shared};
use crate::config::{Config, ConfigError};
use crate::domain::AccountId;
use crate::leadership::{self, holder_id};
use crate::state_lock::StateLock;

use super::{App, ServiceError};

impl App {
    /// `run`: polls every account on its own schedule and delivers every
    /// account's outbox continuously until `shutdown`; then lets sends in
    /// flight finish within the grace period.
    /// Each request on `reloads` re-reads config and templates: a bad one is
    /// refused (the running config stays), a good one takes effect at the
    /// next poll, pending deliveries untouched; sends in flight finish (and
    /// are recorded) under the config they started with. A reload adds and
    /// removes accounts; a removed account's pending deliveries still go, as
    /// do those of accounts the state holds but the config (at start) does
    /// not. The sinks a reload replaces are closed once their sends are done.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reloads: Option<Reloads>,
    ) -> Result<(), ServiceError> {
        let _lock = StateLock::acquire(&self.config.watch.state)?;
        log_startup(&self.config);
        let health = Arc::new(Health::for_accounts(self.intervals()));
        let lease = Lease::start(&self, &health);
        self.dispatcher = self.dispatcher.clone().with_leading(lease.leading.clone());
        let server = self.serve(&health, &shutdown).await?;
        let mut deliveries = DeliverySet::new(self.dispatcher.clone());
        deliveries.sync(&self, &shutdown);
        deliveries.adopt(self.unconfigured_accounts()?, &shutdown);
        let mut loops = LoopSet::default();
        let mut retired = RetiredSinks::default();
        loops
            .sync(&self, &lease.leading, &health, &deliveries, &shutdown, true)
            .await;
        loop {
            let requests = reloads.as_mut().map(|r| &mut r.requests);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                true = next_request(requests) => {
                    let Some(mut next) = reloads.as_ref().and_then(|r| self.reload(r)) else {
                        continue;
                    };
                    next.dispatcher = next.dispatcher.clone().with_leading(lease.leading.clone());
                    health.set_accounts(next.intervals());
                    deliveries.sync(&next, &shutdown);
                    loops.sync(&next, &lease.leading, &health, &deliveries, &shutdown, false).await;
                    let replaced = std::mem::replace(&mut self, next);
                    retired.retire(replaced.sinks.clone());
                    tracing::info!("config reloaded; it applies from this poll on");
                }
            }
        }
        let stopping = tokio::time::Instant::now();
        loops.stop().await;
        health.stopped();
        deliveries.stop().await;
        self.close_sinks(retired, stopping).await;
        lease.stop().await;
        if let Some(server) = server {
            let _ = server.await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Ends the sinks' open sessions (SMTP QUIT), those of the sinks that
    /// reloads replaced too, once the dispatcher drained, with what is left
    /// of the grace period that began at `stopping`; left to the drop at
    /// exit, the server just sees the connection go.
    async fn close_sinks(&self, retired: RetiredSinks, stopping: tokio::time::Instant) {
        let grace = self.config.delivery.shutdown_grace;
        let left = grace.saturating_sub(stopping.elapsed());
        let close = async {
            self.dispatcher.close_sinks().await;
            retired.closed().await;
        };
        if tokio::time::timeout(left, close).await.is_err() {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "the sinks' sessions were not closed within the shutdown grace period"
            );
        }
    }

    /// Every account with its poll interval.
    fn intervals(&self) -> Vec<(AccountId, Duration)> {
        let accounts = self.config.accounts.iter();
        accounts.map(|a| (a.id.clone(), a.interval)).collect()
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
}

/// Every account's dispatcher loop, by account. They share the sinks and
/// each sink's limits; an account removed by a reload keeps its loop, so
/// its pending deliveries still go.
struct DeliverySet {
    /// The dispatcher every account's is made from (the latest config's,
    /// carrying on the limits and sends in flight of the previous one).
    base: Dispatcher,
    running: BTreeMap<AccountId, Deliveries>,
}

impl DeliverySet {
    fn new(base: Dispatcher) -> Self {
        DeliverySet {
            base,
            running: BTreeMap::new(),
        }
    }

    /// Hands every running loop `app`'s dispatcher and starts one for each
    /// account that has none yet.
    fn sync(&mut self, app: &App, shutdown: &CancellationToken) {
        if !self.running.is_empty() {
            self.base = app.dispatcher.clone().succeeding(&self.base);
        }
        for (id, deliveries) in &self.running {
            deliveries.reconfigure(self.base.for_account(id));
        }
        for account in &app.config.accounts {
            if !self.running.contains_key(&account.id) {
                let dispatcher = self.base.for_account(&account.id);
                let deliveries = Deliveries::spawn(dispatcher, shutdown);
                self.running.insert(account.id.clone(), deliveries);
            }
        }
    }

    /// Starts a dispatcher loop (no poll loop) for each of `accounts`: those
    /// the state holds pending deliveries for that the config does not have.
    /// Like an account removed by a reload, each keeps its loop for the rest
    /// of the run (idle once its outbox is empty; taken over as is if a
    /// reload adds the account back), so no delivery is dropped or sent twice
    /// by a loop stopping or a second one starting.
    fn adopt(&mut self, accounts: Vec<AccountId>, shutdown: &CancellationToken) {
        for id in accounts {
            if !self.running.contains_key(&id) {
                let deliveries = Deliveries::spawn(self.base.for_account(&id), shutdown);
                self.running.insert(id, deliveries);
            }
        }
    }

    /// The wake-up of `account`'s dispatcher loop.
    fn wake(&self, account: &AccountId) -> Arc<Notify> {
        self.running
            .get(account)
            .map(|d| d.wake.clone())
            .unwrap_or_default()
    }

    /// Stops taking new deliveries everywhere, then waits for every
    /// account's sends in flight (all within one grace period).
    async fn stop(self) {
        self.running.values().for_each(|d| d.stop.cancel());
        for deliveries in self.running.into_values() {
            deliveries.stop().await;
        }
    }
}

/// Every account's poll loop, by account.
#[derive(Default)]
struct LoopSet {
    running: BTreeMap<AccountId, AccountLoop>,
}

impl LoopSet {
    /// Starts a loop for each new account (at start: spread over the
    /// interval), reconfigures the kept ones and stops the removed ones.
    async fn sync(
        &mut self,
        app: &App,
        leading: &Leading,
        health: &Arc<Health>,
        deliveries: &DeliverySet,
        shutdown: &CancellationToken,
        spread: bool,
    ) {
        let removed: Vec<AccountId> = (self.running.keys())
            .filter(|id| app.config.account(id).is_none())
            .cloned()
            .collect();
        for id in removed {
            if let Some(gone) = self.running.remove(&id) {
                tracing::info!(account = %id, "account removed; its pending deliveries still go");
                gone.stop().await;
            }
        }
        let count = app.config.accounts.len() as u32;
        for (i, account) in app.config.accounts.iter().enumerate() {
            let Some(parts) = app.parts(&account.id) else {
                continue;
            };
            if let Some(running) = self.running.get(&account.id) {
                running.reconfigure(parts);
                continue;
            }
            let first_in = if spread {
                account.interval * i as u32 / count.max(1)
            } else {
                Duration::ZERO
            };
            let shared = Shared {
                leading: leading.clone(),
                health: health.clone(),
                wake: deliveries.wake(&account.id),
            };
            let started = AccountLoop::spawn(parts, shared, first_in, shutdown);
            self.running.insert(account.id.clone(), started);
        }
    }

    async fn stop(self) {
        self.running.values().for_each(AccountLoop::cancel);
        for running in self.running.into_values() {
            running.stop().await;
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

/// The running dispatcher loop. It lives as long as `run`: a reload swaps
/// the dispatcher it starts new sends with, so sends in flight are never
/// abandoned (and sent again) because the config changed.
struct Deliveries {
    stop: CancellationToken,
    swap: watch::Sender<Dispatcher>,
    task: tokio::task::JoinHandle<()>,
    /// Notified when a poll or an alert put something in the outbox.
    wake: Arc<Notify>,
}

impl Deliveries {
    /// Starts `dispatcher`'s loop (one account's outbox).
    fn spawn(dispatcher: Dispatcher, shutdown: &CancellationToken) -> Deliveries {
        let stop = shutdown.child_token();
        let wake = Arc::new(Notify::new());
        let (swap, reloads) = watch::channel(dispatcher.clone());
        let span = tracing::info_span!("deliveries", account = %dispatcher.account());
        let task = tokio::spawn({
            let (stop, wake) = (stop.clone(), wake.clone());
            async move { dispatcher.run_with_reloads(stop, wake, reloads).await }.instrument(span)
        });
        Deliveries {
            stop,
            swap,
            task,
            wake,
        }
    }

    /// New sends use this dispatcher's sinks, limits and retry policy from
    /// now on.
    fn reconfigure(&self, dispatcher: Dispatcher) {
        self.swap.send_replace(dispatcher);
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
