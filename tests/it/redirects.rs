//! HTTP on the wire: redirects are never followed (not by any sink, not by
//! the Crayon client), every HTTP sink classifies statuses alike (a 408 with
//! `Retry-After` is retried then), a header value reqwest would refuse fails
//! `check`, `tls.ca_file` is trusted by every HTTP client, and a TLS failure
//! names the certificate problem.

use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, text, Harness, HOOK_PATH, PASSWORD, TOKEN};
use crate::smtp::TestCa;

const REDIRECTS: [u16; 4] = [301, 302, 307, 308];
const KINDS: [Kind; 4] = [Kind::Webhook, Kind::Slack, Kind::Teams, Kind::Discord];
/// Parts of the redirect target that must never reach `last_error`.
const TARGET_PATH: &str = "/elsewhere/T0TARGET";
const TARGET_SECRET: &str = "target-s1g";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Webhook,
    Slack,
    Teams,
    Discord,
}

impl Kind {
    /// The path the sink posts to on `server`.
    fn path(self) -> &'static str {
        match self {
            Kind::Webhook => HOOK_PATH,
            Kind::Slack => "/services/T0SLACK/B0SLACK/slack-s3cret",
            Kind::Teams => "/workflows/teams-s3cret/triggers/manual/run",
            Kind::Discord => "/api/v10/webhooks/42/discord-s3cret",
        }
    }

    /// Config making this kind, pointing at `server`, the only routed sink.
    fn toml(self, server: &MockServer) -> String {
        let uri = server.uri();
        let at = self.path();
        let sink = match self {
            Kind::Webhook => format!(
                "kind = \"webhook\"\nurl = \"{uri}{at}\"\nheaders = {{ X-Api-Key = \"hdr-s3cret\" }}"
            ),
            Kind::Slack => format!("kind = \"slack\"\nurl = \"{uri}{at}\""),
            Kind::Teams => format!("kind = \"teams\"\nurl = \"{uri}{at}?sig=teams-s1g\""),
            Kind::Discord => format!(
                "kind = \"discord\"\nwebhook_url = \"https://discord.com/api/webhooks/42/discord-s3cret\"\napi_base = \"{uri}\""
            ),
        };
        format!("[sinks.chat]\n{sink}\n[[routes]]\nsinks = [\"chat\"]\n")
    }
}

/// A second server that would accept anything: it must never be asked.
async fn target() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccessToken": "other-token", "ExpiresIn": 3600, "Items": [], "NrOfDays": 7
        })))
        .mount(&server)
        .await;
    server
}

fn redirect_to(status: u16, target: &MockServer, at: &str) -> ResponseTemplate {
    let location = format!("{}{at}?sig={TARGET_SECRET}", target.uri());
    ResponseTemplate::new(status).insert_header("location", location.as_str())
}

/// `host:port` of a wiremock server, as an error text names it.
fn host_of(server: &MockServer) -> String {
    server.uri().trim_start_matches("http://").to_string()
}

/// (status, last_error) of every outbox row.
fn outbox(h: &Harness) -> Vec<(String, Option<String>)> {
    outbox_rows(h).into_iter().map(|(s, e, _)| (s, e)).collect()
}

