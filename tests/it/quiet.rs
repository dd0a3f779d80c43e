//! Quiet hours on the real wire: a running bot holds deliveries in quiet
//! time (pending, next attempt at the end, no attempt counted, `why` and
//! `/metrics` say so), and a dispatcher on an injected clock sends them
//! right at the end, across the 2027 DST changes, to a wiremock webhook and
//! to the test SMTP server, each exactly once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Timelike, Utc};
use crayon_export_bot::app::dispatch::Clock;
use crayon_export_bot::app::App;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::email::{plain_config, ready, requested_by};
use crate::helpers::{baseline_then_flip, item, outbox_json, signal, text, Harness};
use crate::smtp::{Security, SmtpServer};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `/metrics`'s value of `name` with `reason="quiet_hours"`, if listed.
fn deferred_gauge(body: &str) -> Option<f64> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "crayon_deliveries_deferred"
                && s.labels.get("reason") == Some("quiet_hours")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn get(url: &str) -> Option<String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.get(url).send().await.ok()?.text().await.ok()
}

/// A window of New York time that holds `now`: from two hours ahead round
/// to one hour ahead, so only the next hour is not quiet.
fn window_holding_now(now: DateTime<Utc>) -> (String, String, DateTime<Utc>) {
    let zone = chrono_tz::America::New_York;
    let local = now.with_timezone(&zone);
    let minute = (local.hour() * 60 + local.minute()) as i64;
    let hhmm = |m: i64| {
        format!(
            "{:02}:{:02}",
            m.rem_euclid(1440) / 60,
            m.rem_euclid(1440) % 60
        )
    };
    let to = hhmm(minute + 60);
    let to_time = NaiveTime::parse_from_str(&to, "%H:%M").unwrap();
    let mut end = zone
        .from_local_datetime(&local.date_naive().and_time(to_time))
        .earliest()
        .unwrap();
    if end <= local {
        end = zone
            .from_local_datetime(&(local.date_naive().succ_opt().unwrap()).and_time(to_time))
            .earliest()
            .unwrap();
    }
    (hhmm(minute + 120), to, end.with_timezone(&Utc))
}

#[tokio::test]
async fn a_running_bot_holds_deliveries_in_quiet_time_and_says_until_when() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let port = free_port();
    let (from, to, end) = window_holding_now(Utc::now());
    h.write_config(&format!(
        "quiet_hours = {{ from = \"{from}\", to = \"{to}\" }}\ntimezone = \"America/New_York\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\""
    ));
    baseline_then_flip(&h, [7, 8]).await;
    // Its debug log is not read: a full pipe must not stall it.
    let mut run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let next = end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = outbox_json(&h).await;
        let held = |r: &Value| r["status"] == "pending" && r["next_attempt_at"] == next.as_str();
        if rows.len() == 2 && rows.iter().all(held) {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not held until {next}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(rows.iter().all(|r| r["attempts"] == 0), "{rows:?}");

    let metrics = get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(deferred_gauge(&metrics), Some(2.0), "{metrics}");
    let why = h.bot(&["why", "7"]).await;
    let local = end.with_timezone(&chrono_tz::America::New_York);
    let until = format!("quiet hours until {}", local.format("%Y-%m-%d %H:%M %Z"));
    assert!(text(&why).contains(&until), "{}", text(&why));

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        h.hook_bodies().await.is_empty(),
        "nothing sent in quiet time"
    );
    signal(&run, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), run.wait()).await;
    assert!(status.unwrap().unwrap().success());
    assert!(outbox_json(&h)
        .await
        .iter()
        .all(|r| r["status"] == "pending"));
}

/// The bot's config as the binary would load it, built in this process.
fn app_of(h: &Harness) -> App {
    let env = h.env();
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let text = std::fs::read_to_string(h.config_path()).unwrap();
    let config =
        crayon_export_bot::config::load_from_str(&text, &h.config_path(), &lookup, vec![]).unwrap();
    App::build(config).unwrap()
}

/// Polls once (enqueueing at the real time), then runs the dispatcher on a
/// clock that reads `wall` now; returns its stop and task.
async fn poll_then_dispatch_at(
    h: &Harness,
    wall: DateTime<Utc>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let app = app_of(h);
    app.watcher().poll().await.unwrap();
    let clock = Clock::Tokio {
        wall_at_start: wall,
        start: tokio::time::Instant::now(),
    };
    let dispatcher = app.dispatcher.clone().with_clock(clock);
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            dispatcher
                .run(stop, Arc::new(Notify::new()), Duration::from_secs(2))
                .await
        }
    });
    (stop, task)
}

#[tokio::test]
async fn held_webhooks_go_right_at_the_oslo_morning_after_spring_forward() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config(
        "quiet_hours = { from = \"19:00\", to = \"07:30\" }\n\n[display]\ntimezone = \"Europe/Oslo\"",
    );
    baseline_then_flip(&h, [7, 8, 9]).await;
    // 07:29:57 CEST on 28 Mar 2027, the morning the clocks went forward.
    let wall = Utc.with_ymd_and_hms(2027, 3, 28, 5, 29, 57).unwrap();
    let started = tokio::time::Instant::now();
    let (stop, task) = poll_then_dispatch_at(&h, wall).await;

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        h.hook_bodies().await.is_empty(),
        "nothing before 07:30 CEST"
    );
    let bodies = crate::helpers::wait_for_bodies(&h, 3, Duration::from_secs(8)).await;
    let waited = started.elapsed();
    stop.cancel();
    task.await.unwrap();
    assert!(waited >= Duration::from_secs(3), "sent early: {waited:?}");
    let mut ids: Vec<i64> = bodies
        .iter()
        .map(|b| b["item"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [7, 8, 9], "each once, none dropped");
    let rows = outbox_json(&h).await;
    assert!(
        rows.iter()
            .all(|r| r["status"] == "sent" && r["attempts"] == 1),
        "{rows:?}"
    );
}

