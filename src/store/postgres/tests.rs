//! The PostgreSQL backend against a real throwaway server: the whole
//! behaviour suite, plus what only this backend has (schema versions, URL
//! secrets in errors, TLS verification, calls from inside a runtime).

use super::*;
use crate::store::contract::{me, new_delivery, sample, store_contract, t};
use crate::store::location::PgUrl;
use crate::store::pg_cluster;

/// A store on a fresh database; `None` without PostgreSQL (outside CI).
fn fresh_store() -> Option<((), Box<dyn Store>)> {
    let (_, store) = fresh()?;
    Some(((), Box::new(store)))
}

fn fresh() -> Option<(PgUrl, PostgresStore)> {
    let url = PgUrl::parse(&pg_cluster::fresh_db()?).unwrap();
    let store = PostgresStore::open(&url).unwrap();
    Some((url, store))
}

store_contract!(fresh_store);

#[test]
fn reopening_keeps_state_and_a_newer_schema_is_refused() {
    let Some((url, store)) = fresh() else { return };
    crate::store::contract::baseline_with(&store, &me(), &[new_delivery(2438, "audit", None)]);
    drop(store);
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.load_snapshot(&me()).unwrap().unwrap(), sample());
    let version = store.conn.with(schema::version).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    store
        .conn
        .with(|c| Ok(c.batch_execute("UPDATE crayon_schema SET version = 99")?))
        .unwrap();
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(
        matches!(err, StoreError::DatabaseTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(!err.to_string().contains(pg_cluster::PG_PASSWORD), "{err}");
}

#[test]
fn a_database_with_foreign_tables_is_left_alone() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let url = PgUrl::parse(&db).unwrap();
    let conn = Conn::open(&url).unwrap();
    conn.with(|c| Ok(c.batch_execute("CREATE TABLE outbox (x INT)")?))
        .unwrap();
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseForeign { .. }), "{err}");
}

#[test]
fn a_wrong_password_is_refused_without_echoing_it() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let wrong = db.replace(pg_cluster::PG_PASSWORD, "Wr0ng-Secret-77");
    let err = PostgresStore::open(&PgUrl::parse(&wrong).unwrap()).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains("Wr0ng-Secret-77"), "{shown}");
    assert!(shown.contains("postgres:***@127.0.0.1"), "{shown}");
}

#[test]
fn verify_full_trusts_tls_ca_file_and_nothing_else() {
    let Some(cluster) = pg_cluster::cluster() else {
        return;
    };
    let _ = pg_cluster::fresh_db();
    let mut url = PgUrl::parse(&cluster.url("postgres", "sslmode=verify-full")).unwrap();
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    url.set_ca_file(Some(cluster.ca_file.clone()));
    let store = PostgresStore::open(&url).unwrap();
    let ssl: bool = store
        .conn
        .with(|c| {
            let row = c.query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )?;
            Ok(row.try_get(0)?)
        })
        .unwrap();
    assert!(ssl, "the connection is encrypted");
}

#[tokio::test(flavor = "current_thread")]
async fn works_from_inside_a_current_thread_runtime() {
    let Some((url, store)) = fresh() else { return };
    crate::store::contract::baseline_with(&store, &me(), &[new_delivery(2438, "audit", None)]);
    assert_eq!(store.last_success_at(&me()).unwrap(), Some(t(0)));
    drop(store);
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.list_deliveries(&me(), None).unwrap().len(), 1);
}

#[test]
fn a_former_leader_is_fenced_once_another_took_over() {
    use crate::domain::{EventKind, ExportId};
    use crate::store::contract::commit_for;
    let Some((url, a)) = fresh() else { return };
    let b = PostgresStore::open(&url).unwrap();
    let ttl = Duration::from_millis(400);
    assert_eq!(a.try_lead("a", ttl).unwrap(), Some(1));
    assert_eq!(b.try_lead("b", ttl).unwrap(), None, "a holds it");
    assert_eq!(a.try_lead("a", ttl).unwrap(), Some(1), "renewing keeps it");
    crate::store::contract::baseline_with(&a, &me(), &[new_delivery(2438, "audit", None)]);
    let (snap, account) = (sample(), me());
    let fired = [(ExportId(2438), EventKind::Downloadable)];
    let commit = commit_for(&account, Some(&snap), &snap, &fired, &[], t(5));
    let err = b.commit_poll(&commit).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "a standby: {err}");

    std::thread::sleep(ttl + Duration::from_millis(100)); // a is paused past its lease
    assert_eq!(b.try_lead("b", ttl).unwrap(), Some(2), "b takes over");
    let err = a.commit_poll(&commit).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                held: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        b.already_fired(&me(), &fired).unwrap().is_empty(),
        "a wrote nothing"
    );
    let id = b.list_deliveries(&me(), None).unwrap()[0].id;
    let sent = AttemptOutcome::Sent;
    let err = a.record_attempt(&me(), id, &sent, t(6), Duration::ZERO);
    assert!(matches!(err, Err(StoreError::Fenced { .. })), "{err:?}");
    b.record_attempt(&me(), id, &sent, t(6), Duration::ZERO)
        .unwrap();
    assert_eq!(b.commit_poll(&commit).unwrap().fired, 1);

    assert_eq!(a.try_lead("a", ttl).unwrap(), None, "a lost it");
    b.step_down("b").unwrap();
    assert_eq!(
        a.try_lead("a", ttl).unwrap(),
        Some(3),
        "no wait after a clean hand-over"
    );
}

#[test]
fn a_dropped_connection_is_reopened_on_the_next_call() {
    let Some((url, store)) = fresh() else { return };
    let cluster = pg_cluster::cluster().unwrap();
    let name = url
        .shown()
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    cluster.psql(&format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    let first = store.next_due_at(&me());
    if let Err(err) = &first {
        assert!(matches!(err, StoreError::Database { .. }), "{err}");
    }
    assert_eq!(store.next_due_at(&me()).unwrap(), None, "reconnected");
}

#[test]
fn a_schema_1_database_gets_digest_ids_and_keeps_its_pending_rows() {
    use crate::store::{DigestWindow, Gathered};
    let Some((url, store)) = fresh() else { return };
    store
        .enqueue(&me(), &[new_delivery(2439, "mail", None)], t(0))
        .unwrap();
    store
        .conn
        .with(|c| {
            Ok(c.batch_execute(
                "ALTER TABLE outbox DROP COLUMN digest_id; UPDATE crayon_schema SET version = 1",
            )?)
        })
        .unwrap();
    drop(store);
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.conn.with(schema::version).unwrap(), SCHEMA_VERSION);
    let old = store.list_deliveries(&me(), None).unwrap()[0].clone();
    assert_eq!(store.digest_of(&me(), old.id).unwrap(), None);
    let window = DigestWindow {
        sink: "mail",
        recipient: old.recipient.as_deref(),
        length: std::time::Duration::from_secs(60),
    };
    let gathered = store.gather_digest(&me(), old.id, &window, t(60)).unwrap();
    assert!(matches!(gathered, Gathered::Send { members, .. } if members == [old]));
}
