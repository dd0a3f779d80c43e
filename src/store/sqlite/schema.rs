//! The state file's schema and how a file gets there: it carries a version
//! (`PRAGMA user_version`); opening migrates forward after making a backup
//! copy, and a file written by a newer build is refused untouched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use super::sqlite_err;
use crate::store::error::BackendError;
use crate::store::StoreError;

/// The schema version this build writes; files at a lower version are migrated
/// forward, files at a higher one are refused.
pub const SCHEMA_VERSION: i64 = 5;

/// The migrations, in order: `MIGRATIONS[n - 1]` takes the file to version `n`.
/// Forward-only: once released, an entry is never edited, only appended to.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: snapshot, poll bookkeeping, fired records, outbox.
    "CREATE TABLE poll_state (
        account TEXT PRIMARY KEY NOT NULL,
        nr_of_days INTEGER NOT NULL,
        last_success_at INTEGER NOT NULL
    );
    CREATE TABLE snapshot_items (
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        status INTEGER NOT NULL,
        downloadable INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        action_name TEXT NOT NULL,
        action_url TEXT NOT NULL,
        requested_by TEXT NULL,
        created_date TEXT NOT NULL,
        PRIMARY KEY (account, item_id)
    );
    CREATE TABLE fired (
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        fired_at INTEGER NOT NULL,
        PRIMARY KEY (account, item_id, event)
    );
    CREATE INDEX fired_by_time ON fired (fired_at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        sink TEXT NOT NULL,
        recipient TEXT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NULL,
        last_error TEXT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE INDEX outbox_by_item ON outbox (account, item_id);",
    // 2: one row per delivery attempt, for `why` and post-mortems.
    "CREATE TABLE attempts_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT NULL,
        latency_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_log_by_delivery ON attempts_log (delivery_id);",
    // 3: alerts get their own table; an outbox row is about an item or an
    // alert, never a fake item id (schema 2 used +-1..3 with event 'alert').
    // SQLite cannot relax NOT NULL in place, so the outbox is rebuilt (ids,
    // and the AUTOINCREMENT high-water mark, kept); attempts_log is set
    // aside first so dropping the old outbox cannot cascade into it.
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        condition TEXT NOT NULL,
        state TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX alerts_latest ON alerts (account, condition, state, at);
    INSERT INTO alerts (id, account, condition, state, at)
        SELECT id, account,
            CASE abs(item_id) WHEN 1 THEN 'polls_failing' WHEN 2 THEN 'credentials_refused'
                ELSE 'deliveries_dead' END,
            CASE WHEN item_id < 0 THEN 'recovered' ELSE 'firing' END,
            created_at
        FROM outbox WHERE event = 'alert';
    CREATE TEMP TABLE attempts_aside AS SELECT * FROM attempts_log;
    DROP TABLE attempts_log;
    CREATE TABLE outbox_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        item_id INTEGER NULL,
        alert_id INTEGER NULL REFERENCES alerts (id),
        event TEXT NOT NULL,
        sink TEXT NOT NULL,
        recipient TEXT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NULL,
        last_error TEXT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((item_id IS NULL) <> (alert_id IS NULL))
    );
    INSERT INTO outbox_v3 (id, account, item_id, alert_id, event, sink, recipient, message,
            status, attempts, next_attempt_at, last_error, created_at, updated_at)
        SELECT id, account,
            CASE WHEN event = 'alert' THEN NULL ELSE item_id END,
            CASE WHEN event = 'alert' THEN id ELSE NULL END,
            event, sink, recipient, message, status, attempts, next_attempt_at, last_error,
            created_at, updated_at
        FROM outbox;
    DELETE FROM sqlite_sequence WHERE name = 'outbox_v3';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'outbox_v3', seq FROM sqlite_sequence WHERE name = 'outbox';
    DROP TABLE outbox;
    ALTER TABLE outbox_v3 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE INDEX outbox_by_item ON outbox (account, item_id);
    CREATE TABLE attempts_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT NULL,
        latency_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_log_by_delivery ON attempts_log (delivery_id);
    INSERT INTO attempts_log SELECT * FROM temp.attempts_aside;
    DROP TABLE temp.attempts_aside;",
    // 4: Slack users.lookupByEmail answers per sink (found or not) until
    // they expire; the address is stored lower-cased.
    "CREATE TABLE slack_lookups (
        sink TEXT NOT NULL,
        address TEXT NOT NULL,
        user_id TEXT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (sink, address)
    );",
    // 5: digests. The members of a digest window claimed for one send carry
    // its id (the leading member's); NULL while gathering or without one.
    // A window is found by (account, sink, status, digest_id), however many
    // sent rows the outbox keeps.
    "ALTER TABLE outbox ADD COLUMN digest_id INTEGER NULL;
    CREATE INDEX outbox_by_digest ON outbox (account, digest_id);
    CREATE INDEX outbox_digest_window ON outbox (account, sink, status, digest_id);",
];

