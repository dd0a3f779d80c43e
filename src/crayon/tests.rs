//! The client against wiremock: tokens, renewals, statuses, bodies, redirects.

use super::token::{parse_lifetime, DEFAULT_LIFETIME, MAX_LIFETIME};
use super::*;
use crate::domain::{ExportId, MalformedQueue, Snapshot};
use serde_json::Value;
use wiremock::matchers::{basic_auth, bearer_token, body_string_contains, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const CLIENT_SECRET: &str = "client-s3cret-XYZ";
const PASSWORD: &str = "pa&ss+wo=rd-SECRET";
const TOKEN_VALUE: &str = "tok-1-SECRET";
const QUEUE: &str = r#"{"Items":[
    {"Id":7,"Status":2,"ActionUrl":"x","Downloadable":true,"Attempts":1,
     "ActionName":"Report","RequestedBy":"a@example.com","CreatedDate":"2024-05-30T13:39:59.387"},
    {"Id":7,"Status":1,"ActionUrl":"x","Downloadable":false,"Attempts":0,
     "ActionName":"Report","RequestedBy":null,"CreatedDate":"2024-05-30T13:39:59.387"}
    ],"NrOfDays":7}"#;

fn settings(base: &str) -> CrayonSettings {
    CrayonSettings {
        base_url: base.parse().unwrap(),
        client_id: "bot-client".to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        username: "bot@example.com".to_owned(),
        password: Secret::new(PASSWORD),
        scope: "CustomerApi".to_owned(),
        timeout: Duration::from_millis(300),
        max_body: 1 << 20,
        ca_file: None,
    }
}

fn client_with(settings: CrayonSettings) -> CrayonClient {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    CrayonClient::with_http_client(settings, http)
}

fn client(server: &MockServer) -> CrayonClient {
    client_with(settings(&server.uri()))
}

fn token_answer(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "AccessToken": token, "ExpiresIn": expires_in, "TokenType": "Bearer"
    }))
}

fn token_route() -> MockBuilder {
    Mock::given(method("POST")).and(path("/api/v1/connect/token/"))
}

fn exports_route() -> MockBuilder {
    Mock::given(method("GET")).and(path("/api/v1/exports/"))
}

fn token_mock(answer: ResponseTemplate) -> Mock {
    token_route().respond_with(answer)
}

fn exports_mock(answer: ResponseTemplate) -> Mock {
    exports_route().respond_with(answer)
}

fn queue_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(QUEUE, "application/json")
}

/// A server with a working token endpoint and `exports` as the queue answer.
async fn server_with(exports: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    token_mock(token_answer(TOKEN_VALUE, 3600))
        .mount(&server)
        .await;
    exports_mock(exports).mount(&server).await;
    server
}

fn assert_no_secrets(error: &CrayonError) {
    let shown = format!("{error} {error:?} {error:#?}");
    for secret in [CLIENT_SECRET, PASSWORD, TOKEN_VALUE] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

#[test]
fn client_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CrayonClient>();
}

#[test]
fn base_url_keeps_its_path_and_gains_a_trailing_slash() {
    let base = normalise_base("https://proxy.example/crayon?x=1".parse().unwrap());
    assert_eq!(
        base.join(EXPORTS_PATH).unwrap().as_str(),
        "https://proxy.example/crayon/api/v1/exports/"
    );
    let root = normalise_base("https://api.crayon.com".parse().unwrap());
    assert_eq!(
        root.join(TOKEN_PATH).unwrap().as_str(),
        "https://api.crayon.com/api/v1/connect/token/"
    );
}

