//! The long-running pieces: building everything a config describes, the `run`
//! loop (poll every interval, back off while the API fails, deliver
//! continuously, stop cleanly) and `once` (one poll, one attempt per due
//! delivery).

pub mod alerts;
pub mod dispatch;
pub mod health;
pub mod leading;
pub mod poll;
pub mod reload;
mod run;
pub mod server;
pub mod telemetry;
pub mod watch_loop;

pub use run::Reloads;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use crate::app::dispatch::{Dispatcher, DrainSummary};
use crate::app::poll::{PollError, PollReport, Watcher};
use crate::app::watch_loop::AccountParts;
use crate::config::{AccountConfig, Config, ConfigError};
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
    /// One account's poll failed in `once` with several accounts (the others
    /// were polled and their deliveries attempted anyway).
    #[error("account {account}: {source}")]
    AccountPoll {
        account: AccountId,
        source: PollError,
    },
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

/// Every account's own Crayon client (and so its own token cache), by name.
pub type Clients = BTreeMap<AccountId, Arc<CrayonClient>>;

/// Everything one config needs at run time, built once.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// The first account by name (the only one of a v0.1 config, `default`):
    /// what [`App::watcher`], `client` and `dispatcher` serve.
    pub account: AccountId,
    /// The first account's client.
    pub client: Arc<CrayonClient>,
    pub renderer: Arc<Renderer>,
    /// The first account's dispatcher; [`Dispatcher::for_account`] makes
    /// the others', sharing the sinks and their limits.
    pub dispatcher: Dispatcher,
    /// Every account's client.
    pub clients: Clients,
    /// The export files' spool, when a sink has `attach = true` (kept
    /// across reloads: its files belong to pending deliveries).
    pub spool: Option<Arc<crate::attach::Spool>>,
    /// The sinks `dispatcher` sends through: kept here so that `run`, when a
    /// reload replaces them, can close their sessions (SMTP QUIT) once no
    /// dispatcher uses them any more.
    sinks: Arc<Sinks>,
}

impl App {
    /// Builds templates, sinks and every account's Crayon client, then
    /// opens the state.
    pub fn build(config: Config) -> Result<App, ServiceError> {
        let clients = clients(&config)?;
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let sinks = Sinks::build(&config, &sinks::http_client(&config)?)?;
        let store = crate::store::open(&config.watch.state)?;
        let spool = open_spool(&config, None)?;
        Ok(Self::assemble(
            config, store, clients, renderer, sinks, spool,
        ))
    }

    /// Puts checked parts together (shared by `build` and reload).
    fn assemble(
        config: Config,
        store: Arc<dyn Store>,
        clients: Clients,
        renderer: Renderer,
        sinks: Sinks,
        spool: Option<Arc<crate::attach::Spool>>,
    ) -> App {
        let config = Arc::new(config);
        let (account, client) = clients
            .iter()
            .next()
            .map(|(id, c)| (id.clone(), c.clone()))
            .expect("a checked config has at least one account");
        let renderer = Arc::new(renderer);
        let sinks = Arc::new(sinks);
        let mut dispatcher =
            Dispatcher::new(&config, store.clone(), sinks.clone(), renderer.clone())
                .for_account(&account);
        if let Some(spool) = &spool {
            dispatcher = dispatcher.with_attacher(dispatch::Attacher {
                clients: clients.clone(),
                spool: spool.clone(),
            });
        }
        App {
            config,
            store,
            account,
            client,
            renderer,
            dispatcher,
            clients,
            spool,
            sinks,
        }
    }

    /// A watcher over the first account, as `run` and `once` use it (public
    /// so benchmarks and load examples drive the very same cycle).
    pub fn watcher(&self) -> Watcher {
        Watcher::new(
            self.config.clone(),
            self.client.clone(),
            self.store.clone(),
            self.renderer.clone(),
        )
        .for_account(&self.account)
    }

    /// What `account`'s poll loop needs; `None` if it is not configured.
    pub fn parts(&self, account: &AccountId) -> Option<AccountParts> {
        let config = self.config.account(account)?;
        Some(AccountParts {
            id: account.clone(),
            interval: config.interval,
            config: self.config.clone(),
            store: self.store.clone(),
            renderer: self.renderer.clone(),
            client: self.clients.get(account)?.clone(),
        })
    }

    /// `once`: under the state lock (refused while `run` or another `once`
    /// holds it), one poll, then one attempt for every due delivery (also
    /// those of accounts no longer in the config), then
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

