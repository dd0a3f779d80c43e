//! The watcher end to end: polls, diffs, exactly-once delivery across
//! restarts, failed polls, the poll transaction, and secrets in logs.

use std::time::Duration;

use crate::helpers::{item, text, Harness, QueueAnswer, CLIENT_SECRET, HOOK_PATH, PASSWORD, TOKEN};

/// First poll records the baseline; the item then turns downloadable.
async fn baseline_then_flip(h: &Harness) {
    h.queue.set_items(vec![item(7, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("baseline: 1 items recorded"),
        "{}",
        text(&out)
    );
    h.queue.set_items(vec![item(7, 2, true)]);
}

#[tokio::test]
async fn flip_to_downloadable_is_delivered_exactly_once_across_restarts() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    baseline_then_flip(&h).await;

    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1, "{}", text(&out));
    assert_eq!(bodies[0]["event"], "downloadable");
    assert_eq!(bodies[0]["item"]["id"], 7);
    assert_eq!(
        bodies[0]["item"]["action_name"],
        "New Commerce License-based Report #7"
    );
    assert_eq!(bodies[0]["item"]["requested_by"], "ann@example.com");

    for _ in 0..2 {
        let out = h.bot(&["once"]).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(
        h.hook_bodies().await.len(),
        1,
        "no second delivery after restarts"
    );
}

#[tokio::test]
async fn failed_polls_change_nothing_and_the_flip_still_notifies_once() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    baseline_then_flip(&h).await;
    let before = std::fs::read(h.state()).unwrap();

    for answer in [
        QueueAnswer::Status(500),
        QueueAnswer::Raw("{\"Items\": \"not a list\"}"),
        QueueAnswer::Raw("<html>maintenance</html>"),
        QueueAnswer::Raw("{}"),
        QueueAnswer::Slow(Duration::from_secs(3)),
    ] {
        h.queue.set(answer);
        let out = h.bot(&["once"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("poll failed"), "{}", text(&out));
    }
    assert!(h.hook_bodies().await.is_empty());
    assert_eq!(std::fs::read(h.state()).unwrap(), before, "state unchanged");

    h.queue.set_items(vec![item(7, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1);
}

#[tokio::test]
async fn a_fault_between_snapshot_and_outbox_rolls_both_back() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    baseline_then_flip(&h).await;

    let db = rusqlite::Connection::open(h.state()).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fault BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .unwrap();
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("injected fault"), "{}", text(&out));
    let downloadable: bool = db
        .query_row(
            "SELECT downloadable FROM snapshot_items WHERE item_id = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!downloadable, "the snapshot write was rolled back");
    let fired: i64 = db
        .query_row("SELECT count(*) FROM fired", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fired, 0);

    db.execute_batch("DROP TRIGGER fault;").unwrap();
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        h.hook_bodies().await.len(),
        1,
        "fired exactly once after the fault"
    );
}

#[tokio::test]
async fn a_refused_delivery_makes_once_exit_1_and_is_kept() {
    let h = Harness::start().await;
    h.hook_answers(500).await;
    h.write_config("");
    baseline_then_flip(&h).await;
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("1 retrying"), "{}", text(&out));
    assert!(text(&out).contains("HTTP 500"), "{}", text(&out));

    h.hook_answers(200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1);
}

#[tokio::test]
async fn first_run_notify_treats_everything_as_new() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    let config = std::fs::read_to_string(h.config_path()).unwrap().replace(
        "state = \"state.db\"",
        "state = \"state.db\"\nfirst_run = \"notify\"",
    );
    std::fs::write(h.config_path(), config).unwrap();
    h.queue
        .set_items(vec![item(1, 2, true), item(2, 8, false), item(3, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let mut events: Vec<String> = h
        .hook_bodies()
        .await
        .iter()
        .map(|b| format!("{} {}", b["item"]["id"], b["event"].as_str().unwrap()))
        .collect();
    events.sort();
    assert_eq!(events, ["1 downloadable", "2 failed"]);
}

#[tokio::test]
async fn an_upgraded_schema_1_state_keeps_its_history() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    std::fs::copy("tests/fixtures/state-v1.db", h.state()).unwrap();
    let sample: serde_json::Value =
        serde_json::from_slice(&std::fs::read("tests/fixtures/exports-sample.json").unwrap())
            .unwrap();
    h.queue.set(QueueAnswer::Json(sample));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("baseline"),
        "history was kept: {}",
        text(&out)
    );
    assert!(h.hook_bodies().await.is_empty(), "nothing fired again");
    assert!(h.dir.path().join("state.db.v1.bak").exists());
}

#[tokio::test]
async fn run_delivers_between_polls_and_stops_cleanly_on_sigterm() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    h.queue.set_items(vec![item(9, 1, false)]);
    let child = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::helpers::wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(9, 2, true)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.hook_bodies().await.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("run stops within the grace period")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1, "{}", text(&out));
}

#[tokio::test]
async fn a_second_run_on_the_same_state_refuses_to_start() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    let mut first = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::helpers::wait_for_polls_after(&h, 0, 1).await;
    let out = h.bot(&["run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already running"), "{}", text(&out));
    first.kill().await.unwrap();
}

#[tokio::test]
async fn secrets_never_reach_the_logs_even_at_debug_level() {
    let h = Harness::start().await;
    h.hook_answers(400).await;
    h.write_config("");
    baseline_then_flip(&h).await;
    let mut logs = String::new();
    for answer in [None, Some(QueueAnswer::Status(500))] {
        if let Some(answer) = answer {
            h.queue.set(answer);
        }
        let out = h.bot(&["once"]).await;
        logs.push_str(&text(&out));
    }
    assert!(logs.contains("HTTP 400"), "{logs}");
    for secret in [CLIENT_SECRET, PASSWORD, TOKEN, HOOK_PATH, "T0SECRET"] {
        assert!(!logs.contains(secret), "{secret} leaked:\n{logs}");
    }
}
