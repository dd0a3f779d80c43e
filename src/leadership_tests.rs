//! The lease task against real stores: SQLite leads at once; two replicas
//! on one PostgreSQL database get one leader, and a clean shutdown or a
//! lost database hands over within the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::{pg_cluster, PgUrl, PostgresStore, SqliteStore};

const LEASE: Duration = Duration::from_millis(900);

async fn becomes(rx: &mut watch::Receiver<Role>, leader: bool, within: Duration) -> Role {
    let role = tokio::time::timeout(within, rx.wait_for(|r| r.is_leader() == leader))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "not {} within {within:?}",
                if leader { "leader" } else { "standby" }
            )
        });
    *role.unwrap()
}

#[tokio::test]
async fn sqlite_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let stop = CancellationToken::new();
    let (mut rx, task) = spawn(store, LEASE, holder_id(), stop.clone());
    becomes(&mut rx, true, Duration::from_secs(2)).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(*rx.borrow(), Role::Standby);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_replicas_leads_and_a_clean_stop_hands_over() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let url = PgUrl::parse(&db).unwrap();
    let open = || -> Arc<dyn Store> { Arc::new(PostgresStore::open(&url).unwrap()) };
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (mut a, task_a) = spawn(open(), LEASE, "a".into(), stop_a.clone());
    let first = becomes(&mut a, true, Duration::from_secs(2)).await;
    assert_eq!(first, Role::Leader { generation: 1 });
    let (mut b, task_b) = spawn(open(), LEASE, "b".into(), stop_b.clone());
    tokio::time::sleep(LEASE).await;
    assert_eq!(*b.borrow(), Role::Standby, "a still leads");
    assert!(a.borrow().is_leader(), "a renews in time");

    stop_a.cancel();
    task_a.await.unwrap();
    let started = std::time::Instant::now();
    let second = becomes(&mut b, true, LEASE).await;
    assert_eq!(second, Role::Leader { generation: 2 });
    assert!(started.elapsed() < LEASE, "took {:?}", started.elapsed());
    stop_b.cancel();
    task_b.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_database_stands_by_before_its_lease_ends() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let cluster = pg_cluster::cluster().unwrap();
    let name = url::Url::parse(&db)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&PgUrl::parse(&db).unwrap()).unwrap());
    let stop = CancellationToken::new();
    let (mut rx, task) = spawn(store, LEASE, "a".into(), stop.clone());
    becomes(&mut rx, true, Duration::from_secs(2)).await;

    cluster.psql(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    becomes(&mut rx, false, LEASE).await;
    cluster.psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    becomes(&mut rx, true, LEASE * 2).await;
    stop.cancel();
    task.await.unwrap();
}
