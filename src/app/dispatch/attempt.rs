//! One attempt: wait for the sink's limits, send, decide the outcome, record
//! it. Two faults must not lose or repeat an attempt: a sink that panics
//! (the send runs in its own task, and a panic is a failed attempt), and a
//! state file that refuses the write for a while (the write is retried; the
//! delivery stays marked in flight meanwhile, so it is not sent again).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::digest::Gather;
use super::writer::Sending;
use super::{log_attempt, Dispatcher};
use crate::domain::Delivery;
use crate::sinks::SendError;
use crate::store::{AttemptOutcome, AttemptWrite, StoreError};

/// The reason recorded when a sink's send panicked (the panic message itself
/// goes to stderr; it may quote anything the sink held).
pub(super) const SEND_PANICKED: &str = "internal error: the send panicked";

/// How long a finished attempt keeps trying to write its outcome before it
/// gives up (the delivery then stays pending and may be sent again).
const RECORD_FOR: Duration = Duration::from_secs(60);

/// The first wait between writes of an outcome; it doubles up to
/// [`RECORD_WAIT_MAX`].
const RECORD_WAIT: Duration = Duration::from_millis(100);

const RECORD_WAIT_MAX: Duration = Duration::from_secs(5);

impl Dispatcher {
    /// One attempt for one delivery, recorded in the outbox and logged. A
    /// failing write of the outcome is retried until it works, for up to
    /// [`RECORD_FOR`], or until `stop` (shutdown).
    pub(super) async fn deliver_until(
        &self,
        delivery: Delivery,
        stop: &CancellationToken,
    ) -> Result<AttemptOutcome, StoreError> {
        let (delivery, prepared, digest) = match self.gather(delivery) {
            Gather::Send {
                delivery,
                message,
                digest,
            } => (*delivery, message, digest),
            Gather::Done(result) => return result,
        };
        let limits = self.limits.get(&delivery.sink).cloned();
        // Never closed, so acquiring cannot fail: `ok()` only unwraps.
        let unrecorded = match &limits {
            Some(limits) => limits.unrecorded.clone().acquire_owned().await.ok(),
            None => None,
        };
        let permit = match &limits {
            Some(limits) => limits.in_flight.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(rate) = limits.as_ref().and_then(|l| l.rate.as_ref()) {
            rate.until_ready().await;
        }
        if !self.leading.open() {
            return Err(self.not_leading(&delivery));
        }
        let sending = self.writes.sending(&self.store, &self.account);
        let started = tokio::time::Instant::now();
        // The bot's own record of a send starting (the HTTP and SMTP
        // libraries' logs are muted: they can carry webhook tokens).
        tracing::debug!(
            delivery = delivery.id.0,
            sink = %delivery.sink,
            item = %delivery.subject,
            attempt = delivery.attempts + 1,
            "sending"
        );
        let result = match prepared {
            // Digests go without attachments (README).
            Ok(()) => self.send_guarded(&delivery, digest.is_none()).await,
            Err(e) => Err(e),
        };
        let latency = started.elapsed();
        let attempt = delivery.attempts + 1;
        let now = self.clock.now();
        let outcome = self.policy.outcome(attempt, &result, now);
        let outcome = self.retry_after_quiet(&delivery, outcome);
        log_attempt(&self.account, &delivery, attempt, &outcome, latency);
        let write = AttemptWrite {
            id: delivery.id,
            outcome,
            at: now,
            latency,
        };
        let recorded = self
            .record(&delivery, digest, &write, stop, (sending, permit))
            .await;
        let outcome = write.outcome;
        self.release_unneeded(&delivery);
        // The sink's slot was freed once the outcome was queued (the next
        // send overlaps this write); the attempt stops counting as
        // unrecorded only now that it is written (or given up): a crash
        // re-sends at most `2 × concurrency` deliveries per sink.
        drop(unrecorded);
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&delivery.id);
        recorded.map(|()| outcome)
    }

