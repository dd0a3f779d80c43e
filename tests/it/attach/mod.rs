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

mod chat;
mod raw;

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

#[tokio::test]
async fn the_same_id_in_two_accounts_gets_each_accounts_own_file() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let other = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"AccessToken": "other-token", "ExpiresIn": 3600})),
        )
        .mount(&other)
        .await;
    let mut theirs = ready(7);
    theirs["ActionName"] = json!("Contoso licences");
    let their_queue = crate::helpers::Queue::empty();
    Mock::given(method("GET"))
        .and(path("/api/v1/exports/"))
        .respond_with(their_queue.clone())
        .mount(&other)
        .await;
    let (ours_body, theirs_body) = (zip_bytes(9000), zip_bytes(12_000));
    serve_file(&h, &ours_body, Some("attachment; filename=\"report.zip\"")).await;
    Mock::given(method("GET"))
        .and(path(DOWNLOAD_7))
        .and(header("Authorization", "Bearer other-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Disposition", "attachment; filename=\"report.zip\"")
                .set_body_bytes(theirs_body.clone()),
        )
        .mount(&other)
        .await;
    let contoso = format!(
        "[accounts.contoso]\nbase_url = \"{}\"\nusername = \"bot@contoso.example\"\n",
        other.uri()
    );
    h.write_config(&format!("{}\n{contoso}", attach_config(&server, "")));
    h.queue.set_items(vec![]);
    let first = h.bot(&["once"]).await;
    assert!(first.status.success(), "{}", text(&first));
    h.queue.set_items(vec![ready(7)]);
    their_queue.set_items(vec![theirs]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 2, "{}", text(&out));
    for sent in &delivered {
        let mail = parse(sent);
        let subject = mail.headers.get_first_value("Subject").unwrap_or_default();
        let expected = if subject.contains("Contoso") {
            &theirs_body
        } else {
            &ours_body
        };
        assert!(
            file_part(&mail).get_body_raw().unwrap() == *expected,
            "{subject}"
        );
    }
    assert!(spool_files(&h).is_empty(), "{:?}", spool_files(&h));
}
