//! One poll cycle, the same for `run`, `once` and `demo`: fetch the queue,
//! diff it against the stored snapshot, drop events that already fired, route
//! and render the deliveries, and commit snapshot + fired records +
//! deliveries in one transaction. A failed fetch changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::{Config, FirstRun, SinkConfig};
use crate::crayon::{CrayonClient, CrayonError};
use crate::diff::{diff_changes, unfired, DiffOptions, Event};
use crate::domain::{
    AccountId, Change, Disposition, EventKind, ExportId, NewDelivery, RenderedMessage, Snapshot,
};
use crate::domain::{MalformedQueue, Polled};
use crate::render::{AccountView, MessageInput, RecipientView, Renderer};
use crate::route::{self, Router, Target};
use crate::sinks::email::rcpt::REQUESTER_PART;
use crate::store::{CommitStats, PollCommit, Store, StoreError};

/// Why a poll did not complete. Either way nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("poll failed: {0}")]
    Api(CrayonError),
    #[error("poll failed: {0}")]
    Malformed(#[from] MalformedQueue),
    #[error(transparent)]
    State(#[from] StoreError),
}

impl From<CrayonError> for PollError {
    fn from(e: CrayonError) -> Self {
        PollError::Api(e)
    }
}

/// What one successful poll did (for the per-poll log line and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub items: usize,
    pub events: usize,
    pub deliveries: usize,
    /// True when this poll only recorded the baseline.
    pub baseline: bool,
    pub duplicates: Vec<ExportId>,
    /// Snapshot rows inserted, updated or deleted: proportional to the
    /// changes, not to the queue's size.
    pub rows_written: usize,
    /// Everything the poll's transaction wrote (benchmarks report it to show
    /// that writes follow changes).
    pub commit: CommitStats,
}

/// The watcher's state between polls: the last snapshot is kept in memory
/// after it was loaded once, so a poll reads nothing it does not need.
pub struct Watcher {
    config: Arc<Config>,
    client: Arc<CrayonClient>,
    store: Arc<dyn Store>,
    /// The account this watcher polls (the single account of a v0.1 config).
    account: AccountId,
    router: Router,
    renderer: Arc<Renderer>,
    previous: Option<Snapshot>,
    loaded: bool,
    /// Items of the snapshot whose `expiring` is known to have fired, so a
    /// poll does not ask the state about them again every time.
    expiring_fired: std::sync::Mutex<std::collections::HashSet<ExportId>>,
    /// The last poll's measure (duration, items), for the account's health.
    measure: Option<crate::app::telemetry::Measure>,
}

impl Watcher {
    /// A watcher over already-built parts (so tests and the demo can supply
    /// their own client).
    pub fn new(
        config: Arc<Config>,
        client: Arc<CrayonClient>,
        store: Arc<dyn Store>,
        renderer: Arc<Renderer>,
    ) -> Self {
        Watcher {
            router: Router::new(&config),
            config,
            client,
            store,
            account: AccountId::default_account(),
            renderer,
            previous: None,
            loaded: false,
            expiring_fired: Default::default(),
            measure: None,
        }
    }

    /// The same watcher polling `account` (its snapshot, fired records and
    /// outbox; routes listing `accounts` filter on it). Call before the
    /// first poll; the client must be that account's.
    pub fn for_account(mut self, account: &AccountId) -> Self {
        self.router = self.router.for_account(account);
        self.account = account.clone();
        self.previous = None;
        self.loaded = false;
        self
    }

    /// The account this watcher polls.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The last poll's duration and (when it succeeded) item count.
    pub fn last_measure(&self) -> Option<crate::app::telemetry::Measure> {
        self.measure
    }

    /// One poll; logs its summary line and returns what it did.
    pub async fn poll(&mut self) -> Result<PollReport, PollError> {
        let started = Instant::now();
        let result = self.poll_inner().await;
        let elapsed = started.elapsed();
        self.measure = Some((elapsed, result.as_ref().ok().map(|r| r.items)));
        log_poll(&self.account, &result, elapsed);
        result
    }

    async fn poll_inner(&mut self) -> Result<PollReport, PollError> {
        let body = self.client.fetch_queue().await?;
        self.process(&body, Utc::now())
    }

