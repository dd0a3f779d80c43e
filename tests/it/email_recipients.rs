//! Issue 14 (a mail admin's findings), on the real wire: the real binary
//! (`once`) against the SMTP server of `crate::smtp`. Each recipient is its
//! own delivery (a refused or deferred address holds back nobody else and
//! nobody is mailed twice), the EHLO name is fully qualified, IDN domains go
//! out as A-labels, a refused login is retried, the auto-reply guards and
//! `Reply-To`, the template wording, and QUIT at the end of `once`.

use std::time::Duration;

use mailparse::MailHeaderMap;
use serde_json::Value;

use crate::email::{
    baseline_then, header, mail_config, outbox, parse, plain_config, ready, requested_by,
};
use crate::helpers::{item, text, Harness};
use crate::smtp::{Security, SmtpServer};

/// Plain SMTP to the loopback server with `lines` added to `[sinks.mail]`.
fn plain_with(server: &SmtpServer, lines: &str) -> String {
    let smtp = format!("smtp://127.0.0.1:{}", server.port);
    mail_config(&smtp, &format!("tls = \"none\"\n{lines}"), "")
}

const FIXED: &str = "cc = [\"Ops <ops@example.com>\"]\nbcc = [\"archive@example.com\"]";

/// `outbox list --json` rows of the mail sink: (recipient, status, error).
async fn mail_rows(h: &Harness) -> Vec<(String, String, String)> {
    let out = h.bot(&["outbox", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| r["sink"] == "mail")
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (field("recipient"), field("status"), field("last_error"))
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_refused_cc_loses_the_message_for_nobody_else() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    server.answer_rcpt_with(
        "ops@example.com",
        &["550 5.1.1 <ops@example.com>: no such user"],
    );
    h.write_config(&plain_with(&server, FIXED));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "one dead: {}", text(&out));

    let mut got: Vec<Vec<String>> = server
        .delivered()
        .iter()
        .map(|d| d.rcpt_to.clone())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [["ann@example.com"], ["archive@example.com"]],
        "{}",
        text(&out)
    );
    for sent in server.delivered() {
        let mail = parse(&sent);
        assert_eq!(header(&mail, "To"), "ann@example.com");
        assert_eq!(header(&mail, "Cc"), "Ops <ops@example.com>");
        assert!(mail.headers.get_first_value("Bcc").is_none());
        let head = sent.data.split("\r\n\r\n").next().unwrap();
        assert!(!head.contains("archive@"), "Bcc stays hidden: {head}");
    }
    let rows = mail_rows(&h).await;
    let summary: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("bcc:archive@example.com", "sent"),
            ("cc:ops@example.com", "dead"),
            ("to:ann@example.com", "sent")
        ]
    );
    assert!(rows[1].2.contains("SMTP 550 5.1.1"), "{}", rows[1].2);
}

#[tokio::test]
async fn a_deferred_recipient_is_retried_alone_and_nobody_gets_it_twice() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    server.answer_rcpt_with("ops@example.com", &["451 4.2.1 mailbox busy"]);
    h.write_config(&plain_with(&server, FIXED));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "retrying: {}", text(&out));
    assert_eq!(server.delivered().len(), 2, "ann and archive at once");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));

    let mut got: Vec<String> = server
        .delivered()
        .iter()
        .map(|d| d.rcpt_to.join(","))
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["ann@example.com", "archive@example.com", "ops@example.com"]
    );
    let rcpts_to_ann = server
        .rcpts()
        .iter()
        .filter(|r| r.0 == "ann@example.com")
        .count();
    assert_eq!(rcpts_to_ann, 1, "the requester is not mailed again");
    let out = h.bot(&["why", "7"]).await;
    let why = String::from_utf8_lossy(&out.stdout);
    assert!(
        why.contains("(downloadable) for cc:ops@example.com: sent, 2 attempts"),
        "{why}"
    );
    assert!(
        why.contains("for to:ann@example.com: sent, 1 attempt\n"),
        "{why}"
    );
}

/// The machine's name as `gethostname` gives it (what lettre used to send).
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn ehlo_sends_a_fully_qualified_name() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    let machine = machine_name();
    let expected = if machine.contains('.') {
        machine.to_lowercase()
    } else {
        "example.com".into()
    };
    assert_eq!(
        server.ehlo_names(),
        [expected],
        "FQDN, else the From domain"
    );

    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_with(
        &server,
        "helo_name = \"Bot-1.Mail.Example.net\"",
    ));
    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.ehlo_names(), ["bot-1.mail.example.net"]);
}

