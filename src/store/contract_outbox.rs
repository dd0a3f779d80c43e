//! The outbox half of the behaviour suite (see `contract.rs`).

use std::collections::HashSet;
use std::time::Duration;

use super::{baseline_with, commit_for, me, new_delivery, sample, t, with_pending};
use crate::domain::{AccountId, DeliveryId, DeliveryStatus, EventKind, ExportId};
use crate::store::{AttemptOutcome, AttemptWrite, Store, StoreError};

fn dead(error: &str) -> AttemptOutcome {
    AttemptOutcome::Dead {
        error: error.to_owned(),
    }
}

fn all_due(store: &dyn Store, account: &AccountId, at: i64) -> Vec<DeliveryId> {
    let due = store.due_deliveries(account, t(at), 100, &HashSet::new());
    due.unwrap().iter().map(|d| d.id).collect()
}

pub(crate) fn due_deliveries_respect_time_limit_and_exclusions(store: &dyn Store) {
    let deliveries = [
        new_delivery(2439, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2438, "c", None),
    ];
    baseline_with(store, &me(), &deliveries);
    assert!(all_due(store, &me(), -1).is_empty());
    let due = store
        .due_deliveries(&me(), t(0), 10, &HashSet::new())
        .unwrap();
    let sinks: Vec<_> = due.iter().map(|d| d.sink.as_str()).collect();
    assert_eq!(sinks, ["a", "b", "c"]);
    let exclude = HashSet::from([due[0].id]);
    let due2 = store.due_deliveries(&me(), t(0), 1, &exclude).unwrap();
    assert_eq!(due2.len(), 1);
    assert_eq!(due2[0].sink, "b");
    assert_eq!(store.next_due_at(&me()).unwrap(), Some(t(0)));
}

/// Two sinks for item 2439, one each for 2438 and 2437, due in that order.
fn four_deliveries() -> [crate::domain::NewDelivery; 4] {
    [
        new_delivery(2439, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2438, "c", None),
        new_delivery(2437, "d", None),
    ]
}

/// `due_ids` (the dispatcher's scan) lists the same rows as
/// `due_deliveries`, in the same order, with the same limit and exclusion.
pub(crate) fn due_ids_list_what_due_deliveries_returns(store: &dyn Store) {
    baseline_with(store, &me(), &four_deliveries());
    let as_ids = |due: Vec<crate::domain::Delivery>| -> Vec<(DeliveryId, String)> {
        due.into_iter().map(|d| (d.id, d.sink)).collect()
    };
    let none = HashSet::new();
    let all = store.due_ids(&me(), t(0), 10, &none).unwrap();
    let sinks: Vec<_> = all.iter().map(|(_, sink)| sink.as_str()).collect();
    assert_eq!(sinks, ["a", "b", "c", "d"]);
    assert_eq!(
        all,
        as_ids(store.due_deliveries(&me(), t(0), 10, &none).unwrap())
    );
    let exclude = HashSet::from([all[0].0, all[2].0]);
    let some = store.due_ids(&me(), t(0), 1, &exclude).unwrap();
    assert_eq!(some, [all[1].clone()]);
    assert_eq!(
        some,
        as_ids(store.due_deliveries(&me(), t(0), 1, &exclude).unwrap())
    );
    assert!(store.due_ids(&me(), t(-1), 10, &none).unwrap().is_empty());
    let other = AccountId::new("other").unwrap();
    assert!(store.due_ids(&other, t(0), 10, &none).unwrap().is_empty());
}

