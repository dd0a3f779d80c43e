//! Group commit of finished attempts. Every attempt still waits for its own
//! outcome to be written before its task ends (so `once`, `drain_due` and a
//! shutdown return only after everything sent is recorded). The sink's slot
//! is freed as soon as the outcome is queued, so the sink's next send
//! overlaps this write; the attempt counts against the sink's bound of
//! unrecorded attempts (2 × `concurrency`) until it is written, so a crash
//! re-sends at most that many deliveries per sink.
//!
//! When to write: the writer numbers, per account, the attempts sending
//! (holding a sink's slot and not having handed over their outcome,
//! [`Sending`]). A queued outcome waits for the sends that were in flight
//! when it finished (its wave), never for sends started since, or at most
//! [`LINGER`] (a slow send does not hold the finished ones for long). With
//! the default concurrency of 4 a burst is written 4 outcomes per commit
//! while the next 4 sends are on the wire.
//!
//! A batch of a few rows is written in the task that completes it (the
//! last attempt to finish, or the linger timer): a short commit without
//! fsync costs less than the hop to the blocking pool and back; a larger
//! batch is written on the blocking pool. A batch the store refuses as a
//! whole is written again one attempt at a time, so each attempt gets its
//! own result (one bad row fails only itself) and the caller's
//! retry-the-write loop works as before.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::domain::AccountId;
use crate::store::{AttemptWrite, Store, StoreError};

/// The most attempts written in one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// The largest batch written in the task that completes it (larger ones go
/// to the blocking pool).
pub(super) const WRITE_HERE_MAX: usize = 32;

/// The longest a finished attempt waits for the other attempts of its
/// account still sending before its batch is written anyway.
pub(super) const LINGER: Duration = Duration::from_millis(1);

/// One attempt waiting for its write, and where its result goes.
struct Waiting {
    account: AccountId,
    write: AttemptWrite,
    done: oneshot::Sender<Result<(), StoreError>>,
    since: Instant,
    /// The sends of its account started before this one finished have a
    /// number below this: the batch waits for those (its wave), never for
    /// sends started since.
    horizon: u64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A flush task is running (it takes whatever is ready when it is done).
    flushing: bool,
    /// Per account: the numbers of the attempts holding a slot whose
    /// outcome is not queued yet.
    sending: HashMap<AccountId, BTreeSet<u64>>,
    /// The number the next attempt to start sending gets.
    next_send: u64,
    /// A linger timer is armed (it looks again when it fires).
    timer: bool,
}

/// What to start after the queue changed.
enum Next {
    Nothing,
    Flush,
    /// Look again after this long (the oldest outcome's linger ends).
    Timer(Duration),
}

impl Queue {
    /// Every send of `w`'s account that was in flight when `w` finished has
    /// handed over its outcome, or `w` waited long enough.
    fn ready(&self, w: &Waiting, now: Instant) -> bool {
        let oldest = self.sending.get(&w.account).and_then(|s| s.first());
        oldest.is_none_or(|&seq| seq >= w.horizon) || now.duration_since(w.since) >= LINGER
    }

    fn next(&mut self) -> Next {
        if self.flushing || self.waiting.is_empty() {
            return Next::Nothing;
        }
        let now = Instant::now();
        if self.waiting.iter().any(|w| self.ready(w, now)) {
            self.flushing = true;
            return Next::Flush;
        }
        if std::mem::replace(&mut self.timer, true) {
            return Next::Nothing;
        }
        let oldest = self.waiting.iter().map(|w| w.since).min().unwrap_or(now);
        Next::Timer(LINGER.saturating_sub(now.duration_since(oldest)))
    }

    /// Up to [`MAX_BATCH`] waiting attempts of the first ready account,
    /// oldest first.
    fn batch(&mut self) -> Option<Vec<Waiting>> {
        let now = Instant::now();
        let first = self.waiting.iter().find(|w| self.ready(w, now))?;
        let account = first.account.clone();
        let (mut batch, mut rest) = (Vec::new(), Vec::with_capacity(self.waiting.len()));
        for w in self.waiting.drain(..) {
            match w.account == account && batch.len() < MAX_BATCH {
                true => batch.push(w),
                false => rest.push(w),
            }
        }
        self.waiting = rest;
        Some(batch)
    }

    fn start_sending(&mut self, account: &AccountId) -> u64 {
        let seq = self.next_send;
        self.next_send += 1;
        self.sending.entry(account.clone()).or_default().insert(seq);
        seq
    }

    fn done_sending(&mut self, account: &AccountId, seq: u64) {
        if let Some(live) = self.sending.get_mut(account) {
            live.remove(&seq);
            if live.is_empty() {
                self.sending.remove(account);
            }
        }
    }
}

/// The dispatcher's shared write queue (one per dispatcher and its reloaded
/// successors).
#[derive(Default)]
pub(super) struct Writes {
    queue: Mutex<Queue>,
}

