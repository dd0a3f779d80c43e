//! The `run` loop: scan the outbox when something may have become due (a
//! poll's wake-up, a retry's time, a periodic look), send through each
//! sink's window (`lanes`), and keep the sends it started across reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::lanes::Lanes;
use super::Dispatcher;
use crate::domain::{Delivery, DeliveryId};
use crate::store::{AttemptOutcome, StoreError};

/// The longest `run` goes without looking at the outbox (for changes made
/// outside this process, e.g. `outbox retry`).
const LOOK_EVERY: Duration = Duration::from_secs(30);

/// The shortest sleep between looks, so a burst of wake-ups does not spin.
const LOOK_MIN: Duration = Duration::from_millis(20);

/// What a delivery task hands back.
type Finished = Result<AttemptOutcome, StoreError>;

/// The state of one `run`.
pub(super) struct Runner {
    /// The dispatcher new sends start with (the latest config).
    current: Dispatcher,
    lanes: Lanes,
    tasks: JoinSet<Finished>,
    /// Each running task's sink and delivery, for its lane's bookkeeping
    /// even when the task itself failed.
    running: HashMap<Id, (String, DeliveryId)>,
    /// When the next delivery not yet taken becomes due, as far as known:
    /// read after each scan, lowered by each retry recorded since.
    next_due: Option<DateTime<Utc>>,
    /// Something may be due that no scan has seen yet.
    look: bool,
}

impl Runner {
    pub(super) fn new(current: Dispatcher) -> Self {
        Runner {
            current,
            lanes: Lanes::default(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            next_due: None,
            look: true,
        }
    }

    /// Runs until `shutdown`, then gives sends in flight the grace period.
    pub(super) async fn serve(
        mut self,
        shutdown: CancellationToken,
        wake: Arc<Notify>,
        mut reloads: Option<watch::Receiver<Dispatcher>>,
    ) {
        let mut leading = self.current.leading.clone();
        self.current.count_held();
        loop {
            if leading.open() && std::mem::take(&mut self.look) {
                self.scan(&shutdown);
            }
            let sleep = self.until_next_look();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                () = leading.changed() => self.look = true,
                _ = wake.notified() => self.look = true,
                _ = tokio::time::sleep(sleep) => self.look = true,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(joined, &shutdown);
                }
                Some(next) = next_reload(reloads.as_mut()) => {
                    self.current = next.succeeding(&self.current);
                    self.look = true;
                }
            }
        }
        self.drain().await;
    }

    fn scan(&mut self, stop: &CancellationToken) {
        let now = self.current.clock.now();
        let scanned = self.lanes.scan(&self.current, now).and_then(|due| {
            self.spawn(due, stop);
            self.lanes.next_due(&self.current)
        });
        match scanned {
            Ok(next_due) => self.next_due = next_due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                self.next_due = None;
            }
        }
    }

    fn spawn(&mut self, deliveries: Vec<Delivery>, stop: &CancellationToken) {
        for delivery in deliveries {
            let (this, stop) = (self.current.clone(), stop.clone());
            let key = (delivery.sink.clone(), delivery.id);
            let task = self
                .tasks
                .spawn(async move { this.deliver_unless_quiet(delivery, &stop).await });
            self.running.insert(task.id(), key);
        }
    }

    /// Books a finished task: its lane gets room (maybe parked deliveries
    /// to send), its retry time is remembered.
    fn finished(
        &mut self,
        joined: Result<(Id, Finished), tokio::task::JoinError>,
        stop: &CancellationToken,
    ) {
        let task = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some((sink, delivery)) = self.running.remove(&task) else {
            return;
        };
        match joined {
            Ok((
                _,
                Ok(AttemptOutcome::Retry {
                    next_attempt_at, ..
                }),
            )) => {
                let earlier = self
                    .next_due
                    .map_or(next_attempt_at, |at| at.min(next_attempt_at));
                self.next_due = Some(earlier);
            }
            Ok((_, Ok(_))) => {}
            // Not recorded: still pending and due, so look again.
            Ok((_, Err(_))) => self.look = true,
            Err(e) => {
                tracing::error!(delivery = delivery.0, sink = %sink, error = %e,
                    "a delivery task failed; it stays pending");
                self.current
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&delivery);
                self.look = true;
            }
        }
        let now = self.current.clock.now();
        let refill = self.lanes.finished(&self.current, &sink, now);
        self.spawn(refill, stop);
    }

    /// Until the next scan: when the next delivery not yet taken becomes
    /// due, at most [`LOOK_EVERY`].
    fn until_next_look(&self) -> Duration {
        let now = self.current.clock.now();
        let wait = match self.next_due {
            Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO),
            None => LOOK_EVERY,
        };
        wait.clamp(LOOK_MIN, LOOK_EVERY)
    }

    /// Lets sends in flight finish within the grace period; the rest stay
    /// pending.
    async fn drain(mut self) {
        let grace = self.current.grace;
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "sends still in flight after the shutdown grace period; they stay pending"
            );
        }
    }
}

/// The next dispatcher sent on `reloads`; never when there is none (or the
/// sender is gone).
async fn next_reload(reloads: Option<&mut watch::Receiver<Dispatcher>>) -> Option<Dispatcher> {
    match reloads {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