/// (status, last_error, seconds until the next attempt) of every row.
fn outbox_rows(h: &Harness) -> Vec<(String, Option<String>, Option<f64>)> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut stmt = db
        .prepare("SELECT status, last_error, next_attempt_at FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let next: Option<i64> = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            next.map(|ms| (ms - now) as f64 / 1000.0),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A baseline with item 7 queued, then item 7 turns downloadable and one
/// `once` tries to deliver it.
async fn flip_and_deliver(h: &Harness) -> String {
    h.queue.set_items(vec![item(7, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![item(7, 2, true)]);
    text(&h.bot(&["once"]).await)
}

async fn a_sink_redirect_is_dead_and_never_followed(kind: Kind) {
    for status in REDIRECTS {
        let h = Harness::start().await;
        let sink = MockServer::start().await;
        let other = target().await;
        h.write_config(&kind.toml(&sink));
        Mock::given(method("POST"))
            .and(path(kind.path()))
            .respond_with(redirect_to(status, &other, TARGET_PATH))
            .expect(1)
            .mount(&sink)
            .await;
        let out = flip_and_deliver(&h).await;
        let asked = other.received_requests().await.unwrap();
        assert!(asked.is_empty(), "{kind:?} {status}: followed to {asked:?}");
        let rows = outbox(&h);
        assert_eq!(rows.len(), 1, "{kind:?} {status}: {out}");
        let error = rows[0].1.clone().unwrap_or_default();
        assert_eq!(rows[0].0, "dead", "{kind:?} {status}: {error}");
        assert!(
            error.contains(&format!("HTTP {status}")) && error.contains(&host_of(&other)),
            "{kind:?} {status}: {error}"
        );
        for secret in [TARGET_PATH, TARGET_SECRET, "s3cret", "teams-s1g"] {
            assert!(!error.contains(secret), "{kind:?} {status}: {error}");
            assert!(!out.contains(secret), "{kind:?} {status}: {out}");
        }
    }
}

#[tokio::test]
async fn a_webhook_redirect_is_dead_and_never_followed() {
    a_sink_redirect_is_dead_and_never_followed(Kind::Webhook).await;
}

#[tokio::test]
async fn a_slack_redirect_is_dead_and_never_followed() {
    a_sink_redirect_is_dead_and_never_followed(Kind::Slack).await;
}

#[tokio::test]
async fn a_teams_redirect_is_dead_and_never_followed() {
    a_sink_redirect_is_dead_and_never_followed(Kind::Teams).await;
}

#[tokio::test]
async fn a_discord_redirect_is_dead_and_never_followed() {
    a_sink_redirect_is_dead_and_never_followed(Kind::Discord).await;
}

/// SPEC: 4xx other than 408/429 is not retried, and `Retry-After` is
/// honoured: the same for every HTTP sink (the webhook path used to send a
/// 408 with `Retry-After` dead while Discord retried it).
#[tokio::test]
async fn a_408_with_retry_after_is_retried_after_that_wait_by_every_http_sink() {
    for kind in KINDS {
        let h = Harness::start().await;
        let sink = MockServer::start().await;
        h.write_config(&kind.toml(&sink));
        // Server-given waits are honoured up to backoff_max (200ms in the harness).
        let config = std::fs::read_to_string(h.config_path()).unwrap();
        let config = config.replace("backoff_max = \"200ms\"", "backoff_max = \"10m\"");
        std::fs::write(h.config_path(), config).unwrap();
        Mock::given(method("POST"))
            .and(path(kind.path()))
            .respond_with(ResponseTemplate::new(408).insert_header("retry-after", "90"))
            .expect(1)
            .mount(&sink)
            .await;
        let out = flip_and_deliver(&h).await;
        let rows = outbox_rows(&h);
        assert_eq!(rows.len(), 1, "{kind:?}: {out}");
        let (status, error, next) = &rows[0];
        assert_eq!(status, "pending", "{kind:?}: {error:?}");
        let next = next.unwrap_or_default();
        assert!(
            next > 80.0 && next <= 90.5,
            "{kind:?}: next attempt in {next}s"
        );
        assert!(
            error.as_deref().unwrap_or_default().contains("HTTP 408"),
            "{error:?}"
        );
    }
}

/// A `Retry-After` too large for a `Duration` used to panic the send; now
/// it is a (clamped) wait like any other.
#[tokio::test]
async fn a_huge_retry_after_keeps_the_delivery_pending_without_a_panic() {
    let h = Harness::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "99999999999999999999"),
        )
        .mount(&h.hook)
        .await;
    h.write_config("");
    let out = flip_and_deliver(&h).await;
    assert!(!out.contains("panicked"), "{out}");
    let rows = outbox_rows(&h);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0].0, "pending", "{out}");
    assert!(
        rows[0]
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 429"),
        "{rows:?}"
    );
}

/// Runs one poll against a Crayon API whose `endpoint` answers `status`
/// with a redirect to another server; returns the bot's output.
async fn poll_with_redirected(endpoint: &str, status: u16) -> (String, MockServer) {
    let h = Harness::start().await;
    let other = target().await;
    h.crayon.reset().await;
    let token = "/api/v1/connect/token/";
    let token_answer = if endpoint == token {
        redirect_to(status, &other, token)
    } else {
        ResponseTemplate::new(200).set_body_json(json!({"AccessToken": TOKEN, "ExpiresIn": 3600}))
    };
    Mock::given(path(token))
        .respond_with(token_answer)
        .mount(&h.crayon)
        .await;
    Mock::given(path("/api/v1/exports/"))
        .respond_with(redirect_to(status, &other, "/api/v1/exports/"))
        .mount(&h.crayon)
        .await;
    h.write_config("");
    let out = h.bot(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{endpoint} {status}: {}",
        text(&out)
    );
    (text(&out), other)
}

