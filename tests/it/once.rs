//! `once` as cron runs it: beside a running service, repeatedly over time,
//! and with absurd retention settings.

use std::time::Duration;

use crate::helpers::{
    item, outbox_json, polls, text, wait_for_baseline, wait_for_polls_after, wait_until, Harness,
};

/// The harness config with `[delivery]` keys added.
fn config_with_delivery(h: &Harness, keys: &str) {
    h.write_config("");
    let path = h.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "shutdown_grace = \"2s\"",
        &format!("shutdown_grace = \"2s\"\n{keys}"),
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn once_beside_a_running_service_is_refused_and_nothing_is_sent_twice() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    h.queue
        .set_items(vec![item(3, 1, false), item(4, 1, false)]);
    let mut run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(3, 2, true), item(4, 2, true)]);

    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already running") && stderr.contains("state.db.lock"),
        "{stderr}"
    );

    let two = wait_until(Duration::from_secs(15), || async {
        h.hook_bodies().await.len() >= 2
    })
    .await;
    assert!(two, "both flips sent");
    // Nothing more: a few more polls and dispatcher rounds send nothing.
    wait_for_polls_after(&h, polls(&h).await, 3).await;
    assert_eq!(h.hook_bodies().await.len(), 2, "each flip sent once");
    crate::helpers::signal(&run, "-TERM");
    assert_eq!(run.wait().await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn once_prunes_sent_deliveries_older_than_keep_sent() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    config_with_delivery(&h, "keep_sent = \"1s\"");
    h.queue.set_items(vec![item(3, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![item(3, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let rows = outbox_json(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "sent");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(outbox_json(&h).await.is_empty(), "the sent row was pruned");
    assert_eq!(h.hook_bodies().await.len(), 1);
}

#[tokio::test]
async fn absurd_retention_durations_keep_everything_instead_of_panicking() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    config_with_delivery(&h, "keep_sent = \"1000000y\"\nkeep_fired = \"1000000y\"");
    h.queue.set_items(vec![item(3, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![item(3, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(outbox_json(&h).await.len(), 1, "kept");

    let before = polls(&h).await;
    let mut run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_polls_after(&h, before, 1).await;
    crate::helpers::signal(&run, "-TERM");
    assert_eq!(
        run.wait().await.unwrap().code(),
        Some(0),
        "run prunes at start"
    );

    let out = h
        .bot(&["outbox", "purge", "--sent-before", "1000000y"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 sent"));
    let out = h.bot(&["outbox", "purge", "--sent-before", "0s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(outbox_json(&h).await.is_empty());
}
