//! The state lock: `<state>.lock`, held exclusively by every command that
//! polls or delivers (`run`, `once`), so a cron `once` beside the service
//! (or a second service) never delivers the same pending messages twice.
//! Read-only commands (`outbox list`, `why`, `render`, `check`) and the
//! outbox maintenance commands do not take it and work beside `run`.

use std::fs::File;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another crayon-export-bot (`run` or `once`) is already running on {state} \
         (lock {lock} is held); stop it first, or let the running service do the work"
    )]
    Held { state: PathBuf, lock: PathBuf },
    #[error("cannot create lock file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (and by the OS if the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: Option<File>,
}

/// What can be locked: a state file has a `<state>.lock`; a PostgreSQL
/// state has none (several replicas share it; the leader lease decides).
pub trait LockTarget {
    /// The state file, if the state is one.
    fn state_file(&self) -> Option<&Path>;
}

impl LockTarget for Path {
    fn state_file(&self) -> Option<&Path> {
        Some(self)
    }
}

impl LockTarget for PathBuf {
    fn state_file(&self) -> Option<&Path> {
        Some(self)
    }
}

impl LockTarget for crate::store::StateLocation {
    fn state_file(&self) -> Option<&Path> {
        self.file()
    }
}

impl StateLock {
    /// Takes `<state>.lock` without waiting: a second instance is refused at
    /// once with a message naming the state file, never queued behind it.
    /// A database state takes no file lock.
    pub fn acquire(state: &(impl LockTarget + ?Sized)) -> Result<StateLock, LockError> {
        let Some(state) = state.state_file() else {
            return Ok(StateLock { _file: None });
        };
        let lock = lock_path(state);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| LockError::Create {
                path: lock.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: Some(file) }),
            Err(_) => Err(LockError::Held {
                state: state.to_path_buf(),
                lock,
            }),
        }
    }
}

/// `state.db` → `state.db.lock`.
fn lock_path(state: &Path) -> PathBuf {
    let mut lock = state.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let first = StateLock::acquire(&state).unwrap();
        let refused = StateLock::acquire(&state).unwrap_err();
        assert!(matches!(refused, LockError::Held { .. }), "{refused}");
        assert!(refused.to_string().contains("state.db.lock"));
        drop(first);
        StateLock::acquire(&state).unwrap();
    }
}