    /// Everything a poll does after the HTTP GET: parse the body, diff it
    /// against the previous snapshot, drop events that already fired, route
    /// and render, and commit it all in one transaction. `poll` (and so `run`
    /// and `once`) calls exactly this; benchmarks call it directly so they
    /// measure the real cycle without a network in the way.
    pub fn process(&mut self, body: &[u8], now: DateTime<Utc>) -> Result<PollReport, PollError> {
        if !self.loaded {
            self.previous = self.store.load_snapshot(&self.account)?;
            self.loaded = true;
        }
        // Takes the stored snapshot (its unchanged items move into the new
        // one); a malformed body leaves it in place.
        let polled =
            Snapshot::parse_over(body, &mut self.previous).map_err(MalformedQueue::from)?;
        let baseline =
            polled.prior().is_none() && self.config.watch.first_run == FirstRun::Baseline;
        let changes = polled.changes();
        let committed = if baseline {
            let close = self.expiring_events(&polled.snapshot, now);
            let seen: Vec<(ExportId, EventKind)> =
                close.iter().map(|e| (e.item.id, e.kind)).collect();
            // Recorded, not notified: the report counts no events.
            let report = self.commit(&polled, &changes, &seen, &[], now);
            if report.is_ok() {
                self.remember_expiring(&seen);
            }
            report.map(|report| PollReport {
                events: 0,
                ..report
            })
        } else {
            self.notify(&polled, &changes, now)
        };
        let mut report = match committed {
            Ok(report) => report,
            Err(e) => {
                // Nothing was written: the next poll reloads the stored state.
                self.loaded = false;
                return Err(e);
            }
        };
        let items = polled.snapshot.items.len();
        if baseline {
            tracing::info!(account = %self.account, items, "baseline: {items} items recorded");
        }
        for id in &polled.duplicates {
            tracing::warn!(
                item = id.0,
                "the queue listed item {id} more than once; kept the first"
            );
        }
        report.baseline = baseline;
        report.duplicates = polled.duplicates;
        self.previous = Some(polled.snapshot);
        Ok(report)
    }

    fn notify(
        &self,
        polled: &Polled,
        changes: &[Change<'_>],
        now: DateTime<Utc>,
    ) -> Result<PollReport, PollError> {
        let options = DiffOptions {
            max_age: self.config.watch.max_age,
        };
        let snapshot = &polled.snapshot;
        let previous_days = polled.prior().map_or(0, |p| p.nr_of_days);
        let events: Vec<Event<'_>> = diff_changes(
            changes.iter().copied(),
            previous_days,
            snapshot,
            now,
            options,
        )
        .into_iter()
        .filter(|e| self.router.watches(e.kind))
        .chain(self.expiring_events(snapshot, now))
        .collect();
        let pairs: Vec<(ExportId, EventKind)> =
            events.iter().map(|e| (e.item.id, e.kind)).collect();
        let fired = self.store.already_fired(&self.account, &pairs)?;
        self.remember_expiring(fired.iter());
        let fresh: Vec<&Event<'_>> = unfired(&events, &fired);
        let nr_of_days = snapshot.nr_of_days;
        let deliveries: Vec<NewDelivery> = fresh
            .iter()
            .flat_map(|e| self.deliveries_for(e, nr_of_days, now))
            .collect();
        let fired: Vec<(ExportId, EventKind)> = fresh.iter().map(|e| (e.item.id, e.kind)).collect();
        let report = self.commit(polled, changes, &fired, &deliveries, now)?;
        self.remember_expiring(&fired);
        fresh
            .iter()
            .for_each(|e| crate::app::telemetry::event_fired(&self.account, e.kind));
        Ok(report)
    }

