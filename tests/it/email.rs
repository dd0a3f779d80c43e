//! The email sink end to end: the real binary (`once`) sends through a real
//! SMTP server on loopback (`crate::smtp`): envelope, headers, both parts,
//! escaping, the recipient directory, injected RequestedBy values, 4xx/5xx
//! classification, and TLS (STARTTLS required, implicit TLS, `tls.ca_file`).

use std::process::Output;
use std::time::Duration;

use mailparse::{MailHeaderMap, ParsedMail};
use serde_json::Value;

use crate::helpers::{item, text, Harness};
use crate::smtp::{Received, Security, SmtpServer, TestCa};

pub(crate) const SMTP_USER: &str = "bot-mailer";
pub(crate) const SMTP_PASSWORD: &str = "smtp-Pa55-Zk4";

/// `[sinks.mail]` for `smtp`, routed alone, with `lines` in the sink and
/// `tables` after it.
pub(crate) fn mail_config(smtp: &str, lines: &str, tables: &str) -> String {
    format!(
        r#"
[sinks.mail]
kind = "email"
smtp = "{smtp}"
from = "Export Bot <exports@example.com>"
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
{lines}

[[routes]]
sinks = ["mail"]

{tables}
"#
    )
}

/// Plain SMTP to the loopback server (allowed because the host is loopback).
pub(crate) fn plain_config(server: &SmtpServer, tables: &str) -> String {
    let smtp = format!("smtp://127.0.0.1:{}", server.port);
    mail_config(&smtp, "tls = \"none\"", tables)
}

/// Records an empty queue as the baseline, then lists `items`, then polls
/// and delivers once.
pub(crate) async fn baseline_then(h: &Harness, items: Vec<Value>) -> Output {
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(items);
    h.bot(&["once"]).await
}

pub(crate) fn ready(id: i64) -> Value {
    item(id, 2, true)
}

pub(crate) fn requested_by(mut item: Value, who: &str) -> Value {
    item["RequestedBy"] = Value::from(who);
    item
}

/// (item, status, recipient, last_error) of every outbox row.
pub(crate) fn outbox(h: &Harness) -> Vec<(i64, String, Option<String>, Option<String>)> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let mut stmt = db
        .prepare("SELECT item_id, status, recipient, last_error FROM outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub(crate) fn parse(received: &Received) -> ParsedMail<'_> {
    mailparse::parse_mail(received.data.as_bytes()).unwrap()
}

pub(crate) fn header(mail: &ParsedMail<'_>, name: &str) -> String {
    mail.headers.get_first_value(name).unwrap_or_default()
}

#[tokio::test]
async fn a_ready_export_is_mailed_to_its_requester_with_text_and_escaped_html() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let mut export = ready(7);
    export["ActionName"] = Value::from("<script>alert(1)</script> Q&A licences");

    let out = baseline_then(&h, vec![export]).await;
    assert!(out.status.success(), "{}", text(&out));

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    let sent = &delivered[0];
    assert_eq!(sent.rcpt_to, ["ann@example.com"]);
    assert_eq!(sent.mail_from, "exports@example.com");
    assert_eq!(sent.auth_user.as_deref(), Some(SMTP_USER));
    let mail = parse(sent);
    assert_eq!(
        header(&mail, "Subject"),
        "Your export is ready: <script>alert(1)</script> Q&A licences"
    );
    assert_eq!(header(&mail, "To"), "ann@example.com");
    assert_eq!(header(&mail, "Auto-Submitted"), "auto-generated");
    assert!(!header(&mail, "Date").is_empty());
    let message_id = header(&mail, "Message-ID");
    assert!(
        message_id.starts_with("<delivery-")
            && message_id.ends_with(".item-7.downloadable@example.com>"),
        "{message_id}"
    );
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let parts: Vec<(String, String)> = mail
        .subparts
        .iter()
        .map(|p| (p.ctype.mimetype.clone(), p.get_body().unwrap()))
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, "text/plain");
    assert!(
        parts[0]
            .1
            .contains("<script>alert(1)</script> Q&A licences"),
        "{}",
        parts[0].1
    );
    assert_eq!(parts[1].0, "text/html");
    let html = &parts[1].1;
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(html.contains("Q&amp;A licences"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("href=\"https://cloudiq.crayon.com/\""),
        "{html}"
    );
    assert!(!text(&out).contains(SMTP_PASSWORD), "{}", text(&out));
    assert_eq!(outbox(&h)[0].1, "sent");
}

