//! Operating it: `/livez`, `/healthz` and `/metrics` of a running service.

use std::time::Duration;

use crate::email::plain_config;
use crate::helpers::{
    item, polls, signal, text, wait_for_baseline, wait_for_bodies, wait_for_polls_after,
    wait_until, Harness, LiveLog, QueueAnswer,
};
use crate::smtp::{Security, SmtpServer};

/// Dead outbox rows of `sink`, read from the state file while `run` runs.
fn dead_rows(h: &Harness, sink: &str) -> i64 {
    let Ok(db) = rusqlite::Connection::open(h.state()) else {
        return 0;
    };
    db.query_row(
        "SELECT COUNT(*) FROM outbox WHERE sink = ?1 AND status = 'dead'",
        [sink],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Waits until `url` answers with `status`; returns the body.
async fn wait_status(url: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((got, body)) = get(url).await {
            if got == status {
                return body;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(metrics: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let lines = metrics.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn healthz_fails_while_the_api_fails_and_recovers_livez_stays_up() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let port = free_port();
    h.write_config(&format!("[server]\nlisten = \"127.0.0.1:{port}\""));
    let base = format!("http://127.0.0.1:{port}");
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_status(&format!("{base}/healthz"), 200).await;

    h.queue.set(QueueAnswer::Status(503));
    let body = wait_status(&format!("{base}/healthz"), 503).await;
    assert!(body.contains("failing") && body.contains("503"), "{body}");
    assert_eq!(
        get(&format!("{base}/livez")).await.unwrap().0,
        200,
        "alive while the API is down"
    );

    h.queue.set_items(vec![]);
    let body = wait_status(&format!("{base}/healthz"), 200).await;
    assert!(body.contains("ok"), "{body}");
    drop(run);
}

#[tokio::test]
async fn metrics_parse_and_count_a_flip() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let port = free_port();
    h.write_config(&format!("[server]\nlisten = \"127.0.0.1:{port}\""));
    h.queue.set_items(vec![item(1, 1, false)]);
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_status(&url, 200).await;
    let started = std::time::Instant::now();
    // The flip must come after the baseline poll (the server answers before
    // the first poll, which waits for the leader lease).
    let before = loop {
        let (_, body) = get(&url).await.unwrap();
        if metric(
            &body,
            "crayon_export_bot_polls_total",
            Some(("outcome", "ok")),
        ) >= 1.0
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no poll:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(metric(&before, "crayon_export_bot_events_total", None), 0.0);
    assert_eq!(
        metric(
            &before,
            "crayon_export_bot_build_info",
            Some(("version", env!("CARGO_PKG_VERSION")))
        ),
        1.0
    );

    h.queue.set_items(vec![item(1, 2, true)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let after = loop {
        let (_, body) = get(&url).await.unwrap();
        if metric(
            &body,
            "crayon_export_bot_deliveries_total",
            Some(("outcome", "sent")),
        ) >= 1.0
        {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery counted:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        metric(
            &after,
            "crayon_export_bot_events_total",
            Some(("event", "downloadable"))
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "crayon_export_bot_deliveries_total",
            Some(("sink", "audit"))
        ),
        1.0
    );
    assert_eq!(metric(&after, "crayon_export_bot_queue_items", None), 1.0);
    assert!(
        metric(
            &after,
            "crayon_export_bot_polls_total",
            Some(("outcome", "ok"))
        ) >= 2.0
    );
    assert!(
        metric(
            &after,
            "crayon_export_bot_last_success_timestamp_seconds",
            None
        ) > 1.7e9
    );
    assert!(
        after.contains("crayon_export_bot_poll_duration_seconds_bucket"),
        "a histogram"
    );
    assert_eq!(
        metric(
            &after,
            "crayon_export_bot_outbox_pending",
            Some(("sink", "audit"))
        ),
        0.0
    );
    assert!(
        after.contains("crayon_export_bot_outbox_dead{account=\"default\",sink=\"audit\"} 0"),
        "{after}"
    );
    let out = {
        let pid = run.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        run.wait_with_output().await.unwrap()
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A second webhook sink on the same receiver, under another path.
const SECOND_SINK: &str = "[sinks.second]\nkind = \"webhook\"\nurl = \"${SECOND_URL}\"";

#[tokio::test]
async fn sighup_refuses_a_broken_config_and_applies_a_good_one() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    h.queue
        .set_items(vec![item(1, 1, false), item(2, 1, false)]);
    let mut cmd = h.command(&["run"]);
    cmd.env(
        "SECOND_URL",
        format!("{}{}", h.hook.uri(), crate::helpers::HOOK_PATH),
    );
    let mut run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let log = LiveLog::follow(&mut run);
    wait_for_baseline(&h, 0).await;

    let good = std::fs::read_to_string(h.config_path()).unwrap();
    std::fs::write(
        h.config_path(),
        format!("{good}\n[sinks.broken]\nkind = \"nope\"\n"),
    )
    .unwrap();
    signal(&run, "-HUP");
    log.wait_for("reload refused", 1).await;
    h.queue.set_items(vec![item(1, 2, true), item(2, 1, false)]);
    let bodies = wait_for_bodies(&h, 1, Duration::from_secs(15)).await;
    assert_eq!(bodies.len(), 1, "the old config keeps delivering");
    assert_eq!(bodies[0]["sink"], "audit");

    std::fs::write(h.config_path(), format!("{good}\n{SECOND_SINK}\n")).unwrap();
    signal(&run, "-HUP");
    log.wait_for("config reloaded", 1).await;
    // A poll that began before the reload may still be on its way.
    wait_for_polls_after(&h, polls(&h).await, 1).await;
    h.queue.set_items(vec![item(1, 2, true), item(2, 2, true)]);
    let bodies = wait_for_bodies(&h, 3, Duration::from_secs(15)).await;
    let mut sinks: Vec<String> = bodies[1..]
        .iter()
        .map(|b| b["sink"].as_str().unwrap().to_string())
        .collect();
    sinks.sort();
    assert_eq!(
        sinks,
        ["audit", "second"],
        "the new sink receives the next event"
    );
    signal(&run, "-TERM");
    let status = run.wait().await.unwrap();
    let logged = log.text();
    assert_eq!(status.code(), Some(0), "{logged}");
    assert!(logged.contains("sinks.broken.kind"), "{logged}");
}

#[tokio::test]
async fn a_config_saved_by_rename_is_reloaded_when_watching() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    let good = std::fs::read_to_string(h.config_path()).unwrap().replace(
        "state = \"state.db\"",
        "state = \"state.db\"\nreload = true",
    );
    std::fs::write(h.config_path(), &good).unwrap();
    h.queue.set_items(vec![item(4, 1, false)]);
    let mut cmd = h.command(&["run"]);
    cmd.env(
        "SECOND_URL",
        format!("{}{}", h.hook.uri(), crate::helpers::HOOK_PATH),
    );
    let mut run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let log = LiveLog::follow(&mut run);
    wait_for_baseline(&h, 0).await;

    let tmp = h.dir.path().join(".bot.toml.swp");
    std::fs::write(&tmp, format!("{good}\n{SECOND_SINK}\n")).unwrap();
    std::fs::rename(&tmp, h.config_path()).unwrap();
    log.wait_for("config reloaded", 1).await;
    wait_for_polls_after(&h, polls(&h).await, 1).await;
    h.queue.set_items(vec![item(4, 2, true)]);
    let bodies = wait_for_bodies(&h, 2, Duration::from_secs(15)).await;
    signal(&run, "-TERM");
    let status = run.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", log.text());
    assert_eq!(bodies.len(), 2, "{}", log.text());
}

#[tokio::test]
async fn a_failure_streak_raises_one_alert_and_one_recovery() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/ops"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&h.hook)
        .await;
    h.write_config(
        "[sinks.ops]\nkind = \"webhook\"\nurl = \"${OPS_URL}\"\n\
         [alerts]\nsink = \"ops\"\nafter = \"300ms\"\nrepeat = \"1h\"\n\
         [[routes]]\nsinks = [\"audit\"]",
    );
    let mut cmd = h.command(&["run"]);
    cmd.env("OPS_URL", format!("{}/ops", h.hook.uri()));
    let run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let alerts = async || -> Vec<serde_json::Value> {
        h.hook
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/ops")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    wait_for_polls_after(&h, 0, 3).await;
    assert!(alerts().await.is_empty(), "healthy: no alert");

    h.queue.set(QueueAnswer::Status(500));
    let fired = wait_until(Duration::from_secs(15), async || !alerts().await.is_empty()).await;
    assert!(fired, "the streak raised an alert");
    // The streak goes on for a few more failed polls: no second alert.
    wait_for_polls_after(&h, polls(&h).await, 3).await;
    let firing = alerts().await;
    assert_eq!(
        firing.len(),
        1,
        "one alert for the whole streak: {firing:?}"
    );
    assert_eq!(firing[0]["alert"]["condition"], "polls_failing");
    assert_eq!(firing[0]["alert"]["state"], "firing");
    assert!(firing[0]["alert"]["details"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));

    h.queue.set_items(vec![]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while alerts().await.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = alerts().await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["alert"]["state"], "recovered");
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn a_dead_delivery_raises_an_alert_but_the_alert_sink_never_alerts_about_itself() {
    let h = Harness::start().await;
    h.hook_answers(400).await;
    h.write_config(
        "[sinks.ops]\nkind = \"webhook\"\nurl = \"${OPS_URL}\"\n\
         [alerts]\nsink = \"ops\"\n\
         [[routes]]\nsinks = [\"audit\"]",
    );
    h.queue.set_items(vec![item(8, 1, false)]);
    let mut cmd = h.command(&["run"]);
    cmd.env("OPS_URL", format!("{}/ops-broken", h.hook.uri()));
    let run = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(8, 2, true)]);
    // The alert itself goes dead at once (404); a few polls after that is
    // recorded, an alert about it would have been queued and sent.
    let ops_dead = wait_until(Duration::from_secs(15), || async {
        dead_rows(&h, "ops") >= 1
    })
    .await;
    assert!(ops_dead, "the alert was sent (and refused)");
    wait_for_polls_after(&h, polls(&h).await, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    let requests = h.hook.received_requests().await.unwrap();
    let to_ops: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/ops-broken")
        .collect();
    assert_eq!(
        to_ops.len(),
        1,
        "one alert about the dead delivery, none about itself: {}",
        text(&out)
    );
    let body: serde_json::Value = serde_json::from_slice(&to_ops[0].body).unwrap();
    assert_eq!(body["alert"]["condition"], "deliveries_dead");
    assert!(body["alert"]["details"]
        .as_str()
        .unwrap()
        .contains("HTTP 400"));
}

#[tokio::test]
async fn sigterm_ends_the_smtp_sessions_of_run_with_quit() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    h.queue.set_items(vec![item(7, 1, false)]);
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(7, 2, true)]);
    let mailed = wait_until(Duration::from_secs(15), || async {
        !server.delivered().is_empty()
    })
    .await;
    assert!(mailed, "the mail went");
    assert!(
        server.sessions().is_empty(),
        "the pooled session stays open"
    );

    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ended = wait_until(Duration::from_secs(5), || async {
        !server.sessions().is_empty()
    })
    .await;
    assert!(ended, "the session ended with the process");
    let sessions = server.sessions();
    assert!(
        sessions.iter().all(|quit| *quit),
        "QUIT before the connection closed: {sessions:?}\n{}",
        text(&out)
    );
}
