//! `render` edge cases a new user hits: the `alert` event, a closed pipe,
//! and which item of a queue answer is shown.

use std::process::Stdio;

use crate::helpers::{text, Harness};

#[tokio::test]
async fn render_event_alert_prints_the_sample_alert_for_each_kind() {
    let h = Harness::start().await;
    h.write_config("[sinks.stdout]\nkind = \"console\"");
    let out = h
        .bot(&["render", "--event", "alert", "--sink", "stdout"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ALERT FIRING"),
        "{}",
        text(&out)
    );
    let out = h
        .bot(&["render", "--event", "alert", "--sink", "audit"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["event"], "alert", "{body}");
}

#[tokio::test]
async fn render_into_a_closed_pipe_ends_quietly_with_exit_0() {
    let h = Harness::start().await;
    h.write_config("");
    let mut child = h
        .command(&["render", "--event", "downloadable", "--sink", "audit"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_queue_answer_renders_its_latest_item_like_the_built_in_sample() {
    let h = Harness::start().await;
    h.write_config("");
    let queue = h.dir.path().join("queue.json");
    std::fs::write(
        &queue,
        r#"{"Items": [
            {"Id": 7, "Status": 2, "Downloadable": true, "ActionName": "Older",
             "RequestedBy": null, "CreatedDate": "2024-05-30T13:39:59"},
            {"Id": 9, "Status": 2, "Downloadable": true, "ActionName": "Latest",
             "RequestedBy": null, "CreatedDate": "2024-05-30T14:39:59"}],
            "NrOfDays": 7}"#,
    )
    .unwrap();
    let args = ["render", "--event", "downloadable", "--sink", "audit"];
    let out = h
        .bot(&[&args[..], &["--item", queue.to_str().unwrap()]].concat())
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["item"]["id"], 9, "{body}");

    let sample =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exports-sample.json");
    let from_file = h
        .bot(&[&args[..], &["--item", sample.to_str().unwrap()]].concat())
        .await;
    let built_in = h.bot(&args).await;
    let id = |out: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["item"]["id"].clone()
    };
    assert_eq!(id(&from_file), id(&built_in));
}
