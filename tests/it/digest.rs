//! Digests end to end (`digest = D`, issue #17): the real binary gathers a
//! sink's messages per recipient and sends one after D — by email through
//! the loopback SMTP server, to a webhook and to Slack (wiremock) — a window
//! of one sends the ordinary message, a long digest ends "…and N more"
//! within Slack's budget, and a SIGKILL between the digest's send and its
//! mark sends the same digest again, never losing or regrouping a member.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::email::{header, parse, plain_config, ready, requested_by};
use crate::helpers::{item, outbox_json, signal, text, Harness, HOOK_PATH};
use crate::smtp::{Security, SmtpServer};

/// The window the tests use: short, so the binary's real clock runs it out.
const WINDOW: &str = "1s";

/// Longer than [`WINDOW`], so a window opened by one `once` is due at the next.
const PAST_WINDOW: Duration = Duration::from_millis(1300);

/// `once` (an empty baseline), then the queue lists `items` and `once`
/// polls (the window opens, nothing is due yet); returns after that run.
async fn open_window(h: &Harness, items: Vec<Value>) {
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(items);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// Waits out the window and runs `once`, which sends what was gathered.
async fn after_the_window(h: &Harness) {
    tokio::time::sleep(PAST_WINDOW).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

fn statuses(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn thirty_exports_in_a_minute_make_one_email_per_requester_after_the_window() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let config = plain_config(&server, "").replace(
        "[[routes]]",
        &format!("digest = \"{WINDOW}\"\n\n[[routes]]"),
    );
    h.write_config(&config);
    let mut items: Vec<Value> = (1..=30).map(ready).collect();
    items.extend((31..=32).map(|id| requested_by(ready(id), "bob@example.com")));
    open_window(&h, items).await;
    assert!(
        server.delivered().is_empty(),
        "nothing before the window ends"
    );
    assert!(statuses(&outbox_json(&h).await)
        .iter()
        .all(|s| s == "pending"));

    after_the_window(&h).await;
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 2, "one mail per requester");
    let to_ann = delivered
        .iter()
        .find(|m| m.rcpt_to == ["ann@example.com"])
        .expect("a mail to ann");
    let mail = parse(to_ann);
    assert_eq!(header(&mail, "Subject"), "30 export updates");
    let (plain, html) = (
        mail.subparts[0].get_body().unwrap(),
        mail.subparts[1].get_body().unwrap(),
    );
    for id in 1..=30 {
        let name = format!("New Commerce License-based Report #{id} (#{id})");
        assert!(plain.contains(&name), "{id} missing: {plain}");
        assert!(html.contains(&format!("#{id}</span>")), "{id} missing");
    }
    assert!(!plain.contains("#31"), "bob's exports are his own mail");
    assert_eq!(
        html.matches("<tr class=\"export\">").count(),
        30,
        "a row per export"
    );
    let to_bob = delivered.iter().find(|m| m.rcpt_to == ["bob@example.com"]);
    assert_eq!(
        header(&parse(to_bob.unwrap()), "Subject"),
        "2 export updates"
    );

    after_the_window(&h).await;
    assert_eq!(server.delivered().len(), 2, "nothing more");
    assert!(statuses(&outbox_json(&h).await).iter().all(|s| s == "sent"));
}

#[tokio::test]
async fn a_window_of_one_sends_the_ordinary_message_after_the_window() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config(&format!("digest = \"{WINDOW}\""));
    open_window(&h, vec![item(7, 2, true)]).await;
    assert!(
        h.hook_bodies().await.is_empty(),
        "nothing before the window ends"
    );
    let rows = outbox_json(&h).await;
    assert_eq!(statuses(&rows), ["pending"]);

    after_the_window(&h).await;
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].is_object(), "the ordinary message: {}", bodies[0]);
    assert_eq!(bodies[0]["event"], "downloadable");
    assert_eq!(bodies[0]["item"]["id"], 7);
}

