//! Schema versions: refusing what is not ours or too new, and upgrading real
//! schema-1 and schema-2 (v0.1) files kept as fixtures.

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::{count, insert_v1_rows};
use crate::domain::{AlertCondition, AlertState, DeliveryStatus, EventKind, ExportId, Subject};
use crate::store::contract::{me, new_delivery, sample, t};
use crate::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use crate::store::{AlertRecord, AttemptOutcome, Store, StoreError};

const V1_FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/state-v1.db");
const V2_FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/state-v2.db");

/// The fixture's base time (2024-05-30T14:00:00Z) plus `secs`.
fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_717_077_600 + secs, 0).unwrap()
}

/// What schema 2 holds in tests/fixtures/state-v2.db: v0.1's rows, attempt
/// logs, and alerts as v0.1 wrote them (item id +-condition, event `alert`);
/// delivery 5 was pruned, so ids must continue after it.
pub(super) fn insert_v2_rows(conn: &Connection, base: i64) {
    insert_v1_rows(conn, base);
    let alert = |item: i64, status: &str, secs: i64| {
        conn.execute(
            "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
             attempts, next_attempt_at, last_error, created_at, updated_at) VALUES ('default', \
             ?1, 'alert', 'ops', NULL, '{\"parts\":{\"text\":\"alert\"}}', ?2, 0, ?3, NULL, ?4, ?4)",
            params![item, status, (status == "pending").then_some(base), base + secs * 1000],
        )
        .unwrap();
    };
    alert(1, "sent", 60);
    alert(-1, "sent", 120);
    alert(3, "pending", 180);
    alert(3, "sent", 190);
    conn.execute("DELETE FROM outbox WHERE id = 5", []).unwrap();
    for (delivery, outcome, secs) in [(1, "sent", 1), (2, "retry", 61), (2, "sent", 62)] {
        conn.execute(
            "INSERT INTO attempts_log (delivery_id, at, outcome, error, latency_ms) \
             VALUES (?1, ?2, ?3, NULL, 40)",
            params![delivery, base + secs * 1000, outcome],
        )
        .unwrap();
    }
}

fn version_of(path: &std::path::Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE future (x); PRAGMA user_version = 9;")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    let known = SCHEMA_VERSION;
    assert!(
        matches!(err, StoreError::TooNew { found: 9, known: k, .. } if k == known),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    let expected = format!("schema 9, this build knows up to {known}");
    assert!(text.contains(&expected), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for (name, garbage) in [
        ("short.db", b"definitely not a database\n".to_vec()),
        (
            "long.db",
            (0..8192u32).map(|i| (i * 31 % 251) as u8).collect(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &garbage).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NotSqlite { .. }),
            "{name}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not a readable SQLite database"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "{name} changed");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no side files: {names:?}");
}

#[test]
fn a_foreign_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE mine (x);")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn the_schema_1_fixture_upgrades_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, V1_FIXTURE).unwrap();
    let store = SqliteStore::open(&path).unwrap();

    let backup = dir.path().join("state.db.v1.bak");
    assert_eq!(version_of(&backup), 1);
    let old = Connection::open(&backup).unwrap();
    let outbox: i64 = old
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(outbox, 1);

    assert_eq!(store.load_snapshot(&me()).unwrap().unwrap(), sample());
    let pair = [(ExportId(2439), EventKind::Downloadable)];
    assert_eq!(store.already_fired(&me(), &pair).unwrap().len(), 1);
    let history = store.item_history(&me(), ExportId(2439)).unwrap();
    assert_eq!(history.deliveries.len(), 1);
    let (delivery, attempts) = &history.deliveries[0];
    assert_eq!(
        (delivery.sink.as_str(), delivery.status),
        ("audit", DeliveryStatus::Sent)
    );
    assert!(attempts.is_empty());
    // The newer tables work on the migrated file.
    store
        .record_attempt(
            &me(),
            delivery.id,
            &AttemptOutcome::Sent,
            t(0),
            Duration::ZERO,
        )
        .unwrap();
    drop(store);
    // Reopening an up-to-date file makes no further backup.
    SqliteStore::open(&path).unwrap();
    assert!(!dir.path().join("state.db.v1.2.bak").exists());
}

#[test]
fn an_existing_backup_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, V1_FIXTURE).unwrap();
    std::fs::write(dir.path().join("state.db.v1.bak"), b"older backup").unwrap();
    SqliteStore::open(&path).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("state.db.v1.bak")).unwrap(),
        b"older backup"
    );
    assert!(dir.path().join("state.db.v1.2.bak").exists());
}

