//! `run`'s window per sink. Each sink has at most [`BATCH`] deliveries in
//! flight; due deliveries found while its window is full are *parked* (only
//! their ids are kept, in due order) and handed to that sink as its window
//! drains. A hung sink therefore fills only its own window, and every other
//! sink keeps taking its deliveries from the same outbox.
//!
//! Reading: a scan lists every due delivery not in flight or parked by id
//! and sink, in pages, and reads in full only those it takes; a parked
//! delivery is read when its sink has room (by id). A burst's messages are
//! decoded once each, never once per completed send.
//! (The store's due query has no sink filter, so parked rows still pass
//! through each later scan's exclusion; see `Store::due_deliveries`.)

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use super::{Dispatcher, BATCH};
use crate::domain::{Delivery, DeliveryId, DeliveryStatus};
use crate::store::StoreError;

/// A sink takes more from its parked deliveries only once its window drops
/// to this, so a burst is fetched in chunks rather than a row per send.
pub(super) const REFILL_BELOW: usize = BATCH / 2;

/// The largest page of one scan: bounds the decoded rows held at once.
const PAGE_MAX: usize = 4096;

/// One sink's window.
#[derive(Debug, Default)]
struct Lane {
    /// Deliveries taken for this sink and not finished (waiting for the
    /// sink's permit or rate limit, or sending).
    running: usize,
    /// Due deliveries beyond the window, oldest due first.
    parked: VecDeque<DeliveryId>,
}

impl Lane {
    fn has_room(&self) -> bool {
        self.running < BATCH
    }
}

/// Every sink's window, by sink name (a sink seen in the outbox but not
/// configured gets one too: its deliveries go dead promptly).
#[derive(Debug, Default)]
pub(super) struct Lanes {
    lanes: HashMap<String, Lane>,
    /// The ids in every lane's `parked`, for the scans' exclusion.
    parked: HashSet<DeliveryId>,
}

impl Lanes {
    /// How many deliveries are parked over all sinks (tests).
    #[cfg(test)]
    pub(super) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Takes every delivery due at `now` that is neither in flight nor
    /// parked: into its sink's window while there is room (marked in flight
    /// and returned, to be sent), else parked. The due rows are listed by id
    /// and sink; only the taken ones are read in full (one read), so a
    /// burst's message is decoded once, when it goes out.
    pub(super) fn scan(
        &mut self,
        d: &Dispatcher,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut taken: Vec<(DeliveryId, String)> = Vec::new();
        let mut page = BATCH;
        let listed = loop {
            let mut in_flight = d.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let exclude: HashSet<DeliveryId> = in_flight.union(&self.parked).copied().collect();
            let due = match d.store.due_ids(&d.account, now, page, &exclude) {
                Ok(due) => due,
                Err(e) => break Err(e),
            };
            let last_page = due.len() < page;
            for (id, sink) in due {
                let lane = self.lanes.entry(sink.clone()).or_default();
                if lane.parked.is_empty() && lane.has_room() {
                    lane.running += 1;
                    in_flight.insert(id);
                    taken.push((id, sink));
                } else {
                    lane.parked.push_back(id);
                    self.parked.insert(id);
                }
            }
            if last_page {
                break Ok(());
            }
            page = (page * 2).min(PAGE_MAX);
        };
        let read = listed.and_then(|()| {
            let ids: Vec<DeliveryId> = taken.iter().map(|(id, _)| *id).collect();
            d.store.get_deliveries(&d.account, &ids)
        });
        let mut found: HashMap<DeliveryId, Delivery> = match read {
            Ok(found) => found.into_iter().map(|d| (d.id, d)).collect(),
            Err(e) => {
                self.untake(d, &taken);
                return Err(e);
            }
        };
        let (mut sending, mut gone) = (Vec::with_capacity(taken.len()), Vec::new());
        for (id, sink) in taken {
            match found.remove(&id).filter(|d| still_due(d, now)) {
                Some(delivery) => sending.push(delivery),
                None => gone.push((id, sink)),
            }
        }
        self.untake(d, &gone);
        Ok(sending)
    }

    /// Gives back the window places and in-flight marks of deliveries taken
    /// but not sent (the read failed, or they changed since listed).
    fn untake(&mut self, d: &Dispatcher, taken: &[(DeliveryId, String)]) {
        let mut in_flight = d.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for (id, sink) in taken {
            in_flight.remove(id);
            if let Some(lane) = self.lanes.get_mut(sink) {
                lane.running = lane.running.saturating_sub(1);
            }
        }
    }

    /// When the earliest pending delivery that is neither in flight nor
    /// parked becomes due: when `run` must look next.
    pub(super) fn next_due(&self, d: &Dispatcher) -> Result<Option<DateTime<Utc>>, StoreError> {
        let in_flight = d.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let exclude: HashSet<DeliveryId> = in_flight.union(&self.parked).copied().collect();
        let first = d
            .store
            .due_deliveries(&d.account, DateTime::<Utc>::MAX_UTC, 1, &exclude)?;
        Ok(first.first().and_then(|d| d.next_attempt_at))
    }

    /// A delivery of `sink` finished; when its window has drained to
    /// [`REFILL_BELOW`], the parked deliveries that fill it again (read by
    /// id, all in one query, marked in flight), to be sent.
    pub(super) fn finished(
        &mut self,
        d: &Dispatcher,
        sink: &str,
        now: DateTime<Utc>,
    ) -> Vec<Delivery> {
        let Some(lane) = self.lanes.get_mut(sink) else {
            return Vec::new();
        };
        lane.running = lane.running.saturating_sub(1);
        if lane.running > REFILL_BELOW {
            return Vec::new();
        }
        let mut taken = Vec::new();
        while lane.has_room() && !lane.parked.is_empty() {
            let ids: Vec<DeliveryId> = lane
                .parked
                .iter()
                .take(BATCH - lane.running)
                .copied()
                .collect();
            let found = match d.store.get_deliveries(&d.account, &ids) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(sink, error = %e, "cannot read the outbox");
                    break;
                }
            };
            let mut found: HashMap<DeliveryId, Delivery> =
                found.into_iter().map(|d| (d.id, d)).collect();
            lane.parked.drain(..ids.len());
            let mut in_flight = d.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                self.parked.remove(&id);
                // Sent, dead or pruned since (or no longer due): left out; a
                // later scan finds it if it is due again.
                if let Some(delivery) = found.remove(&id).filter(|d| still_due(d, now)) {
                    lane.running += 1;
                    in_flight.insert(id);
                    taken.push(delivery);
                }
            }
        }
        if lane.running == 0 && lane.parked.is_empty() {
            self.lanes.remove(sink);
        }
        taken
    }
}

fn still_due(delivery: &Delivery, now: DateTime<Utc>) -> bool {
    delivery.status == DeliveryStatus::Pending
        && delivery.next_attempt_at.is_none_or(|at| at <= now)
}
