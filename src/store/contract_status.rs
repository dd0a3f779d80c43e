//! The status page's reads in the behaviour suite (see `contract.rs`).

use std::time::Duration;

use super::{baseline_with, me, new_delivery, t};
use crate::domain::{AccountId, DeliveryStatus, ExportId};
use crate::store::{AttemptOutcome, SinkActivity, Store};

pub(crate) fn recent_deliveries_are_the_newest_bounded_and_filtered(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    let deliveries: Vec<_> = (0..5)
        .map(|i| new_delivery(2439, &format!("s{i}"), (i % 2 == 1).then_some("nobody")))
        .collect();
    baseline_with(store, &me(), &deliveries);
    baseline_with(store, &other, &[new_delivery(2439, "theirs", None)]);
    let sinks = |status, limit| -> Vec<String> {
        let recent = store.recent_deliveries(&me(), status, limit).unwrap();
        recent.into_iter().map(|d| d.sink).collect()
    };
    assert_eq!(sinks(None, 3), ["s4", "s3", "s2"]);
    assert_eq!(sinks(None, 100).len(), 5);
    assert_eq!(sinks(Some(DeliveryStatus::Skipped), 100), ["s3", "s1"]);
    assert_eq!(sinks(Some(DeliveryStatus::Pending), 1), ["s4"]);
    assert!(sinks(Some(DeliveryStatus::Dead), 100).is_empty());
    assert!(sinks(None, 0).is_empty());
    let newest = &store.recent_deliveries(&me(), None, 1).unwrap()[0];
    let full = store.get_delivery(&me(), newest.id).unwrap().unwrap();
    let (mut expected, mut got) = (full, newest.clone());
    (expected.message, got.message) = (Default::default(), Default::default());
    assert_eq!(got, expected, "the same delivery, its message aside");
}

pub(crate) fn sink_activity_has_the_latest_success_and_failure_per_sink(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    let deliveries = [
        new_delivery(2439, "a", None),
        new_delivery(2438, "a", None),
        new_delivery(2439, "b", None),
        new_delivery(2439, "quiet", None),
    ];
    baseline_with(store, &me(), &deliveries);
    baseline_with(store, &other, &[new_delivery(2439, "a", None)]);
    let ids: Vec<_> = store.list_deliveries(&me(), None).unwrap();
    let id = |sink: &str, item: i64| {
        let d = ids
            .iter()
            .find(|d| d.sink == sink && d.subject.item() == Some(ExportId(item)));
        d.unwrap().id
    };
    let record = |account: &AccountId, id, outcome: AttemptOutcome, at| {
        store
            .record_attempt(account, id, &outcome, t(at), Duration::ZERO)
            .unwrap();
    };
    let retry = |error: &str| AttemptOutcome::Retry {
        error: error.to_owned(),
        next_attempt_at: t(100),
    };
    record(&me(), id("a", 2439), retry("HTTP 503"), 1);
    record(&me(), id("a", 2439), AttemptOutcome::Sent, 2);
    record(&me(), id("a", 2438), retry("HTTP 502"), 5);
    record(
        &me(),
        id("b", 2439),
        AttemptOutcome::Dead {
            error: "HTTP 404".into(),
        },
        3,
    );
    let theirs = store.list_deliveries(&other, None).unwrap()[0].id;
    record(&other, theirs, AttemptOutcome::Sent, 9);

    let activity = store.sink_activity(&me(), 100).unwrap();
    assert_eq!(
        activity,
        [
            SinkActivity {
                sink: "a".into(),
                last_success_at: Some(t(2)),
                last_error_at: Some(t(5)),
                last_error: Some("HTTP 502".into()),
            },
            SinkActivity {
                sink: "b".into(),
                last_success_at: None,
                last_error_at: Some(t(3)),
                last_error: Some("HTTP 404".into()),
            },
        ]
    );
    let theirs = store.sink_activity(&other, 100).unwrap();
    assert_eq!(theirs[0].last_success_at, Some(t(9)));
    assert_eq!(theirs[0].last_error_at, None);

    // The window counts the most recently recorded attempts: b's, then a's retry.
    let newest = store.sink_activity(&me(), 1).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(
        (newest[0].sink.as_str(), newest[0].last_error_at),
        ("b", Some(t(3)))
    );
    let two = store.sink_activity(&me(), 2).unwrap();
    assert_eq!(two[0].sink, "a");
    assert_eq!(
        (two[0].last_success_at, two[0].last_error_at),
        (None, Some(t(5)))
    );
}

pub(crate) fn item_names_are_those_still_in_the_snapshot(store: &dyn Store) {
    let other = AccountId::new("other").unwrap();
    baseline_with(store, &me(), &[]);
    let ids = [ExportId(2439), ExportId(1), ExportId(2438)];
    let names = store.item_names(&me(), &ids).unwrap();
    let snapshot = store.load_snapshot(&me()).unwrap().unwrap();
    let expected: Vec<_> = [ExportId(2438), ExportId(2439)]
        .into_iter()
        .map(|id| (id, snapshot.items[&id].action_name.clone()))
        .collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), expected);
    assert!(store.item_names(&other, &ids).unwrap().is_empty());
}