#[tokio::test]
async fn a_redirected_requester_gets_the_mail_at_the_directory_address() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let directory = "[recipients.\"Ann@Example.com\"]\nemail = \"ann.alt@example.org\"\n";
    h.write_config(&plain_config(&server, directory));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    assert_eq!(delivered[0].rcpt_to, ["ann.alt@example.org"]);
    assert_eq!(header(&parse(&delivered[0]), "To"), "ann.alt@example.org");
}

#[tokio::test]
async fn an_injected_requested_by_is_skipped_with_the_reason_and_others_proceed() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let hostile = requested_by(ready(7), "ann@example.com\r\nBcc: x@evil.test");
    let several = requested_by(ready(8), "ann@example.com, x@evil.test");

    let out = baseline_then(&h, vec![hostile, several, ready(9)]).await;
    assert!(
        out.status.success(),
        "skipped is not a failure: {}",
        text(&out)
    );

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    assert_eq!(delivered[0].rcpt_to, ["ann@example.com"]);
    assert!(header(&parse(&delivered[0]), "Message-ID").contains(".item-9."));
    for command in server.commands() {
        assert!(!command.line.contains("evil.test"), "{command:?}");
    }
    let rows = outbox(&h);
    let row = |id: i64| rows.iter().find(|r| r.0 == id).unwrap().clone();
    let (_, status, recipient, reason) = row(7);
    assert_eq!((status.as_str(), recipient), ("skipped", None));
    let reason = reason.unwrap();
    assert!(
        reason.contains("not one email address") && reason.contains("line break"),
        "{reason}"
    );
    let (_, status, _, reason) = row(8);
    assert_eq!(status, "skipped");
    assert!(reason.unwrap().contains("more than one address"));
    assert_eq!(row(9).1, "sent");
}

#[tokio::test]
async fn fixed_recipients_get_the_mail_even_when_the_requester_is_skipped() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let smtp = format!("smtp://127.0.0.1:{}", server.port);
    let lines = "tls = \"none\"\ncc = [\"Ops <ops@example.com>\"]\nbcc = [\"archive@example.com\"]";
    h.write_config(&mail_config(&smtp, lines, ""));
    let hostile = requested_by(ready(7), "ann@example.com\r\nBcc: x@evil.test");

    let out = baseline_then(&h, vec![hostile]).await;
    assert!(out.status.success(), "{}", text(&out));

    // One message per recipient (each its own delivery), none to the requester.
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 2, "{}", text(&out));
    let mut rcpts: Vec<&[String]> = delivered.iter().map(|d| d.rcpt_to.as_slice()).collect();
    rcpts.sort();
    assert_eq!(rcpts, [["archive@example.com"], ["ops@example.com"]]);
    for sent in &delivered {
        let mail = parse(sent);
        assert!(header(&mail, "Cc").contains("ops@example.com"));
        assert!(
            mail.headers.get_first_value("Bcc").is_none(),
            "Bcc stays hidden"
        );
        let head = sent.data.split("\r\n\r\n").next().unwrap();
        assert!(!head.contains("evil.test"), "no header names it: {head}");
        assert!(
            !head.contains("archive@"),
            "no header names the bcc: {head}"
        );
    }
    assert!(
        text(&out).contains("fixed recipients only"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_451_is_retried_later_with_the_same_message_id() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    server.answer_data_with(&["451 4.3.0 mailbox busy, try again later"]);
    h.write_config(&plain_config(&server, ""));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "retrying is not success: {}",
        text(&out)
    );
    let (_, status, _, reason) = outbox(&h)[0].clone();
    assert_eq!(status, "pending");
    let reason = reason.unwrap();
    assert!(
        reason.contains("deferred") && reason.contains("SMTP 451 4.3.0"),
        "{reason}"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outbox(&h)[0].1, "sent");
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0].answer.starts_with("451") && attempts[1].answer.starts_with("250"));
    let ids: Vec<String> = attempts
        .iter()
        .map(|a| header(&parse(a), "Message-ID"))
        .collect();
    assert_eq!(ids[0], ids[1], "same delivery, same Message-ID");
}

#[tokio::test]
async fn a_550_goes_dead_with_the_servers_reason() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    server.answer_data_with(&["550 5.7.1 message rejected by policy"]);
    h.write_config(&plain_config(&server, ""));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, status, _, reason) = outbox(&h)[0].clone();
    assert_eq!(status, "dead");
    let reason = reason.unwrap();
    assert!(
        reason.contains("refused") && reason.contains("SMTP 550 5.7.1 message rejected by policy"),
        "{reason}"
    );
    assert!(!reason.contains(SMTP_PASSWORD));

    tokio::time::sleep(Duration::from_millis(400)).await;
    h.bot(&["once"]).await;
    assert_eq!(server.attempts().len(), 1, "a dead delivery is not retried");
}