/// `pending_sinks_of_items` (is an export file still needed?) lists the
/// sinks each asked-for item still has pending deliveries to, whatever
/// their next attempt time; sent ones, other items and other accounts'
/// are not listed.
pub(crate) fn pending_sinks_of_items_lists_each_items_pending_sinks(store: &dyn Store) {
    baseline_with(store, &me(), &four_deliveries());
    let sorted = |mut pairs: Vec<(ExportId, String)>| {
        pairs.sort();
        pairs
    };
    let asked = [ExportId(2439), ExportId(2438), ExportId(1)];
    let pairs = |s: &[(i64, &str)]| -> Vec<(ExportId, String)> {
        s.iter()
            .map(|(i, k)| (ExportId(*i), k.to_string()))
            .collect()
    };
    let found = store.pending_sinks_of_items(&me(), &asked).unwrap();
    assert_eq!(
        sorted(found),
        pairs(&[(2438, "c"), (2439, "a"), (2439, "b")])
    );
    let due = store.due_ids(&me(), t(0), 10, &HashSet::new()).unwrap();
    let to = |sink: &str| due.iter().find(|(_, s)| s == sink).unwrap().0;
    store
        .record_attempt(&me(), to("a"), &AttemptOutcome::Sent, t(1), Duration::ZERO)
        .unwrap();
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".into(),
        next_attempt_at: t(3600),
    };
    store
        .record_attempt(&me(), to("c"), &retry, t(1), Duration::ZERO)
        .unwrap();
    let found = store.pending_sinks_of_items(&me(), &asked).unwrap();
    assert_eq!(sorted(found), pairs(&[(2438, "c"), (2439, "b")]));
    let other = AccountId::new("other").unwrap();
    assert!(store
        .pending_sinks_of_items(&other, &asked)
        .unwrap()
        .is_empty());
    assert!(store.pending_sinks_of_items(&me(), &[]).unwrap().is_empty());
}

pub(crate) fn defer_moves_a_pending_delivery_without_an_attempt(store: &dyn Store) {
    let id = with_pending(store);
    assert!(store.defer(&me(), id, t(600)).unwrap());
    let d = store.get_delivery(&me(), id).unwrap().unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
    assert_eq!(d.next_attempt_at, Some(t(600)));
    assert_eq!(d.last_error, None);
    assert!(all_due(store, &me(), 599).is_empty());
    assert_eq!(all_due(store, &me(), 600), [id]);
    let other = AccountId::new("other").unwrap();
    assert!(
        !store.defer(&other, id, t(900)).unwrap(),
        "another account's"
    );
    store
        .record_attempt(&me(), id, &dead("HTTP 404"), t(601), Duration::ZERO)
        .unwrap();
    assert!(
        !store.defer(&me(), id, t(900)).unwrap(),
        "no longer pending"
    );
    let d = store.get_delivery(&me(), id).unwrap().unwrap();
    assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Dead, None));
}

pub(crate) fn attempts_move_deliveries_through_their_states(store: &dyn Store) {
    let id = with_pending(store);
    let attempt = |outcome: &AttemptOutcome, at: i64, ms: u64| {
        store
            .record_attempt(&me(), id, outcome, t(at), Duration::from_millis(ms))
            .unwrap();
        store.get_delivery(&me(), id).unwrap().unwrap()
    };
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".to_owned(),
        next_attempt_at: t(30),
    };
    let d = attempt(&retry, 1, 120);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(d.next_attempt_at, Some(t(30)));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    assert!(all_due(store, &me(), 29).is_empty());
    assert_eq!(store.next_due_at(&me()).unwrap(), Some(t(30)));

    let d = attempt(&dead("HTTP 404"), 31, 80);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 2));
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 404"));
    assert_eq!(store.next_due_at(&me()).unwrap(), None);

    assert_eq!(store.retry_dead(&me(), Some(id), t(40)).unwrap(), 1);
    let d = store.get_delivery(&me(), id).unwrap().unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
    assert_eq!(d.next_attempt_at, Some(t(40)));

    let d = attempt(&AttemptOutcome::Sent, 41, 50);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1));
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 404"), "kept after Sent");
    assert!(all_due(store, &me(), 1000).is_empty());

    let history = store.item_history(&me(), ExportId(2439)).unwrap();
    let attempts = &history.deliveries[0].1;
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "dead", "sent"]);
    assert_eq!(attempts[0].latency_ms, 120);
    assert_eq!(attempts[0].at, t(1));
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 503"));
    assert_eq!(attempts[2].error, None);
}