#[tokio::test]
async fn an_idn_domain_goes_out_as_its_a_label_and_a_utf8_local_part_is_named() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_config(&server, ""));
    let idn = requested_by(ready(7), "user@bücher.example");
    let local = requested_by(ready(8), "jürgen@bücher.example");

    let out = baseline_then(&h, vec![idn, local]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1, "{}", text(&out));
    assert_eq!(delivered[0].rcpt_to, ["user@xn--bcher-kva.example"]);
    assert_eq!(
        header(&parse(&delivered[0]), "To"),
        "user@xn--bcher-kva.example"
    );
    let rows = outbox(&h);
    let (_, status, _, reason) = rows.iter().find(|r| r.0 == 8).unwrap().clone();
    assert_eq!(
        status, "dead",
        "the server will not learn SMTPUTF8 by retrying"
    );
    let reason = reason.unwrap();
    assert!(
        reason.contains("does not offer SMTPUTF8")
            && reason.contains("jürgen@xn--bcher-kva.example"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_refused_login_is_retried_until_the_password_works() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    server.refuse_auth_with("535 5.7.8 authentication credentials invalid");
    h.write_config(&plain_config(&server, ""));

    let out = baseline_then(&h, vec![ready(7)]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (_, status, _, reason) = outbox(&h)[0].clone();
    assert_eq!(status, "pending", "a password rotation loses no mail");
    let reason = reason.unwrap();
    assert!(
        reason.contains("refused the login") && reason.contains("SMTP 535 5.7.8"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.bot(&["once"]).await;
    assert_eq!(outbox(&h)[0].1, "pending", "still retrying after 2 of 3");

    server.accept_auth();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outbox(&h)[0].1, "sent");
    assert_eq!(server.delivered().len(), 1);
}

#[tokio::test]
async fn headers_keep_auto_replies_away_and_reply_to_is_set_only_when_configured() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let smtp = format!("smtp://127.0.0.1:{}", server.port);
    let second = format!(
        "[sinks.plain]\nkind = \"email\"\nsmtp = \"{smtp}\"\ntls = \"none\"\nfrom = \"bot@example.com\"\n\n[[routes]]\nsinks = [\"plain\"]\n"
    );
    let config = mail_config(
        &smtp,
        "tls = \"none\"\nreply_to = \"Exports desk <exports-desk@example.com>\"",
        &second,
    );
    h.write_config(&config);
    let mut failed = item(7, 8, false);
    failed["Attempts"] = Value::from(1);

    let out = baseline_then(&h, vec![failed]).await;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = server.delivered();
    assert_eq!(delivered.len(), 2, "{}", text(&out));
    let by_from = |from: &str| delivered.iter().find(|d| d.mail_from == from).unwrap();
    let with = parse(by_from("exports@example.com"));
    assert_eq!(
        header(&with, "Reply-To"),
        "\"Exports desk\" <exports-desk@example.com>"
    );
    let without = parse(by_from("bot@example.com"));
    assert!(without.headers.get_first_value("Reply-To").is_none());
    for mail in [&with, &without] {
        assert_eq!(header(mail, "Auto-Submitted"), "auto-generated");
        assert_eq!(header(mail, "X-Auto-Response-Suppress"), "All");
        let plain = mail.subparts[0].get_body().unwrap();
        let html = mail.subparts[1].get_body().unwrap();
        assert!(plain.contains("failed after 1 attempt."), "{plain}");
        assert!(html.contains("after 1 attempt."), "{html}");
        for part in [&plain, &html] {
            assert!(
                !part.contains("attempt(s)") && !part.contains("not read"),
                "{part}"
            );
        }
        assert!(
            html.contains("@media only screen and (max-width: 480px)"),
            "{html}"
        );
        assert!(html.contains("<td class=\"label\""), "{html}");
    }
}

#[tokio::test]
async fn once_ends_each_smtp_session_with_quit() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    h.write_config(&plain_with(&server, FIXED));
    let out = baseline_then(&h, vec![ready(7)]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.delivered().len(), 3);
    let ended = crate::helpers::wait_until(Duration::from_secs(5), || async {
        !server.sessions().is_empty()
    })
    .await;
    assert!(ended, "the sessions ended with the process");
    let sessions = server.sessions();
    assert!(!sessions.is_empty());
    assert!(
        sessions.iter().all(|quit| *quit),
        "QUIT before close: {sessions:?}"
    );

    // Without an awaited QUIT the session ends in a detached task that
    // loses the race with the process exit only now and then: try often.
    for round in 1..=8 {
        let before = server.sessions().len();
        let out = h
            .bot(&["send-test", "--sink", "mail", "--to", "ann@example.com"])
            .await;
        assert!(out.status.success(), "{}", text(&out));
        crate::helpers::wait_until(Duration::from_secs(5), || async {
            server.sessions().len() > before
        })
        .await;
        let sessions = server.sessions();
        assert!(
            sessions.len() > before,
            "send-test's session ended: {sessions:?}"
        );
        assert!(
            sessions.iter().all(|quit| *quit),
            "send-test round {round}: {sessions:?}"
        );
    }
}
