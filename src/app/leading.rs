//! The gate polls and sends pass only while this process holds the leader
//! lease. It follows the [`Role`] the lease task publishes, and it also
//! closes on its own once two thirds of the lease have passed since the
//! last renewal was seen: a process that was paused (SIGSTOP, a VM freeze)
//! must not send anything when it resumes, even before its lease task had
//! a chance to notice and stand by.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::telemetry::Health;
use crate::leadership::Role;

/// Whether this process may poll and send now. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leading {
    /// Until when the last renewal seen makes this process the leader;
    /// `None` while standing by.
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// `None` for [`Leading::always`]: nothing ever changes.
    changes: Option<watch::Receiver<Role>>,
}

impl Leading {
    /// Always open: one process alone (`once`, tests, SQLite without a lease task).
    pub fn always() -> Leading {
        Leading {
            valid_until: Arc::new(Mutex::new(Some(Instant::now() + FOREVER))),
            changes: None,
        }
    }

    /// Follows `role` (from `leadership::spawn`): each renewal keeps the gate
    /// open for two thirds of `lease`; `health` gets the role for
    /// `/healthz` and the status page. The task ends with the lease task.
    pub fn follow(
        mut role: watch::Receiver<Role>,
        lease: Duration,
        health: Arc<Health>,
    ) -> (Leading, JoinHandle<()>) {
        let leading = Leading {
            valid_until: Arc::new(Mutex::new(None)),
            changes: Some(role.clone()),
        };
        let valid_until = leading.valid_until.clone();
        let task = tokio::spawn(async move {
            loop {
                let now = *role.borrow_and_update();
                let until = now.is_leader().then(|| Instant::now() + lease * 2 / 3);
                *valid_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
                health.set_role(now.is_leader());
                if role.changed().await.is_err() {
                    break;
                }
            }
            *valid_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        });
        (leading, task)
    }

    /// True while this process holds a lease it renewed recently enough.
    pub fn open(&self) -> bool {
        let until = *self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|at| Instant::now() < at)
    }

    /// Resolves at the next role change (a renewal counts); never for
    /// [`Leading::always`] or once the lease task ended.
    pub async fn changed(&mut self) {
        match self.changes.as_mut() {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// "Open for good", far enough not to matter yet small enough for `Instant`.
const FOREVER: Duration = Duration::from_secs(86_400 * 365 * 30);

#[cfg(test)]
mod tests {
    use super::*;

    /// A renewal keeps the gate open for 2/3 of the lease only: a paused
    /// process finds it closed on resuming, before its lease task ran.
    #[tokio::test(start_paused = true)]
    async fn the_gate_follows_the_role_and_closes_on_a_stale_renewal() {
        let (tx, rx) = watch::channel(Role::Standby);
        let health = Arc::new(Health::new(Duration::from_secs(1)));
        let lease = Duration::from_secs(3);
        let (leading, task) = Leading::follow(rx, lease, health.clone());
        tokio::task::yield_now().await;
        assert!(!leading.open());
        tx.send_replace(Role::Leader { generation: 1 });
        tokio::task::yield_now().await;
        assert!(leading.open());
        assert_eq!(health.role(), crate::status::Role::Leader);
        tokio::time::advance(lease * 2 / 3 + Duration::from_millis(1)).await;
        assert!(!leading.open(), "no renewal seen for 2/3 of the lease");
        tx.send_replace(Role::Standby);
        drop(tx);
        task.await.unwrap();
        assert_eq!(health.role(), crate::status::Role::Standby);
        assert!(Leading::always().open());
    }
}