#[test]
fn the_schema_2_fixture_moves_alerts_to_their_own_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, V2_FIXTURE).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(version_of(&dir.path().join("state.db.v2.bak")), 2);
    assert_eq!(count(&store, "PRAGMA user_version"), SCHEMA_VERSION);

    let alert = |condition, state| Subject::Alert { condition, state };
    let subjects: Vec<(i64, Subject)> = store
        .list_deliveries(&me(), None)
        .unwrap()
        .iter()
        .map(|d| (d.id.0, d.subject))
        .collect();
    use AlertCondition::{DeliveriesDead, PollsFailing};
    use AlertState::{Firing, Recovered};
    assert_eq!(
        subjects,
        [
            (4, alert(DeliveriesDead, Firing)),
            (3, alert(PollsFailing, Recovered)),
            (2, alert(PollsFailing, Firing)),
            (1, Subject::Item(ExportId(2439))),
        ]
    );
    let record = |condition, state, secs| AlertRecord {
        condition,
        state,
        at: at(secs),
    };
    assert_eq!(
        store.alert_history(&me()).unwrap(),
        [
            record(PollsFailing, Firing, 60),
            record(PollsFailing, Recovered, 120),
            record(DeliveriesDead, Firing, 180),
        ]
    );
    // `why 1` no longer finds the polls_failing alerts.
    assert!(store
        .item_history(&me(), ExportId(1))
        .unwrap()
        .deliveries
        .is_empty());
    let history = store.item_history(&me(), ExportId(2439)).unwrap();
    assert_eq!(history.deliveries[0].1.len(), 1, "attempt log kept");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM attempts_log"), 3);
    assert_eq!(store.load_snapshot(&me()).unwrap(), Some(sample()));

    // The pending alert is still delivered; new ids continue after the pruned 5.
    let due = store.due_deliveries(&me(), at(999), 10, &HashSet::new());
    assert_eq!(due.unwrap()[0].id.0, 4);
    store
        .enqueue(&me(), &[new_delivery(2438, "audit", None)], t(0))
        .unwrap();
    let newest = store.list_deliveries(&me(), None).unwrap()[0].id.0;
    assert_eq!(newest, 6, "ids are never reused");
    drop(store);
    SqliteStore::open(&path).unwrap();
    assert!(!dir.path().join("state.db.v2.2.bak").exists());
}

#[test]
fn a_schema_4_file_gets_digest_ids_and_keeps_its_pending_rows() {
    use crate::store::{DigestWindow, Gathered};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        for version in 1..=4 {
            super::super::schema::apply_migration(&conn, version).unwrap();
        }
        conn.execute(
            "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
             attempts, next_attempt_at, created_at, updated_at) VALUES ('default', 2439, \
             'downloadable', 'mail', 'a@example.com', '{\"parts\":{\"text\":\"x\"}}', \
             'pending', 0, ?1, ?1, ?1)",
            [t(0).timestamp_millis()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(version_of(&dir.path().join("state.db.v4.bak")), 4);
    assert_eq!(count(&store, "PRAGMA user_version"), SCHEMA_VERSION);
    let old = store.list_deliveries(&me(), None).unwrap()[0].clone();
    assert_eq!(store.digest_of(&me(), old.id).unwrap(), None);
    let window = DigestWindow {
        sink: "mail",
        recipient: Some("a@example.com"),
        length: Duration::from_secs(60),
    };
    let gathered = store.gather_digest(&me(), old.id, &window, t(60)).unwrap();
    assert!(matches!(gathered, Gathered::Send { members, .. } if members == [old]));
}
