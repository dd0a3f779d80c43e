//! No secret leaks, end to end: the real binary at `RUST_LOG=trace` (and
//! with every noisy dependency asked for by name) runs a full scenario in
//! which every sink fails the way leaks hide — servers that echo the request
//! (URL, headers) in their error bodies, a Discord API that echoes its token,
//! an SMTP server that refuses AUTH quoting the password, unreachable hosts,
//! a token endpoint that refuses the credentials — and then `check`,
//! `render`, `send-test`, `outbox list` and `why`. Every byte printed, and
//! every byte of the state file, is searched for every configured secret.

use std::process::Output;
use std::time::Duration;

use base64::Engine;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{item, text, Harness, CLIENT_SECRET, HOOK_PATH, PASSWORD, TOKEN};
use crate::smtp::{Security, SmtpServer};

// Real tokens are long; a leak may be partial (a cut error text), so the
// search below also looks for every 8-character piece of these.
const SLACK_TOKEN: &str = "Sl4ckT0kenQ8wXz2Vb7Nm3Kp";
const TEAMS_SIG: &str = "Te4msS1gR9yU2iO5pA8sD1fG";
const DISCORD_HOOK_TOKEN: &str = "D1scH00kTk_9LmNbVcXz7Qw-Er4";
const DISCORD_BOT_TOKEN: &str = "MTIzNDU2Nzg5.Bot7Tk.zYxWvUtS9rQp";
const HOOK_BEARER: &str = "H00kBearer5Jk8Lh2Gf6Ds";
const SMTP_PASSWORD: &str = "smtpPa55W0rdQz7Xc9Vb";
const GONE_PATH_TOKEN: &str = "G0nePathTk3Mn6Bv9Cx";
const GONE_HEADER: &str = "G0neHdrVal4Zx7Cv1Bn";
const SMTP_GONE_PASSWORD: &str = "smtpG0neW0rd8Hj5Kl2";