pub(crate) fn recording_an_unknown_delivery_is_an_error(store: &dyn Store) {
    let err = store
        .record_attempt(
            &me(),
            DeliveryId(42),
            &AttemptOutcome::Sent,
            t(0),
            Duration::ZERO,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownDelivery {
                id: DeliveryId(42),
                ..
            }
        ),
        "{err:?}"
    );
}

/// Many attempts in one call (the dispatcher's batched writes): each moves
/// its delivery as `record_attempt` would, with one attempt row each; one
/// that is not the account's fails alone, the others are written.
pub(crate) fn record_attempts_writes_each_attempt_of_a_batch(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    let deliveries = [
        new_delivery(2439, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2438, "c", None),
    ];
    baseline_with(store, &me(), &deliveries);
    baseline_with(store, &other, &[new_delivery(2439, "x", None)]);
    let ids = all_due(store, &me(), 0);
    let theirs = all_due(store, &other, 0)[0];
    let write = |id, outcome, ms| AttemptWrite {
        id,
        outcome,
        at: t(5),
        latency: Duration::from_millis(ms),
    };
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".to_owned(),
        next_attempt_at: t(30),
    };
    let batch = [
        write(ids[0], AttemptOutcome::Sent, 11),
        write(theirs, AttemptOutcome::Sent, 12),
        write(ids[1], retry, 13),
        write(ids[2], dead("HTTP 404"), 14),
    ];
    let results = store.record_attempts(&me(), &batch).unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(
        matches!(&results[1], Err(StoreError::UnknownDelivery { id, .. }) if *id == theirs),
        "{results:?}"
    );
    let state = |id| {
        let d = store.get_delivery(&me(), id).unwrap().unwrap();
        (d.status, d.attempts, d.next_attempt_at, d.last_error)
    };
    assert_eq!(state(ids[0]), (DeliveryStatus::Sent, 1, None, None));
    let retrying = (
        DeliveryStatus::Pending,
        1,
        Some(t(30)),
        Some("HTTP 503".into()),
    );
    assert_eq!(state(ids[1]), retrying);
    let gone = (DeliveryStatus::Dead, 1, None, Some("HTTP 404".into()));
    assert_eq!(state(ids[2]), gone);
    let untouched = store.get_delivery(&other, theirs).unwrap().unwrap();
    assert_eq!(
        (untouched.status, untouched.attempts),
        (DeliveryStatus::Pending, 0)
    );

    let history = store.item_history(&me(), ExportId(2439)).unwrap();
    let logs: Vec<(&str, i64)> = history
        .deliveries
        .iter()
        .flat_map(|(_, attempts)| attempts.iter())
        .map(|a| (a.outcome.as_str(), a.latency_ms))
        .collect();
    assert_eq!(logs, [("sent", 11), ("retry", 13)]);
    assert!(store.record_attempts(&me(), &[]).unwrap().is_empty());
}

/// Many deliveries by id in one read: the account's own, whole, and
/// nothing for another account's id or one that does not exist.
pub(crate) fn get_deliveries_reads_the_accounts_own_by_id(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    let deliveries = [
        new_delivery(2439, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2438, "c", None),
    ];
    baseline_with(store, &me(), &deliveries);
    baseline_with(store, &other, &[new_delivery(2439, "x", None)]);
    let ids = all_due(store, &me(), 0);
    let theirs = all_due(store, &other, 0)[0];
    let asked = [ids[2], theirs, DeliveryId(9_999), ids[0]];
    let mut found = store.get_deliveries(&me(), &asked).unwrap();
    found.sort_by_key(|d| d.id.0);
    let one = |id| store.get_delivery(&me(), id).unwrap().unwrap();
    assert_eq!(found, [one(ids[0]), one(ids[2])]);
    assert!(store.get_deliveries(&me(), &[]).unwrap().is_empty());
}