#[test]
fn expires_in_may_be_a_number_a_numeric_string_or_missing() {
    let json = |v: Value| parse_lifetime(Some(&v));
    assert_eq!(json(serde_json::json!(120)), Some(Duration::from_secs(120)));
    assert_eq!(
        json(serde_json::json!(" 90 ")),
        Some(Duration::from_secs(90))
    );
    assert_eq!(parse_lifetime(None), Some(DEFAULT_LIFETIME));
    assert_eq!(json(Value::Null), Some(DEFAULT_LIFETIME));
    assert_eq!(json(serde_json::json!("soon")), None);
    assert_eq!(json(serde_json::json!(-5)), None);
    assert_eq!(json(serde_json::json!(1e300)), Some(MAX_LIFETIME));
}

#[test]
fn token_is_renewed_when_less_than_a_tenth_or_a_minute_remains() {
    let token = CachedToken::new(Secret::new("t"), Duration::from_secs(3600));
    let now = token.expires_at - Duration::from_secs(3600);
    assert!(token.is_usable(now));
    assert!(token.is_usable(token.expires_at - Duration::from_secs(61)));
    assert!(!token.is_usable(token.expires_at - Duration::from_secs(59)));
    let short = CachedToken::new(Secret::new("t"), Duration::from_secs(100));
    assert!(short.is_usable(short.expires_at - Duration::from_secs(11)));
    assert!(!short.is_usable(short.expires_at - Duration::from_secs(9)));
}

#[test]
fn excerpt_is_one_masked_line_of_limited_length() {
    let body = format!("oops\n\tbearer {TOKEN_VALUE}\r\n{}", "x".repeat(1000));
    let text = http_body::one_line(body.as_bytes(), &[TOKEN_VALUE.into(), "".into()]);
    assert!(text.starts_with("oops bearer *** xxx"), "{text}");
    assert_eq!(text.chars().count(), http_body::LINE_CHARS);
    assert!(text.ends_with('…'));
}

#[tokio::test]
async fn token_is_fetched_once_and_reused_across_polls() {
    let server = MockServer::start().await;
    token_mock(token_answer(TOKEN_VALUE, 3600))
        .expect(1)
        .mount(&server)
        .await;
    exports_route()
        .and(bearer_token(TOKEN_VALUE))
        .and(header("accept", "application/json"))
        .respond_with(queue_answer())
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);
    for _ in 0..2 {
        let body = client.fetch_queue().await.unwrap();
        let (snapshot, duplicates) = Snapshot::parse(&body).unwrap();
        assert_eq!(snapshot.items.len(), 1);
        assert_eq!(snapshot.nr_of_days, 7);
        assert_eq!(duplicates, vec![ExportId(7)]);
    }
}

#[tokio::test]
async fn token_request_sends_basic_auth_and_a_form_encoded_password() {
    let server = MockServer::start().await;
    token_route()
        .and(basic_auth("bot-client", CLIENT_SECRET))
        .and(header(
            "authorization",
            "Basic Ym90LWNsaWVudDpjbGllbnQtczNjcmV0LVhZWg==",
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("username=bot%40example.com"))
        .and(body_string_contains("password=pa%26ss%2Bwo%3Drd-SECRET"))
        .and(body_string_contains("scope=CustomerApi"))
        .respond_with(token_answer(TOKEN_VALUE, 3600))
        .expect(1)
        .mount(&server)
        .await;
    let lifetime = client(&server).check_credentials().await.unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));
}

#[tokio::test]
async fn oauth2_spelling_with_string_expires_in_is_accepted() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": "lower-tok", "expires_in": "1800", "token_type": "bearer"
    }));
    token_mock(answer).expect(1).mount(&server).await;
    exports_route()
        .and(bearer_token("lower-tok"))
        .respond_with(queue_answer())
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    assert_eq!(
        client.check_credentials().await.unwrap(),
        Duration::from_secs(1800)
    );
    client.fetch_queue().await.unwrap();
}

#[tokio::test]
async fn missing_expires_in_means_one_hour() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"AccessToken": "t", "Error": null}));
    token_mock(answer).mount(&server).await;
    let lifetime = client(&server).check_credentials().await.unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));
}

