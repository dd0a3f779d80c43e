//! The export file itself (#16), on the real wire: the real binary
//! downloads `GET /api/v1/exports/{Id}/download/` from a fake Crayon API
//! (wiremock, or a raw loopback server for chunked and cut bodies) and
//! sends it through the SMTP server of `crate::smtp`, a Discord fake and a
//! Slack fake, which must receive exactly the served bytes. The download
//! URL and the token never show in a message, log line or error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailparse::{DispositionType, MailHeaderMap, ParsedMail};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::email::{baseline_then, outbox, parse, plain_config, ready};
use crate::helpers::{text, Harness, TOKEN};
use crate::smtp::{Security, SmtpServer};

pub(crate) const DOWNLOAD_7: &str = "/api/v1/exports/7/download/";

/// A zip-like file of `len` bytes: the zip magic, then every byte value.
pub(crate) fn zip_bytes(len: usize) -> Vec<u8> {
    let mut body = b"PK\x03\x04".to_vec();
    body.extend((0..len.saturating_sub(4)).map(|i| (i * 7 + i / 251) as u8));
    body
}

/// Serves `body` as item 7's file (with `disposition` when given).
async fn serve_file(h: &Harness, body: &[u8], disposition: Option<&str>) {
    let mut answer = ResponseTemplate::new(200)
        .insert_header("Content-Type", "application/octet-stream")
        .set_body_bytes(body.to_vec());
    if let Some(value) = disposition {
        answer = answer.insert_header("Content-Disposition", value);
    }
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .and(header("Authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(answer)
        .mount(&h.crayon)
        .await;
}

/// The mail sink with `attach = true` (and `lines`).
fn attach_config(server: &SmtpServer, lines: &str) -> String {
    plain_config(server, "").replace(
        "tls = \"none\"",
        &format!("tls = \"none\"\nattach = true\n{lines}"),
    )
}

/// The parts of a `multipart/mixed` mail: the alternative, then the file.
fn file_part<'a>(mail: &'a ParsedMail<'a>) -> &'a ParsedMail<'a> {
    assert_eq!(mail.ctype.mimetype, "multipart/mixed");
    assert_eq!(mail.subparts.len(), 2);
    assert_eq!(mail.subparts[0].ctype.mimetype, "multipart/alternative");
    &mail.subparts[1]
}

fn text_body(mail: &ParsedMail<'_>) -> String {
    let alternative = match mail.ctype.mimetype.as_str() {
        "multipart/mixed" => &mail.subparts[0],
        _ => mail,
    };
    alternative.subparts[0].get_body().unwrap()
}

/// The bot's output and the messages must never show the token or the URL.
pub(crate) fn assert_no_leak(haystacks: &[&str]) {
    for hay in haystacks {
        assert!(!hay.contains(TOKEN), "token leaked:\n{hay}");
        assert!(!hay.contains("/download/"), "download URL leaked:\n{hay}");
    }
}

fn spool_files(h: &Harness) -> Vec<String> {
    match std::fs::read_dir(h.dir.path().join("state.db.spool")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn the_mail_carries_the_served_bytes_named_by_content_disposition() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    let body = zip_bytes(300 * 1024);
    let disposition = "attachment; filename=\"plain.zip\"; filename*=UTF-8''R%C3%A9port%207.zip";
    serve_file(&h, &body, Some(disposition)).await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    let mail = parse(&delivered[0]);
    let file = file_part(&mail);
    assert_eq!(file.ctype.mimetype, "application/zip");
    let shown = file.get_content_disposition();
    assert_eq!(shown.disposition, DispositionType::Attachment);
    assert_eq!(
        shown.params.get("filename").map(String::as_str),
        Some("Réport 7.zip")
    );
    assert_eq!(
        file.headers.get_first_value("Content-Transfer-Encoding"),
        Some("base64".into())
    );
    assert_eq!(file.get_body_raw().unwrap(), body);
    assert!(text_body(&mail).contains("The file is attached: Réport 7.zip (300.0 KiB)"));
    assert_eq!(outbox(&h)[0].1, "sent");
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
    assert_no_leak(&[&text(&out), &delivered[0].data]);
}

#[tokio::test]
async fn without_content_disposition_the_name_comes_from_the_action_name_and_bytes() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    let mut body = b"%PDF-1.7\n".to_vec();
    body.extend(zip_bytes(5000));
    serve_file(&h, &body, None).await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = server.delivered();
    let mail = parse(&delivered[0]);
    let file = file_part(&mail);
    assert_eq!(file.ctype.mimetype, "application/pdf");
    assert_eq!(
        file.get_content_disposition()
            .params
            .get("filename")
            .map(String::as_str),
        Some("New Commerce License-based Report #7.pdf")
    );
    assert_eq!(file.get_body_raw().unwrap(), body);
}

#[tokio::test]
async fn a_file_over_attach_max_or_a_404_is_left_out_and_the_mail_says_why() {
    for (status, lines, why) in [
        (
            200,
            "attach_max = \"1KiB\"",
            "The file is not attached: the file is larger than 1.0 KiB.",
        ),
        (
            404,
            "",
            "The file is not attached: the file could not be downloaded (HTTP 404).",
        ),
    ] {
        let h = Harness::start().await;
        let server = SmtpServer::start(Security::Plain).await;
        h.write_config(&attach_config(&server, lines));
        Mock::given(method("GET"))
            .and(path(DOWNLOAD_7))
            .respond_with(ResponseTemplate::new(status).set_body_bytes(zip_bytes(4096)))
            .mount(&h.crayon)
            .await;

        let out = baseline_then(&h, vec![ready(7)]).await;
        assert!(out.status.success(), "{}", text(&out));
        let delivered = server.delivered();
        assert_eq!(delivered.len(), 1, "{}", text(&out));
        let mail = parse(&delivered[0]);
        assert_eq!(mail.ctype.mimetype, "multipart/alternative");
        assert!(text_body(&mail).contains(why), "{}", text_body(&mail));
        assert_eq!(outbox(&h)[0].1, "sent");
        assert!(spool_files(&h).is_empty());
    }
}

#[tokio::test]
async fn a_500_is_retried_with_the_backoff_then_the_file_goes_once() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    let body = zip_bytes(20_000);
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .respond_with(ResponseTemplate::new(500).set_body_string("busy"))
        .up_to_n_times(1)
        .mount(&h.crayon)
        .await;
    serve_file(&h, &body, None).await;

    let first = baseline_then(&h, vec![ready(7)]).await;
    assert!(server.delivered().is_empty(), "{}", text(&first));
    let row = &outbox(&h)[0];
    assert_eq!(row.1, "pending");
    let error = row.3.clone().unwrap_or_default();
    assert!(
        error.contains("item 7") && error.contains("download"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.bot(&["once"]).await;
    assert!(second.status.success(), "{}", text(&second));
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&second));
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert_no_leak(&[&text(&first), &text(&second), &error]);
}

