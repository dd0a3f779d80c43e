//! The SQLite backend: the behaviour suite, plus what only a file has
//! (permissions, reopening, refusing foreign files, schema upgrades from real
//! fixtures, fault injection with triggers).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use rusqlite::{params, Connection};

use super::schema::apply_migration;
use super::*;
use crate::domain::{AlertCondition, AlertState, Subject};
use crate::store::contract::{
    commit_for, me, new_delivery, sample, store_contract, t, with_pending,
};

#[path = "upgrade_tests.rs"]
mod upgrade;

fn fresh_store() -> (tempfile::TempDir, Box<dyn Store>) {
    let (dir, store) = temp_store();
    (dir, Box::new(store))
}

store_contract!(fresh_store);

pub(super) fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn count(store: &SqliteStore, sql: &str) -> i64 {
    let conn = store.conn.lock().unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn store_is_send_sync_and_object_safe() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<SqliteStore>();
    assert_send_sync::<dyn Store>();
}

#[cfg(unix)]
#[test]
fn open_creates_a_private_file_at_the_current_schema() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = temp_store();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(count(&store, "PRAGMA user_version"), SCHEMA_VERSION);
    let conn = store.conn.lock().unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    // A fresh file is not "upgraded": no backup.
    let backups = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".bak")
        })
        .count();
    assert_eq!(backups, 0);
}

#[test]
fn open_in_a_missing_directory_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope/state.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Create { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn reopen_keeps_data() {
    let (dir, store) = temp_store();
    let id = with_pending(&store);
    let path = store.path().to_path_buf();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.location(), path.display().to_string());
    assert_eq!(store.load_snapshot(&me()).unwrap(), Some(sample()));
    assert_eq!(store.last_success_at(&me()).unwrap(), Some(t(0)));
    let delivery = store.get_delivery(&me(), id).unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.message.part("text"), "item 2439 is ready");
    drop(dir);
}

#[test]
fn a_failing_insert_rolls_back_the_whole_poll() {
    let (_dir, store) = temp_store();
    let first = sample();
    store
        .commit_poll(&commit_for(&me(), None, &first, &[], &[], t(0)))
        .unwrap();
    store
        .conn
        .lock()
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
    let mut next = first.clone();
    next.items.remove(&ExportId(2438));
    next.nr_of_days = 3;
    let fired = [(ExportId(2439), EventKind::Failed)];
    let deliveries = [new_delivery(2439, "audit", None)];
    let err = store
        .commit_poll(&commit_for(
            &me(),
            Some(&first),
            &next,
            &fired,
            &deliveries,
            t(60),
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("boom"), "{text}");
    assert!(text.contains(&store.path().display().to_string()), "{text}");
    assert_eq!(store.load_snapshot(&me()).unwrap(), Some(first));
    assert_eq!(store.last_success_at(&me()).unwrap(), Some(t(0)));
    assert!(store.already_fired(&me(), &fired).unwrap().is_empty());
    assert!(store.list_deliveries(&me(), None).unwrap().is_empty());
}

#[test]
fn a_failing_alert_delivery_rolls_back_its_alert_record() {
    let (_dir, store) = temp_store();
    store
        .conn
        .lock()
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
    let alert = crate::store::contract::new_alert(AlertCondition::PollsFailing, AlertState::Firing);
    let err = store.record_alerts(&me(), &[alert], t(0)).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert!(store.alert_history(&me()).unwrap().is_empty());
}

#[test]
fn pruning_leaves_no_orphan_attempts_and_no_orphan_alerts() {
    let (_dir, store) = temp_store();
    let id = with_pending(&store);
    let sent = AttemptOutcome::Sent;
    store
        .record_attempt(&me(), id, &sent, t(1), Duration::ZERO)
        .unwrap();
    let alert = crate::store::contract::new_alert(AlertCondition::PollsFailing, AlertState::Firing);
    store
        .record_alerts(&me(), std::slice::from_ref(&alert), t(2))
        .unwrap();
    store.record_alerts(&me(), &[alert], t(3)).unwrap();
    for d in store.list_deliveries(&me(), None).unwrap() {
        if d.status == DeliveryStatus::Pending {
            store
                .record_attempt(&me(), d.id, &sent, t(4), Duration::ZERO)
                .unwrap();
        }
    }
    assert_eq!(store.prune(&me(), t(100), t(0), usize::MAX).unwrap().0, 3);
    let orphans =
        "SELECT COUNT(*) FROM attempts_log WHERE delivery_id NOT IN (SELECT id FROM outbox)";
    assert_eq!(count(&store, orphans), 0);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM alerts"),
        1,
        "only the latest"
    );
    let history = store.alert_history(&me()).unwrap();
    assert_eq!(history[0].at, t(3));
}