#[tokio::test]
async fn mail_waits_for_the_requesters_new_york_morning_after_fall_back() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let tables = "[display]\ntimezone = \"Europe/Oslo\"\n\n\
                  [recipients.\"ann@example.com\"]\ntimezone = \"America/New_York\"";
    let config = plain_config(&server, tables).replacen(
        "tls = \"none\"",
        "tls = \"none\"\nquiet_hours = { from = \"19:00\", to = \"07:30\" }",
        1,
    );
    h.write_config(&config);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![
        ready(7),
        requested_by(item(8, 2, true), "bob@example.com"),
    ]);
    // 07:29:57 EST on 7 Nov 2027 (13:29:57 in Oslo, where bob's day is).
    let wall = Utc.with_ymd_and_hms(2027, 11, 7, 12, 29, 57).unwrap();
    let started = tokio::time::Instant::now();
    let (stop, task) = poll_then_dispatch_at(&h, wall).await;

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let early: Vec<Vec<String>> = server.delivered().into_iter().map(|m| m.rcpt_to).collect();
    assert_eq!(early, [["bob@example.com"]], "only bob's goes at once");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while server.delivered().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = started.elapsed();
    stop.cancel();
    task.await.unwrap();
    let sent: Vec<Vec<String>> = server.delivered().into_iter().map(|m| m.rcpt_to).collect();
    assert_eq!(sent, [["bob@example.com"], ["ann@example.com"]]);
    assert!(
        waited >= Duration::from_secs(3),
        "ann's sent early: {waited:?}"
    );
}

/// A queue item expiring `left` from now (7-day queue), as the API lists it.
fn expiring_in(id: i64, status: i64, downloadable: bool, left: chrono::Duration) -> Value {
    let mut export = item(id, status, downloadable);
    let created = Utc::now() + left - chrono::Duration::days(7);
    export["CreatedDate"] = Value::from(created.format("%Y-%m-%dT%H:%M:%S%.3f").to_string());
    export
}

fn expiring_ids(bodies: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = bodies
        .iter()
        .inspect(|b| assert_eq!(b["event"], "expiring", "{b}"))
        .map(|b| b["item"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn expiring_fires_once_per_item_as_time_brings_it_into_the_window() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    let config = std::fs::read_to_string(h.config_path()).unwrap().replacen(
        "[watch]\n",
        "[watch]\nevents = [\"expiring\"]\nremind_before = \"1d\"\n",
        1,
    );
    std::fs::write(h.config_path(), config).unwrap();
    let hours = chrono::Duration::hours;
    let soon = hours(20);
    // Reaches the one-day window a few seconds after the baseline.
    let later = hours(24) + chrono::Duration::seconds(4);
    let queue = |queued_flipped: bool| {
        vec![
            expiring_in(1, 2, true, soon), // close already at the baseline
            expiring_in(2, 1, queued_flipped, soon), // queued at the baseline
            expiring_in(3, 2, true, later), // enters the window by time alone
            expiring_in(4, 4, true, soon), // deleted
            expiring_in(5, 2, true, hours(72)), // far from expiry
        ]
    };
    h.queue.set_items(queue(false));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let baseline_at = tokio::time::Instant::now();

    h.queue.set_items(queue(true));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(expiring_ids(&h.hook_bodies().await), [2], "{}", text(&out));

    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        expiring_ids(&h.hook_bodies().await),
        [2],
        "not before its window"
    );

    tokio::time::sleep_until(baseline_at + Duration::from_secs(5)).await;
    for _ in 0..2 {
        let out = h.bot(&["once"]).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let bodies = h.hook_bodies().await;
    assert_eq!(expiring_ids(&bodies), [2, 3], "each once, 1/4/5 never");
    let three = bodies.iter().find(|b| b["item"]["id"] == 3).unwrap();
    assert!(three["item"]["downloadable"].as_bool().unwrap());
}

#[tokio::test]
async fn expiring_fires_once_across_polls_of_one_process() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    let config = std::fs::read_to_string(h.config_path()).unwrap().replacen(
        "[watch]\n",
        "[watch]\nevents = [\"expiring\"]\n",
        1,
    );
    std::fs::write(h.config_path(), config).unwrap();
    let soon = chrono::Duration::hours(20);
    h.queue.set_items(vec![
        expiring_in(1, 2, true, soon),
        expiring_in(2, 1, false, soon),
    ]);
    let app = app_of(&h);
    let mut watcher = app.watcher();
    assert!(watcher.poll().await.unwrap().baseline);
    h.queue.set_items(vec![
        expiring_in(1, 2, true, soon),
        expiring_in(2, 2, true, soon),
    ]);
    for _ in 0..3 {
        watcher.poll().await.unwrap();
        app.dispatcher.drain_due().await.unwrap();
    }
    assert_eq!(expiring_ids(&h.hook_bodies().await), [2]);
}
