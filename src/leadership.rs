//! Leadership among replicas sharing one PostgreSQL state: a task that takes
//! and renews the leader lease every `watch.lease`/3 and publishes the
//! [`Role`] on a watch channel. The run loop polls and the dispatcher sends
//! only while it says [`Role::Leader`]; `/healthz` reports it.
//!
//! A leader that cannot renew (database gone, process paused) demotes itself
//! once two thirds of its lease have passed since the last renewal began, so
//! it stops before the lease runs out; and if a write still slips through
//! after a takeover, the store refuses it (fencing, see
//! `store/postgres/lease.rs`). With SQLite the store always grants the
//! lease: one process, leader from the first renewal on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// What this process may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No polls, no sends (another replica leads, or the lease is unsure).
    Standby,
    /// Polls and sends; `generation` is the lease the store fences with.
    Leader { generation: i64 },
}

impl Role {
    /// Whether polls and sends may run.
    pub fn is_leader(self) -> bool {
        matches!(self, Role::Leader { .. })
    }

    /// `leader` / `standby`, for `/healthz` and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Standby => "standby",
        }
    }
}

/// One attempt in flight, with the time it began.
type Attempt = (Instant, JoinHandle<Result<Option<i64>, StoreError>>);

/// Starts the lease task. The receiver starts at [`Role::Standby`]; on
/// `shutdown` the task gives the lease up (a standby takes over at once)
/// and ends. `holder` names this process in the lease row.
pub fn spawn(
    store: Arc<dyn Store>,
    lease: Duration,
    holder: String,
    shutdown: CancellationToken,
) -> (watch::Receiver<Role>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Role::Standby);
    let task = tokio::spawn(run(store, lease, holder, tx, shutdown));
    (rx, task)
}

/// A holder name unique to this process: host, pid and a random part.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

async fn run(
    store: Arc<dyn Store>,
    lease: Duration,
    holder: String,
    role: watch::Sender<Role>,
    shutdown: CancellationToken,
) {
    let renew_every = lease / 3;
    let mut valid_until: Option<Instant> = None;
    let mut in_flight: Option<Attempt> = None;
    let mut next_attempt = Instant::now();
    loop {
        let demote_at = valid_until.unwrap_or_else(far_future);
        if in_flight.is_none() && Instant::now() >= next_attempt {
            let (store, holder) = (store.clone(), holder.clone());
            let started = Instant::now();
            let job = tokio::task::spawn_blocking(move || store.try_lead(&holder, lease));
            in_flight = Some((started, job));
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(demote_at) => {
                tracing::warn!(lease = ?lease, "leader lease not renewed in time; standing by");
                valid_until = None;
                role.send_replace(Role::Standby);
            }
            done = wait(&mut in_flight), if in_flight.is_some() => {
                let (started, result) = done;
                valid_until = settle(&role, result, started, lease, valid_until);
                next_attempt = started + renew_every;
            }
            () = tokio::time::sleep_until(next_attempt), if in_flight.is_none() => {}
        }
    }
    role.send_replace(Role::Standby);
    let step_down = tokio::task::spawn_blocking(move || store.step_down(&holder));
    if let Ok(Err(err)) = step_down.await {
        tracing::warn!(error = %err, "could not give the leader lease up");
    }
}

/// Awaits the attempt in flight and clears it.
async fn wait(
    in_flight: &mut Option<Attempt>,
) -> (
    Instant,
    Result<Result<Option<i64>, StoreError>, tokio::task::JoinError>,
) {
    let (started, job) = in_flight.as_mut().expect("guarded by the select");
    let result = job.await;
    let started = *started;
    *in_flight = None;
    (started, result)
}

/// Publishes one attempt's outcome; returns when to demote (2/3 of the
/// lease after the attempt began) while leading.
fn settle(
    role: &watch::Sender<Role>,
    result: Result<Result<Option<i64>, StoreError>, tokio::task::JoinError>,
    started: Instant,
    lease: Duration,
    valid_until: Option<Instant>,
) -> Option<Instant> {
    match result {
        Ok(Ok(Some(generation))) => {
            let new = Role::Leader { generation };
            if *role.borrow() != new {
                tracing::info!(
                    generation,
                    "leader lease taken: this process polls and sends"
                );
            }
            role.send_replace(new);
            Some(started + lease * 2 / 3)
        }
        Ok(Ok(None)) => {
            if role.borrow().is_leader() {
                tracing::warn!("leader lease held by another process: standing by");
            }
            role.send_replace(Role::Standby);
            None
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot renew the leader lease");
            valid_until
        }
        Err(err) => {
            tracing::error!(error = %err, "leader lease task failed");
            valid_until
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
#[path = "leadership_tests.rs"]
mod tests;
