//! Group commit of finished attempts. Every attempt still waits for its own
//! outcome to be written before its task ends (so `once`, `drain_due` and a
//! shutdown return only after everything sent is recorded), but the writes
//! of attempts that finish close together share one transaction: a batch
//! is written [`LINGER`] after its first attempt finished (or at once when
//! [`MAX_BATCH`] wait), and the next one collects while it is written. A
//! burst of 1,000 sends costs a few dozen commits instead of 1,000, and the
//! SQLite work runs on the blocking pool, not on an async worker.
//!
//! A batch the store refuses as a whole is written again one attempt at a
//! time, so each attempt gets its own result (one bad row fails only
//! itself) and the caller's retry-the-write loop works as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use crate::domain::AccountId;
use crate::store::{AttemptWrite, Store, StoreError};

/// The most attempts written in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// How long a batch collects before it is written: short against a send
/// (the attempt's task waits this much longer), long enough that sends
/// finishing together share a commit.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// One attempt waiting for its write, and where its result goes.
struct Waiting {
    account: AccountId,
    write: AttemptWrite,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A flush task is running (it takes whatever waits when it is done).
    flushing: bool,
}

/// The dispatcher's shared write queue (one per dispatcher and its reloaded
/// successors).
#[derive(Default)]
pub(super) struct Writes {
    queue: Mutex<Queue>,
    /// Notified when [`MAX_BATCH`] attempts wait: no point lingering.
    full: Notify,
}

impl Writes {
    /// Writes `write` for `account`, in a batch with whatever other attempts
    /// finish meanwhile; returns once it is committed (or failed).
    pub(super) async fn write(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        account: &AccountId,
        write: AttemptWrite,
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Waiting {
                account: account.clone(),
                write,
                done,
            });
            if queue.waiting.len() >= MAX_BATCH {
                self.full.notify_one();
            }
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            tokio::spawn(self.clone().flush(store.clone()));
        }
        result
            .await
            .unwrap_or_else(|_| Err(interrupted(store.as_ref())))
    }

    /// Writes batches until nothing waits.
    async fn flush(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            let _ = tokio::time::timeout(LINGER, self.full.notified()).await;
            let Some(batch) = self.next_batch() else {
                return;
            };
            let size = batch.len();
            let store = store.clone();
            let written = tokio::task::spawn_blocking(move || write_batch(store.as_ref(), batch));
            if let Err(e) = written.await {
                // The waiters' senders are gone with the task: each caller
                // sees an interrupted write and retries it.
                tracing::error!(error = %e, attempts = size, "the batched write failed");
            }
        }
    }

    /// Up to [`MAX_BATCH`] waiting attempts of one account, oldest first;
    /// `None` (and no flush running) when nothing waits.
    fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(first) = queue.waiting.first() else {
            queue.flushing = false;
            return None;
        };
        let same = queue
            .waiting
            .iter()
            .take(MAX_BATCH)
            .take_while(|w| w.account == first.account)
            .count();
        Some(queue.waiting.drain(..same).collect())
    }
}

/// One transaction for the batch; if it fails as a whole, one per attempt.
fn write_batch(store: &dyn Store, batch: Vec<Waiting>) {
    let Some(account) = batch.first().map(|w| w.account.clone()) else {
        return;
    };
    let writes: Vec<AttemptWrite> = batch.iter().map(|w| w.write.clone()).collect();
    match store.record_attempts(&account, &writes) {
        Ok(results) => {
            for (waiting, result) in batch.into_iter().zip(results) {
                let _ = waiting.done.send(result);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, attempts = batch.len(),
                "the batched write failed; writing the attempts one by one");
            for w in batch {
                let a = &w.write;
                let result = store.record_attempt(&w.account, a.id, &a.outcome, a.at, a.latency);
                let _ = w.done.send(result);
            }
        }
    }
}

/// The error of a write whose batch task ended without answering.
fn interrupted(store: &dyn Store) -> StoreError {
    StoreError::Backend {
        path: store.location().into(),
        source: "the batched write of the attempt was interrupted".into(),
    }
}