#[tokio::test]
async fn still_failing_at_the_last_attempt_the_mail_goes_without_the_file() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.crayon)
        .await;

    let mut outs = vec![baseline_then(&h, vec![ready(7)]).await];
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        outs.push(h.bot(&["once"]).await);
    }
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(outs.last().unwrap()));
    let mail = parse(&delivered[0]);
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    assert!(text_body(&mail).contains("could not be downloaded in time"));
    assert_eq!(outbox(&h)[0].1, "sent");
}

/// A raw loopback Crayon API (token, queue, and scripted download answers
/// written byte for byte), for what wiremock cannot send: a chunked body
/// and a body cut short.
pub(crate) struct RawCrayon {
    pub url: String,
    queue: Arc<Mutex<Value>>,
    downloads: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

impl RawCrayon {
    pub(crate) async fn start() -> RawCrayon {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let queue = Arc::new(Mutex::new(json!({"Items": [], "NrOfDays": 7})));
        let downloads: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::default();
        let (q, d) = (queue.clone(), downloads.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (q, d) = (q.clone(), d.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut socket).await;
                    let answer = if head.starts_with("POST /api/v1/connect/token/") {
                        json_answer(&json!({"AccessToken": TOKEN, "ExpiresIn": 3600}))
                    } else if head.starts_with("GET /api/v1/exports/ ") {
                        json_answer(&q.lock().unwrap())
                    } else {
                        let next = d.lock().unwrap().pop_front();
                        next.unwrap_or_else(|| b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec())
                    };
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        RawCrayon {
            url,
            queue,
            downloads,
        }
    }

    pub(crate) fn set_items(&self, items: Vec<Value>) {
        *self.queue.lock().unwrap() = json!({"Items": items, "NrOfDays": 7});
    }

    /// The next download answers with exactly these bytes.
    pub(crate) fn push_download(&self, raw: Vec<u8>) {
        self.downloads.lock().unwrap().push_back(raw);
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    // A token POST has a small form body; it is not needed.
    String::from_utf8_lossy(&seen).into_owned()
}

fn json_answer(value: &Value) -> Vec<u8> {
    let body = value.to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `body` as a chunked answer in chunks of `size`.
pub(crate) fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for chunk in body.chunks(size) {
        out.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// An answer promising `body.len()` bytes that ends after `sent` of them.
fn cut(body: &[u8], sent: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body[..sent]);
    out
}

/// The harness's config, pointed at the raw Crayon API instead.
fn raw_config(h: &Harness, raw: &RawCrayon, sink: &str) {
    h.write_config(sink);
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    let config = config.replace(&h.crayon.uri(), &raw.url);
    std::fs::write(h.config_path(), config).unwrap();
}

async fn raw_baseline_then(h: &Harness, raw: &RawCrayon) -> std::process::Output {
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    raw.set_items(vec![ready(7)]);
    h.bot(&["once"]).await
}

#[tokio::test]
async fn a_chunked_body_is_streamed_whole_and_over_the_cap_it_is_refused() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, "attach_max = \"64KiB\""));
    let body = zip_bytes(50_000);
    raw.push_download(chunked(&body, 1000));

