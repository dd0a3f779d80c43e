//! The chat sinks end to end: the real binary posting to Slack, Teams and
//! Discord fakes (wiremock; serenity pointed at it through `api_base`),
//! retried by the real dispatcher and recorded in the outbox.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, text, Harness};

const SLACK_PATH: &str = "/services/T0SLACK/B0SLACK/slack-s3cret";
const TEAMS_PATH: &str = "/workflows/teams-s3cret/triggers/manual/run";
const DISCORD_TOKEN: &str = "discord-s3cret";
const DISCORD_PATH: &str = "/api/v10/webhooks/42/discord-s3cret";
const BOT_TOKEN: &str = "bot-s3cret-token";
const SECRETS: &[&str] = &["slack-s3cret", "teams-s3cret", DISCORD_TOKEN, BOT_TOKEN];
const PORTAL: &str = "https://cloudiq.crayon.com/";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Slack,
    Teams,
    Discord,
}

const KINDS: [Kind; 3] = [Kind::Slack, Kind::Teams, Kind::Discord];

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Slack => SLACK_PATH,
            Kind::Teams => TEAMS_PATH,
            Kind::Discord => DISCORD_PATH,
        }
    }

    /// Teams Workflows answers 202 Accepted.
    fn ok(self) -> u16 {
        match self {
            Kind::Teams => 202,
            _ => 200,
        }
    }

    /// `[sinks.chat]` of this kind pointing at `server`, the only routed sink.
    fn toml(self, server: &MockServer) -> String {
        let uri = server.uri();
        let sink = match self {
            Kind::Slack => format!("kind = \"slack\"\nurl = \"{uri}{SLACK_PATH}\""),
            Kind::Teams => format!("kind = \"teams\"\nurl = \"{uri}{TEAMS_PATH}\""),
            Kind::Discord => format!(
                "kind = \"discord\"\nwebhook_url = \"https://discord.com/api/webhooks/42/{DISCORD_TOKEN}\"\napi_base = \"{uri}\""
            ),
        };
        format!("[sinks.chat]\n{sink}\n[[routes]]\nsinks = [\"chat\"]\n")
    }
}

/// A bot whose only routed sink is a chat sink of `kind` on a fresh fake.
async fn chat_bot(kind: Kind) -> (Harness, MockServer) {
    let h = Harness::start().await;
    let server = MockServer::start().await;
    h.write_config(&kind.toml(&server));
    (h, server)
}

async fn answer(server: &MockServer, kind: Kind, reply: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(kind.path()))
        .respond_with(reply)
        .mount(server)
        .await;
}

