//! Slack as an app (`bot_token`): the real binary against a loopback fake of
//! Slack's Web API (wiremock): DM mode (lookup, `conversations.open`,
//! `chat.postMessage`), channel mode with a mention, `ok: false` answers at
//! HTTP 200 classified, 429 with `Retry-After`, lookups counted and cached,
//! and the token kept out of everything the bot prints or stores.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, text, Harness};

const TOKEN: &str = "xoxb-1111-2222-sl4ckS3cret";

/// A bot whose only routed sink is a Slack app on `slack`, with `extra` keys.
async fn app_bot(extra: &str) -> (Harness, MockServer) {
    let h = Harness::start().await;
    let slack = MockServer::start().await;
    h.write_config(&format!(
        "[sinks.chat]\nkind = \"slack\"\nbot_token = \"{TOKEN}\"\napi_base = \"{}/api/\"\nconcurrency = 8\n{extra}\n[[routes]]\nsinks = [\"chat\"]\n",
        slack.uri()
    ));
    (h, slack)
}

async fn ok(slack: &MockServer, method_name: &str, answer: Value, delay: Duration) {
    Mock::given(method("POST"))
        .and(path(format!("/api/{method_name}")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer)
                .set_delay(delay),
        )
        .mount(slack)
        .await;
}

/// The requests made to one Web API method.
async fn calls(slack: &MockServer, method_name: &str) -> Vec<wiremock::Request> {
    let at = format!("/api/{method_name}");
    let all = slack.received_requests().await.unwrap_or_default();
    all.into_iter().filter(|r| r.url.path() == at).collect()
}

fn content_type(request: &wiremock::Request) -> String {
    let value = request.headers.get("content-type").unwrap();
    value.to_str().unwrap().to_string()
}

/// Items 1..=n queued at baseline, then all downloadable: n messages at once.
async fn burst(h: &Harness, n: i64) {
    h.queue
        .set_items((1..=n).map(|id| item(id, 1, false)).collect());
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items((1..=n).map(|id| item(id, 2, true)).collect());
}

/// (status, last_error) of every outbox row.
fn outbox(h: &Harness) -> Vec<(String, Option<String>)> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let mut stmt = db
        .prepare("SELECT status, last_error FROM outbox ORDER BY id")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)));
    rows.unwrap().collect::<Result<_, _>>().unwrap()
}

async fn standard_slack(slack: &MockServer, lookup_delay: Duration) {
    let user = json!({"ok": true, "user": {"id": "U0ANN", "name": "ann"}});
    ok(slack, "users.lookupByEmail", user, lookup_delay).await;
    let channel = json!({"ok": true, "channel": {"id": "D0ANNDM"}});
    ok(slack, "conversations.open", channel, Duration::ZERO).await;
    let posted = json!({"ok": true, "channel": "D0ANNDM", "ts": "1.2"});
    ok(slack, "chat.postMessage", posted, Duration::ZERO).await;
}

