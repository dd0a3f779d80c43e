//! The connection: TLS (system roots plus `tls.ca_file`, the ring provider
//! the rest of the bot uses), connecting and reconnecting, and the bridge
//! from the synchronous [`crate::store::Store`] trait to the driver.
//!
//! Why the sync `postgres` client on a scoped thread: the trait is called
//! from tokio worker threads and from current-thread test runtimes, where a
//! driver's `block_on` panics. The `postgres` crate owns a private runtime
//! per client; each call made from inside a runtime runs on a short-lived
//! scoped thread (no runtime there, so no panic, and the arguments are
//! borrowed, not copied), and the caller waits for it, exactly as it waits
//! for SQLite today. A thread spawn costs tens of microseconds, small beside
//! the network round trip; calls from plain threads (the CLI) run inline.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::rows::{PgError, PgResult};
use crate::store::location::{PgUrl, SslMode};
use crate::store::StoreError;

/// How long connecting may take when the URL does not say
/// (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server ends a session left idle inside a transaction this long. The
/// bot never pauses inside one, but a leader that is frozen (SIGSTOP, a
/// stalled VM) in the middle of a write would otherwise hold its row locks,
/// the lease row's included, and no standby could ever take over.
const IDLE_IN_TRANSACTION: &str = "-c idle_in_transaction_session_timeout=2000";

/// One database connection, re-opened on the next call after it broke.
pub(super) struct Conn {
    url: PgUrl,
    tls: MakeRustlsConnect,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("url", &self.url).finish()
    }
}

impl Conn {
    /// Builds the TLS setup and connects once, so a wrong URL, password or
    /// certificate shows at start, not at the first poll.
    pub(super) fn open(url: &PgUrl) -> Result<Conn, StoreError> {
        let tls = tls_config(url.ca_file()).map_err(|reason| StoreError::Tls {
            location: url.shown().to_string(),
            reason,
        })?;
        let conn = Conn {
            url: url.clone(),
            tls,
            client: Mutex::new(None),
        };
        let client = off_runtime(|| conn.connect())?;
        *conn.lock() = Some(client);
        Ok(conn)
    }

    /// The masked URL, for messages.
    pub(super) fn location(&self) -> String {
        self.url.shown().to_string()
    }

    /// Runs `f` on the connection (connecting first if it is not open),
    /// off any tokio runtime; driver errors become [`StoreError::Database`]
    /// with every secret masked.
    pub(super) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> PgResult<T> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut guard = self.lock();
            if guard.as_ref().is_none_or(Client::is_closed) {
                *guard = None;
                *guard = Some(self.connect()?);
            }
            let client = guard.as_mut().expect("connected above");
            let result = f(client);
            if client.is_closed() {
                *guard = None;
            }
            result.map_err(|err| self.error(&err))
        })
    }

    /// A driver error as a [`StoreError::Database`], masked.
    pub(super) fn error(&self, err: &PgError) -> StoreError {
        StoreError::Database {
            location: self.location(),
            reason: self.masked(err),
        }
    }

    /// The error's text and its causes (the driver puts the server's words
    /// in the source), with the URL and password pieces masked.
    pub(super) fn masked(&self, err: &(dyn std::error::Error + 'static)) -> String {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(inner) = cause {
            let more = inner.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            cause = inner.source();
        }
        crate::secret::mask(&text, &self.url.secret_parts())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let connect_err = |reason: String| StoreError::Connect {
            location: self.location(),
            reason,
        };
        let mut config: Config = self
            .url
            .driver_url()
            .parse()
            .map_err(|err: postgres::Error| connect_err(self.masked(&err)))?;
        config.ssl_mode(match self.url.ssl_mode() {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require => postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("crayon-export-bot");
        }
        let options = match config.get_options() {
            Some(given) => format!("{given} {IDLE_IN_TRANSACTION}"),
            None => IDLE_IN_TRANSACTION.to_string(),
        };
        config.options(&options);
        let client = config
            .connect(self.tls.clone())
            .map_err(|err| connect_err(self.masked(&err)))?;
        tracing::debug!(state = %self.url.shown(), "connected to the state database");
        Ok(client)
    }
}

impl Drop for Conn {
    /// The client owns a runtime, which must not be dropped inside another.
    fn drop(&mut self) {
        let client = self.lock().take();
        if client.is_some() {
            off_runtime(move || drop(client));
        }
    }
}

/// Runs `f` here, or on a scoped thread when this thread is inside a tokio
/// runtime (where the driver's own `block_on` would panic).
pub(super) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// rustls trusting the system roots plus the PEM certificates in
/// `ca_file` (read and checked as for the HTTP clients); the server's name
/// is always verified.
fn tls_config(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let extra = match ca_file {
        Some(path) => {
            crate::http_body::load_ca_file(path)
                .map_err(|e| e.to_string())?
                .certs
        }
        None => Vec::new(),
    };
    let roots = crate::tls::roots_with(&extra);
    if roots.is_empty() {
        tracing::debug!("no root certificates; TLS to the database will fail");
    }
    Ok(MakeRustlsConnect::new(crate::tls::client_config(roots)))
}