#[tokio::test]
async fn smtp_requires_starttls_and_sends_nothing_in_clear_without_it() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let smtp = format!("smtp://127.0.0.1:{}", server.port);
    h.write_config(&mail_config(&smtp, "", ""));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(server.attempts().is_empty());
    let verbs: Vec<String> = server
        .commands()
        .iter()
        .map(|c| {
            c.line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase()
        })
        .collect();
    assert!(verbs.contains(&"EHLO".to_string()), "{verbs:?}");
    for verb in ["AUTH", "MAIL", "RCPT", "DATA"] {
        assert!(
            !verbs.contains(&verb.to_string()),
            "{verb} sent in clear: {verbs:?}"
        );
    }
    let (_, status, _, reason) = outbox(&h)[0].clone();
    assert_eq!(status, "pending");
    let reason = reason.unwrap();
    assert!(
        reason.contains("does not offer STARTTLS") && reason.contains("nothing was sent in clear"),
        "{reason}"
    );
}

/// Writes the test CA's certificate next to `bot.toml` for `tls.ca_file`.
fn trust(h: &Harness, ca: &TestCa) -> &'static str {
    std::fs::write(h.dir.path().join("test-ca.pem"), &ca.ca_pem).unwrap();
    "[tls]\nca_file = \"test-ca.pem\"\n"
}

fn assert_delivered_over_tls(server: &SmtpServer, out: &Output) {
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(out));
    assert!(delivered[0].tls);
    assert_eq!(delivered[0].auth_user.as_deref(), Some(SMTP_USER));
    for command in server.commands() {
        let verb = command
            .line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_uppercase();
        if ["AUTH", "MAIL", "RCPT", "DATA"].contains(&verb.as_str()) {
            assert!(command.tls, "{verb} in clear");
        }
    }
}

#[tokio::test]
async fn starttls_delivers_with_a_certificate_trusted_through_the_ca_file() {
    let h = Harness::start().await;
    let ca = TestCa::new();
    let server = SmtpServer::start(Security::StartTls(ca.server.clone())).await;
    let smtp = format!("smtp://localhost:{}", server.port);
    h.write_config(&mail_config(&smtp, "", trust(&h, &ca)));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_delivered_over_tls(&server, &out);
    assert!(server
        .commands()
        .iter()
        .any(|c| c.line == "STARTTLS" && !c.tls));
}

#[tokio::test]
async fn implicit_tls_delivers_with_a_certificate_trusted_through_the_ca_file() {
    let h = Harness::start().await;
    let ca = TestCa::new();
    let server = SmtpServer::start(Security::Implicit(ca.server.clone())).await;
    let smtp = format!("smtps://127.0.0.1:{}", server.port);
    h.write_config(&mail_config(&smtp, "", trust(&h, &ca)));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_delivered_over_tls(&server, &out);
    assert!(server.commands().iter().all(|c| c.tls));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_anything_is_sent() {
    let h = Harness::start().await;
    let ca = TestCa::new();
    let server = SmtpServer::start(Security::StartTls(ca.server.clone())).await;
    let smtp = format!("smtp://localhost:{}", server.port);
    h.write_config(&mail_config(&smtp, "", ""));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(server.attempts().is_empty());
    assert!(
        server.commands().iter().all(|c| !c.tls),
        "no command after a failed handshake"
    );
    let (_, status, _, reason) = outbox(&h)[0].clone();
    assert_eq!(status, "pending");
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("TLS with the SMTP server failed") && reason.contains("certificate"),
        "{reason}"
    );
}

#[tokio::test]
async fn check_online_opens_an_smtp_session_and_sends_nothing() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let out = h.bot(&["check", "--online"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: sink mail (email): SMTP session opened"),
        "{}",
        text(&out)
    );
    assert!(server.attempts().is_empty(), "nothing was sent");
    assert!(!text(&out).contains(SMTP_PASSWORD), "{}", text(&out));
}

#[tokio::test]
async fn send_test_mails_only_the_given_address() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let out = h.bot(&["send-test", "--sink", "mail"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no --to, no fixed recipients: {}",
        text(&out)
    );
    assert!(text(&out).contains("--to"), "{}", text(&out));
    assert!(server.attempts().is_empty());

    let out = h
        .bot(&["send-test", "--sink", "mail", "--to", "ops@example.com"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let mails = server.delivered();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, ["ops@example.com"]);
    assert!(header(&parse(&mails[0]), "Subject").contains("[TEST]"));
}
