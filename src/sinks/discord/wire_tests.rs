//! The Discord sink on the wire: serenity pointed at wiremock via
//! `api_base`, checking exactly what reaches the server and how each answer
//! is classified.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::domain::{DeliveryId, DeliveryStatus, EventKind, ExportId, RenderedMessage, Subject};

const TOKEN: &str = "hook-TOKEN-s3cret";
const BOT_TOKEN: &str = "bot-TOKEN-s3cret";
const USER: &str = "123456789012345678";

fn delivery(recipient: Option<&str>) -> Delivery {
    let mut message = RenderedMessage::default();
    message.parts.insert(
        "json".into(),
        json!({"content": "ready", "allowed_mentions": {"parse": []}}).to_string(),
    );
    Delivery {
        id: DeliveryId(1),
        subject: Subject::Item(ExportId(7)),
        event: EventKind::Downloadable,
        sink: "discord".into(),
        recipient: recipient.map(str::to_string),
        message,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        created_at: chrono::Utc::now(),
    }
}

/// No proxy from the environment: the fake is on loopback.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn webhook_sink(server: &MockServer) -> DiscordSink {
    let url = Secret::new(format!("https://discord.com/api/webhooks/42/{TOKEN}"));
    let base = Url::parse(&server.uri()).unwrap();
    DiscordSink::new(client(), Some(&url), None, Some(&base)).unwrap()
}

fn bot_sink(server: &MockServer) -> DiscordSink {
    let base = Url::parse(&server.uri()).unwrap();
    let token = Secret::new(BOT_TOKEN);
    DiscordSink::new(client(), None, Some(&token), Some(&base)).unwrap()
}

async fn answer_webhook(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("/api/v10/webhooks/42/{TOKEN}")))
        .respond_with(answer)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_webhook_execution_posts_the_rendered_json_without_authorization() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v10/webhooks/42/{TOKEN}")))
        .and(query_param("wait", "true"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"content": "ready", "allowed_mentions": {"parse": []}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .expect(1)
        .mount(&server)
        .await;
    webhook_sink(&server).send(&delivery(None)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_dm_opens_the_channel_with_the_mapped_id_then_posts_to_it_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v10/users/@me/channels"))
        .and(header("authorization", format!("Bot {BOT_TOKEN}").as_str()))
        .and(body_json(json!({"recipient_id": USER})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "555", "type": 1})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/channels/555/messages"))
        .and(header("authorization", format!("Bot {BOT_TOKEN}").as_str()))
        .and(body_json(
            json!({"content": "ready", "allowed_mentions": {"parse": []}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9"})))
        .expect(2)
        .mount(&server)
        .await;
    let sink = bot_sink(&server);
    sink.send(&delivery(Some(USER))).await.unwrap();
    sink.send(&delivery(Some(USER))).await.unwrap();
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(paths[0], "/api/v10/users/@me/channels", "{paths:?}");
}

#[tokio::test]
async fn an_oversized_dm_channel_answer_is_refused_without_reading_it_all() {
    let server = MockServer::start().await;
    let huge = json!({"id": "555", "type": 1, "pad": "x".repeat(100 * 1024)});
    Mock::given(method("POST"))
        .and(path("/api/v10/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(huge))
        .mount(&server)
        .await;
    let error = bot_sink(&server)
        .send(&delivery(Some(USER)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SendError::Retryable(m) if m.contains("larger than 65536 bytes")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_429_waits_as_the_body_says_then_as_the_headers_say() {
    let server = MockServer::start().await;
    answer_webhook(
        &server,
        ResponseTemplate::new(429)
            .insert_header("retry-after", "9")
            .set_body_json(json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false})),
    )
    .await;
    let err = webhook_sink(&server)
        .send(&delivery(None))
        .await
        .unwrap_err();
    match err {
        SendError::RetryAfter { after, message } => {
            assert_eq!(after, Duration::from_millis(1500));
            assert!(message.contains("rate limited"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    server.reset().await;
    answer_webhook(
        &server,
        ResponseTemplate::new(429).insert_header("x-ratelimit-reset-after", "3.25"),
    )
    .await;
    let err = webhook_sink(&server)
        .send(&delivery(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::RetryAfter { after, .. } if after == Duration::from_millis(3250))
    );
}

#[tokio::test]
async fn a_400_is_permanent_with_discords_reason_and_a_500_is_retryable() {
    let server = MockServer::start().await;
    answer_webhook(
        &server,
        ResponseTemplate::new(400)
            .set_body_json(json!({"code": 50006, "message": "Cannot send an empty message"})),
    )
    .await;
    let err = webhook_sink(&server)
        .send(&delivery(None))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SendError::Permanent("HTTP 400: Cannot send an empty message (code 50006)".into())
    );
    server.reset().await;
    answer_webhook(&server, ResponseTemplate::new(502)).await;
    let err = webhook_sink(&server)
        .send(&delivery(None))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn an_unreachable_api_is_retryable_and_never_shows_the_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Secret::new(format!("https://discord.com/api/webhooks/42/{TOKEN}"));
    let base = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let sink = DiscordSink::new(client(), Some(&url), None, Some(&base)).unwrap();
    let err = sink.send(&delivery(None)).await.unwrap_err();
    assert!(matches!(err, SendError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

#[tokio::test]
async fn a_dm_without_a_valid_user_id_is_permanent_and_sends_nothing() {
    let server = MockServer::start().await;
    let err = bot_sink(&server)
        .send(&delivery(Some("ann@example.com")))
        .await;
    assert!(matches!(err, Err(SendError::Permanent(_))), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
