//! What people read in chat messages, through the real binary: names with
//! escapes, graphemes, formatting and hostile characters reach Slack, Teams
//! and Discord fakes (wiremock) cut where they may be cut and cleaned of what
//! would mislead; the console and the HTML preview show the same text.

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, text, Harness};

const SLACK: &str = "/services/T0/B0/slack-s3cret";
const TEAMS: &str = "/workflows/teams-s3cret/run";
const DISCORD: &str = "/api/v10/webhooks/42/discord-s3cret";
/// A cluster of three characters (woman, zero-width joiner, laptop).
const CODER: &str = "👩\u{200D}💻";

/// A bot routing every event to one Slack, one Teams and one Discord sink on
/// one fake (each on its own path), plus the console.
async fn chat_bot() -> (Harness, MockServer) {
    let h = Harness::start().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let uri = server.uri();
    h.write_config(&format!(
        "[sinks.slack]\nkind = \"slack\"\nurl = \"{uri}{SLACK}\"\n\
         [sinks.teams]\nkind = \"teams\"\nurl = \"{uri}{TEAMS}\"\n\
         [sinks.discord]\nkind = \"discord\"\n\
         webhook_url = \"https://discord.com/api/webhooks/42/discord-s3cret\"\napi_base = \"{uri}\"\n\
         [sinks.stdout]\nkind = \"console\"\n\
         [[routes]]\nsinks = [\"slack\", \"teams\", \"discord\", \"stdout\"]\n"
    ));
    (h, server)
}

/// Baselines the items queued, turns them downloadable (status `status`) and
/// runs one poll; returns its stdout (the console sink's output).
async fn deliver(h: &Harness, names: &[(i64, &str)], status: i64) -> String {
    let items = |status, ready| {
        names
            .iter()
            .map(|(id, name)| {
                let mut it = item(*id, status, ready);
                it["ActionName"] = Value::from(*name);
                it
            })
            .collect::<Vec<_>>()
    };
    h.queue.set_items(items(1, false));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(items(status, true));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The payloads posted to `at`, by export id (read from the message itself).
async fn payloads(server: &MockServer, at: &str) -> Vec<(i64, Value)> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == at)
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (export_id(&body), body)
        })
        .collect()
}

/// The export id a payload names ("Export #7" in Slack's context, "#7" in
/// the Teams facts and Discord fields).
fn export_id(body: &Value) -> i64 {
    let all = body.to_string();
    let at = all.find("#").expect("names its export") + 1;
    all[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(-1)
}

fn of(list: &[(i64, Value)], id: i64) -> &Value {
    &list.iter().find(|(i, _)| *i == id).expect("delivered").1
}

/// Every string in a payload.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn texts(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    strings(value, &mut out);
    out
}

/// A Slack text is never cut inside `&amp;`, `&lt;` or `&gt;`.
fn assert_whole_entities(text: &str, what: &str) {
    for (at, _) in text.match_indices('&') {
        let rest = &text[at..];
        assert!(
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "{what}: cut inside an escape: {text:?}"
        );
    }
}

/// A cluster is kept whole or not at all.
fn assert_whole_clusters(text: &str, what: &str) {
    assert_eq!(
        text.matches('👩').count(),
        text.matches(CODER).count(),
        "{what}: a grapheme was split: {text:?}"
    );
}

/// What one poll delivered: each platform's payloads by export id, and the
/// console's output.
struct Delivered {
    slack: Vec<(i64, Value)>,
    teams: Vec<(i64, Value)>,
    discord: Vec<(i64, Value)>,
    stdout: String,
}

