//! `state copy` between a real SQLite file and a real PostgreSQL database,
//! both ways, compared row by row and through the trait.

use std::time::Duration;

use super::*;
use crate::domain::{AlertCondition, AlertState, EventKind, ExportId};
use crate::store::contract::{baseline_with, commit_for, me, new_alert, new_delivery, sample, t};
use crate::store::{pg_cluster, AttemptOutcome, PgUrl, PostgresStore, SqliteStore};

/// An SQLite state with every kind of row: snapshot, fired records (via a
/// second poll), pending/skipped/sent deliveries with attempts, alerts.
fn populated(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("from.db")).unwrap();
    let deliveries = [
        new_delivery(2438, "audit", None),
        new_delivery(2439, "mail", Some("no recipient")),
    ];
    baseline_with(&store, &me(), &deliveries);
    let id = store.list_deliveries(&me(), None).unwrap()[1].id;
    let retry = AttemptOutcome::Retry {
        error: "HTTP 503".into(),
        next_attempt_at: t(60),
    };
    store
        .record_attempt(&me(), id, &retry, t(1), Duration::from_millis(120))
        .unwrap();
    let alert = new_alert(AlertCondition::PollsFailing, AlertState::Firing);
    store.record_alerts(&me(), &[alert], t(2)).unwrap();
    let snap = sample();
    let fired = [(ExportId(2438), EventKind::Downloadable)];
    let account = me();
    let commit = commit_for(&account, Some(&snap), &snap, &fired, &[], t(3));
    store.commit_poll(&commit).unwrap();
    store
}

fn pg() -> Option<PostgresStore> {
    let url = PgUrl::parse(&pg_cluster::fresh_db()?).unwrap();
    Some(PostgresStore::open(&url).unwrap())
}

#[test]
fn sqlite_to_postgres_and_back_keeps_every_row() {
    let Some(middle) = pg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let from = populated(dir.path());
    let counts = copy(&from, &middle).unwrap();
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
    let back = SqliteStore::open(&dir.path().join("back.db")).unwrap();
    copy(&middle, &back).unwrap();
    let original = from.export().unwrap();
    assert_eq!(middle.export().unwrap(), original);
    assert_eq!(back.export().unwrap(), original);
    assert_eq!(
        middle.item_history(&me(), ExportId(2438)).unwrap(),
        from.item_history(&me(), ExportId(2438)).unwrap()
    );
    assert_eq!(
        middle.alert_history(&me()).unwrap(),
        from.alert_history(&me()).unwrap()
    );
}

#[test]
fn new_rows_after_a_copy_get_fresh_ids() {
    let Some(to) = pg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let from = populated(dir.path());
    copy(&from, &to).unwrap();
    let max = from.list_deliveries(&me(), None).unwrap()[0].id;
    to.enqueue(&me(), &[new_delivery(2438, "late", None)], t(5))
        .unwrap();
    let newest = to.list_deliveries(&me(), None).unwrap()[0].id;
    assert!(newest.0 > max.0, "{newest:?} after {max:?}");
}

#[test]
fn a_target_with_state_is_refused_untouched() {
    let Some(to) = pg() else { return };
    let dir = tempfile::tempdir().unwrap();
    let from = populated(dir.path());
    baseline_with(&to, &me(), &[]);
    let before = to.export().unwrap();
    let err = copy(&from, &to).unwrap_err();
    assert!(matches!(err, StoreError::TargetNotEmpty { .. }), "{err}");
    assert_eq!(to.export().unwrap(), before);
    let err = from.import(&before).unwrap_err();
    assert!(matches!(err, StoreError::TargetNotEmpty { .. }), "{err}");
}
