//! The state behind the `Store` trait, seen from the outside: alerts are their
//! own records (never items in `why` or `outbox list`, remembered across
//! restarts), a v0.1 state file upgrades, and the outbox is scoped by account.

use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{signal, text, Harness, QueueAnswer, HOOK_PATH};

/// A real schema-2 state file as v0.1 wrote it, alerts as fake item ids ±1..3.
const V2_FIXTURE: &[u8] = include_bytes!("../fixtures/state-v2.db");

const ALERTS: &str = "[sinks.ops]\nkind = \"webhook\"\nurl = \"${OPS_URL}\"\n\
     [alerts]\nsink = \"ops\"\nafter = \"300ms\"\nrepeat = \"1h\"\n\
     [[routes]]\nsinks = [\"audit\"]";

/// The alert bodies the ops hook received so far.
async fn alerts(h: &Harness) -> Vec<Value> {
    let requests = h.hook.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == "/ops")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Waits (at most 15 s) until the ops hook has received `n` alerts.
async fn wait_alerts(h: &Harness, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while alerts(h).await.len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alerts(h).await
}

/// The configured binary with `OPS_URL` (the alert sink) set too.
fn command(h: &Harness, args: &[&str]) -> tokio::process::Command {
    let mut cmd = h.command(args);
    cmd.env("OPS_URL", format!("{}/ops", h.hook.uri()));
    cmd
}

async fn bot(h: &Harness, args: &[&str]) -> std::process::Output {
    command(h, args).output().await.unwrap()
}

/// `run` with the ops hook configured, for `for_how_long`, then SIGTERM.
async fn run_for(h: &Harness, for_how_long: Duration) {
    let mut cmd = command(h, &["run"]);
    let run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    tokio::time::sleep(for_how_long).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

async fn harness_with_ops() -> Harness {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    Mock::given(method("POST"))
        .and(path("/ops"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&h.hook)
        .await;
    h.write_config(ALERTS);
    h
}

async fn outbox_json(h: &Harness) -> Vec<Value> {
    let out = bot(h, &["outbox", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_sent_recovery_is_not_sent_again_after_a_restart() {
    let h = harness_with_ops().await;
    h.queue.set(QueueAnswer::Status(500));
    let mut cmd = command(&h, &["run"]);
    let run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    assert_eq!(wait_alerts(&h, 1).await.len(), 1);
    h.queue.set_items(vec![]);
    let both = wait_alerts(&h, 2).await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[1]["alert"]["state"], "recovered");
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Healthy after a restart: the recovery was sent, nothing more to say.
    run_for(&h, Duration::from_millis(1500)).await;
    let after = alerts(&h).await;
    assert_eq!(after.len(), 2, "no second recovery: {after:?}");

    // Failing again within `repeat` after a restart: no second firing alert.
    h.queue.set(QueueAnswer::Status(500));
    run_for(&h, Duration::from_millis(2000)).await;
    let after = alerts(&h).await;
    assert_eq!(after.len(), 2, "once per repeat across restarts: {after:?}");

    // The alerts are listed as alerts, and `why` of an item never shows them.
    let rows = outbox_json(&h).await;
    let alert_rows: Vec<&Value> = rows.iter().filter(|r| r["event"] == "alert").collect();
    assert_eq!(alert_rows.len(), 2, "{rows:?}");
    for row in alert_rows {
        assert_eq!(row["item_id"], Value::Null, "{row}");
        assert_eq!(row["alert"], "polls_failing", "{row}");
    }
    for id in ["1", "-1"] {
        let out = bot(&h, &["why", "--", id]).await;
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("delivery"), "why {id}: {stdout}");
    }
}

#[tokio::test]
async fn a_v01_state_file_upgrades_and_lists_its_alerts_apart_from_items() {
    let h = Harness::start().await;
    h.write_config("[[routes]]\nsinks = [\"audit\"]");
    std::fs::write(h.state(), V2_FIXTURE).unwrap();

    let out = h.bot(&["outbox", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let items: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        items,
        [
            "alert:deliveries_dead",
            "alert:polls_failing",
            "alert:polls_failing",
            "2439"
        ],
        "{table}"
    );
    assert!(h.dir.path().join("state.db.v2.bak").exists());

    let rows = outbox_json(&h).await;
    assert_eq!(rows[3]["item_id"], 2439);
    assert!(rows[3].get("alert").is_none(), "items carry no alert field");
    assert_eq!(rows[0]["item_id"], Value::Null);
    assert_eq!(rows[0]["alert"], "deliveries_dead");

    let out = h.bot(&["why", "1"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("delivery"), "why 1: {stdout}");
    let out = h.bot(&["why", "2439"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("delivery 1 to audit"), "{}", text(&out));
}

/// Another account's pending delivery in the file is never listed or sent
/// as this account's; since accounts gone from the config still drain, it
/// goes once as its own account's (`account=contoso`), keeping its row.
#[tokio::test]
async fn once_lists_only_its_own_accounts_deliveries_and_drains_anothers_as_its_own() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("[[routes]]\nsinks = [\"audit\"]");
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Another account's pending delivery in the same file (as several
    // accounts in one process will write it).
    let db = rusqlite::Connection::open(h.state()).unwrap();
    db.execute(
        "INSERT INTO outbox (account, item_id, event, sink, recipient, message, status, \
         attempts, next_attempt_at, created_at, updated_at) VALUES ('contoso', 7, \
         'downloadable', 'audit', NULL, '{\"parts\":{\"json\":\"{}\"}}', 'pending', 0, 0, 0, 0)",
        [],
    )
    .unwrap();
    drop(db);

    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let requests = h.hook.received_requests().await.unwrap();
    let sent = requests
        .iter()
        .filter(|r| r.url.path() == HOOK_PATH)
        .count();
    assert_eq!(sent, 1, "contoso's delivery, sent once: {}", text(&out));
    assert!(
        text(&out).contains("account=contoso") && text(&out).contains("outcome=\"sent\""),
        "{}",
        text(&out)
    );
    assert!(outbox_json(&h).await.is_empty());
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let (status, attempts): (String, i64) = db
        .query_row(
            "SELECT status, attempts FROM outbox WHERE account = 'contoso'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 1));
}