impl Delivered {
    fn platforms(&self) -> [(&'static str, &Vec<(i64, Value)>); 3] {
        [
            ("slack", &self.slack),
            ("teams", &self.teams),
            ("discord", &self.discord),
        ]
    }
}

/// Items named `names` turn downloadable with `status`, through a fresh bot.
async fn run(names: &[(i64, &str)], status: i64) -> Delivered {
    let (h, server) = chat_bot().await;
    let stdout = deliver(&h, names, status).await;
    Delivered {
        slack: payloads(&server, SLACK).await,
        teams: payloads(&server, TEAMS).await,
        discord: payloads(&server, DISCORD).await,
        stdout,
    }
}

const READY: &str = "is ready to download in Cloud-iQ.";

#[tokio::test]
async fn slack_texts_are_never_cut_inside_an_escape() {
    // 123 characters; the fourth `&` sits where the header limit fell.
    let mut name = "Fabrikam & Contoso & Northwind & ".to_string();
    name.push_str(&"x".repeat(119 - name.len()));
    name.push_str("& Ta");
    assert_eq!(name.chars().count(), 123);
    let got = run(&[(7, &name)], 2).await;
    for text in texts(of(&got.slack, 7)) {
        assert_whole_entities(&text, "slack");
    }
    let header = of(&got.slack, 7)["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(
        header.starts_with("Export ready: Fabrikam &amp; Contoso"),
        "{header}"
    );
}

#[tokio::test]
async fn a_heavy_name_leaves_the_messages_own_sentence_whole() {
    let name = "&<>*_\\".repeat(700);
    let got = run(&[(8, &name)], 2).await;
    let section = of(&got.slack, 8)["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(
        section.ends_with(&format!("\n{READY}")),
        "slack: {section:?}"
    );
    let embed = &of(&got.discord, 8)["embeds"][0];
    let description = embed["description"].as_str().unwrap();
    assert!(
        description.ends_with(&format!("\n{READY}")),
        "discord: {description:?}"
    );
    assert!(of(&got.teams, 8).to_string().contains(READY), "teams");
}

#[tokio::test]
async fn a_grapheme_cluster_is_never_split() {
    // The cluster sits at each place a platform budget used to cut.
    let mut name = String::new();
    for at in [118, 198, 1898, 2898, 3998] {
        name.push_str(&"a".repeat(at - name.chars().count()));
        name.push_str(CODER);
    }
    name.push_str("tail");
    let got = run(&[(9, &name)], 2).await;
    for (kind, list) in got.platforms() {
        for text in texts(of(list, 9)) {
            assert_whole_clusters(&text, kind);
        }
    }
}

#[tokio::test]
async fn control_and_bidi_characters_reach_no_sink_nor_the_console() {
    let name = "Invoice\u{202E}gnp.exe\u{0}\u{7}\u{1b}[2J\r\u{2066}x\u{2069}";
    let got = run(&[(7, name)], 2).await;
    let hostile = |c: char| {
        (c.is_control() && c != '\n')
            || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    for (kind, list) in got.platforms() {
        let all = texts(of(list, 7)).concat();
        assert!(all.contains("Invoicegnp.exe"), "{kind}: {all:?}");
        assert!(!all.chars().any(hostile), "{kind}: {all:?}");
    }
    assert!(
        got.stdout.contains("Invoicegnp.exe[2Jx"),
        "{:?}",
        got.stdout
    );
    assert!(!got.stdout.chars().any(hostile), "{:?}", got.stdout);
}

#[tokio::test]
async fn formatting_in_a_name_restyles_nothing() {
    let got = run(&[(8, "*Bold* _it_ ~gone~ `code`\n**Report**")], 2).await;
    let section = &of(&got.slack, 8)["blocks"][1]["text"];
    assert_eq!(section["type"], "plain_text", "{section}");
    assert_eq!(
        section["text"],
        format!("*Bold* _it_ ~gone~ `code`**Report**\n{READY}")
    );
    let title = of(&got.discord, 8)["embeds"][0]["title"].as_str().unwrap();
    assert!(
        title.contains(r"\*\*Report\*\*") && title.contains(r"\_it\_"),
        "{title}"
    );
}

#[tokio::test]
async fn an_empty_name_is_shown_as_its_export() {
    let got = run(&[(9, "  \u{1b}  ")], 2).await;
    let slack = of(&got.slack, 9);
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        "Export ready: Export #9"
    );
    assert!(!slack.to_string().contains("**"), "{slack}");
    let card = of(&got.teams, 9)["attachments"][0]["content"]["body"][1].to_string();
    assert!(card.contains("Export #9"), "{card}");
    let title = &of(&got.discord, 9)["embeds"][0]["title"];
    assert_eq!(title, "Export ready: Export #9");
}

#[tokio::test]
async fn an_unknown_status_shows_its_number() {
    let got = run(&[(7, "Report")], 16).await;
    for (kind, list) in got.platforms() {
        let body = of(list, 7).to_string();
        assert!(body.contains("Unknown (16)"), "{kind}: {body}");
    }
}

#[tokio::test]
async fn the_html_preview_shows_what_the_platforms_show() {
    let (h, _server) = chat_bot().await;
    let name = "License-based Report@2015 <Q1> & Co";
    let mut it = item(7, 2, true);
    it["ActionName"] = Value::from(name);
    let file = h.dir.path().join("item.json");
    std::fs::write(&file, it.to_string()).unwrap();
    let page = h.dir.path().join("preview.html");
    let out = h
        .bot(&[
            "render",
            "--item",
            file.to_str().unwrap(),
            "--html-preview",
            page.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    let shown = "License-based Report@2015 &lt;Q1&gt; &amp; Co";
    for card in ["slack · slack", "teams · teams", "discord · discord"] {
        let at = html
            .find(card)
            .unwrap_or_else(|| panic!("{card} in {html}"));
        let body = &html[at..];
        let body = &body[..body[1..]
            .find("<div class=\"card")
            .map_or(body.len(), |e| e + 1)];
        assert!(
            body.contains(shown),
            "{card} shows the name as typed: {body}"
        );
        assert!(
            !body.contains(r"License\-based") && !body.contains("&amp;lt;"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_email_subject_names_an_unnamed_export_too() {
    let h = Harness::start().await;
    h.write_config(
        "[sinks.mail]\nkind = \"email\"\nsmtp = \"smtp://127.0.0.1:2525\"\ntls = \"none\"\n\
         from = \"Export Bot <exports@example.com>\"\n[[routes]]\nsinks = [\"mail\"]\n",
    );
    let mut it = item(7, 2, true);
    it["ActionName"] = Value::from("\u{202E}\u{7}");
    let file = h.dir.path().join("item.json");
    std::fs::write(&file, it.to_string()).unwrap();
    for (event, subject) in [
        ("downloadable", "Subject: Your export is ready: Export #7\n"),
        ("failed", "Subject: Your export failed: Export #7\n"),
    ] {
        let args = ["render", "--item", file.to_str().unwrap(), "--event", event];
        let out = h.bot(&[&args[..], &["--sink", "mail"]].concat()).await;
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(subject), "{stdout}");
    }
}