#[test]
fn an_outbox_row_is_about_an_item_or_an_alert_never_both() {
    let (_dir, store) = temp_store();
    let conn = store.conn.lock().unwrap();
    let insert = |item: Option<i64>, alert: Option<i64>| {
        conn.execute(
            "INSERT INTO outbox (account, item_id, alert_id, event, sink, message, status, \
             created_at, updated_at) VALUES ('default', ?1, ?2, 'alert', 's', '{\"parts\":{}}', 'sent', 0, 0)",
            params![item, alert],
        )
    };
    conn.execute(
        "INSERT INTO alerts (id, account, condition, state, at) \
         VALUES (1, 'default', 'polls_failing', 'firing', 0)",
        [],
    )
    .unwrap();
    assert!(insert(None, None).is_err());
    assert!(insert(Some(1), Some(1)).is_err());
    assert!(insert(None, Some(2)).is_err(), "the alert must exist");
    insert(None, Some(1)).unwrap();
    drop(conn);
    let list = store.list_deliveries(&me(), None).unwrap();
    assert_eq!(
        list[0].subject,
        Subject::Alert {
            condition: AlertCondition::PollsFailing,
            state: AlertState::Firing
        }
    );
}

#[test]
fn a_row_that_does_not_decode_names_the_file() {
    let (_dir, store) = temp_store();
    with_pending(&store);
    store
        .conn
        .lock()
        .unwrap()
        .execute_batch("UPDATE outbox SET event = 'bogus'")
        .unwrap();
    let err = store.list_deliveries(&me(), None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&store.path().display().to_string()), "{text}");
    assert!(text.contains("bogus"), "{text}");
}

/// The rows of the schema-1 fixture (a poll, a fired record, a sent delivery).
fn insert_v1_rows(conn: &Connection, at: i64) {
    conn.execute(
        "INSERT INTO poll_state (account, nr_of_days, last_success_at) VALUES ('default', 7, ?1)",
        [at],
    )
    .unwrap();
    for item in sample().items.values() {
        conn.execute(
            "INSERT INTO snapshot_items VALUES ('default', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                item.id.0,
                item.status.code(),
                item.downloadable,
                item.attempts,
                item.action_name,
                item.action_url,
                item.requested_by,
                item.created_date
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO fired VALUES ('default', 2439, 'downloadable', ?1)",
        [at],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
         attempts, next_attempt_at, last_error, created_at, updated_at) VALUES ('default', \
         2439, 'downloadable', 'audit', NULL, '{\"parts\":{\"json\":\"{}\"}}', 'sent', 1, \
         NULL, NULL, ?1, ?2)",
        [at, at + 1500],
    )
    .unwrap();
}

/// Writes a fixture made by migrations 1..=`version` plus `rows`, with a
/// rollback journal so it is one self-contained file.
fn write_fixture(version: i64, out: &str, rows: impl FnOnce(&Connection, i64)) {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("fixture.db");
    let conn = Connection::open(&tmp).unwrap();
    conn.execute_batch("PRAGMA journal_mode = DELETE;").unwrap();
    for v in 1..=version {
        apply_migration(&conn, v).unwrap();
    }
    let at = DateTime::parse_from_rfc3339("2024-05-30T14:00:00Z")
        .unwrap()
        .to_utc()
        .timestamp_millis();
    rows(&conn, at);
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(found, version);
    drop(conn);
    let _ = std::fs::remove_file(out);
    Connection::open(&tmp)
        .unwrap()
        .execute("VACUUM INTO ?1", [out])
        .unwrap();
    eprintln!("wrote {out}");
}

/// Writes tests/fixtures/state-v1.db: a real schema-1 file. Run with
/// `cargo test generate_state_v1_fixture -- --ignored`; set
/// `STATE_V1_FIXTURE_OUT` to write elsewhere.
#[test]
#[ignore = "generates the schema-1 fixture"]
fn generate_state_v1_fixture() {
    let out = std::env::var("STATE_V1_FIXTURE_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v1.db").to_owned()
    });
    write_fixture(1, &out, insert_v1_rows);
}

/// Writes tests/fixtures/state-v2.db: a real schema-2 (v0.1) file with what
/// v0.1 wrote for alerts (event `alert`, item ids +-condition) and an attempt
/// log. Run with `cargo test generate_state_v2_fixture -- --ignored`; set
/// `STATE_V2_FIXTURE_OUT` to write elsewhere.
#[test]
#[ignore = "generates the schema-2 fixture"]
fn generate_state_v2_fixture() {
    let out = std::env::var("STATE_V2_FIXTURE_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state-v2.db").to_owned()
    });
    write_fixture(2, &out, upgrade::insert_v2_rows);
}

/// Writes reach the file through the checkpoint thread shortly after they
/// are committed, although they are far below SQLite's own threshold (the
/// commits themselves only append to the WAL): the file grows on its own
/// within a few checkpoint delays. Without the thread, the pages would stay
/// in the WAL until 1,000 pages (or the close).
#[test]
fn the_checkpoint_thread_copies_committed_writes_into_the_file() {
    let (dir, store) = temp_store();
    let file = dir.path().join("state.db");
    let size = || std::fs::metadata(&file).unwrap().len();
    std::thread::sleep(checkpoint::AFTER_WRITES * 3);
    let before = size();
    let deliveries: Vec<NewDelivery> = (1..=40).map(|i| new_delivery(i, "s", None)).collect();
    store.enqueue(&me(), &deliveries, t(0)).unwrap();
    assert_eq!(size(), before, "the commit only appended to the WAL");
    let deadline = std::time::Instant::now() + checkpoint::AFTER_WRITES * 20;
    while size() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        size() > before,
        "checkpointed into the file ({before} bytes)"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM outbox"), 40);
}