/// An attempt holding a sink's slot whose outcome the writer does not have
/// yet: the writer holds its account's finished outcomes for it (up to
/// [`LINGER`]). Handed to [`Writes::write`] with the outcome; dropped
/// instead (a digest, an abandoned send), it stops being waited for.
pub(super) struct Sending {
    writes: Arc<Writes>,
    store: Arc<dyn Store>,
    account: AccountId,
    seq: u64,
    live: bool,
}

impl Drop for Sending {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.live) {
            return;
        }
        let next = {
            let mut queue = self.writes.lock();
            queue.done_sending(&self.account, self.seq);
            queue.next()
        };
        // A runtime shutting down drops its tasks; nothing waits then.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.writes.clone().start(next, self.store.clone(), false);
        }
    }
}

impl Writes {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an attempt of `account` as sending (its slot is taken) until
    /// the returned guard is handed to [`write`](Self::write) or dropped.
    pub(super) fn sending(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        account: &AccountId,
    ) -> Sending {
        let seq = self.lock().start_sending(account);
        Sending {
            writes: self.clone(),
            store: store.clone(),
            account: account.clone(),
            seq,
            live: true,
        }
    }

    /// Writes `write` for `account`, in a batch with the account's other
    /// attempts finishing about now; returns once it is committed (or
    /// failed). `sending` is this attempt's guard (`None` when writing
    /// again after a failed write); `slot`, the sink's slot it sent in, is
    /// freed as soon as the outcome is queued, so the sink's next send
    /// overlaps this write (the attempt still counts against the sink's
    /// bound of unrecorded attempts until it returns).
    pub(super) async fn write(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        account: &AccountId,
        (write, sending, slot): (AttemptWrite, Option<Sending>, Option<OwnedSemaphorePermit>),
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        let next = {
            let mut queue = self.lock();
            let horizon = queue.next_send;
            queue.waiting.push(Waiting {
                account: account.clone(),
                write,
                done,
                since: Instant::now(),
                horizon,
            });
            if let Some(mut sending) = sending {
                sending.live = false;
                queue.done_sending(&sending.account, sending.seq);
            }
            queue.next()
        };
        drop(slot);
        self.clone().start(next, store.clone(), true);
        result
            .await
            .unwrap_or_else(|_| Err(interrupted(store.as_ref())))
    }

    /// Starts what `next` says. `here`: a ready flush runs in the calling
    /// task (see [`flush_here`](Self::flush_here)); else in a task of its own.
    fn start(self: Arc<Self>, next: Next, store: Arc<dyn Store>, here: bool) {
        match next {
            Next::Nothing => {}
            Next::Flush if here => self.flush_here(&store),
            Next::Flush => {
                tokio::spawn(self.flush(store, None));
            }
            Next::Timer(after) => {
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let next = {
                        let mut queue = self.lock();
                        queue.timer = false;
                        queue.next()
                    };
                    self.start(next, store, true);
                });
            }
        }
    }

    /// Writes ready batches until none is ready, in the calling task: a
    /// batch of up to [`WRITE_HERE_MAX`] rows (the slots held keep batches
    /// to the sinks' concurrency) is one short commit with no fsync (WAL,
    /// `synchronous = NORMAL`), cheaper than the hop to the blocking pool
    /// and back, which cost more CPU than the write itself (BENCHMARKS.md,
    /// session 4). A larger batch goes to the blocking pool.
    fn flush_here(self: Arc<Self>, store: &Arc<dyn Store>) {
        loop {
            match self.next_batch() {
                Ok(batch) if batch.len() <= WRITE_HERE_MAX => write_batch(store.as_ref(), batch),
                Ok(batch) => {
                    tokio::spawn(self.flush(store.clone(), Some(batch)));
                    return;
                }
                Err(next) => return self.start(next, store.clone(), false),
            }
        }
    }

    /// Writes `first`, then ready batches until none is ready, on the
    /// blocking pool.
    async fn flush(self: Arc<Self>, store: Arc<dyn Store>, mut first: Option<Vec<Waiting>>) {
        loop {
            let batch = match first.take().map_or_else(|| self.next_batch(), Ok) {
                Ok(batch) => batch,
                Err(next) => return self.start(next, store, false),
            };
            let size = batch.len();
            let on_pool = store.clone();
            let written = tokio::task::spawn_blocking(move || write_batch(on_pool.as_ref(), batch));
            if let Err(e) = written.await {
                // The waiters' senders are gone with the task: each caller
                // sees an interrupted write and retries it.
                tracing::error!(error = %e, attempts = size, "the batched write failed");
            }
        }
    }

    /// The next ready batch, or (the flush ending) what to start instead.
    fn next_batch(&self) -> Result<Vec<Waiting>, Next> {
        let mut queue = self.lock();
        match queue.batch() {
            Some(batch) => Ok(batch),
            None => {
                queue.flushing = false;
                Err(queue.next())
            }
        }
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
