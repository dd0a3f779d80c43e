//! The behaviour every [`Store`] backend must have, as tests over `&dyn Store`.
//! A backend runs the whole suite with one line in its tests:
//! `crate::store::contract::store_contract!(fresh_store);` where
//! `fresh_store()` returns `(guard, Box<dyn Store>)` for an empty store (the
//! guard keeps its files or database alive). Backend-specific behaviour
//! (files, schema upgrades, fault injection) is tested beside the backend.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    AlertRecord, AttemptOutcome, CommitStats, ItemHistory, NewAlert, PollCommit, SlackLookup, Store,
};
use crate::domain::{
    AccountId, AlertCondition, AlertState, DeliveryId, DeliveryStatus, Disposition, EventKind,
    ExportId, NewDelivery, RenderedMessage, Snapshot, Subject,
};

#[path = "contract_outbox.rs"]
mod outbox;
pub(crate) use outbox::*;
#[path = "contract_digest.rs"]
mod digest;
pub(crate) use digest::*;
#[path = "contract_status.rs"]
mod status;
pub(crate) use status::*;

/// Generates one `#[test]` per contract case, each on a fresh store from
/// `$fresh()`.
macro_rules! store_contract {
    ($fresh:path) => {
        $crate::store::contract::store_contract!(@each $fresh;
            no_snapshot_before_the_first_poll,
            commit_writes_only_changed_rows,
            commit_records_fired_and_deliveries,
            already_fired_reports_only_recorded_pairs,
            item_history_collects_item_fired_and_deliveries,
            due_deliveries_respect_time_limit_and_exclusions,
            due_ids_list_what_due_deliveries_returns,
            pending_sinks_of_items_lists_each_items_pending_sinks,
            attempts_move_deliveries_through_their_states,
            recording_an_unknown_delivery_is_an_error,
            record_attempts_writes_each_attempt_of_a_batch,
            defer_moves_a_pending_delivery_without_an_attempt,
            get_deliveries_reads_the_accounts_own_by_id,
            retry_dead_all_touches_only_dead_ones,
            prune_removes_old_sent_and_fired_but_keeps_the_rest,
            prune_deletes_at_most_limit_rows_per_call,
            accounts_with_pending_lists_every_outbox_still_to_drain,
            every_outbox_query_is_scoped_to_its_account,
            alerts_are_their_own_subject_never_an_item,
            alert_history_is_the_latest_per_condition_and_state,
            recent_deliveries_are_the_newest_bounded_and_filtered,
            sink_activity_has_the_latest_success_and_failure_per_sink,
            item_names_are_those_still_in_the_snapshot,
            slack_lookups_are_per_sink_case_insensitive_and_expire,
            digest_windows_wait_then_claim_every_member_once,
            a_failed_digest_retries_whole_and_dies_whole,
        );
    };
    (@each $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let Some((_guard, store)) = $crate::store::contract::Fresh::fresh($fresh()) else {
                    return;
                };
                $crate::store::contract::$case(&*store);
            }
        )*
    };
}
pub(crate) use store_contract;

/// What a backend's `fresh_store()` returns: the store (with the guard that
/// keeps it alive), or `None` when the backend's server is not available on
/// this machine (the backend's helper says so once).
pub(crate) trait Fresh<G> {
    /// The store, if there is one.
    fn fresh(self) -> Option<(G, Box<dyn Store>)>;
}

impl<G> Fresh<G> for (G, Box<dyn Store>) {
    fn fresh(self) -> Option<(G, Box<dyn Store>)> {
        Some(self)
    }
}

impl<G> Fresh<G> for Option<(G, Box<dyn Store>)> {
    fn fresh(self) -> Option<(G, Box<dyn Store>)> {
        self
    }
}

const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/exports-sample.json");

/// A fixed time `secs` after a fixed origin.
pub(crate) fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_717_000_000 + secs, 0).unwrap()
}

/// The real two-item sample queue (items 2438 and 2439).
pub(crate) fn sample() -> Snapshot {
    Snapshot::parse(SAMPLE).unwrap().0
}

