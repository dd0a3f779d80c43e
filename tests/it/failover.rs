//! Several `run` processes on one PostgreSQL state (real processes, a real
//! throwaway cluster): one leads and the other stands by (as `/healthz`
//! says), a SIGKILLed leader is replaced within the lease and loses nothing,
//! and a leader paused past its lease sends nothing after it resumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{item, signal, text, Harness, HOOK_PATH};
use crate::pg_cluster;

/// `watch.lease` of these tests: short, so failovers are quick.
const LEASE: Duration = Duration::from_secs(3);
/// `watch.interval` of the harness config.
const INTERVAL: Duration = Duration::from_millis(200);
/// The webhook sink's default concurrency: at a kill, at most twice this
/// many sends are in flight or unrecorded.
const CONCURRENCY: usize = 4;
/// Items in the burst.
const BURST: i64 = 20;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One replica: its own config (its own `[server] listen`), on `db`.
struct Replica {
    config: PathBuf,
    port: u16,
}

impl Replica {
    fn new(h: &Harness, db: &str, name: &str) -> Replica {
        let port = free_port();
        h.write_config(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"));
        let text = std::fs::read_to_string(h.config_path()).unwrap();
        let text = text
            .replace("state = \"state.db\"", &format!("state = \"{db}\""))
            .replace(
                "interval = \"200ms\"",
                "interval = \"200ms\"\nlease = \"3s\"",
            );
        let config = h.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Replica { config, port }
    }

    fn command(&self, h: &Harness, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(h.env())
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("BOT_CONFIG")
            .kill_on_drop(true);
        cmd
    }

    fn run(&self, h: &Harness) -> Child {
        self.command(h, &["run"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `/healthz`: the HTTP status and the `role` of the body.
    async fn health(&self) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.ok()?;
        Some((status, body["role"].as_str()?.to_string()))
    }

    /// Waits (up to `limit`) until `/healthz` is 200 with `role`.
    async fn wait_role(&self, role: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some((200, got)) = self.health().await {
                if got == role {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn received_ids(h: &Harness) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for body in h.hook_bodies().await {
        *ids.entry(body["item"]["id"].as_i64().unwrap()).or_default() += 1;
    }
    ids
}

async fn wait_for(mut done: impl AsyncFnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A fresh database, a slow sink, a baseline of the burst's items (by
/// `once`) and two replicas: `a` leading, `b` standing by.
async fn two_replicas(h: &Harness, db: &str) -> (Replica, Child, Replica, Child) {
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&h.hook)
        .await;
    let (a, b) = (Replica::new(h, db, "a"), Replica::new(h, db, "b"));
    h.queue
        .set_items((1..=BURST).map(|id| item(id, 1, false)).collect());
    let out = a.command(h, &["once"]).output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let first = a.run(h);
    assert!(a.wait_role("leader", Duration::from_secs(10)).await);
    let second = b.run(h);
    assert!(b.wait_role("standby", Duration::from_secs(10)).await);
    (a, first, b, second)
}

fn flip(h: &Harness) {
    h.queue
        .set_items((1..=BURST).map(|id| item(id, 2, true)).collect());
}

#[tokio::test]
async fn two_runs_on_one_database_one_leads_one_stands_by_and_a_clean_stop_hands_over() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    let (a, first, b, second) = two_replicas(&h, &db).await;
    tokio::time::sleep(LEASE).await;
    assert_eq!(a.health().await, Some((200, "leader".into())));
    assert_eq!(
        b.health().await,
        Some((200, "standby".into())),
        "a standby is healthy and stays standing by"
    );
    for (replica, role) in [(&a, "leader"), (&b, "standby")] {
        let url = format!("http://127.0.0.1:{}/api/status", replica.port);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let view: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(view["role"], role, "the status page says the same");
    }
    signal(&first, "-TERM");
    let stopped = Instant::now();
    let out = first.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(b.wait_role("leader", LEASE).await, "b took over");
    eprintln!("clean handover took {:?}", stopped.elapsed());
    signal(&second, "-TERM");
    let _ = second.wait_with_output().await;
}

#[tokio::test]
async fn a_sigkilled_leader_is_replaced_within_the_lease_and_nothing_is_lost() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    let (_a, first, b, second) = two_replicas(&h, &db).await;
    flip(&h);
    let started = wait_for(
        async || h.hook_bodies().await.len() >= 6,
        Duration::from_secs(20),
    )
    .await;
    assert!(started, "the burst started");
    signal(&first, "-KILL");
    let killed = Instant::now();
    let _ = first.wait_with_output().await;
    let at_kill = h.hook_bodies().await.len();
    assert!(
        at_kill < BURST as usize,
        "killed mid-burst ({at_kill} sent)"
    );

    // The lease lapses at most `lease` after the kill; the standby tries
    // every lease/3 and polls at once when it leads.
    let limit = LEASE + (LEASE / 3).max(INTERVAL) + Duration::from_secs(1);
    assert!(b.wait_role("leader", limit).await, "b took over");
    let takeover = killed.elapsed();
    let all = wait_for(
        async || received_ids(&h).await.len() == BURST as usize,
        Duration::from_secs(30),
    )
    .await;
    signal(&second, "-TERM");
    let out = second.wait_with_output().await.unwrap();
    assert!(
        all,
        "every item reached the sink: {:?}",
        received_ids(&h).await
    );
    assert_eq!(out.status.code(), Some(0));
    let duplicates = h.hook_bodies().await.len() - BURST as usize;
    eprintln!("failover: {at_kill} sent before the kill, takeover after {takeover:?}, {duplicates} duplicate(s)");
    // In flight: sending (at most `concurrency`) or sent with the write
    // pending (a slot is freed once its outcome is queued): at most 2 ×.
    assert!(
        duplicates <= 2 * CONCURRENCY,
        "duplicates {duplicates} exceed the sends in flight or unrecorded (2 × {CONCURRENCY})"
    );
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_sends_and_commits_nothing_after_it_resumes() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    let (a, first, b, second) = two_replicas(&h, &db).await;
    flip(&h);
    let started = wait_for(
        async || h.hook_bodies().await.len() >= 6,
        Duration::from_secs(20),
    )
    .await;
    assert!(started, "the burst started");
    signal(&first, "-STOP");
    let limit = LEASE + (LEASE / 3).max(INTERVAL) + Duration::from_secs(1);
    assert!(b.wait_role("leader", limit).await, "b took over");
    let all = wait_for(
        async || received_ids(&h).await.len() == BURST as usize,
        Duration::from_secs(30),
    )
    .await;
    assert!(all, "b delivered every item: {:?}", received_ids(&h).await);
    // b is done: nothing more is due, so any request from now on is a's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = h.hook.received_requests().await.unwrap().len();

    signal(&first, "-CONT");
    assert!(
        a.wait_role("standby", Duration::from_secs(5)).await,
        "the resumed leader stands by"
    );
    tokio::time::sleep(LEASE).await;
    let after = h.hook.received_requests().await.unwrap().len();
    assert_eq!(after, before, "the resumed old leader sent nothing");
    // Nothing it still held was committed over b's work: all sent, once each.
    let out = b
        .command(&h, &["outbox", "list", "--json"])
        .output()
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let pending: Vec<_> = rows.iter().filter(|r| r["status"] != "sent").collect();
    assert!(pending.is_empty(), "every delivery is sent: {pending:?}");
    assert_eq!(b.health().await, Some((200, "leader".into())));
    for child in [first, second] {
        signal(&child, "-TERM");
        let _ = child.wait_with_output().await;
    }
}

#[tokio::test]
async fn once_is_refused_while_a_run_leads_the_database_and_works_after_it_stopped() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let a = Replica::new(&h, &db, "a");
    let leader = a.run(&h);
    assert!(a.wait_role("leader", Duration::from_secs(10)).await);
    let out = a.command(&h, &["once"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another replica leads"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(pg_cluster::PG_PASSWORD),
        "{}",
        text(&out)
    );
    signal(&leader, "-TERM");
    let _ = leader.wait_with_output().await;
    let out = a.command(&h, &["once"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "the lease was handed back: {}",
        text(&out)
    );
}