    let out = raw_baseline_then(&h, &raw).await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );

    // A chunked body has no Content-Length: the cap is found while streaming.
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, "attach_max = \"64KiB\""));
    raw.push_download(chunked(&zip_bytes(100_000), 4096));
    let out = raw_baseline_then(&h, &raw).await;
    let delivered = server.delivered();
    let mail = parse(&delivered[0]);
    assert_eq!(
        mail.ctype.mimetype,
        "multipart/alternative",
        "{}",
        text(&out)
    );
    assert!(text_body(&mail).contains("larger than 64.0 KiB"));
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
}

#[tokio::test]
async fn a_body_cut_mid_stream_leaves_no_file_and_the_retry_sends_it_whole() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let raw = RawCrayon::start().await;
    raw_config(&h, &raw, &attach_config(&server, ""));
    let body = zip_bytes(80_000);
    raw.push_download(cut(&body, 30_000));

    let first = raw_baseline_then(&h, &raw).await;
    assert!(server.delivered().is_empty(), "{}", text(&first));
    assert_eq!(outbox(&h)[0].1, "pending");
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));

    raw.push_download(chunked(&body, 7000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.bot(&["once"]).await;
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&second));
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert_no_leak(&[&text(&first), &text(&second)]);
}

#[tokio::test]
async fn the_download_url_and_token_never_reach_a_trace_log() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_string(format!("echo Bearer {TOKEN} at {DOWNLOAD_7}")),
        )
        .mount(&h.crayon)
        .await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![ready(7)]);
    let out = h
        .command(&["once"])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    let error = outbox(&h)[0].3.clone().unwrap_or_default();
    assert!(error.contains("HTTP 500"), "{error}");
    assert_no_leak(&[&text(&out), &error]);
}

/// The parts of a `multipart/form-data` request: (name, filename, type, bytes).
pub(crate) fn form_parts(
    request: &wiremock::Request,
) -> Vec<(String, Option<String>, String, Vec<u8>)> {
    let content_type = request
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let body = &request.body;
    let mut parts = Vec::new();
    let mut starts: Vec<usize> = body
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    starts.dedup();
    for pair in starts.windows(2) {
        let part = &body[pair[0] + delimiter.len() + 2..pair[1] - 2];
        let split = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let field = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap().to_string())
        };
        let kind = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Type: ")
                    .or_else(|| l.strip_prefix("content-type: "))
            })
            .unwrap_or_default()
            .to_string();
        parts.push((
            field(" name").unwrap_or_default(),
            field("filename"),
            kind,
            part[split + 4..].to_vec(),
        ));
    }
    parts
}