/// Every 8-character piece of the long test secrets.
fn pieces() -> Vec<String> {
    let long = [
        SLACK_TOKEN,
        TEAMS_SIG,
        DISCORD_HOOK_TOKEN,
        DISCORD_BOT_TOKEN,
        HOOK_BEARER,
        SMTP_PASSWORD,
        GONE_PATH_TOKEN,
        GONE_HEADER,
        SMTP_GONE_PASSWORD,
    ];
    long.iter()
        .flat_map(|s| {
            let chars: Vec<char> = s.chars().collect();
            chars
                .windows(8)
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every configured secret, and the encodings a leak could take (form and
/// percent encoding, HTTP Basic, SMTP AUTH PLAIN).
fn secrets() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut all: Vec<String> = [
        CLIENT_SECRET,
        PASSWORD,
        TOKEN,
        "T0SECRET",
        "B0SECRET",
        "xyzzy",
        SLACK_TOKEN,
        TEAMS_SIG,
        DISCORD_HOOK_TOKEN,
        DISCORD_BOT_TOKEN,
        HOOK_BEARER,
        SMTP_PASSWORD,
        GONE_PATH_TOKEN,
        GONE_HEADER,
        SMTP_GONE_PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.push(url::form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect());
    all.push(b64(&format!("bot-client:{CLIENT_SECRET}")));
    all.push(b64(&format!("\0mailer\0{SMTP_PASSWORD}")));
    all.push(b64(&format!("\0mailer\0{SMTP_GONE_PASSWORD}")));
    all.extend(pieces());
    all
}

/// Answers `status` with a body quoting the whole request line and every
/// header: the worst an upstream can do with what it was sent.
struct Echo(u16);

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let headers: Vec<String> = request
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
            .collect();
        let echo = format!("{} {} {}", request.method, request.url, headers.join("; "));
        ResponseTemplate::new(self.0)
            .set_body_json(json!({"message": echo, "code": 0, "error": echo}))
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The audit webhook (from the harness) plus one sink of every kind, all
/// pointing at fakes that fail.
fn config(echo: &MockServer, smtp: &SmtpServer) -> String {
    let echo = echo.uri();
    let gone = closed_port();
    let smtp_port = smtp.port;
    format!(
        r#"headers = {{ Authorization = "Bearer {HOOK_BEARER}" }}

[sinks.slack]
kind = "slack"
url = "{echo}/services/T0SLACK/B0SLACK/{SLACK_TOKEN}"

[sinks.teams]
kind = "teams"
url = "{echo}/workflows/wf1/triggers/manual/run?sig={TEAMS_SIG}"

[sinks.dhook]
kind = "discord"
webhook_url = "https://discord.com/api/webhooks/42/{DISCORD_HOOK_TOKEN}"
api_base = "{echo}"

[sinks.dbot]
kind = "discord"
bot_token = "{DISCORD_BOT_TOKEN}"
api_base = "{echo}"

[sinks.mail]
kind = "email"
smtp = "smtp://127.0.0.1:{smtp_port}"
tls = "none"
username = "mailer"
password = "{SMTP_PASSWORD}"
from = "Export Bot <exports@example.com>"

[sinks.gone]
kind = "webhook"
url = "http://127.0.0.1:{gone}/hooks/{GONE_PATH_TOKEN}"
headers = {{ X-Api-Key = "{GONE_HEADER}" }}

[sinks.mailgone]
kind = "email"
smtp = "smtp://127.0.0.1:{gone}"
tls = "none"
username = "mailer"
password = "{SMTP_GONE_PASSWORD}"
from = "Export Bot <exports@example.com>"

[recipients."ann@example.com"]
discord_user_id = "123456789012345678"
"#
    )
}

/// Collects the output of every command for the final search.
struct Transcript {
    outputs: Vec<(String, Output)>,
}

impl Transcript {
    /// Runs the bot with `args` at the given log filter and keeps its output.
    async fn run(&mut self, h: &Harness, log: &str, args: &[&str], env: &[(&str, &str)]) {
        let mut cmd = h.command(args);
        cmd.env("RUST_LOG", log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = cmd.output().await.unwrap();
        self.outputs.push((format!("{args:?} at {log}"), output));
    }

    fn last(&self) -> &Output {
        &self.outputs.last().unwrap().1
    }
}

const TRACE: &str = "trace";
/// Asking for the dependencies by name must not switch their logs back on.
const TRACE_BY_NAME: &str = "trace,serenity=trace,reqwest=trace,hyper=trace,hyper_util=trace,\
    rustls=trace,lettre=trace,h2=trace,tower=trace,crayon_export_bot=trace,\
    serenity::http=trace,serenity::http::client=trace,reqwest::connect=trace";

#[tokio::test]
async fn no_secret_reaches_logs_outputs_or_the_state_file_even_at_trace() {
    let h = Harness::start().await;
    let echo = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Echo(500))
        .mount(&echo)
        .await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(Echo(401))
        .mount(&h.hook)
        .await;
    let smtp = SmtpServer::start(Security::Plain).await;
    smtp.refuse_auth_with("535 5.7.8 authentication failed for password {password}");
    h.write_config(&config(&echo, &smtp));
    let mut t = Transcript {
        outputs: Vec::new(),
    };

    // Baseline, then an item that is ready and one that failed: every sink
    // gets deliveries, every one of them fails; retried across three runs.
    t.run(&h, TRACE, &["once"], &[]).await;
    assert!(t.last().status.success(), "{}", text(t.last()));
    h.queue.set_items(vec![item(7, 2, true), item(8, 8, false)]);
    for log in [TRACE, TRACE_BY_NAME, TRACE] {
        t.run(&h, log, &["once"], &[]).await;
        assert_eq!(t.last().status.code(), Some(1), "{}", text(t.last()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    t.run(&h, TRACE, &["--log-format", "json", "once"], &[])
        .await;

    // The read-only commands and the test sends.
    let preview = h.dir.path().join("preview.html");
    let preview_arg = preview.to_str().unwrap();
    for args in [
        &["check"][..],
        &["check", "--online"],
        &["outbox", "list"],
        &["why", "7"],
        &["render", "--html-preview", preview_arg],
    ] {
        t.run(&h, TRACE_BY_NAME, args, &[]).await;
    }
    for sink in ["audit", "slack", "teams", "dhook", "gone"] {
        t.run(
            &h,
            TRACE,
            &["render", "--event", "downloadable", "--sink", sink],
            &[],
        )
        .await;
        t.run(&h, TRACE_BY_NAME, &["send-test", "--sink", sink], &[])
            .await;
    }
    t.run(
        &h,
        TRACE,
        &["send-test", "--sink", "mail", "--to", "ops@example.com"],
        &[],
    )
    .await;
    t.run(
        &h,
        TRACE,
        &["send-test", "--sink", "dbot", "--to", "123456789012345678"],
        &[],
    )
    .await;

    // The Crayon side failing: a token endpoint that refuses and echoes, a
    // queue that fails and echoes the bearer token, then no server at all.
    h.crayon.reset().await;
    Mock::given(method("POST"))
        .respond_with(Echo(401))
        .mount(&h.crayon)
        .await;
    t.run(&h, TRACE_BY_NAME, &["once"], &[]).await;
    t.run(&h, TRACE, &["check", "--online"], &[]).await;
    h.crayon.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"AccessToken": TOKEN, "ExpiresIn": 3600})),
        )
        .mount(&h.crayon)
        .await;
    Mock::given(method("GET"))
        .respond_with(Echo(500))
        .mount(&h.crayon)
        .await;
    t.run(&h, TRACE_BY_NAME, &["once"], &[]).await;
    let nowhere = format!("http://127.0.0.1:{}/", closed_port());
    t.run(&h, TRACE, &["once"], &[("BOT__CRAYON__BASE_URL", &nowhere)])
        .await;

    let mut searched = String::new();
    for (what, output) in &t.outputs {
        searched.push_str(&format!("=== {what}\n{}\n", text(output)));
    }
    let page = std::fs::read_to_string(&preview).unwrap();
    assert!(page.contains("<html"), "no preview page written");
    searched.push_str(&page);
    let mut state = Vec::new();
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", h.state().display());
        state.extend(std::fs::read(file).unwrap_or_default());
    }
    let state = String::from_utf8_lossy(&state);
    if let Ok(dump) = std::env::var("SECRETS_TEST_DUMP") {
        std::fs::write(dump, &searched).unwrap();
    }
    for secret in secrets() {
        if let Some(at) = searched.find(&secret) {
            let from = searched[..at].rfind("===").unwrap_or(0);
            let context = &searched[at.saturating_sub(300)..(at + 100).min(searched.len())];
            panic!(
                "{secret:?} leaked in {}\n…{context}…",
                &searched[from..from + 80.min(searched.len() - from)]
            );
        }
        assert!(!state.contains(&secret), "{secret:?} is in the state file");
    }

    // The scenario did what it claims: everything failed, with reasons.
    assert!(
        searched.contains("trace") || searched.contains("TRACE"),
        "no trace logs at all"
    );
    assert!(
        smtp.commands().iter().any(|c| c.line.starts_with("AUTH")),
        "no SMTP AUTH tried"
    );
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let errors: Vec<(String, String)> = db
        .prepare("SELECT sink, last_error FROM outbox WHERE last_error IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for sink in [
        "audit", "slack", "teams", "dhook", "dbot", "mail", "gone", "mailgone",
    ] {
        assert!(
            errors.iter().any(|(s, _)| s == sink),
            "no failure recorded for {sink}: {errors:?}"
        );
    }
    for (sink, error) in &errors {
        assert!(!error.is_empty(), "{sink}");
    }
    let refused = errors.iter().find(|(s, _)| s == "mail").unwrap();
    assert!(
        refused.1.contains("535") || refused.1.contains("authentication"),
        "{refused:?}"
    );
}
