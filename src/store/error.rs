//! [`StoreError`]: everything that can go wrong with the state, in words that
//! do not depend on the backend. Every message names the state (the file), since
//! the operator's fix (restore, move, upgrade the bot) is about it.

use std::path::PathBuf;

use crate::domain::DeliveryId;

/// A backend's own error, carried as the source of a [`StoreError`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file (or its directory) could not be created.
    #[error("cannot create state file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The backend could not open the state at all.
    #[error("cannot open state file {}: {source}", path.display())]
    Open { path: PathBuf, source: BackendError },
    /// The file exists but is not an SQLite database; it is left untouched.
    #[error("state file {} is not a readable SQLite database: {source}", path.display())]
    NotSqlite { path: PathBuf, source: BackendError },
    /// The file is an SQLite database of something else (tables, but no schema
    /// version); it is left untouched rather than mixed with ours.
    #[error(
        "state file {} is an SQLite database that crayon-export-bot did not create \
         (it has tables but no schema version); refusing to touch it",
        path.display()
    )]
    Foreign { path: PathBuf },
    /// The state was written by a newer build; it is left untouched.
    #[error(
        "state file {} was written by a newer crayon-export-bot (schema {found}, this build \
         knows up to {known}); refusing to touch it",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The backup copy taken before a migration failed; nothing was migrated.
    #[error(
        "cannot back up state file {} to {} before upgrading it: {source}",
        path.display(),
        backup.display()
    )]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        source: BackendError,
    },
    /// A migration step failed and was rolled back.
    #[error("cannot upgrade state file {} to schema {version}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        source: BackendError,
    },
    /// `record_attempt` named a delivery that is not in the account's outbox
    /// (pruned?).
    #[error("state {}: no delivery {id} in the outbox", path.display())]
    UnknownDelivery { path: PathBuf, id: DeliveryId },
    /// Any other backend failure (including rows that do not decode).
    #[error("state file {}: {source}", path.display())]
    Backend { path: PathBuf, source: BackendError },
    /// The PostgreSQL server could not be reached or refused the login
    /// (`reason` is the driver's text with every secret masked).
    #[error("cannot connect to state database {location}: {reason}")]
    Connect { location: String, reason: String },
    /// The TLS setup for the database (system roots, `tls.ca_file`) failed.
    #[error("state database {location}: cannot set up TLS: {reason}")]
    Tls { location: String, reason: String },
    /// The database was written by a newer build; it is left untouched.
    #[error(
        "state database {location} was written by a newer crayon-export-bot (schema {found}, \
         this build knows up to {known}); refusing to touch it"
    )]
    DatabaseTooNew {
        location: String,
        found: i64,
        known: i64,
    },
    /// The database holds tables named like ours but no schema version.
    #[error(
        "state database {location} has an outbox table that crayon-export-bot did not create \
         (no schema version); refusing to touch it"
    )]
    DatabaseForeign { location: String },
    /// A migration step failed and was rolled back.
    #[error("cannot upgrade state database {location} to schema {version}: {reason}")]
    DatabaseMigrate {
        location: String,
        version: i64,
        reason: String,
    },
    /// Any other database failure (`reason` masked like in [`Self::Connect`]).
    #[error("state database {location}: {reason}")]
    Database { location: String, reason: String },
    /// `state copy` refuses a target that already holds state.
    #[error("state {location} already holds state; refusing to copy into it")]
    TargetNotEmpty { location: String },
    /// A write by a process that is no longer the leader, refused by the
    /// database in the same transaction (fencing).
    #[error(
        "state database {location}: this process no longer holds the leader lease \
         (generation {held}, the database is at {current}); the write was refused"
    )]
    Fenced {
        location: String,
        held: i64,
        current: i64,
    },
}