/// The default account.
pub(crate) fn me() -> AccountId {
    AccountId::default_account()
}

/// A `downloadable` delivery of item `id` to `sink`, pending or skipped.
pub(crate) fn new_delivery(id: i64, sink: &str, skip: Option<&str>) -> NewDelivery {
    NewDelivery {
        item_id: ExportId(id),
        event: EventKind::Downloadable,
        sink: sink.to_owned(),
        recipient: Some("someone@example.com".to_owned()),
        message: RenderedMessage {
            parts: BTreeMap::from([("text".to_owned(), format!("item {id} is ready"))]),
            context: Some(serde_json::json!({ "item": { "id": id } }).into()),
        },
        disposition: match skip {
            Some(reason) => Disposition::Skipped(reason.to_owned()),
            None => Disposition::Pending,
        },
    }
}

/// A poll commit for `account` that computes its own changes.
pub(crate) fn commit_for<'a>(
    account: &'a AccountId,
    previous: Option<&'a Snapshot>,
    snapshot: &'a Snapshot,
    fired: &'a [(ExportId, EventKind)],
    deliveries: &'a [NewDelivery],
    now: DateTime<Utc>,
) -> PollCommit<'a> {
    PollCommit {
        account,
        previous,
        snapshot,
        changes: None,
        fired,
        deliveries,
        now,
    }
}

/// Commits the sample baseline with `deliveries` (fired: none) at t(0).
pub(crate) fn baseline_with(store: &dyn Store, account: &AccountId, deliveries: &[NewDelivery]) {
    let snap = sample();
    store
        .commit_poll(&commit_for(account, None, &snap, &[], deliveries, t(0)))
        .unwrap();
}

/// A store with the sample baseline and one pending delivery due at t(0).
pub(crate) fn with_pending(store: &dyn Store) -> DeliveryId {
    let snap = sample();
    let fired = [(ExportId(2439), EventKind::Downloadable)];
    let deliveries = [new_delivery(2439, "audit", None)];
    store
        .commit_poll(&commit_for(&me(), None, &snap, &fired, &deliveries, t(0)))
        .unwrap();
    store.list_deliveries(&me(), None).unwrap()[0].id
}

/// An alert message for `condition` to the `ops` sink.
pub(crate) fn new_alert(condition: AlertCondition, state: AlertState) -> NewAlert {
    NewAlert {
        condition,
        state,
        sink: "ops".to_owned(),
        message: RenderedMessage::default(),
        disposition: Disposition::Pending,
    }
}

pub(crate) fn no_snapshot_before_the_first_poll(store: &dyn Store) {
    assert_eq!(store.load_snapshot(&me()).unwrap(), None);
    assert_eq!(store.last_success_at(&me()).unwrap(), None);
    assert_eq!(store.next_due_at(&me()).unwrap(), None);
    assert!(store.alert_history(&me()).unwrap().is_empty());
}

pub(crate) fn commit_writes_only_changed_rows(store: &dyn Store) {
    let first = sample();
    let stats = store
        .commit_poll(&commit_for(&me(), None, &first, &[], &[], t(0)))
        .unwrap();
    let written = |items_written, items_deleted| CommitStats {
        items_written,
        items_deleted,
        ..CommitStats::default()
    };
    assert_eq!(stats, written(2, 0));
    let loaded = store.load_snapshot(&me()).unwrap().unwrap();
    assert_eq!(loaded, first);

    let stats = store
        .commit_poll(&commit_for(&me(), Some(&loaded), &first, &[], &[], t(60)))
        .unwrap();
    assert_eq!(stats, CommitStats::default());
    assert_eq!(store.last_success_at(&me()).unwrap(), Some(t(60)));

    let mut next = first.clone();
    next.items.remove(&ExportId(2438));
    next.items.get_mut(&ExportId(2439)).unwrap().attempts = 2;
    next.nr_of_days = 14;
    let stats = store
        .commit_poll(&commit_for(&me(), Some(&first), &next, &[], &[], t(120)))
        .unwrap();
    assert_eq!(stats, written(1, 1));
    assert_eq!(store.load_snapshot(&me()).unwrap(), Some(next));
}