/// Baseline with item 7 queued, then item 7 turns downloadable.
async fn baseline_then_flip(h: &Harness) {
    h.queue.set_items(vec![item(7, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![item(7, 2, true)]);
}

async fn bodies(server: &MockServer, at: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == at)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// One outbox row: (item, status, attempts, seconds until next attempt, last error).
type Row = (i64, String, i64, Option<f64>, Option<String>);

fn outbox(h: &Harness) -> Vec<Row> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut stmt = db
        .prepare(
            "SELECT item_id, status, attempts, next_attempt_at, last_error FROM outbox ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let next: Option<i64> = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            next.map(|ms| (ms - now) as f64 / 1000.0),
            r.get(4)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn assert_payload(kind: Kind, body: &Value) {
    let name = "New Commerce License-based Report #7";
    // As the platform shows it: Discord's markdown escapes (`\-`) are not shown.
    let shown = body.to_string().replace(r"\\", "");
    assert!(shown.contains(name), "{kind:?}: {body}");
    match kind {
        Kind::Slack => {
            assert!(body["text"].as_str().unwrap().contains(name));
            assert!(body["blocks"].as_array().unwrap().len() <= 50);
        }
        Kind::Teams => {
            assert_eq!(body["type"], "message");
            let card = &body["attachments"][0];
            assert_eq!(
                card["contentType"],
                "application/vnd.microsoft.card.adaptive"
            );
            assert_eq!(card["content"]["actions"][0]["url"], PORTAL);
        }
        Kind::Discord => {
            assert_eq!(body["allowed_mentions"], json!({"parse": []}));
            assert_eq!(body["embeds"][0]["url"], PORTAL);
        }
    }
}

#[tokio::test]
async fn each_chat_sink_posts_its_payload_to_its_exact_path() {
    for kind in KINDS {
        let (h, server) = chat_bot(kind).await;
        Mock::given(method("POST"))
            .and(path(kind.path()))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(kind.ok()))
            .expect(1)
            .mount(&server)
            .await;
        baseline_then_flip(&h).await;
        let out = h.bot(&["once"]).await;
        assert!(out.status.success(), "{kind:?}: {}", text(&out));
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1, "{kind:?}");
        assert_eq!(received[0].method.as_str(), "POST");
        assert_eq!(received[0].url.path(), kind.path());
        assert_payload(kind, &serde_json::from_slice(&received[0].body).unwrap());
        assert!(h.hook_bodies().await.is_empty(), "only the routed sink");
    }
}

#[tokio::test]
async fn a_500_then_success_is_retried_and_delivered_once() {
    for kind in KINDS {
        let (h, server) = chat_bot(kind).await;
        Mock::given(method("POST"))
            .and(path(kind.path()))
            .respond_with(ResponseTemplate::new(500).set_body_string("try later"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        answer(&server, kind, ResponseTemplate::new(kind.ok())).await;
        baseline_then_flip(&h).await;
        let out = h.bot(&["once"]).await;
        assert_eq!(out.status.code(), Some(1), "{kind:?}: {}", text(&out));
        assert!(
            text(&out).contains("1 retrying"),
            "{kind:?}: {}",
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..2 {
            let out = h.bot(&["once"]).await;
            assert!(out.status.success(), "{kind:?}: {}", text(&out));
        }
        let sent = bodies(&server, kind.path()).await;
        assert_eq!(sent.len(), 2, "{kind:?}: one failure, one delivery");
        assert_eq!(
            sent[0], sent[1],
            "{kind:?}: the retry sends what was rendered"
        );
        let rows = outbox(&h);
        assert_eq!((rows[0].1.as_str(), rows[0].2), ("sent", 2), "{kind:?}");
    }
}

#[tokio::test]
async fn a_429_waits_as_told_before_the_next_attempt() {
    let cases = [
        (Kind::Slack, ResponseTemplate::new(429).insert_header("retry-after", "120"), 120.0),
        (Kind::Teams, ResponseTemplate::new(429).insert_header("retry-after", "90"), 90.0),
        (
            Kind::Discord,
            ResponseTemplate::new(429)
                .insert_header("retry-after", "43")
                .set_body_json(json!({"message": "You are being rate limited.", "retry_after": 42.5, "global": false})),
            42.5,
        ),
    ];
    for (kind, reply, wait) in cases {
        let (h, server) = chat_bot(kind).await;
        // Server-given waits are honoured up to backoff_max (200ms in the harness).
        let config = std::fs::read_to_string(h.config_path()).unwrap();
        let config = config.replace("backoff_max = \"200ms\"", "backoff_max = \"10m\"");
        std::fs::write(h.config_path(), config).unwrap();
        answer(&server, kind, reply).await;
        baseline_then_flip(&h).await;
        let out = h.bot(&["once"]).await;
        assert_eq!(out.status.code(), Some(1), "{kind:?}: {}", text(&out));
        let rows = outbox(&h);
        let (_, status, attempts, next, _) = &rows[0];
        assert_eq!((status.as_str(), *attempts), ("pending", 1), "{kind:?}");
        let next = next.unwrap();
        assert!(
            next > wait - 10.0 && next <= wait + 0.5,
            "{kind:?}: next attempt in {next}s"
        );
        let out = h.bot(&["once"]).await;
        assert!(
            out.status.success(),
            "{kind:?}: nothing is due: {}",
            text(&out)
        );
        assert_eq!(bodies(&server, kind.path()).await.len(), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_400_goes_dead_with_the_platforms_reason() {
    let cases = [
        (
            Kind::Slack,
            ResponseTemplate::new(400).set_body_string("invalid_payload"),
            "invalid_payload",
        ),
        (
            Kind::Teams,
            ResponseTemplate::new(400).set_body_string("Bad request: card is not valid"),
            "card is not valid",
        ),
        (
            Kind::Discord,
            ResponseTemplate::new(400)
                .set_body_json(json!({"code": 50035, "message": "Invalid Form Body"})),
            "Invalid Form Body (code 50035)",
        ),
    ];
    for (kind, reply, reason) in cases {
        let (h, server) = chat_bot(kind).await;
        answer(&server, kind, reply).await;
        baseline_then_flip(&h).await;
        let out = h.bot(&["once"]).await;
        assert_eq!(out.status.code(), Some(1), "{kind:?}: {}", text(&out));
        let rows = outbox(&h);
        assert_eq!(rows[0].1, "dead", "{kind:?}");
        let error = rows[0].4.clone().unwrap_or_default();
        assert!(
            error.contains("HTTP 400") && error.contains(reason),
            "{kind:?}: {error}"
        );
        h.bot(&["once"]).await;
        assert_eq!(
            bodies(&server, kind.path()).await.len(),
            1,
            "{kind:?}: not retried"
        );
    }
}

#[tokio::test]
async fn discord_bot_mode_dms_the_mapped_requester_and_skips_the_rest() {
    let h = Harness::start().await;
    let server = MockServer::start().await;
    h.write_config(&format!(
        "[sinks.dm]\nkind = \"discord\"\nbot_token = \"{BOT_TOKEN}\"\napi_base = \"{}\"\n\
         [[routes]]\nsinks = [\"dm\"]\n\
         [recipients.\"Ann@Example.com\"]\ndiscord_user_id = \"123456789012345678\"\n",
        server.uri()
    ));
    let auth = format!("Bot {BOT_TOKEN}");
    Mock::given(method("POST"))
        .and(path("/api/v10/users/@me/channels"))
        .and(header("authorization", auth.as_str()))
        .and(body_json(json!({"recipient_id": "123456789012345678"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "555", "type": 1})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/channels/555/messages"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut bob = item(8, 1, false);
    bob["RequestedBy"] = json!("bob@example.com");
    h.queue.set_items(vec![item(7, 1, false), bob.clone()]);
    assert!(h.bot(&["once"]).await.status.success());
    bob["Status"] = json!(2);
    bob["Downloadable"] = json!(true);
    h.queue.set_items(vec![item(7, 2, true), bob]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v10/users/@me/channels",
            "/api/v10/channels/555/messages"
        ]
    );
    let message = &bodies(&server, "/api/v10/channels/555/messages").await[0];
    assert_eq!(
        message["allowed_mentions"],
        json!({"parse": [], "users": ["123456789012345678"]})
    );
    let rows = outbox(&h);
    let by_item = |id: i64| rows.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!(by_item(7).1, "sent");
    let skipped = by_item(8);
    assert_eq!(skipped.1, "skipped");
    assert!(skipped.4.unwrap().contains("discord_user_id"));
    assert!(!text(&out).contains(BOT_TOKEN), "{}", text(&out));
}

#[tokio::test]
async fn chat_webhook_urls_and_tokens_never_reach_the_logs_at_debug_level() {
    let mut logs = String::new();
    for kind in KINDS {
        for status in [400, 500, 429] {
            let (h, server) = chat_bot(kind).await;
            answer(
                &server,
                kind,
                ResponseTemplate::new(status).set_body_string("nope"),
            )
            .await;
            baseline_then_flip(&h).await;
            let out = h.bot(&["once"]).await;
            assert_eq!(out.status.code(), Some(1), "{kind:?}: {}", text(&out));
            logs.push_str(&text(&out));
            let check = h.bot(&["check"]).await;
            logs.push_str(&text(&check));
            for row in outbox(&h) {
                logs.push_str(&row.4.unwrap_or_default());
            }
        }
    }
    assert!(
        logs.contains("HTTP 400") && logs.contains("DEBUG"),
        "{logs}"
    );
    for secret in SECRETS.iter().chain(&["T0SLACK", "/webhooks/42"]) {
        assert!(!logs.contains(secret), "{secret} leaked:\n{logs}");
    }
}