pub(crate) fn retry_dead_all_touches_only_dead_ones(store: &dyn Store) {
    let deliveries = [
        new_delivery(2439, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2438, "c", None),
    ];
    baseline_with(store, &me(), &deliveries);
    let ids = all_due(store, &me(), 0);
    for &id in &ids[..2] {
        store
            .record_attempt(&me(), id, &dead("no"), t(1), Duration::ZERO)
            .unwrap();
    }
    let pending = store.retry_dead(&me(), Some(ids[2]), t(2)).unwrap();
    assert_eq!(pending, 0, "pending is not dead");
    assert_eq!(store.retry_dead(&me(), None, t(2)).unwrap(), 2);
    let dead_left = store.list_deliveries(&me(), Some(DeliveryStatus::Dead));
    assert!(dead_left.unwrap().is_empty());
    assert_eq!(all_due(store, &me(), 2).len(), 3);
}

pub(crate) fn prune_removes_old_sent_and_fired_but_keeps_the_rest(store: &dyn Store) {
    let snap = sample();
    let fired = [
        (ExportId(2439), EventKind::Downloadable),
        (ExportId(7), EventKind::Downloadable),
    ];
    let deliveries = [
        new_delivery(2439, "sent", None),
        new_delivery(2439, "dead", None),
        new_delivery(2439, "pending", None),
        new_delivery(2439, "skipped", Some("nobody")),
    ];
    store
        .commit_poll(&commit_for(&me(), None, &snap, &fired, &deliveries, t(0)))
        .unwrap();
    let by_sink = |sink: &str| {
        let list = store.list_deliveries(&me(), None).unwrap();
        list.into_iter().find(|d| d.sink == sink).unwrap().id
    };
    let sent = by_sink("sent");
    store
        .record_attempt(&me(), sent, &AttemptOutcome::Sent, t(10), Duration::ZERO)
        .unwrap();
    let dead_id = by_sink("dead");
    store
        .record_attempt(&me(), dead_id, &dead("no"), t(10), Duration::ZERO)
        .unwrap();

    let first = store.prune(&me(), t(5), t(0), usize::MAX).unwrap();
    assert_eq!(first, (1, 0), "skipped at t0 < t5; sent at t10 kept");
    let (deliveries, fired_removed) = store.prune(&me(), t(11), t(1), usize::MAX).unwrap();
    assert_eq!(deliveries, 1);
    assert_eq!(fired_removed, 1, "only the item no longer listed");
    let left: Vec<_> = store
        .list_deliveries(&me(), None)
        .unwrap()
        .into_iter()
        .map(|d| d.sink)
        .collect();
    assert_eq!(left, ["pending", "dead"]);
    let found = store.already_fired(&me(), &fired).unwrap();
    assert_eq!(found, HashSet::from([fired[0]]));
}