pub(crate) fn commit_records_fired_and_deliveries(store: &dyn Store) {
    let snap = sample();
    let fired = [
        (ExportId(2439), EventKind::Downloadable),
        (ExportId(2438), EventKind::Downloadable),
    ];
    let deliveries = [
        new_delivery(2439, "audit", None),
        new_delivery(2438, "mail", Some("no mapped address")),
    ];
    let stats = store
        .commit_poll(&commit_for(&me(), None, &snap, &fired, &deliveries, t(0)))
        .unwrap();
    assert_eq!((stats.fired, stats.deliveries), (2, 2));
    let list = store.list_deliveries(&me(), None).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0].subject,
        Subject::Item(ExportId(2438)),
        "newest first"
    );
    assert_eq!(list[0].status, DeliveryStatus::Skipped);
    assert_eq!(list[0].last_error.as_deref(), Some("no mapped address"));
    assert_eq!(list[0].next_attempt_at, None);
    assert_eq!(list[1].status, DeliveryStatus::Pending);
    assert_eq!(list[1].next_attempt_at, Some(t(0)));
    assert_eq!(list[1].created_at, t(0));
    assert_eq!(list[1].message.part("text"), "item 2439 is ready");
    assert_eq!(list[1].recipient.as_deref(), Some("someone@example.com"));
    let skipped = store
        .list_deliveries(&me(), Some(DeliveryStatus::Skipped))
        .unwrap();
    assert_eq!(skipped, vec![list[0].clone()]);
    assert_eq!(
        store.outbox_counts(&me()).unwrap(),
        vec![
            ("audit".to_owned(), DeliveryStatus::Pending, 1),
            ("mail".to_owned(), DeliveryStatus::Skipped, 1),
        ]
    );
}

pub(crate) fn already_fired_reports_only_recorded_pairs(store: &dyn Store) {
    let snap = sample();
    let fired = [(ExportId(2439), EventKind::Downloadable)];
    store
        .commit_poll(&commit_for(&me(), None, &snap, &fired, &[], t(0)))
        .unwrap();
    let asked = [
        (ExportId(2439), EventKind::Downloadable),
        (ExportId(2439), EventKind::Failed),
        (ExportId(2438), EventKind::Downloadable),
    ];
    let found = store.already_fired(&me(), &asked).unwrap();
    assert_eq!(found, HashSet::from([fired[0]]));
    let other = AccountId::new("other").unwrap();
    assert!(store.already_fired(&other, &asked).unwrap().is_empty());
    // Recording the same pair again is not an error and not counted.
    let stats = store
        .commit_poll(&commit_for(&me(), Some(&snap), &snap, &fired, &[], t(60)))
        .unwrap();
    assert_eq!(stats.fired, 0);
}

pub(crate) fn item_history_collects_item_fired_and_deliveries(store: &dyn Store) {
    with_pending(store);
    let history = store.item_history(&me(), ExportId(2439)).unwrap();
    assert_eq!(history.item.as_ref(), sample().items.get(&ExportId(2439)));
    assert_eq!(history.fired, vec![(EventKind::Downloadable, t(0))]);
    assert_eq!(history.deliveries.len(), 1);
    assert!(history.deliveries[0].1.is_empty());
    let none = store.item_history(&me(), ExportId(1)).unwrap();
    let empty = ItemHistory {
        item: None,
        fired: vec![],
        deliveries: vec![],
    };
    assert_eq!(none, empty);
}

