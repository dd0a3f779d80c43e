//! The dispatcher writes the outcomes of sends that finish together in one
//! transaction (issue 21), and `once` still exits only after every send is
//! recorded. Commits are counted in the state file's write-ahead log, which
//! this test keeps alive by holding a connection open while `once` runs
//! (the last connection to close would checkpoint and delete it).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Barrier;

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

/// Waves in the waves test, each of the default concurrency (4).
const WAVES: usize = 10;

/// A webhook receiver on loopback answering in waves: every request waits
/// until `wave` requests wait, then they are all answered `200` at once.
/// Returns its URL and the count of requests received.
async fn wave_receiver(wave: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (barrier, received) = (Arc::new(Barrier::new(wave)), Arc::new(AtomicUsize::new(0)));
    let counted = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (barrier, counted) = (barrier.clone(), counted.clone());
            tokio::spawn(async move { answer_in_waves(stream, &barrier, &counted).await });
        }
    });
    (url, received)
}

/// Serves one keep-alive connection of [`wave_receiver`].
async fn answer_in_waves(
    stream: tokio::net::TcpStream,
    barrier: &Barrier,
    received: &AtomicUsize,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        received.fetch_add(1, Ordering::SeqCst);
        barrier.wait().await;
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

#[tokio::test]
async fn the_sends_of_one_wave_share_one_commit() {
    let h = Harness::start().await;
    // The sink's 4 sends (the default concurrency) are answered together.
    // The writer waits until none of the account's sends is still running
    // (at most 1 ms), so each wave's outcomes share one commit. The old
    // writer committed the first answer of a wave alone and the others in
    // one or two more commits.
    let (url, received) = wave_receiver(4).await;
    h.write_config("");
    let burst = WAVES * 4;
    baseline_then_flip(&h, 1..=burst as i64).await;

    // Reading through this connection keeps the log alive (see above).
    let holder = rusqlite::Connection::open(h.state()).unwrap();
    let mode: String = holder
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let out = h
        .command(&["once"])
        .env("AUDIT_WEBHOOK_URL", &url)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let commits = commits_in_wal(&h.dir.path().join("state.db-wal"));
    let sent: usize = holder
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(sent, burst, "every send is recorded before once exits");
    assert_eq!(received.load(Ordering::SeqCst), burst, "sent once each");
    eprintln!("waves: {commits} commits for {burst} outcomes in {WAVES} waves");
    // The poll's commit and one per wave, with room for waves split by a
    // busy machine (a wave's answers more than `LINGER` apart: 17 seen at
    // load 4); the old writer's 26-27 still fail.
    let most = 1 + WAVES * 2;
    assert!(
        commits <= most,
        "{commits} commits for {WAVES} waves (at most {most})"
    );
    drop(holder);
}
