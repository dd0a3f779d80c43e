//! Delivery you can trust: crash safety under SIGKILL, dead letters and
//! `outbox retry`, `outbox list`/`why` next to a running service.

use std::collections::BTreeMap;
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{item, signal, text, Harness, HOOK_PATH};

/// Ids of the items the hook received, with how often each arrived.
async fn received_ids(h: &Harness) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for body in h.hook_bodies().await {
        *ids.entry(body["item"]["id"].as_i64().unwrap()).or_default() += 1;
    }
    ids
}

async fn wait_for(mut done: impl AsyncFnMut() -> bool, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sigkill_mid_burst_loses_nothing_and_duplicates_at_most_twice_the_concurrency() {
    let h = Harness::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&h.hook)
        .await;
    h.write_config("");
    h.queue
        .set_items((1..=20).map(|id| item(id, 1, false)).collect());
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items((1..=20).map(|id| item(id, 2, true)).collect());

    let first = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = wait_for(
        async || h.hook_bodies().await.len() >= 6,
        Duration::from_secs(20),
    )
    .await;
    assert!(started, "the burst started");
    signal(&first, "-KILL");
    let _ = first.wait_with_output().await;
    let at_kill = h.hook_bodies().await.len();
    assert!(at_kill < 20, "killed mid-burst ({at_kill} sent)");

    let second = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let all = wait_for(
        async || received_ids(&h).await.len() == 20,
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
    let total = h.hook_bodies().await.len();
    let duplicates = total - 20;
    eprintln!("crash test: {at_kill} requests before the kill, {duplicates} duplicate(s)");
    // Sending (at most `concurrency` = 4) or sent with the write pending
    // (the slot is freed once the outcome is queued): at most 2 × 4.
    assert!(
        duplicates <= 8,
        "duplicates {duplicates} exceed 2 × the concurrency (8)"
    );
}

#[tokio::test]
async fn a_dead_delivery_is_listed_and_sent_again_by_outbox_retry() {
    let h = Harness::start().await;
    h.hook_answers(400).await;
    h.write_config("");
    h.queue.set_items(vec![item(5, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![item(5, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = h
        .bot(&["outbox", "list", "--status", "dead", "--json"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let row = &rows[0];
    for field in [
        "id",
        "sink",
        "item_id",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
    ] {
        assert!(row.get(field).is_some(), "{field} missing: {row}");
    }
    assert_eq!(row["status"], "dead");
    assert_eq!(row["item_id"], 5);
    assert!(row["last_error"].as_str().unwrap().contains("HTTP 400"));

    h.hook_answers(200).await;
    let id = row["id"].to_string();
    let out = h.bot(&["outbox", "retry", &id]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1);
    let out = h.bot(&["outbox", "retry", "--all-dead"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing left to retry: {}",
        text(&out)
    );
}

#[tokio::test]
async fn outbox_and_why_work_next_to_a_running_service() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    h.queue.set_items(vec![item(3, 1, false)]);
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::helpers::wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(3, 2, true)]);
    let sent = wait_for(
        async || !h.hook_bodies().await.is_empty(),
        Duration::from_secs(10),
    )
    .await;
    assert!(sent);
    let recorded = wait_for(
        async || {
            let out = h.bot(&["outbox", "list", "--json"]).await;
            String::from_utf8_lossy(&out.stdout).contains("\"sent\"")
        },
        Duration::from_secs(15),
    )
    .await;
    assert!(recorded, "the send was recorded");

    let out = h.bot(&["outbox", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("audit") && table.contains("sent"), "{table}");

    let out = h.bot(&["why", "3"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let why = String::from_utf8_lossy(&out.stdout);
    assert!(why.contains("event downloadable fired"), "{why}");
    assert!(why.contains("to audit (downloadable): sent"), "{why}");
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn a_corrupt_state_file_stops_the_bot_naming_the_file() {
    let h = Harness::start().await;
    h.write_config("");
    std::fs::write(
        h.state(),
        b"this is not a database, but it is somebody's file",
    )
    .unwrap();
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("state.db"), "{}", text(&out));
    assert_eq!(
        std::fs::read(h.state()).unwrap(),
        b"this is not a database, but it is somebody's file"
    );
}
