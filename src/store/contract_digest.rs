//! The digest half of the behaviour suite (see `contract.rs`): windows
//! gather, are claimed whole and once, and are marked together.

use std::collections::HashSet;
use std::time::Duration;

use super::{me, new_delivery, t};
use crate::domain::{DeliveryId, DeliveryStatus, NewDelivery};
use crate::store::{AttemptOutcome, DigestWindow, Gathered, Store, StoreError};

const FIVE_MINUTES: Duration = Duration::from_secs(300);

fn to(id: i64, sink: &str, recipient: &str) -> NewDelivery {
    let mut d = new_delivery(id, sink, None);
    d.recipient = Some(recipient.to_owned());
    d
}

/// Enqueues one delivery at `t(at)`; its id.
fn arrive(store: &dyn Store, d: NewDelivery, at: i64) -> DeliveryId {
    store.enqueue(&me(), &[d], t(at)).unwrap();
    store.list_deliveries(&me(), None).unwrap()[0].id
}

fn window<'a>(sink: &'a str, recipient: Option<&'a str>) -> DigestWindow<'a> {
    DigestWindow {
        sink,
        recipient,
        length: FIVE_MINUTES,
    }
}

fn gather(store: &dyn Store, id: DeliveryId, w: &DigestWindow<'_>, at: i64) -> Gathered {
    store.gather_digest(&me(), id, w, t(at)).unwrap()
}

fn members(gathered: &Gathered) -> Vec<DeliveryId> {
    match gathered {
        Gathered::Send { members, .. } => members.iter().map(|d| d.id).collect(),
        other => panic!("expected a send, got {other:?}"),
    }
}

fn next_of(store: &dyn Store, id: DeliveryId) -> Option<chrono::DateTime<chrono::Utc>> {
    store
        .get_delivery(&me(), id)
        .unwrap()
        .unwrap()
        .next_attempt_at
}

pub(crate) fn digest_windows_wait_then_claim_every_member_once(store: &dyn Store) {
    let w = window("mail", Some("a@example.com"));
    let a = arrive(store, to(1, "mail", "a@example.com"), 0);
    assert_eq!(gather(store, a, &w, 0), Gathered::Wait { until: t(300) });
    let b = arrive(store, to(2, "mail", "a@example.com"), 60);
    let other = arrive(store, to(3, "mail", "b@example.com"), 60);
    let elsewhere = arrive(store, to(4, "hook", "a@example.com"), 60);
    assert_eq!(gather(store, b, &w, 60), Gathered::Wait { until: t(300) });
    let sinks = ["mail".to_owned()];
    assert_eq!(
        store.digests_waiting(&me(), &sinks, t(60)).unwrap(),
        2,
        "a and b wait"
    );
    assert_eq!(store.digests_waiting(&me(), &[], t(60)).unwrap(), 0);
    assert_eq!(
        (next_of(store, a), next_of(store, b)),
        (Some(t(300)), Some(t(300)))
    );
    assert_eq!(
        next_of(store, other),
        Some(t(60)),
        "another recipient's window"
    );
    assert_eq!(
        next_of(store, elsewhere),
        Some(t(60)),
        "another sink's window"
    );

    let sent = gather(store, a, &w, 300);
    assert_eq!(members(&sent), [a, b]);
    assert!(matches!(sent, Gathered::Send { digest, .. } if digest == a));
    assert_eq!(next_of(store, b), None, "only the leader comes due");
    assert_eq!(
        store.digests_waiting(&me(), &sinks, t(300)).unwrap(),
        1,
        "b waits with a"
    );
    let due = store.due_deliveries(&me(), t(1000), 10, &HashSet::new());
    let due: Vec<DeliveryId> = due.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(due, [other, elsewhere, a]);
    assert_eq!(gather(store, b, &w, 300), Gathered::Elsewhere);
    let membership = store.digest_of(&me(), b).unwrap().unwrap();
    assert_eq!(
        (membership.digest, membership.next_attempt_at),
        (a, Some(t(300)))
    );
    assert_eq!(store.digest_of(&me(), other).unwrap(), None);

    // A member arriving now opens a new window; the claimed digest is the
    // same after a crash (same members, none added).
    let late = arrive(store, to(5, "mail", "a@example.com"), 301);
    assert_eq!(
        gather(store, late, &w, 301),
        Gathered::Wait { until: t(601) }
    );
    assert_eq!(members(&gather(store, a, &w, 302)), [a, b]);

    let marked = store.record_digest(&me(), a, &AttemptOutcome::Sent, t(303), Duration::ZERO);
    assert_eq!(marked.unwrap(), 2);
    for id in [a, b] {
        let d = store.get_delivery(&me(), id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1));
    }
    let history = store
        .item_history(&me(), crate::domain::ExportId(2))
        .unwrap();
    assert_eq!(
        history.deliveries[0].1.len(),
        1,
        "one attempt row per member"
    );
    assert_eq!(gather(store, a, &w, 304), Gathered::Elsewhere);
    assert!(matches!(
        store.record_digest(&me(), a, &AttemptOutcome::Sent, t(305), Duration::ZERO),
        Err(StoreError::UnknownDelivery { .. })
    ));
    assert_eq!(members(&gather(store, late, &w, 601)), [late]);
}

pub(crate) fn a_failed_digest_retries_whole_and_dies_whole(store: &dyn Store) {
    let w = window("chat", None);
    let a = arrive(store, to(1, "chat", "a@example.com"), 0);
    let b = arrive(store, to(2, "chat", "b@example.com"), 10);
    assert_eq!(
        members(&gather(store, a, &w, 300)),
        [a, b],
        "a channel window holds everyone"
    );
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".into(),
        next_attempt_at: t(500),
    };
    assert_eq!(
        store
            .record_digest(&me(), a, &retry, t(301), Duration::ZERO)
            .unwrap(),
        2
    );
    assert_eq!((next_of(store, a), next_of(store, b)), (Some(t(500)), None));
    let c = arrive(store, to(3, "chat", "c@example.com"), 400);
    assert_eq!(
        members(&gather(store, a, &w, 500)),
        [a, b],
        "no member joins a claimed digest"
    );
    let dead = AttemptOutcome::Dead {
        error: "HTTP 404".into(),
    };
    store
        .record_digest(&me(), a, &dead, t(501), Duration::ZERO)
        .unwrap();
    for id in [a, b] {
        let d = store.get_delivery(&me(), id).unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 2));
        assert_eq!(d.last_error.as_deref(), Some("HTTP 404"));
    }
    // Retried, the members gather again, with the window open since.
    assert_eq!(store.retry_dead(&me(), None, t(600)).unwrap(), 2);
    assert_eq!(store.digest_of(&me(), b).unwrap(), None);
    assert_eq!(members(&gather(store, b, &w, 600)), [a, b, c]);
}