    /// Polls every account (at once), then one attempt for every due
    /// delivery of every account, then the prune. With one account a failed
    /// poll stops there, as in 0.1; with several, the others' polls and
    /// deliveries still happen and the first failure is returned after.
    async fn once_leading(&self) -> Result<(PollReport, DrainSummary), ServiceError> {
        let mut polls = tokio::task::JoinSet::new();
        for id in self.clients.keys() {
            let Some(parts) = self.parts(id) else {
                continue;
            };
            polls.spawn(async move { (parts.id.clone(), parts.watcher().poll().await) });
        }
        let mut report = PollReport::default();
        let mut failed = None;
        while let Some(joined) = polls.join_next().await {
            let Ok((id, result)) = joined else { continue };
            match result {
                Ok(r) => add_report(&mut report, &r),
                Err(e) if self.clients.len() == 1 => return Err(e.into()),
                Err(source) => {
                    failed.get_or_insert(ServiceError::AccountPoll {
                        account: id,
                        source,
                    });
                }
            }
        }
        let mut summary = DrainSummary::default();
        let unconfigured = self.unconfigured_accounts()?;
        for id in self.clients.keys().chain(&unconfigured) {
            let one = self.dispatcher.for_account(id).drain_due().await;
            let one = one.map_err(PollError::from)?;
            summary.sent += one.sent;
            summary.retrying += one.retrying;
            summary.dead += one.dead;
        }
        self.dispatcher.close_sinks().await;
        self.prune(1);
        match failed {
            Some(e) => Err(e),
            None => Ok((report, summary)),
        }
    }

    /// The accounts the state holds deliveries still to send for that the
    /// config no longer has (removed while the bot was stopped), each logged
    /// once: `run` and `once` drain their outboxes through the configured
    /// sinks (no polls), so removing an account loses no notification.
    fn unconfigured_accounts(&self) -> Result<Vec<AccountId>, StoreError> {
        let mut accounts = self.store.accounts_with_pending()?;
        accounts.retain(|id| self.config.account(id).is_none());
        for id in &accounts {
            tracing::info!(account = %id, "account not in the config; its pending deliveries still go");
        }
        Ok(accounts)
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
        let clients = self.kept_clients(clients(&config)?, &config);
        let renderer = Renderer::new(config.templates_dir.as_deref(), config.timezone)?;
        let sinks = Sinks::build(&config, &sinks::http_client(&config)?)?;
        let spool = open_spool(&config, self.spool.clone())?;
        Ok(Self::assemble(
            config,
            self.store.clone(),
            clients,
            renderer,
            sinks,
            spool,
        ))
    }

    /// A reload keeps an account's client (and its token) when the account's
    /// `[crayon]` settings did not change, so a reload costs no logins.
    fn kept_clients(&self, fresh: Clients, config: &Config) -> Clients {
        fresh
            .into_iter()
            .map(|(id, client)| {
                let same = match (self.config.account(&id), config.account(&id)) {
                    (Some(old), Some(new)) => same_login(old, new),
                    _ => false,
                };
                match self.clients.get(&id) {
                    Some(kept) if same && self.config.ca_file == config.ca_file => {
                        (id, kept.clone())
                    }
                    _ => (id, client),
                }
            })
            .collect()
    }

    /// One bounded prune per account (`rounds` of [`retention::PRUNE_BATCH`]
    /// at most each).
    fn prune(&self, rounds: usize) {
        let (store, delivery) = (self.store.as_ref(), &self.config.delivery);
        for id in self.clients.keys() {
            retention::prune(store, id, delivery, Utc::now(), rounds);
        }
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

/// Sums what polls of several accounts did (for `once`'s report).
fn add_report(total: &mut PollReport, one: &PollReport) {
    total.items += one.items;
    total.events += one.events;
    total.deliveries += one.deliveries;
    total.rows_written += one.rows_written;
    total.baseline |= one.baseline;
    total.duplicates.extend(one.duplicates.iter().copied());
}

/// Whether two account configs log in the same way (same client settings).
fn same_login(old: &AccountConfig, new: &AccountConfig) -> bool {
    let (a, b) = (&old.crayon, &new.crayon);
    a.base_url == b.base_url
        && a.client_id == b.client_id
        && a.client_secret.expose() == b.client_secret.expose()
        && a.username == b.username
        && a.password.expose() == b.password.expose()
        && a.scope == b.scope
        && a.timeout == b.timeout
        && a.max_body == b.max_body
}

/// One Crayon client per account (each with its own token cache), the
/// accounts with the same `timeout` sharing one HTTP client: one connection
/// pool and one TLS root store (≈ 180 KiB each) for a thousand accounts,
/// not a thousand.
fn clients(config: &Config) -> Result<Clients, ServiceError> {
    let mut http: BTreeMap<std::time::Duration, reqwest::Client> = BTreeMap::new();
    let mut clients = Clients::new();
    for account in &config.accounts {
        let settings = crayon_settings(config, account);
        let shared = match http.get(&settings.timeout) {
            Some(client) => client.clone(),
            None => {
                let client = CrayonClient::http_client(&settings)?;
                http.insert(settings.timeout, client.clone());
                client
            }
        };
        let client = CrayonClient::with_http_client(settings, shared);
        clients.insert(account.id.clone(), Arc::new(client));
    }
    Ok(clients)
}

/// One account's Crayon client settings from the checked config.
pub fn crayon_settings(config: &Config, account: &AccountConfig) -> CrayonSettings {
    let c = &account.crayon;
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