#[tokio::test]
async fn a_burst_of_50_dms_to_one_requester_makes_one_lookup() {
    let (h, slack) = app_bot("").await;
    standard_slack(&slack, Duration::from_millis(400)).await;
    burst(&h, 50).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let lookups = calls(&slack, "users.lookupByEmail").await;
    assert_eq!(lookups.len(), 1, "one lookup for 50 concurrent messages");
    assert_eq!(
        content_type(&lookups[0]),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        String::from_utf8_lossy(&lookups[0].body),
        "email=ann%40example.com"
    );
    let posts = calls(&slack, "chat.postMessage").await;
    assert_eq!(posts.len(), 50);
    for post in &posts {
        assert_eq!(content_type(post), "application/json; charset=utf-8");
        let body: Value = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(body["channel"], "D0ANNDM");
        assert!(
            body["blocks"].is_array() && body["text"].is_string(),
            "{body}"
        );
    }
    let opened = calls(&slack, "conversations.open").await;
    assert_eq!(opened.len(), 1, "the DM is opened once for the burst");
    let users: Value = serde_json::from_slice(&opened[0].body).unwrap();
    assert_eq!(users, json!({"users": "U0ANN"}));
    assert!(
        outbox(&h).iter().all(|(s, _)| s == "sent"),
        "{:?}",
        outbox(&h)
    );

    // The next process finds the answer in the state file: no new lookup.
    h.queue.set_items(vec![item(51, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![item(51, 2, true)]);
    assert!(h.bot(&["once"]).await.status.success());
    assert_eq!(calls(&slack, "users.lookupByEmail").await.len(), 1);
    assert_eq!(calls(&slack, "chat.postMessage").await.len(), 51);
}

#[tokio::test]
async fn an_unknown_requester_is_skipped_once_and_the_miss_is_cached() {
    let (h, slack) = app_bot("").await;
    let missing = json!({"ok": false, "error": "users_not_found"});
    ok(&slack, "users.lookupByEmail", missing, Duration::ZERO).await;
    burst(&h, 3).await;
    let out = h.bot(&["once"]).await;
    assert!(
        out.status.success(),
        "skipped is not a failure: {}",
        text(&out)
    );
    let rows = outbox(&h);
    assert_eq!(rows.len(), 3);
    for (status, error) in rows {
        assert_eq!(status, "skipped");
        assert!(error.unwrap().contains("users_not_found"));
    }
    assert_eq!(calls(&slack, "users.lookupByEmail").await.len(), 1);
    assert!(calls(&slack, "chat.postMessage").await.is_empty());
}

#[tokio::test]
async fn channel_mode_mentions_the_requester_found_by_address() {
    let (h, slack) = app_bot("channel = \"C0123ABCD\"").await;
    standard_slack(&slack, Duration::ZERO).await;
    burst(&h, 1).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let posts = calls(&slack, "chat.postMessage").await;
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(body["channel"], "C0123ABCD");
    assert!(
        body["text"].as_str().unwrap().contains("<@U0ANN>"),
        "{body}"
    );
    assert!(!body.to_string().contains("ann@example.com"), "{body}");
    assert!(calls(&slack, "conversations.open").await.is_empty());
}

#[tokio::test]
async fn channel_mode_shows_the_plain_address_when_slack_knows_nobody() {
    let (h, slack) = app_bot("channel = \"C0123ABCD\"").await;
    let missing = json!({"ok": false, "error": "users_not_found"});
    ok(&slack, "users.lookupByEmail", missing, Duration::ZERO).await;
    ok(
        &slack,
        "chat.postMessage",
        json!({"ok": true}),
        Duration::ZERO,
    )
    .await;
    burst(&h, 1).await;
    assert!(h.bot(&["once"]).await.status.success());
    let posts = calls(&slack, "chat.postMessage").await;
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert!(
        body["text"].as_str().unwrap().contains("ann@example.com"),
        "{body}"
    );
    assert_eq!(outbox(&h)[0].0, "sent");
}

/// `ok: false` at HTTP 200 is never sent: each name lands in its class.
#[tokio::test]
async fn ok_false_answers_are_classified_and_never_counted_as_sent() {
    for (error, status, needle) in [
        ("channel_not_found", "dead", "channel_not_found"),
        ("invalid_auth", "dead", "invalid_auth"),
        ("msg_too_long", "dead", "msg_too_long"),
        ("internal_error", "pending", "internal_error"),
        ("ratelimited", "pending", "ratelimited"),
    ] {
        let (h, slack) = app_bot("channel = \"C0123ABCD\"").await;
        let user = json!({"ok": true, "user": {"id": "U0ANN"}});
        ok(&slack, "users.lookupByEmail", user, Duration::ZERO).await;
        let refused = json!({"ok": false, "error": error});
        ok(&slack, "chat.postMessage", refused, Duration::ZERO).await;
        burst(&h, 1).await;
        let out = h.bot(&["once"]).await;
        assert_eq!(out.status.code(), Some(1), "{error}: {}", text(&out));
        let rows = outbox(&h);
        assert_eq!(rows[0].0, status, "{error}: {rows:?}");
        assert!(rows[0].1.as_deref().unwrap().contains(needle), "{rows:?}");
        assert!(!text(&out).contains(TOKEN), "{error}");
    }
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (h, slack) = app_bot("channel = \"C0123ABCD\"").await;
    let user = json!({"ok": true, "user": {"id": "U0ANN"}});
    ok(&slack, "users.lookupByEmail", user, Duration::ZERO).await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .mount(&slack)
        .await;
    burst(&h, 1).await;
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let (status, next): (String, i64) = db
        .query_row("SELECT status, next_attempt_at FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "pending");
    let wait = next - chrono::Utc::now().timestamp_millis();
    // backoff_max is 200ms in the harness: the 30 s are clamped to it, and
    // the error names the server's wait.
    assert!(wait <= 1_000, "{wait}");
    let error = outbox(&h)[0].1.clone().unwrap();
    assert!(
        error.contains("429") && error.contains("retry after"),
        "{error}"
    );
}

#[tokio::test]
async fn check_refuses_a_token_that_is_not_a_bot_token_without_showing_it() {
    let (h, slack) = app_bot("").await;
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    std::fs::write(
        h.config_path(),
        config.replace(TOKEN, "xoxp-user-S3CRETvalue"),
    )
    .unwrap();
    let out = h.bot(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("sinks.chat.bot_token"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("S3CRETvalue"), "{}", text(&out));
    let both = config.replace(
        "kind = \"slack\"",
        &format!("kind = \"slack\"\nurl = \"{}/hook\"", slack.uri()),
    );
    std::fs::write(h.config_path(), both).unwrap();
    let out = h.bot(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("exactly one of url"), "{}", text(&out));
}

#[tokio::test]
async fn check_online_names_workspace_and_bot_and_send_test_dms_the_given_address() {
    let (h, slack) = app_bot("").await;
    let auth = json!({"ok": true, "team": "Crayon Test", "url": "https://crayon-test.slack.com/", "user": "exportbot"});
    ok(&slack, "auth.test", auth, Duration::ZERO).await;
    standard_slack(&slack, Duration::ZERO).await;
    let out = h.bot(&["check", "--online"]).await;
    let shown = text(&out);
    assert!(
        shown.contains("Crayon Test") && shown.contains("exportbot"),
        "{shown}"
    );
    let auth_calls = calls(&slack, "auth.test").await;
    assert_eq!(auth_calls.len(), 1);
    assert_eq!(
        content_type(&auth_calls[0]),
        "application/x-www-form-urlencoded"
    );

    let out = h
        .bot(&["send-test", "--sink", "chat", "--to", "ann@example.com"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let posts = calls(&slack, "chat.postMessage").await;
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(body["channel"], "D0ANNDM");
    assert!(body["text"].as_str().unwrap().contains("[TEST]"), "{body}");
    assert!(!text(&out).contains("sl4ckS3cret"), "{}", text(&out));
}

/// The token never reaches stdout/stderr (trace logs), the outbox or the
/// state file, on failure (Slack echoing it) and on success.
#[tokio::test]
async fn the_bot_token_is_never_printed_or_stored() {
    let (h, slack) = app_bot("").await;
    let echo = json!({"ok": false, "error": format!("invalid_auth {TOKEN}")});
    ok(&slack, "users.lookupByEmail", echo, Duration::ZERO).await;
    burst(&h, 1).await;
    let mut printed = String::new();
    let run = |args: &'static [&'static str]| {
        let mut cmd = h.command(args);
        cmd.env("RUST_LOG", "trace");
        async move { text(&cmd.output().await.unwrap()) }
    };
    for args in [
        &["once"][..],
        &["check"],
        &["check", "--online"],
        &["render", "--event", "downloadable", "--sink", "chat"],
        &["outbox", "list"],
    ] {
        printed.push_str(&run(args).await);
    }
    assert!(printed.contains("invalid_auth"), "{printed}");
    // Success: a new item DMed through lookup, open and post.
    slack.reset().await;
    standard_slack(&slack, Duration::ZERO).await;
    h.queue.set_items(vec![item(1, 2, true), item(2, 1, false)]);
    printed.push_str(&run(&["once"]).await);
    h.queue.set_items(vec![item(1, 2, true), item(2, 2, true)]);
    printed.push_str(&run(&["once"]).await);
    printed.push_str(&run(&["send-test", "--sink", "chat", "--to", "ann@example.com"]).await);
    assert_eq!(
        calls(&slack, "chat.postMessage").await.len(),
        2,
        "{printed}"
    );
    assert!(!printed.contains("sl4ckS3cret"), "{printed}");
    let state = std::fs::read(h.state()).unwrap();
    let wal = std::fs::read(h.dir.path().join("state.db-wal")).unwrap_or_default();
    for bytes in [state, wal] {
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(
            !haystack.contains("sl4ckS3cret"),
            "the token is in the state"
        );
    }
}

/// The HTML preview says where an app's message goes: DM or channel.
#[tokio::test]
async fn the_html_preview_tells_dm_from_channel_mode() {
    let (h, _slack) = app_bot("").await;
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    let channel = format!(
        "{config}\n[sinks.chan]\nkind = \"slack\"\nbot_token = \"{TOKEN}\"\nchannel = \"C0123ABCD\"\n"
    );
    std::fs::write(h.config_path(), channel).unwrap();
    let page = h.dir.path().join("preview.html");
    let out = h
        .bot(&["render", "--html-preview", page.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("sent as a DM to the requester"), "{html}");
    assert!(html.contains("posted in channel C0123ABCD"), "{html}");
    assert!(!html.contains("sl4ckS3cret"));
}
