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

/// A 123-character name whose fourth `&` sits where Slack's header limit
/// fell, one heavy with characters the platforms escape, and one with a
/// three-character cluster at each place a platform budget used to cut.
fn names() -> [(i64, String); 3] {
    let mut amp = "Fabrikam & Contoso & Northwind & ".to_string();
    amp.push_str(&"x".repeat(118 - amp.len()));
    amp.push_str("& Tai");
    let heavy = "&<>*_\\".repeat(700);
    let mut clusters = String::new();
    for at in [118, 198, 1898, 2898, 3998] {
        clusters.push_str(&"a".repeat(at - clusters.chars().count()));
        clusters.push_str(CODER);
    }
    clusters.push_str("tail");
    [(7, amp), (8, heavy), (9, clusters)]
}

#[tokio::test]
async fn names_are_cut_before_escaping_and_the_sentence_survives() {
    let (h, server) = chat_bot().await;
    let names = names();
    let list: Vec<(i64, &str)> = names.iter().map(|(i, n)| (*i, n.as_str())).collect();
    deliver(&h, &list, 2).await;
    let slack = payloads(&server, SLACK).await;
    let teams = payloads(&server, TEAMS).await;
    let discord = payloads(&server, DISCORD).await;
    for id in [7, 8, 9] {
        let body = of(&slack, id);
        for text in texts(body) {
            assert_whole_entities(&text, &format!("slack #{id}"));
        }
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.ends_with("\nis ready to download in Cloud-iQ."),
            "slack #{id}: {section:?}"
        );
        let description = of(&discord, id)["embeds"][0]["description"]
            .as_str()
            .unwrap();
        assert!(
            description.ends_with("\nis ready to download in Cloud-iQ."),
            "discord #{id}: {description:?}"
        );
        let card = of(&teams, id).to_string();
        assert!(
            card.contains("is ready to download in Cloud-iQ."),
            "teams #{id}"
        );
    }
    let header = of(&slack, 7)["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        header.starts_with("Export ready: Fabrikam &amp; Contoso"),
        "{header}"
    );
    for (kind, list) in [("slack", &slack), ("teams", &teams), ("discord", &discord)] {
        for text in texts(of(list, 9)) {
            assert_whole_clusters(&text, kind);
        }
    }
}

#[tokio::test]
async fn hostile_characters_formatting_and_empty_names_are_made_harmless() {
    let (h, server) = chat_bot().await;
    let bidi = "Invoice\u{202E}gnp.exe\u{0}\u{7}\u{1b}[2J\r\u{2066}x\u{2069}";
    let styled = "*Bold* _it_ ~gone~ `code`\n**Report**";
    let stdout = deliver(&h, &[(7, bidi), (8, styled), (9, "  \u{1b}  ")], 16).await;
    let slack = payloads(&server, SLACK).await;
    let teams = payloads(&server, TEAMS).await;
    let discord = payloads(&server, DISCORD).await;
    let hostile = |c: char| {
        c.is_control()
            || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    for (kind, list) in [("slack", &slack), ("teams", &teams), ("discord", &discord)] {
        let all = texts(of(list, 7)).concat();
        assert!(all.contains("Invoicegnp.exe"), "{kind}: {all:?}");
        for (id, body) in list.iter() {
            for text in texts(body) {
                let bad = text.chars().filter(|&c| c != '\n' && hostile(c));
                assert_eq!(bad.count(), 0, "{kind} #{id}: {text:?}");
            }
        }
        let status = of(list, 8).to_string();
        assert!(status.contains("Unknown (16)"), "{kind}: {status}");
    }
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202E}'),
        "{stdout:?}"
    );
    assert!(stdout.contains("Invoicegnp.exe[2Jx"), "{stdout:?}");
    assert!(
        !stdout.contains('\r') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );

    // A name's Slack formatting characters cannot restyle the message.
    let section = &of(&slack, 8)["blocks"][1]["text"];
    assert_eq!(section["type"], "plain_text", "{section}");
    assert_eq!(
        section["text"],
        "*Bold* _it_ ~gone~ `code`**Report**\nis ready to download in Cloud-iQ."
    );
    let title = of(&discord, 8)["embeds"][0]["title"].as_str().unwrap();
    assert!(
        title.contains(r"\*\*Report\*\*") && title.contains(r"\_it\_"),
        "{title}"
    );

    // A name that is empty once cleaned is shown as its export.
    let empty = of(&slack, 9);
    assert_eq!(
        empty["blocks"][0]["text"]["text"],
        "Export ready: Export #9"
    );
    assert!(!empty.to_string().contains("**"), "{empty}");
    let card = of(&teams, 9)["attachments"][0]["content"]["body"][1].to_string();
    assert!(card.contains("Export #9"), "{card}");
    let title = of(&discord, 9)["embeds"][0]["title"].as_str().unwrap();
    assert_eq!(title, "Export ready: Export #9");
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