    /// The lease was lost (or is unsure) before the send began: nothing is
    /// sent, the delivery stays pending for whoever leads now.
    fn not_leading(&self, delivery: &Delivery) -> StoreError {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&delivery.id);
        tracing::warn!(delivery = delivery.id.0, sink = %delivery.sink,
            "not the leader any more; not sending, the delivery stays pending");
        StoreError::Fenced {
            location: "this process (standing by)".into(),
            held: 0,
            current: 0,
        }
    }

    /// The sink's send with its panics caught, so a panic inside the sink
    /// becomes a retryable failure instead of a lost attempt. Polled in the
    /// attempt's own task (no task per send); dropping the attempt (the
    /// shutdown grace ended) drops the send too, so it never finishes
    /// unrecorded.
    async fn send_guarded(&self, delivery: &Delivery, attach: bool) -> Result<(), SendError> {
        let prepared = match attach {
            true => self.prepare_attachment(delivery).await?,
            false => super::attach::Prepared::plain(delivery),
        };
        let send = async {
            match self.sinks.get(&prepared.delivery.sink) {
                Some(sink) => super::attach::send(sink, &prepared).await,
                None => Err(SendError::Permanent(format!(
                    "sink {:?} is not configured or is disabled",
                    prepared.delivery.sink
                ))),
            }
        };
        // The sink's state is not looked at again after a panic: the send
        // future is dropped with it.
        match AssertUnwindSafe(send).catch_unwind().await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(
                    delivery = delivery.id.0,
                    sink = %delivery.sink,
                    panicked = true,
                    "the send panicked; the attempt counts as failed"
                );
                Err(SendError::Retryable(SEND_PANICKED.into()))
            }
        }
    }

    /// Writes the attempt, retrying a failing write with a short backoff:
    /// the send already happened, and giving the delivery up now would send
    /// it again.
    async fn record(
        &self,
        delivery: &Delivery,
        digest: Option<crate::domain::DeliveryId>,
        write: &AttemptWrite,
        stop: &CancellationToken,
        (sending, slot): (Sending, Option<OwnedSemaphorePermit>),
    ) -> Result<(), StoreError> {
        let (outcome, at, latency) = (&write.outcome, write.at, write.latency);
        let (mut sending, mut slot) = (Some(sending), slot);
        let started = tokio::time::Instant::now();
        let mut wait = RECORD_WAIT;
        loop {
            // The one place an attempt is marked: a digest marks all its
            // members together, in one transaction; single deliveries share
            // batched writes.
            let written = match digest {
                Some(digest) => {
                    drop(sending.take());
                    let written =
                        self.store
                            .record_digest(&self.account, digest, outcome, at, latency);
                    drop(slot.take());
                    written.map(drop)
                }
                None => {
                    let queued = (write.clone(), sending.take(), slot.take());
                    self.writes.write(&self.store, &self.account, queued).await
                }
            };
            let error = match written {
                Ok(()) => return Ok(()),
                Err(e @ StoreError::UnknownDelivery { .. }) => return Err(e),
                Err(e @ StoreError::Fenced { .. }) => {
                    tracing::warn!(delivery = delivery.id.0, sink = %delivery.sink, error = %e,
                            "lost the leader lease; the attempt is not recorded, the new leader sends it again");
                    return Err(e);
                }
                Err(e) => e,
            };
            let (id, sink) = (delivery.id.0, delivery.sink.as_str());
            if started.elapsed() + wait > RECORD_FOR {
                tracing::error!(
                    delivery = id, sink, outcome = outcome.as_str(), error = %error,
                    "cannot record the attempt; giving up, the delivery stays pending \
                     and may be sent again"
                );
                return Err(error);
            }
            tracing::warn!(
                delivery = id, sink, outcome = outcome.as_str(), error = %error,
                retry_in_ms = wait.as_millis() as u64,
                "cannot record the attempt; retrying the write"
            );
            tokio::select! {
                _ = stop.cancelled() => {
                    tracing::warn!(
                        delivery = id, sink, outcome = outcome.as_str(),
                        "shutting down before the attempt was recorded; the delivery \
                         stays pending and may be sent again"
                    );
                    return Err(error);
                }
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(RECORD_WAIT_MAX);
        }
    }
}
