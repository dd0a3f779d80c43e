//! WAL checkpoints on a thread of their own. SQLite's automatic checkpoint
//! runs inside the commit that crosses its threshold: that commit then copies
//! the WAL back into the file and waits for two fsyncs while holding the
//! store (every send finishing meanwhile waits for its write). Here the
//! store's connection only appends to the WAL, and this thread, with its own
//! connection, runs a PASSIVE checkpoint (it never blocks the writer) a
//! moment after writes happened. SQLite's own checkpoint stays as a safety
//! net for a WAL that grows faster than this thread copies it back
//! ([`schema::WAL_SAFETY_NET`](super::schema::WAL_SAFETY_NET)).
//! BENCHMARKS.md, "Session 5": the checkpoints were what stalled a burst.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How long after a write the checkpoint runs: writes of a burst share one.
pub(super) const AFTER_WRITES: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Wake {
    /// Something was written since the last checkpoint began.
    dirty: bool,
    stop: bool,
}

type Shared = Arc<(Mutex<Wake>, Condvar)>;

/// The checkpoint thread of one open state file; stops (and is joined) on
/// drop.
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Wake> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checkpointer {
    /// Starts the thread over `conn`, a second connection to the file.
    pub(super) fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let shared: Shared = Arc::default();
        let thread = std::thread::Builder::new()
            .name("state-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&conn, &shared)
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Something was committed: checkpoint in [`AFTER_WRITES`].
    pub(super) fn wrote(&self) {
        let mut wake = lock(&self.shared);
        if !wake.dirty {
            wake.dirty = true;
            self.shared.1.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.1.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    while wait_for_writes(shared) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The next writes try again; SQLite's safety net bounds the WAL.
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Waits for a write, then [`AFTER_WRITES`] more; false once stopping.
fn wait_for_writes(shared: &Shared) -> bool {
    let condvar = &shared.1;
    let wake = condvar
        .wait_while(lock(shared), |w| !w.dirty && !w.stop)
        .unwrap_or_else(|e| e.into_inner());
    if wake.stop {
        return false;
    }
    let (mut wake, _) = condvar
        .wait_timeout_while(wake, AFTER_WRITES, |w| !w.stop)
        .unwrap_or_else(|e| e.into_inner());
    wake.dirty = false;
    !wake.stop
}