async fn a_crayon_redirect_fails_the_poll(endpoint: &str) {
    for status in REDIRECTS {
        let (out, other) = poll_with_redirected(endpoint, status).await;
        let asked = other.received_requests().await.unwrap();
        assert!(asked.is_empty(), "{endpoint} {status}: followed: {asked:?}");
        assert!(out.contains("poll failed"), "{endpoint} {status}: {out}");
        assert!(
            out.contains(&format!("HTTP {status}")) && out.contains(&host_of(&other)),
            "{endpoint} {status}: {out}"
        );
        for secret in [PASSWORD, TARGET_SECRET] {
            assert!(!out.contains(secret), "{endpoint} {status}: {out}");
        }
    }
}

#[tokio::test]
async fn a_token_redirect_fails_the_poll_and_the_password_stays_home() {
    a_crayon_redirect_fails_the_poll("/api/v1/connect/token/").await;
}

#[tokio::test]
async fn a_queue_redirect_fails_the_poll_and_its_answer_is_not_the_queue() {
    a_crayon_redirect_fails_the_poll("/api/v1/exports/").await;
}

#[tokio::test]
async fn check_refuses_a_header_value_with_a_trailing_newline_without_showing_it() {
    let h = Harness::start().await;
    h.write_config("headers = { Authorization = \"${AUDIT_AUTH}\" }");
    let out = h
        .command(&["check"])
        .env("AUDIT_AUTH", "Bearer hdr-s3cret-77\n")
        .output()
        .await
        .unwrap();
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(2), "{out_text}");
    assert!(
        out_text.contains("sinks.audit.headers.Authorization")
            && out_text.contains("the value ends with a newline"),
        "{out_text}"
    );
    assert!(!out_text.contains("hdr-s3cret-77"), "{out_text}");
}

/// A TLS server on loopback presenting a certificate nobody trusts.
async fn untrusted_tls_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&TestCa::new().server));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { drop(acceptor.accept(stream).await) });
        }
    });
    format!("https://127.0.0.1:{port}/hooks/tls-s3cret")
}

/// A TLS front on loopback for `backend`, presenting `ca`'s certificate
/// for 127.0.0.1: after the handshake the bytes pass through both ways.
async fn tls_front(ca: &TestCa, backend: &MockServer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&ca.server));
    let backend = *backend.address();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// Both HTTP clients, the Crayon API's and the sinks', trust a private CA
/// given as `tls.ca_file` on top of the system roots: the queue is read and
/// the webhook delivered over TLS to servers whose certificate it signed.
#[tokio::test]
async fn a_ca_in_tls_ca_file_is_trusted_by_the_crayon_client_and_the_sinks() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let ca = TestCa::new();
    std::fs::write(h.dir.path().join("ca.pem"), &ca.ca_pem).unwrap();
    let crayon = tls_front(&ca, &h.crayon).await;
    let hook = tls_front(&ca, &h.hook).await;
    h.write_config("[tls]\nca_file = \"ca.pem\"\n");
    let once = || {
        h.command(&["once"])
            .env(
                "BOT__CRAYON__BASE_URL",
                format!("https://127.0.0.1:{crayon}/"),
            )
            .env(
                "AUDIT_WEBHOOK_URL",
                format!("https://127.0.0.1:{hook}{HOOK_PATH}"),
            )
            .output()
    };
    h.queue.set_items(vec![item(7, 1, false)]);
    let out = once().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![item(7, 2, true)]);
    let out = once().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outbox(&h), [("sent".to_string(), None)], "{}", text(&out));
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1, "{}", text(&out));
    assert_eq!(bodies[0]["item"]["id"], 7);
}

#[tokio::test]
async fn a_tls_failure_names_the_certificate_problem() {
    let h = Harness::start().await;
    let url = untrusted_tls_server().await;
    h.write_config(&format!(
        "[sinks.tls]\nkind = \"webhook\"\nurl = \"{url}\"\n[[routes]]\nsinks = [\"tls\"]\n"
    ));
    let out = flip_and_deliver(&h).await;
    let rows = outbox(&h);
    assert_eq!(rows.len(), 1, "{out}");
    let error = rows[0].1.clone().unwrap_or_default();
    assert_eq!(rows[0].0, "pending", "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert!(!error.contains("tls-s3cret"), "{error}");
}