pub(crate) fn alerts_are_their_own_subject_never_an_item(store: &dyn Store) {
    baseline_with(store, &me(), &[new_delivery(1, "audit", None)]);
    let alerts = [
        new_alert(AlertCondition::PollsFailing, AlertState::Firing),
        new_alert(AlertCondition::PollsFailing, AlertState::Recovered),
    ];
    assert_eq!(store.record_alerts(&me(), &alerts, t(5)).unwrap(), 2);
    let list = store.list_deliveries(&me(), None).unwrap();
    let subjects: Vec<Subject> = list.iter().map(|d| d.subject).collect();
    let alert = |state| Subject::Alert {
        condition: AlertCondition::PollsFailing,
        state,
    };
    assert_eq!(
        subjects,
        [
            alert(AlertState::Recovered),
            alert(AlertState::Firing),
            Subject::Item(ExportId(1))
        ]
    );
    assert!(list[..2].iter().all(|d| d.event == EventKind::Alert));
    assert_eq!(
        list[0].next_attempt_at,
        Some(t(5)),
        "alerts are due at once"
    );
    let due = store.due_deliveries(&me(), t(5), 10, &HashSet::new());
    assert_eq!(due.unwrap().len(), 3, "alerts are delivered like items");
    // Item 1 (PollsFailing was fake item 1 in schema 2) shows only its own.
    let history = store.item_history(&me(), ExportId(1)).unwrap();
    assert_eq!(history.deliveries.len(), 1);
    assert_eq!(history.deliveries[0].0.subject, Subject::Item(ExportId(1)));
}

pub(crate) fn alert_history_is_the_latest_per_condition_and_state(store: &dyn Store) {
    let firing = |c| new_alert(c, AlertState::Firing);
    store
        .record_alerts(&me(), &[firing(AlertCondition::DeliveriesDead)], t(0))
        .unwrap();
    store
        .record_alerts(&me(), &[firing(AlertCondition::DeliveriesDead)], t(10))
        .unwrap();
    let recovered = new_alert(AlertCondition::DeliveriesDead, AlertState::Recovered);
    store.record_alerts(&me(), &[recovered], t(20)).unwrap();
    let other = AccountId::new("other").unwrap();
    store
        .record_alerts(&other, &[firing(AlertCondition::PollsFailing)], t(30))
        .unwrap();
    let record = |condition, state, at| AlertRecord {
        condition,
        state,
        at,
    };
    assert_eq!(
        store.alert_history(&me()).unwrap(),
        [
            record(AlertCondition::DeliveriesDead, AlertState::Firing, t(10)),
            record(AlertCondition::DeliveriesDead, AlertState::Recovered, t(20)),
        ]
    );
    // Pruning every sent delivery keeps the memory.
    for d in store.list_deliveries(&me(), None).unwrap() {
        let sent = AttemptOutcome::Sent;
        store
            .record_attempt(&me(), d.id, &sent, t(21), Duration::ZERO)
            .unwrap();
    }
    assert_eq!(
        store.prune(&me(), t(1000), t(1000), usize::MAX).unwrap().0,
        3
    );
    assert_eq!(store.alert_history(&me()).unwrap().len(), 2);
    assert_eq!(store.alert_history(&other).unwrap().len(), 1);
}

/// Slack lookups: found and not-found answers both kept until they expire,
/// keyed case-insensitively per sink, replaced by the next lookup.
pub(crate) fn slack_lookups_are_per_sink_case_insensitive_and_expire(store: &dyn Store) {
    let found = SlackLookup {
        user_id: Some("U0ANN".into()),
        expires_at: t(100),
    };
    assert_eq!(
        store.slack_lookup("dm", "ann@example.com", t(0)).unwrap(),
        None
    );
    store
        .remember_slack_lookup("dm", " Ann@Example.COM", &found)
        .unwrap();
    let hit = store.slack_lookup("dm", "ann@EXAMPLE.com", t(99)).unwrap();
    assert_eq!(hit, Some(found));
    assert_eq!(
        store.slack_lookup("dm", "ann@example.com", t(100)).unwrap(),
        None
    );
    assert_eq!(
        store
            .slack_lookup("other", "ann@example.com", t(0))
            .unwrap(),
        None
    );
    let miss = SlackLookup {
        user_id: None,
        expires_at: t(200),
    };
    store
        .remember_slack_lookup("dm", "ann@example.com", &miss)
        .unwrap();
    assert_eq!(
        store.slack_lookup("dm", "ann@example.com", t(150)).unwrap(),
        Some(miss)
    );
}