    /// The `expiring` events of this poll, when watched (else nothing is
    /// looked at). At the baseline they are recorded as fired without a
    /// message: an item already that close to expiry is not news.
    fn expiring_events<'a>(&self, snapshot: &'a Snapshot, now: DateTime<Utc>) -> Vec<Event<'a>> {
        if !self.router.watches(EventKind::Expiring) {
            return Vec::new();
        }
        let mut known = self
            .expiring_fired
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known.retain(|id| snapshot.items.contains_key(id));
        let mut events = crate::diff::expiring(snapshot, now, self.config.watch.remind_before);
        events.retain(|e| !known.contains(&e.item.id));
        events
    }

    /// Notes the `expiring` pairs among `fired` (recorded in the state).
    fn remember_expiring<'p>(&self, fired: impl IntoIterator<Item = &'p (ExportId, EventKind)>) {
        let mut known = self
            .expiring_fired
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known.extend(
            fired
                .into_iter()
                .filter(|(_, kind)| *kind == EventKind::Expiring)
                .map(|(id, _)| *id),
        );
    }

    fn commit(
        &self,
        polled: &Polled,
        changes: &[Change<'_>],
        fired: &[(ExportId, EventKind)],
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<PollReport, PollError> {
        let snapshot = &polled.snapshot;
        let stats = self.store.commit_poll(&PollCommit {
            account: &self.account,
            previous: polled.prior(),
            snapshot,
            changes: Some(changes),
            fired,
            deliveries,
            now,
        })?;
        Ok(PollReport {
            items: snapshot.items.len(),
            events: fired.len(),
            deliveries: deliveries.len(),
            rows_written: stats.items_written + stats.items_deleted,
            commit: stats,
            ..PollReport::default()
        })
    }

    /// One delivery per routed sink, rendered now. A template that fails on
    /// this item yields a dead delivery with the reason, not a lost event.
    fn deliveries_for(
        &self,
        event: &Event<'_>,
        nr_of_days: u32,
        now: DateTime<Utc>,
    ) -> Vec<NewDelivery> {
        let requested_by = event.item.requested_by.as_deref();
        let entry = self.router.recipient(requested_by);
        let input = MessageInput {
            event: event.kind,
            reason: event.reason,
            item: event.item,
            previous: event.previous,
            nr_of_days,
            recipient: RecipientView::new(requested_by, entry),
            portal: self.config.portal.as_str(),
            now,
            account: self.account_view(),
        };
        self.router
            .sinks_for(event.kind, event.item)
            .into_iter()
            .filter_map(|name| self.config.sinks.get(name))
            .flat_map(|sink| self.delivery(event, sink, &input))
            .collect()
    }

    /// What templates see as `account`: this account's name and `vars`.
    fn account_view(&self) -> AccountView {
        let vars = self.config.account(&self.account).map(|a| a.vars.clone());
        AccountView {
            name: self.account.to_string(),
            vars: vars.unwrap_or_default(),
        }
    }

    /// One sink's deliveries (one per recipient for email, else one):
    /// skipped when the sink has no one to send it to, dead when the
    /// template fails on this item, pending otherwise.
    fn delivery(
        &self,
        event: &Event<'_>,
        sink: &SinkConfig,
        input: &MessageInput<'_>,
    ) -> Vec<NewDelivery> {
        let (recipients, requester, mut disposition) = targets(event, sink, input);
        let mut message = if disposition == Disposition::Pending {
            self.renderer.render(sink, input).unwrap_or_else(|e| {
                disposition = Disposition::Dead(e.to_string());
                RenderedMessage::default()
            })
        } else {
            RenderedMessage::default()
        };
        if let Some(who) = requester {
            message.parts.insert(REQUESTER_PART.to_string(), who);
        }
        recipients
            .into_iter()
            .map(|recipient| NewDelivery {
                item_id: event.item.id,
                event: event.kind,
                sink: sink.name.clone(),
                recipient,
                message: message.clone(),
                disposition: disposition.clone(),
            })
            .collect()
    }
}

/// Whom one sink's message goes to (one entry per delivery), the requester
/// to name in an email's `To` on every row, and the starting state.
fn targets(
    event: &Event<'_>,
    sink: &SinkConfig,
    input: &MessageInput<'_>,
) -> (Vec<Option<String>>, Option<String>, Disposition) {
    let who = event.item.requested_by.as_deref();
    match route::target(&sink.kind, who, &input.recipient) {
        Target::Channel => (vec![None], None, Disposition::Pending),
        Target::Person(who) => (vec![Some(who)], None, Disposition::Pending),
        Target::Skip(reason) => (vec![None], None, Disposition::Skipped(reason)),
        Target::Mail {
            rows,
            requester,
            note,
        } => {
            if let Some(reason) = note {
                tracing::info!(
                    sink = %sink.name,
                    item = event.item.id.0,
                    reason = %reason,
                    "not sending to the requester; sending to the sink's fixed recipients only"
                );
            }
            let rows = rows.into_iter().map(Some).collect();
            (rows, requester, Disposition::Pending)
        }
    }
}

fn log_poll(account: &AccountId, result: &Result<PollReport, PollError>, elapsed: Duration) {
    let duration_ms = elapsed.as_millis() as u64;
    match result {
        Ok(r) => {
            crate::app::telemetry::poll_succeeded(account, elapsed, r.items, Utc::now());
            tracing::info!(
                account = %account,
                items = r.items,
                events = r.events,
                deliveries = r.deliveries,
                rows_written = r.rows_written,
                duration_ms,
                "poll"
            )
        }
        Err(e) => {
            crate::app::telemetry::poll_failed(account, elapsed);
            tracing::debug!(account = %account, error = %e, duration_ms, "poll failed")
        }
    }
}