/// How long a statement waits for another process (e.g. `outbox list` while
/// `run` is running) to release its lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens, checks and migrates the file; the steps of [`super::SqliteStore::open`].
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    create_private(path).map_err(|source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source: source.into(),
    })?;
    let version = read_version(&conn, path)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == 0 && has_tables(&conn).map_err(|source| sqlite_err(path, source))? {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    configure(&conn).map_err(|source| sqlite_err(path, source))?;
    if (1..SCHEMA_VERSION).contains(&version) {
        backup(&conn, path, version)?;
    }
    migrate(&conn, path)?;
    Ok(conn)
}

/// The WAL size (in 4 KiB pages) at which a commit checkpoints by itself,
/// as SQLite does at 1,000 by default: only a safety net, since the
/// checkpoint thread (`checkpoint.rs`) copies the WAL back shortly after
/// writes, off the commit path. About 32 MiB.
pub(super) const WAL_SAFETY_NET: u32 = 8192;

/// What the WAL file is cut back to after a checkpoint emptied it, so a
/// burst does not leave a large file behind.
const WAL_KEEP_BYTES: u64 = 4 << 20;

/// The store's connection leaves checkpoints to the checkpoint thread (up to
/// [`WAL_SAFETY_NET`]).
pub(super) fn checkpoint_elsewhere(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = {WAL_SAFETY_NET}; \
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"
    ))
}

/// A second connection to the (already opened and migrated) file, for the
/// checkpoint thread.
pub(super) fn open_for_checkpoints(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"))?;
    Ok(conn)
}

/// Creates the file empty with mode 0600 if it does not exist, so SQLite (and
/// its -wal/-shm files, which copy the mode) never makes it world-readable.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// Reads `user_version` without writing anything, which is also where a file
/// that is not SQLite shows itself.
fn read_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotSqlite {
                path: path.to_path_buf(),
                source: source.into(),
            },
            _ => sqlite_err(path, source),
        })
}

fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master)", [], |row| {
        row.get(0)
    })
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "state file could not switch to WAL");
    }
    // WAL + NORMAL: a process crash (even SIGKILL) loses no committed
    // transaction; only a power loss can drop the last ones, and then a poll
    // rolls back whole (snapshot, fired records and deliveries together), so
    // its events fire again and nothing is lost; at worst a send is repeated.
    // It saves an fsync per commit (BENCHMARKS.md: 127 -> 116 ms at 100k items).
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
}

/// Copies the database to `<state>.v<old>.bak` (or `.v<old>.<n>.bak` if that
/// exists) with `VACUUM INTO`, which is consistent even in WAL mode. The copy
/// is created 0600 first, like the state file.
fn backup(conn: &Connection, path: &Path, version: i64) -> Result<PathBuf, StoreError> {
    let backup = free_backup_path(path, version);
    create_private(&backup).map_err(|err| backup_err(path, &backup, err.into()))?;
    let text = backup
        .to_str()
        .ok_or_else(|| backup_err(path, &backup, "the path is not valid UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [text])
        .map_err(|err| backup_err(path, &backup, err.into()))?;
    tracing::info!(
        state = %path.display(),
        backup = %backup.display(),
        from = version,
        to = SCHEMA_VERSION,
        "state file backed up before upgrade"
    );
    Ok(backup)
}

/// The first of `<state>.v<old>.bak`, `<state>.v<old>.2.bak`, … that does not
/// exist: an earlier backup is never overwritten.
fn free_backup_path(path: &Path, version: i64) -> PathBuf {
    (1u32..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            match n {
                1 => name.push(format!(".v{version}.bak")),
                n => name.push(format!(".v{version}.{n}.bak")),
            }
            PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .expect("some backup name is free")
}

fn backup_err(path: &Path, backup: &Path, source: BackendError) -> StoreError {
    StoreError::Backup {
        path: path.to_path_buf(),
        backup: backup.to_path_buf(),
        source,
    }
}

/// Applies every missing migration, each in its own IMMEDIATE transaction that
/// re-reads the version, so two processes opening at once do not both migrate.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    for version in 1..=SCHEMA_VERSION {
        apply_migration(conn, version).map_err(|source| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source: source.into(),
        })?;
    }
    Ok(())
}

/// Takes the file to `version` if it is exactly one below it; otherwise no-op.
pub(super) fn apply_migration(conn: &Connection, version: i64) -> rusqlite::Result<()> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current != version - 1 {
        return Ok(());
    }
    let index = usize::try_from(version - 1).expect("versions start at 1");
    tx.execute_batch(MIGRATIONS[index])?;
    tx.execute_batch(&format!("PRAGMA user_version = {version};"))?;
    tx.commit()
}