#[tokio::test]
async fn a_webhook_digest_is_a_json_array_of_the_events_in_order() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config(&format!("digest = \"{WINDOW}\""));
    open_window(&h, (1..=5).map(|id| item(id, 2, true)).collect()).await;
    after_the_window(&h).await;
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let ids: Vec<i64> = bodies[0]
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["item"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_slack_digest_too_long_ends_with_and_n_more_within_fifty_blocks() {
    const SLACK_PATH: &str = "/services/T0/B0/digest-s3cret";
    let h = Harness::start().await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SLACK_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    h.write_config(&format!(
        "enabled = false\n[sinks.chat]\nkind = \"slack\"\nurl = \"{}{SLACK_PATH}\"\n\
         digest = \"{WINDOW}\"\n[[routes]]\nsinks = [\"chat\"]\n",
        slack.uri()
    ));
    open_window(&h, (1..=80).map(|id| item(id, 2, true)).collect()).await;
    after_the_window(&h).await;
    let received = slack.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "one message");
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    let shown = texts.iter().filter(|t| t.contains("(#")).count();
    assert!(shown > 10 && shown < 80, "{shown} shown");
    let more = format!("…and {} more", 80 - shown);
    assert!(texts.contains(&more.as_str()), "{texts:?}");
    assert_eq!(body["text"], "80 export updates");
}

