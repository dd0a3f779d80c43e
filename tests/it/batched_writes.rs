//! The dispatcher writes the outcomes of sends that finish together in one
//! transaction (issue 21), and `once` still exits only after every send is
//! recorded. Commits are counted in the state file's write-ahead log, which
//! this test keeps alive by holding a connection open while `once` runs
//! (the last connection to close would checkpoint and delete it).

use std::path::Path;
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{baseline_then_flip, outbox_json, text, Harness, HOOK_PATH};

/// Deliveries in the burst: few enough that the log of the old code (one
/// commit per delivery) stays below SQLite's auto-checkpoint of 1,000 pages.
const BURST: i64 = 120;

/// Commit frames in the write-ahead log `wal` (frames of the log's current
/// generation, i.e. with the header's salts, whose "database size after
/// commit" field is set).
fn commits_in_wal(wal: &Path) -> usize {
    let log = std::fs::read(wal).unwrap_or_default();
    if log.len() < 32 {
        return 0;
    }
    let be32 = |at: usize| u32::from_be_bytes(log[at..at + 4].try_into().unwrap());
    let page_size = be32(8) as usize;
    let salts = &log[16..24];
    log[32..]
        .chunks_exact(24 + page_size)
        .take_while(|frame| &frame[8..16] == salts)
        .filter(|frame| frame[4..8] != [0, 0, 0, 0])
        .count()
}

#[tokio::test]
async fn once_writes_a_burst_of_outcomes_in_a_few_commits_and_records_every_send() {
    let h = Harness::start().await;
    h.hook.reset().await;
    // Sends finish in waves of 40 (the sink's concurrency), 150 ms apart.
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(150)))
        .mount(&h.hook)
        .await;
    h.write_config("concurrency = 40");
    baseline_then_flip(&h, 1..=BURST).await;

    let holder = rusqlite::Connection::open(h.state()).unwrap();
    let mode: String = holder
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let commits = commits_in_wal(&h.dir.path().join("state.db-wal"));

    let sent: i64 = holder
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(sent, BURST, "every send is recorded before once exits");
    let logged: i64 = holder
        .query_row("SELECT COUNT(*) FROM attempts_log", [], |row| row.get(0))
        .unwrap();
    assert_eq!(logged, BURST, "one attempt row each");
    assert_eq!(
        h.hook_bodies().await.len(),
        BURST as usize,
        "sent once each"
    );
    // The poll's own commit, and the outcomes in batches: one commit per
    // delivery, as before, is 121. How many share a commit depends on how
    // close together a wave's answers arrive (a handful per wave on a quiet
    // machine, 81 in all seen under a full test run at load 15), so the
    // bound is only "fewer than one per delivery".
    assert!(
        (1..=BURST as usize).contains(&commits),
        "{commits} commits for {BURST} outcomes"
    );
    eprintln!("batched writes: {commits} commits for {BURST} outcomes");
    drop(holder);
    assert!(outbox_json(&h).await.iter().all(|d| d["status"] == "sent"));
}