/// A message with a file as a Discord fake received it: the payload, then
/// the file's name, type and bytes.
fn discord_upload(request: &wiremock::Request) -> (Value, String, String, Vec<u8>) {
    let parts = form_parts(request);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].0, "payload_json");
    assert_eq!(parts[1].0, "files[0]");
    let payload = serde_json::from_slice(&parts[0].3).unwrap();
    let (_, name, kind, bytes) = parts[1].clone();
    (payload, name.unwrap(), kind, bytes)
}

#[tokio::test]
async fn one_download_serves_the_discord_webhook_the_discord_dm_and_the_mail() {
    let h = Harness::start().await;
    let smtp = SmtpServer::start(Security::Plain).await;
    let discord = wiremock::MockServer::start().await;
    let body = zip_bytes(200_000);
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .expect(1)
        .mount(&h.crayon)
        .await;
    let mail = attach_config(&smtp, "")
        .replace("sinks = [\"mail\"]", "sinks = [\"mail\", \"hook\", \"dm\"]");
    h.write_config(&format!(
        "[sinks.hook]\nkind = \"discord\"\nattach = true\n\
         webhook_url = \"https://discord.com/api/webhooks/42/hook-s3cret\"\napi_base = \"{uri}\"\n\
         [sinks.dm]\nkind = \"discord\"\nattach = true\nbot_token = \"bot-s3cret\"\napi_base = \"{uri}\"\n\
         {mail}\n[recipients.\"ann@example.com\"]\ndiscord_user_id = \"123456789012345678\"\n",
        uri = discord.uri()
    ));
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/42/hook-s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .expect(1)
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "555", "type": 1})))
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/channels/555/messages"))
        .and(header("authorization", "Bot bot-s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "9"})))
        .expect(1)
        .mount(&discord)
        .await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = discord.received_requests().await.unwrap();
    let name = "New Commerce License-based Report #7.zip";
    for at in [
        "/api/v10/webhooks/42/hook-s3cret",
        "/api/v10/channels/555/messages",
    ] {
        let request = received.iter().find(|r| r.url.path() == at).unwrap();
        let (payload, filename, kind, bytes) = discord_upload(request);
        assert_eq!(payload["attachments"], json!([{"id": 0, "filename": name}]));
        assert!(
            payload["embeds"][0]["fields"]
                .to_string()
                .contains("Attached: "),
            "{payload}"
        );
        assert_eq!(
            (filename.as_str(), kind.as_str()),
            (name, "application/zip")
        );
        assert!(
            bytes == body,
            "{at}: {} bytes, not the served {}",
            bytes.len(),
            body.len()
        );
    }
    let delivered = smtp.delivered();
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert!(
        outbox(&h).iter().all(|row| row.1 == "sent"),
        "{:?}",
        outbox(&h)
    );
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
    let output = text(&out);
    assert!(!output.contains("hook-s3cret") && !output.contains("bot-s3cret"));
    assert_no_leak(&[&output]);
}

const SLACK_TOKEN: &str = "xoxb-1111-2222-sl4ckS3cret";

#[tokio::test]
async fn the_slack_app_uploads_the_exact_bytes_and_shares_them_into_the_dm() {
    let h = Harness::start().await;
    let slack = wiremock::MockServer::start().await;
    let body = zip_bytes(150_000);
    serve_file(&h, &body, Some("attachment; filename=\"licences.zip\"")).await;
    h.write_config(&format!(
        "[sinks.chat]\nkind = \"slack\"\nattach = true\nbot_token = \"{SLACK_TOKEN}\"\n\
         api_base = \"{}/api/\"\n[[routes]]\nsinks = [\"chat\"]\n",
        slack.uri()
    ));
    let upload_path = "/upload/v1/Zm9vYmFy-upload-s3cret";
    let answers = [
        (
            "users.lookupByEmail",
            json!({"ok": true, "user": {"id": "U0ANN"}}),
        ),
        (
            "conversations.open",
            json!({"ok": true, "channel": {"id": "D0ANNDM"}}),
        ),
        (
            "files.getUploadURLExternal",
            json!({"ok": true, "upload_url": format!("{}{upload_path}", slack.uri()), "file_id": "F0FILE"}),
        ),
        (
            "files.completeUploadExternal",
            json!({"ok": true, "files": [{"id": "F0FILE"}]}),
        ),
    ];
    for (name, answer) in answers {
        Mock::given(method("POST"))
            .and(path(format!("/api/{name}")))
            .and(header(
                "authorization",
                format!("Bearer {SLACK_TOKEN}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&slack)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(upload_path))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK - 150000"))
        .expect(1)
        .mount(&slack)
        .await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = slack.received_requests().await.unwrap();
    let at = |p: &str| received.iter().find(|r| r.url.path() == p).cloned();
    assert!(
        at("/api/chat.postMessage").is_none(),
        "the file message is the message"
    );
    let asked = at("/api/files.getUploadURLExternal").unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&asked.body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("filename".into(), "licences.zip".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("length".into(), body.len().to_string())),
        "{form:?}"
    );
    let upload = at(upload_path).unwrap();
    assert!(
        upload.body == body,
        "uploaded {} bytes, served {}",
        upload.body.len(),
        body.len()
    );
    assert!(
        upload.headers.get("authorization").is_none(),
        "the token went to the upload URL"
    );
    let complete: Value =
        serde_json::from_slice(&at("/api/files.completeUploadExternal").unwrap().body).unwrap();
    assert_eq!(
        complete["files"],
        json!([{"id": "F0FILE", "title": "licences.zip"}])
    );
    assert_eq!(complete["channel_id"], "D0ANNDM");
    let comment = complete["initial_comment"].as_str().unwrap();
    assert!(
        comment.starts_with("Export ready: New Commerce"),
        "{comment}"
    );
    assert_eq!(outbox(&h)[0].1, "sent");
    let output = text(&out);
    assert!(
        !output.contains(SLACK_TOKEN) && !output.contains("upload-s3cret"),
        "{output}"
    );
    assert_no_leak(&[&output]);
}

#[tokio::test]
async fn render_and_the_html_preview_show_the_file_that_would_be_attached() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    let out = h
        .bot(&["render", "--event", "downloadable", "--sink", "mail"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("The file is attached: ") && shown.contains(".zip (120.6 KiB)"),
        "{shown}"
    );
    let page = h.dir.path().join("preview.html");
    let out = h
        .bot(&["render", "--html-preview", page.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        html.contains("would attach") && html.contains("120.6 KiB"),
        "{html}"
    );
    // Nothing was downloaded to show it.
    assert!(h.crayon.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_demo_mails_carry_a_small_spreadsheet() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["demo", "--cycles", "3", "--interval", "200ms"])
        .current_dir(dir.path())
        .env_remove("BOT_CONFIG")
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut attached = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("demo-out")).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let mail = mailparse::parse_mail(&raw).unwrap();
        if mail.ctype.mimetype == "multipart/mixed" {
            let file = file_part(&mail);
            assert_eq!(file.ctype.mimetype, "text/csv");
            let csv = String::from_utf8(file.get_body_raw().unwrap()).unwrap();
            assert!(csv.starts_with("Subscription,Product,Quantity"), "{csv}");
            attached.push(file.get_content_disposition().params["filename"].clone());
        }
    }
    assert!(!attached.is_empty(), "{}", text(&out));
    assert!(
        attached.iter().all(|n| n.ends_with("-licences.csv")),
        "{attached:?}"
    );
}

#[tokio::test]
async fn files_left_in_the_spool_by_an_earlier_run_are_removed_never_attached() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&attach_config(&server, ""));
    let spool = h.dir.path().join("state.db.spool");
    std::fs::create_dir_all(&spool).unwrap();
    let stale = spool.join("New Commerce License-based Report #7.zip");
    std::fs::write(&stale, b"stale").unwrap();
    std::fs::write(spool.join(".part-dead"), b"half").unwrap();
    let body = zip_bytes(10_000);
    serve_file(&h, &body, None).await;

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = server.delivered();
    assert_eq!(
        file_part(&parse(&delivered[0])).get_body_raw().unwrap(),
        body
    );
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
}