/// Two accounts with the same item ids: nothing one does is seen, changed
/// or removed through the other.
pub(crate) fn every_outbox_query_is_scoped_to_its_account(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    baseline_with(store, &me(), &[new_delivery(2439, "a", None)]);
    baseline_with(store, &other, &[new_delivery(2439, "b", None)]);
    let mine = all_due(store, &me(), 0);
    let theirs = all_due(store, &other, 0);
    assert_eq!((mine.len(), theirs.len()), (1, 1));
    assert_ne!(mine, theirs);
    let (id, their_id) = (mine[0], theirs[0]);

    assert_eq!(store.get_delivery(&other, id).unwrap(), None);
    let err = store.record_attempt(&other, id, &dead("x"), t(1), Duration::ZERO);
    assert!(matches!(err, Err(StoreError::UnknownDelivery { .. })));
    store
        .record_attempt(&me(), id, &dead("x"), t(1), Duration::ZERO)
        .unwrap();
    assert_eq!(store.dead_count(&other, "none").unwrap(), (0, None));
    assert_eq!(
        store.dead_count(&me(), "none").unwrap(),
        (1, Some("x".into()))
    );
    assert_eq!(store.retry_dead(&other, None, t(2)).unwrap(), 0);
    assert_eq!(store.retry_dead(&other, Some(id), t(2)).unwrap(), 0);
    assert_eq!(store.next_due_at(&me()).unwrap(), None);
    assert_eq!(store.next_due_at(&other).unwrap(), Some(t(0)));

    let list = |account| store.list_deliveries(account, None).unwrap();
    assert_eq!(list(&other).len(), 1);
    assert_eq!(list(&other)[0].sink, "b");
    let counts = store.outbox_counts(&other).unwrap();
    assert_eq!(counts, [("b".to_owned(), DeliveryStatus::Pending, 1)]);
    let history = store.item_history(&other, ExportId(2439)).unwrap();
    assert_eq!(history.deliveries.len(), 1);
    assert_eq!(history.deliveries[0].0.id, their_id);

    store
        .record_attempt(
            &other,
            their_id,
            &AttemptOutcome::Sent,
            t(3),
            Duration::ZERO,
        )
        .unwrap();
    store
        .retry_dead(&me(), Some(id), t(3))
        .and_then(|_| store.record_attempt(&me(), id, &AttemptOutcome::Sent, t(3), Duration::ZERO))
        .unwrap();
    assert_eq!(
        store.prune(&me(), t(100), t(0), usize::MAX).unwrap(),
        (1, 0)
    );
    assert_eq!(list(&other).len(), 1, "the other account's sent one stays");
    assert!(store.load_snapshot(&other).unwrap().is_some());
}

pub(crate) fn prune_deletes_at_most_limit_rows_per_call(store: &dyn Store) {
    let snap = sample();
    let fired: Vec<_> = (1..=5)
        .map(|id| (ExportId(id), EventKind::Downloadable))
        .collect();
    let deliveries: Vec<_> = (1..=5)
        .map(|id| new_delivery(id, "s", Some("nobody")))
        .collect();
    store
        .commit_poll(&commit_for(&me(), None, &snap, &fired, &deliveries, t(0)))
        .unwrap();
    let rounds: Vec<_> = (0..4)
        .map(|_| store.prune(&me(), t(10), t(10), 2).unwrap())
        .collect();
    assert_eq!(rounds, [(2, 2), (2, 2), (1, 1), (0, 0)]);
    assert!(store.list_deliveries(&me(), None).unwrap().is_empty());
}

/// The accounts with something still to send are listed whatever their
/// deliveries' next attempt (due, retrying later, deferred); those holding
/// only sent, dead or skipped deliveries are not.
pub(crate) fn accounts_with_pending_lists_every_outbox_still_to_drain(store: &dyn Store) {
    assert!(store.accounts_with_pending().unwrap().is_empty());
    let account = |name| AccountId::new(name).unwrap();
    let names = |store: &dyn Store| -> Vec<String> {
        let accounts = store.accounts_with_pending().unwrap();
        accounts.iter().map(|a| a.as_str().to_owned()).collect()
    };
    for name in ["zed", "retrying", "done", "deferred", "gone_dead"] {
        baseline_with(store, &account(name), &[new_delivery(2439, "s", None)]);
    }
    baseline_with(
        store,
        &account("skips"),
        &[new_delivery(2439, "s", Some("x"))],
    );
    baseline_with(store, &me(), &[]);
    let only = |name| all_due(store, &account(name), 0)[0];
    let record = |name, outcome: AttemptOutcome| {
        let at = (t(1), Duration::ZERO);
        store.record_attempt(&account(name), only(name), &outcome, at.0, at.1)
    };
    let later = AttemptOutcome::Retry {
        error: "HTTP 500".into(),
        next_attempt_at: t(86_400),
    };
    record("retrying", later).unwrap();
    record("done", AttemptOutcome::Sent).unwrap();
    record("gone_dead", dead("x")).unwrap();
    let deferred = only("deferred");
    assert!(store
        .defer(&account("deferred"), deferred, t(7_200))
        .unwrap());
    assert_eq!(names(store), ["deferred", "retrying", "zed"]);
}
