//! The dispatcher's side of digests (`digest = D` on a sink): before a due
//! item delivery of such a sink is sent, its window is gathered in the
//! store (`Store::gather_digest`): still open — nothing is sent, every
//! member waits for the window's end; due — the claimed members go as one
//! message (a window of one: the ordinary message), recorded together by
//! the attempt's one record step. A member of a digest another member
//! leads sends nothing itself.

use chrono::{DateTime, Utc};

use super::Dispatcher;
use crate::config::SinkConfig;
use crate::domain::{Delivery, DeliveryId, Subject};
use crate::sinks::SendError;
use crate::store::{AttemptOutcome, DigestWindow, Gathered, StoreError};

/// What the digest step made of a due delivery.
pub(super) enum Gather {
    /// Send this (the delivery itself, or a digest's leader carrying the
    /// digest's message); `digest` names the digest whose members the
    /// outcome is recorded for, `None` for a delivery recorded alone.
    Send {
        delivery: Box<Delivery>,
        message: Result<(), SendError>,
        digest: Option<DeliveryId>,
    },
    /// Nothing to send now: the attempt's result (no attempt is recorded).
    Done(Result<AttemptOutcome, StoreError>),
}

impl Dispatcher {
    /// The digest step for a due delivery (see the module docs).
    pub(super) fn gather(&self, delivery: Delivery) -> Gather {
        let sink = match (&delivery.subject, self.digests.get(&delivery.sink)) {
            (Subject::Item(_), Some(sink)) => sink.clone(),
            _ => return alone(delivery),
        };
        let Some(length) = sink.digest else {
            return alone(delivery);
        };
        let key = crate::digest::window_key(&sink.kind, &sink.name, delivery.recipient.as_deref());
        let window = DigestWindow {
            sink: &key.sink,
            recipient: key.recipient.as_deref(),
            length,
        };
        let now = self.clock.now();
        let gathered = self
            .store
            .gather_digest(&self.account, delivery.id, &window, now);
        match gathered {
            Ok(Gathered::Send { digest, members }) => self.prepare(&sink, digest, members, now),
            Ok(Gathered::Wait { until }) => self.not_now(&delivery, waiting(until)),
            Ok(Gathered::Elsewhere) => self.not_now(
                &delivery,
                "in a digest another delivery leads, or no longer pending",
            ),
            Err(e) => {
                self.release(delivery.id);
                tracing::error!(delivery = delivery.id.0, sink = %delivery.sink, error = %e,
                    "cannot gather the digest window; the delivery stays pending");
                Gather::Done(Err(e))
            }
        }
    }

    /// A claimed digest ready to send: one member goes as its ordinary
    /// message; more are rendered into the sink's digest message, sent as
    /// the leader.
    fn prepare(
        &self,
        sink: &SinkConfig,
        digest: DeliveryId,
        members: Vec<Delivery>,
        now: DateTime<Utc>,
    ) -> Gather {
        let Some(leader) = members.iter().find(|m| m.id == digest).cloned() else {
            return self.not_now_id(digest, "the digest has no pending leader");
        };
        if crate::digest::shape(members.len()) == crate::digest::Shape::Ordinary {
            return alone(leader);
        }
        tracing::info!(digest = digest.0, sink = %sink.name, members = members.len(),
            "sending a digest");
        let mut delivery = leader;
        let contexts: Vec<_> = members.iter().map(crate::digest::member_context).collect();
        let message = match crate::digest::render(&self.renderer, sink, &contexts, now) {
            Ok(rendered) => {
                delivery.message = rendered;
                Ok(())
            }
            Err(e) => Err(SendError::Permanent(format!(
                "cannot render the digest for sink {}: {e}",
                sink.name
            ))),
        };
        Gather::Send {
            delivery: Box::new(delivery),
            message,
            digest: Some(digest),
        }
    }

    /// Nothing is sent for `delivery` now: no attempt is recorded; the
    /// result says why (the summary of `once` does not count it).
    fn not_now(&self, delivery: &Delivery, reason: impl Into<String>) -> Gather {
        self.not_now_id(delivery.id, reason)
    }

    fn not_now_id(&self, id: DeliveryId, reason: impl Into<String>) -> Gather {
        self.release(id);
        let reason = reason.into();
        tracing::debug!(delivery = id.0, reason = %reason, "not sending now");
        Gather::Done(Ok(AttemptOutcome::Skipped { reason }))
    }

    /// The delivery is no longer in flight.
    fn release(&self, id: DeliveryId) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// "waiting for digest until <time>", as `outbox list` words it.
pub(crate) fn waiting(until: DateTime<Utc>) -> String {
    format!(
        "waiting for digest until {}",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn alone(delivery: Delivery) -> Gather {
    Gather::Send {
        delivery: Box::new(delivery),
        message: Ok(()),
        digest: None,
    }
}