#[tokio::test]
async fn token_is_renewed_after_it_expires() {
    let server = MockServer::start().await;
    token_mock(token_answer(TOKEN_VALUE, 1))
        .expect(2)
        .mount(&server)
        .await;
    exports_mock(queue_answer()).expect(2).mount(&server).await;
    let client = client(&server);
    client.fetch_queue().await.unwrap();
    tokio::time::sleep(Duration::from_millis(950)).await;
    client.fetch_queue().await.unwrap();
}

#[tokio::test]
async fn a_401_gets_one_fresh_token_and_one_retry() {
    let server = MockServer::start().await;
    token_mock(token_answer("old-tok", 3600))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    token_mock(token_answer("new-tok", 3600))
        .expect(1)
        .mount(&server)
        .await;
    exports_route()
        .and(bearer_token("old-tok"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    exports_route()
        .and(bearer_token("new-tok"))
        .respond_with(queue_answer())
        .expect(1)
        .mount(&server)
        .await;
    let body = client(&server).fetch_queue().await.unwrap();
    let (snapshot, _) = Snapshot::parse(&body).unwrap();
    assert_eq!(snapshot.items.len(), 1);
}

#[tokio::test]
async fn a_second_401_is_unauthorized_and_a_credentials_error() {
    let server = MockServer::start().await;
    token_mock(token_answer(TOKEN_VALUE, 3600))
        .expect(2)
        .mount(&server)
        .await;
    exports_mock(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let error = client(&server).fetch_queue().await.unwrap_err();
    assert!(matches!(error, CrayonError::Unauthorized), "{error:?}");
    assert!(error.is_credentials());
}

#[tokio::test]
async fn refused_credentials_are_a_credentials_error() {
    let server = MockServer::start().await;
    let refusal = ResponseTemplate::new(400).set_body_string(format!(
        r#"{{"error":"invalid_grant","password":"{PASSWORD}"}}"#
    ));
    token_mock(refusal).mount(&server).await;
    exports_mock(queue_answer()).expect(0).mount(&server).await;
    let error = client(&server).fetch_queue().await.unwrap_err();
    assert!(
        matches!(error, CrayonError::CredentialsRefused { status: 400 }),
        "{error:?}"
    );
    assert!(error.is_credentials());
    assert!(error.to_string().contains("check client_id, client_secret"));
    assert_no_secrets(&error);
}

#[tokio::test]
async fn a_200_token_answer_with_error_set_is_refused_credentials() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"Error": "invalid_grant", "AccessToken": null}));
    token_mock(answer).mount(&server).await;
    let error = client(&server).check_credentials().await.unwrap_err();
    assert!(
        matches!(error, CrayonError::CredentialsRefused { status: 200 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn token_answers_of_the_wrong_shape_are_malformed_without_quoting_them() {
    let bodies = [
        format!(r#"{{"TokenType":"Bearer","RefreshToken":"{TOKEN_VALUE}"}}"#),
        format!(r#"{{"AccessToken":"{TOKEN_VALUE}","ExpiresIn":"{PASSWORD}"}}"#),
        format!(r#"["{TOKEN_VALUE}"]"#),
        format!("<html>{TOKEN_VALUE}"),
    ];
    for body in bodies {
        let server = MockServer::start().await;
        token_mock(ResponseTemplate::new(200).set_body_string(body))
            .mount(&server)
            .await;
        let error = client(&server).check_credentials().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::Malformed {
                    endpoint: "token",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_no_secrets(&error);
    }
}

#[tokio::test]
async fn a_server_error_is_a_transient_status_error_with_a_masked_excerpt() {
    let body = format!("Internal error\nwhile checking Bearer {TOKEN_VALUE}");
    let server = server_with(ResponseTemplate::new(500).set_body_string(body)).await;
    let error = client(&server).fetch_queue().await.unwrap_err();
    let CrayonError::Status {
        endpoint,
        status,
        body,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*endpoint, *status), ("exports", 500));
    assert_eq!(body, "Internal error while checking Bearer ***");
    assert_no_secrets(&error);
}

#[tokio::test]
async fn a_token_endpoint_error_never_shows_its_body() {
    let server = MockServer::start().await;
    token_mock(ResponseTemplate::new(503).set_body_string(format!("echo {PASSWORD}")))
        .mount(&server)
        .await;
    let error = client(&server).check_credentials().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the Crayon token endpoint answered HTTP 503"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_malformed() {
    let server = server_with(ResponseTemplate::new(200).set_body_string("{\"Items\": [")).await;
    // The client hands the bytes over; the domain's parse refuses them.
    let body = client(&server).fetch_queue().await.unwrap();
    let error = MalformedQueue::from(Snapshot::parse(&body).unwrap_err());
    assert!(
        error.to_string().starts_with(
            "the Crayon exports endpoint answered with a body that is not the documented shape"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn an_empty_object_is_malformed_not_an_empty_queue() {
    let server = server_with(ResponseTemplate::new(200).set_body_string("{}")).await;
    let body = client(&server).fetch_queue().await.unwrap();
    let MalformedQueue { reason } = Snapshot::parse(&body).unwrap_err().into();
    assert!(reason.contains("Items"), "{reason}");
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let slow = queue_answer().set_delay(Duration::from_secs(2));
    let server = server_with(slow).await;
    let error = client(&server).fetch_queue().await.unwrap_err();
    assert!(
        matches!(
            error,
            CrayonError::Timeout {
                endpoint: "exports",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_body_over_max_body_is_too_large() {
    let server = server_with(queue_answer()).await;
    let mut settings = settings(&server.uri());
    settings.max_body = 100;
    let error = client_with(settings).fetch_queue().await.unwrap_err();
    assert!(
        matches!(
            error,
            CrayonError::TooLarge {
                endpoint: "exports",
                limit: 100
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_token_body_over_64_kib_is_too_large() {
    let server = MockServer::start().await;
    let padding = "x".repeat(70 * 1024);
    let answer = ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"AccessToken": TOKEN_VALUE, "ExpiresIn": 3600, "Pad": padding}),
    );
    token_mock(answer).mount(&server).await;
    let error = client(&server).check_credentials().await.unwrap_err();
    assert!(
        matches!(
            error,
            CrayonError::TooLarge {
                endpoint: "token",
                limit: 65536
            }
        ),
        "{error:?}"
    );
    assert_no_secrets(&error);
}

/// Serves a token, then a chunked queue body with no Content-Length, so
/// only the streaming cap can stop it.
fn chunked_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 8192];
            let n = stream.read(&mut request).unwrap_or(0);
            let answer = if request[..n].starts_with(b"POST") {
                let token = r#"{"AccessToken":"t","ExpiresIn":3600}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{token}",
                    token.len()
                )
            } else {
                let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
                    chunk.repeat(8)
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_streamed_body_over_max_body_is_too_large() {
    let mut settings = settings(&chunked_server());
    settings.max_body = 3000;
    let error = client_with(settings).fetch_queue().await.unwrap_err();
    assert!(
        matches!(
            error,
            CrayonError::TooLarge {
                endpoint: "exports",
                limit: 3000
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_with(settings(&format!("http://127.0.0.1:{port}/")));
    let error = client.fetch_queue().await.unwrap_err();
    assert!(
        matches!(
            error,
            CrayonError::Connect {
                endpoint: "token",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    assert_no_secrets(&error);
}

#[test]
fn ca_file_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for path in [missing, empty] {
        let mut settings = settings("https://api.crayon.com/");
        settings.ca_file = Some(path.clone());
        let error = CrayonClient::new(settings).unwrap_err();
        assert!(matches!(error, CrayonError::CaFile { .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()));
    }
}

#[test]
fn new_builds_a_client_and_debug_hides_secrets() {
    let client = CrayonClient::new(settings("https://api.crayon.com")).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains(CLIENT_SECRET) && !shown.contains(PASSWORD));
    assert!(shown.contains("api.crayon.com"));
}