/// The item ids of a webhook digest body.
fn ids_of(body: &Value) -> BTreeSet<i64> {
    body.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["item"]["id"].as_i64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for_bodies(h: &Harness, n: usize, limit: Duration) -> Vec<Value> {
    crate::helpers::wait_for_bodies(h, n, limit).await
}

#[tokio::test]
async fn sigkill_between_the_digest_send_and_its_mark_sends_the_same_digest_again() {
    let h = Harness::start().await;
    // The receiver takes the digest but answers only after the kill: the
    // send happened, the mark did not.
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&h.hook)
        .await;
    h.write_config(&format!("digest = \"{WINDOW}\""));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items((1..=12).map(|id| item(id, 2, true)).collect());
    let first = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sent = wait_for_bodies(&h, 1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1, "the digest was sent");
    signal(&first, "-KILL");
    let _ = first.wait_with_output().await;
    let first_ids = ids_of(&sent[0]);
    assert_eq!(first_ids, (1..=12).collect(), "{}", sent[0]);
    assert!(statuses(&outbox_json(&h).await)
        .iter()
        .all(|s| s == "pending"));

    // New exports arrive while it is down; they must not join the claimed digest.
    h.queue
        .set_items((1..=14).map(|id| item(id, 2, true)).collect());
    h.hook_answers(200).await;
    let second = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let again = wait_for_bodies(&h, 2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&second, "-TERM");
    let out = second.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let bodies = h.hook_bodies().await;
    assert!(again.len() >= 2, "sent again after the restart");
    assert_eq!(
        ids_of(&bodies[0]),
        first_ids,
        "the same digest, same members"
    );
    assert_eq!(
        bodies.len(),
        2,
        "then only the newcomers' window: {bodies:?}"
    );
    let newcomers: Vec<i64> = match bodies[1].as_array() {
        Some(entries) => entries
            .iter()
            .map(|e| e["item"]["id"].as_i64().unwrap())
            .collect(),
        None => vec![bodies[1]["item"]["id"].as_i64().unwrap()],
    };
    assert_eq!(newcomers, [13, 14], "never a member in two digests");
    assert!(statuses(&outbox_json(&h).await).iter().all(|s| s == "sent"));
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The `crayon_deliveries_deferred{reason="digest"}` gauge, if served yet.
async fn deferred_gauge(port: u16) -> Option<f64> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = client.get(url).send().await.ok()?.text().await.ok()?;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "crayon_deliveries_deferred" && s.labels.get("reason") == Some("digest")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn until_gauge(port: u16, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while deferred_gauge(port).await != Some(value) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge never {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn outbox_list_why_and_metrics_tell_a_gathered_delivery_truthfully() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let port = free_port();
    h.write_config(&format!(
        "digest = \"4s\"\n[server]\nlisten = \"127.0.0.1:{port}\""
    ));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items((1..=3).map(|id| item(id, 2, true)).collect());
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_gauge(port, 3.0).await;
    let rows = outbox_json(&h).await;
    assert_eq!(rows.len(), 3);
    let until = rows[0]["next_attempt_at"].as_str().unwrap().to_string();
    for row in &rows {
        assert_eq!(row["status"], "pending");
        assert_eq!(
            row["digest"],
            format!("waiting for digest until {until}"),
            "{row}"
        );
    }
    let why = text(&h.bot(&["why", "2"]).await);
    assert!(
        why.contains(&format!("pending (waiting for digest until {until})")),
        "{why}"
    );
    let table = text(&h.bot(&["outbox", "list"]).await);
    assert!(table.contains("waiting for digest until"), "{table}");

    let bodies = wait_for_bodies(&h, 1, Duration::from_secs(20)).await;
    assert_eq!(ids_of(&bodies[0]).len(), 3);
    until_gauge(port, 0.0).await;
    signal(&run, "-TERM");
    let _ = run.wait_with_output().await;
    let rows = outbox_json(&h).await;
    // The digest is named after the member that claimed it: whichever of
    // the three came due first, the same for all of them.
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let named = rows[0]["digest"].as_str().unwrap().to_string();
    assert!(
        ids.iter()
            .any(|id| named == format!("sent in digest #{id} (3 deliveries)")),
        "{named} names none of {ids:?}"
    );
    for row in &rows {
        assert_eq!(row["status"], "sent");
        assert_eq!(row["digest"], named.as_str());
    }
    let why = text(&h.bot(&["why", "3"]).await);
    assert!(why.contains(&format!("sent ({named})")), "{why}");
}

#[tokio::test]
async fn check_renders_a_digest_sinks_digest_and_names_a_broken_template() {
    let h = Harness::start().await;
    h.write_config(&format!("digest = \"{WINDOW}\""));
    let out = h.bot(&["check"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let templates = h.dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("digest.audit.json.tera"),
        "[{% for e in entries %}{{ e.item.id }}{% endfor %}",
    )
    .unwrap();
    h.write_config(&format!(
        "digest = \"{WINDOW}\"\n[templates]\ndir = \"templates\""
    ));
    let out = h.bot(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("digest.audit.json.tera"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("sink audit"), "{}", text(&out));
}

#[tokio::test]
async fn a_failing_digest_is_retried_whole_and_dies_whole() {
    let h = Harness::start().await;
    h.hook_answers(500).await;
    h.write_config(&format!("digest = \"{WINDOW}\""));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items((1..=4).map(|id| item(id, 2, true)).collect());
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = outbox_json(&h).await;
        if rows.len() == 4 && statuses(&rows).iter().all(|s| s == "dead") {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    signal(&run, "-TERM");
    let _ = run.wait_with_output().await;
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 3, "max_attempts sends of the one digest");
    for body in &bodies {
        assert_eq!(ids_of(body), (1..=4).collect(), "always the whole digest");
    }
    for row in &rows {
        assert_eq!(row["attempts"], 3, "{row}");
        assert!(row["last_error"].as_str().unwrap().contains("500"), "{row}");
    }
}

#[tokio::test]
async fn render_event_digest_shows_a_sample_of_three() {
    let h = Harness::start().await;
    h.write_config("");
    let out = h
        .bot(&["render", "--event", "digest", "--sink", "audit"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(3), "{body}");
    let out = h
        .bot(&["render", "--event", "digests", "--sink", "audit"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("or digest"), "{}", text(&out));
}

#[tokio::test]
async fn teams_gets_one_card_with_a_row_per_export_and_discord_one_embed() {
    const TEAMS_PATH: &str = "/workflows/teams-s3cret/triggers/manual/run";
    const DISCORD_PATH: &str = "/api/v10/webhooks/42/discord-s3cret";
    for (kind, at) in [("teams", TEAMS_PATH), ("discord", DISCORD_PATH)] {
        let h = Harness::start().await;
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(if kind == "teams" {
                202
            } else {
                200
            }))
            .mount(&server)
            .await;
        let uri = server.uri();
        let sink = match kind {
            "teams" => format!("kind = \"teams\"\nurl = \"{uri}{TEAMS_PATH}\""),
            _ => format!(
                "kind = \"discord\"\nwebhook_url = \"https://discord.com/api/webhooks/42/discord-s3cret\"\napi_base = \"{uri}\""
            ),
        };
        h.write_config(&format!(
            "enabled = false\n[sinks.chat]\n{sink}\ndigest = \"{WINDOW}\"\n[[routes]]\nsinks = [\"chat\"]\n"
        ));
        open_window(&h, (1..=5).map(|id| item(id, 2, true)).collect()).await;
        assert!(
            server.received_requests().await.unwrap().is_empty(),
            "{kind}"
        );
        after_the_window(&h).await;
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1, "{kind}: one message");
        let body: Value = serde_json::from_slice(&received[0].body).unwrap();
        if kind == "teams" {
            let card = &body["attachments"][0]["content"]["body"];
            let rows: Vec<&Value> = card
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "ColumnSet")
                .collect();
            assert_eq!(rows.len(), 5, "a row per export: {card}");
            assert_eq!(rows[4]["columns"][2]["items"][0]["text"], "#5");
        } else {
            let embeds = body["embeds"].as_array().unwrap();
            assert_eq!(embeds.len(), 1, "{body}");
            let description = embeds[0]["description"].as_str().unwrap();
            assert_eq!(description.lines().count(), 5, "{description}");
            assert_eq!(embeds[0]["title"], "5 export updates");
        }
    }
}
