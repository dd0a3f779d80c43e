//! The built-in Slack, Teams and Discord templates: every event renders for
//! the sample item with the shape each platform needs, hostile item text is
//! escaped, and oversized fields are cut to the platform limits.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::config::SinkKind;
use crate::domain::{ExportId, Snapshot, SAMPLE_QUEUE};
use crate::secret::Secret;

const PORTAL: &str = "https://cloudiq.crayon.com/";
const HOSTILE: &str =
    "<!channel> @everyone <script>alert(\"x\")</script> 'q' & <http://evil|click>";

fn sink(kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: kind.name().into(),
        kind,
        enabled: true,
        concurrency: 1,
        rate_limit: None,
        digest: None,
        vars: BTreeMap::new(),
        attach: None,
    }
}

fn chat_sinks() -> [SinkConfig; 3] {
    let url = Secret::new("https://hooks.example.com/x");
    [
        sink(SinkKind::Slack { url: url.clone() }),
        sink(SinkKind::Teams { url: url.clone() }),
        sink(SinkKind::Discord {
            webhook_url: Some(url),
            bot_token: None,
            api_base: None,
        }),
    ]
}

fn sample() -> ExportItem {
    Snapshot::parse(SAMPLE_QUEUE).unwrap().0.items[&ExportId(2439)].clone()
}

fn render(sink: &SinkConfig, event: EventKind, item: &ExportItem, who: RecipientView) -> Value {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let input = MessageInput {
        event,
        reason: (event == EventKind::Removed).then_some(RemovedReason::Expired),
        item,
        previous: None,
        nr_of_days: 7,
        recipient: who,
        portal: PORTAL,
        now: "2024-05-30T14:00:00Z".parse().unwrap(),
        account: Default::default(),
    };
    let message = renderer.render(sink, &input).unwrap();
    serde_json::from_str(message.part("json")).unwrap()
}

fn unmapped(item: &ExportItem) -> RecipientView {
    RecipientView::new(item.requested_by.as_deref(), None)
}

/// Every string in a JSON value, with its JSON pointer.
fn strings(value: &Value, at: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((at, s.clone())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| strings(v, format!("{at}/{i}"), out)),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| strings(v, format!("{at}/{k}"), out)),
        _ => {}
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn assert_slack_shape(body: &Value, what: &str) {
    assert!(
        !body["text"].as_str().unwrap().is_empty(),
        "{what}: text fallback"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert!(
        (1..=50).contains(&blocks.len()),
        "{what}: {} blocks",
        blocks.len()
    );
    for block in blocks {
        let max = if block["type"] == "header" { 150 } else { 3000 };
        assert!(chars(&block["text"]["text"]) <= max, "{what}: {block}");
        for field in block["fields"].as_array().into_iter().flatten() {
            assert!(chars(&field["text"]) <= 2000, "{what}: {field}");
        }
    }
    let button = blocks
        .iter()
        .flat_map(|b| b["elements"].as_array().into_iter().flatten())
        .find(|e| e["type"] == "button")
        .unwrap_or_else(|| panic!("{what}: no button"));
    assert_eq!(button["url"], PORTAL, "{what}");
}

fn assert_teams_shape(body: &Value, what: &str) {
    assert_eq!(body["type"], "message", "{what}");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"], "application/vnd.microsoft.card.adaptive",
        "{what}"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard", "{what}");
    let version: f64 = card["version"].as_str().unwrap().parse().unwrap();
    assert!(version >= 1.4, "{what}: {version}");
    assert_eq!(card["msteams"]["width"], "Full", "{what}");
    let body_items = card["body"].as_array().unwrap();
    for block in body_items.iter().filter(|b| b["type"] == "TextBlock") {
        assert_eq!(block["wrap"], true, "{what}: {block}");
    }
    assert!(body_items.iter().any(|b| b["type"] == "FactSet"), "{what}");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl", "{what}");
    assert_eq!(card["actions"][0]["url"], PORTAL, "{what}");
    assert!(
        serde_json::to_vec(body).unwrap().len() < 28 * 1024,
        "{what}"
    );
}

fn assert_discord_shape(body: &Value, what: &str) {
    assert_eq!(
        body["allowed_mentions"]["parse"],
        serde_json::json!([]),
        "{what}"
    );
    for embed in body["embeds"].as_array().unwrap() {
        assert_eq!(embed["url"], PORTAL, "{what}");
    }
    assert_discord_limits(body, what);
}

fn assert_discord_limits(body: &Value, what: &str) {
    assert!(chars(&body["content"]) <= 2000, "{what}");
    let mut total = 0;
    for embed in body["embeds"].as_array().unwrap() {
        assert!(chars(&embed["description"]) <= 4096, "{what}");
        total += chars(&embed["title"]) + chars(&embed["description"]);
        total += chars(&embed["footer"]["text"]);
        for field in embed["fields"].as_array().into_iter().flatten() {
            assert!(
                !field["value"].as_str().unwrap().is_empty(),
                "{what}: {field}"
            );
            total += chars(&field["name"]) + chars(&field["value"]);
        }
    }
    assert!(total <= 6000, "{what}: embeds total {total}");
}

fn assert_shape(sink: &SinkConfig, body: &Value, what: &str) {
    match sink.kind {
        SinkKind::Slack { .. } | SinkKind::SlackApp(_) => assert_slack_shape(body, what),
        SinkKind::Teams { .. } => assert_teams_shape(body, what),
        SinkKind::Discord { .. } => assert_discord_shape(body, what),
        SinkKind::Console | SinkKind::Webhook { .. } | SinkKind::Email(_) => {
            unreachable!("{what}: only chat sinks are rendered here")
        }
    }
}

#[test]
fn every_chat_builtin_renders_the_sample_in_its_platform_shape() {
    let item = sample();
    for event in EventKind::ALL {
        for sink in chat_sinks() {
            let what = format!("{event}.{}", sink.name);
            let body = render(&sink, event, &item, unmapped(&item));
            assert_shape(&sink, &body, &what);
            let text = body.to_string();
            assert!(text.contains("2439"), "{what}: {text}");
            assert!(
                !text.contains("subscriptions/file") && !text.contains("/api/v1/"),
                "{what} links to the API: {text}"
            );
            if matches!(sink.kind, SinkKind::Discord { .. }) {
                assert!(body["allowed_mentions"].get("users").is_none(), "{what}");
                assert!(body.get("content").is_none(), "{what}");
            }
        }
    }
}

#[test]
fn only_the_mapped_requester_is_mentioned() {
    let item = sample();
    let entry = crate::config::RecipientConfig {
        slack_user_id: Some("U0123ABCD".into()),
        discord_user_id: Some("123456789012345678".into()),
        teams_upn: None,
        email: None,
        timezone: None,
    };
    let who = RecipientView::new(item.requested_by.as_deref(), Some(&entry));
    let [slack, _, discord] = chat_sinks();
    let body = render(&slack, EventKind::Downloadable, &item, who.clone());
    assert!(
        body["text"].as_str().unwrap().contains("<@U0123ABCD>"),
        "{body}"
    );
    assert!(!body.to_string().contains("lukasz.szczesniak"), "{body}");
    let body = render(&discord, EventKind::Failed, &item, who);
    assert_eq!(
        body["allowed_mentions"],
        serde_json::json!({"parse": [], "users": ["123456789012345678"]})
    );
    assert!(body["content"]
        .as_str()
        .unwrap()
        .starts_with("<@123456789012345678>"));
}

#[test]
fn hostile_item_text_is_escaped_and_pings_nobody() {
    let mut item = sample();
    item.action_name = HOSTILE.into();
    item.requested_by = Some("<!here>@example.com".into());
    for event in EventKind::ALL {
        for sink in chat_sinks() {
            let what = format!("{event}.{}", sink.name);
            let body = render(&sink, event, &item, unmapped(&item));
            assert_shape(&sink, &body, &what);
            let mut texts = Vec::new();
            strings(&body, String::new(), &mut texts);
            if matches!(sink.kind, SinkKind::Slack { .. }) {
                for (at, text) in &texts {
                    assert!(
                        !text.contains('<') && !text.contains('>'),
                        "{what} {at}: {text}"
                    );
                }
                assert!(body.to_string().contains("&lt;!channel&gt;"), "{what}");
            } else if matches!(sink.kind, SinkKind::Discord { .. }) {
                let escaped = crate::render::discord_escape(HOSTILE);
                assert!(
                    texts
                        .iter()
                        .any(|(at, t)| at == "/embeds/0/title" && t.contains(&escaped)),
                    "{what}: the title is escaped too: {body}"
                );
                assert!(!texts.iter().any(|(_, t)| t.contains(HOSTILE)), "{what}");
            } else {
                let name = texts.iter().any(|(_, t)| t.contains(HOSTILE));
                assert!(name, "{what}: the name is kept verbatim in JSON: {body}");
            }
        }
    }
}

#[test]
fn a_huge_multibyte_name_is_cut_at_a_character_boundary_within_limits() {
    let mut item = sample();
    item.action_name = "Zażółć 👩‍💻 🎉 日本語 "
        .repeat(300)
        .chars()
        .take(5000)
        .collect();
    assert_eq!(item.action_name.chars().count(), 5000);
    for event in EventKind::ALL {
        for sink in chat_sinks() {
            let what = format!("{event}.{}", sink.name);
            let body = render(&sink, event, &item, unmapped(&item));
            assert_shape(&sink, &body, &what);
            let mut texts = Vec::new();
            strings(&body, String::new(), &mut texts);
            let cut = texts.iter().filter(|(_, t)| t.contains('…')).count();
            assert!(cut > 0, "{what}: nothing was shortened");
            let whole = texts.iter().any(|(_, t)| t.contains(&item.action_name));
            assert!(!whole, "{what}: the 5,000-char name went out whole");
        }
    }
}

#[test]
fn user_templates_that_ignore_the_limits_are_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let name = "{{ item.action_name | json }}";
    let files = [
        (
            "downloadable.slack.json.tera",
            format!(
                r#"{{"text": {name}, "blocks": [{{"type": "header", "text": {{"type": "plain_text", "text": {name}}}}}, {{"type": "section", "text": {{"type": "mrkdwn", "text": {name}}}}}]}}"#
            ),
        ),
        (
            "downloadable.discord.json.tera",
            format!(
                r#"{{"content": {name}, "embeds": [{{"description": {name}, "fields": [{{"name": "n", "value": {name}}}]}}, {{"description": {name}}}], "allowed_mentions": {{"parse": []}}}}"#
            ),
        ),
        (
            "downloadable.teams.json.tera",
            format!(
                r#"{{"type": "message", "attachments": [{{"content": {{"body": [{{"type": "TextBlock", "text": {name}}}, {{"type": "TextBlock", "text": {name}}}, {{"type": "TextBlock", "text": {name}}}]}}}}]}}"#
            ),
        ),
    ];
    for (file, text) in files {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let renderer = Renderer::new(Some(dir.path()), chrono_tz::UTC).unwrap();
    let mut item = sample();
    item.action_name = "ł🎉".repeat(2500);
    for sink in chat_sinks() {
        let input = MessageInput {
            event: EventKind::Downloadable,
            reason: None,
            item: &item,
            previous: None,
            nr_of_days: 7,
            recipient: unmapped(&item),
            portal: PORTAL,
            now: "2024-05-30T14:00:00Z".parse().unwrap(),
            account: Default::default(),
        };
        let text = renderer
            .render(&sink, &input)
            .unwrap()
            .part("json")
            .to_string();
        let body: Value = serde_json::from_str(&text).unwrap();
        match sink.kind {
            SinkKind::Slack { .. } | SinkKind::SlackApp(_) => {
                assert_eq!(chars(&body["blocks"][0]["text"]["text"]), 150);
                assert_eq!(chars(&body["blocks"][1]["text"]["text"]), 3000);
            }
            SinkKind::Teams { .. } => {
                assert!(text.len() < 28 * 1024, "{}", text.len());
                assert!(text.contains('…'));
            }
            SinkKind::Discord { .. } => {
                assert_eq!(chars(&body["content"]), 2000);
                assert_discord_limits(&body, "user discord template");
            }
            SinkKind::Console | SinkKind::Webhook { .. } | SinkKind::Email(_) => {
                unreachable!("only chat sinks are rendered here")
            }
        }
    }
}

#[test]
fn discord_markdown_in_item_text_cannot_forge_links_or_mentions() {
    let mut item = sample();
    item.action_name = "[Download here](https://evil.example/x) <@123> **now** ||x||".into();
    item.requested_by = Some("[ann](https://evil.example)@example.com".into());
    let discord = chat_sinks()[2].clone();
    for event in EventKind::ALL {
        let body = render(&discord, event, &item, unmapped(&item));
        let embed = &body["embeds"][0];
        let description = embed["description"].as_str().unwrap();
        assert!(
            description.starts_with(
                r"\[Download here\]\(https\://evil.example/x\) \<\@123\> \*\*now\*\* \|\|x\|\|"
            ),
            "{event}: {description}"
        );
        let mut shown = vec![description.to_string()];
        for field in embed["fields"].as_array().unwrap() {
            shown.push(field["value"].as_str().unwrap().to_string());
        }
        for text in &shown {
            assert!(
                !text.contains("](") && !text.contains("https://") && !text.contains("<@"),
                "{event}: {text}"
            );
        }
    }
}

#[test]
fn discord_escape_escapes_every_markdown_character_and_nothing_else() {
    assert_eq!(
        discord_escape(r"a\b*_~`|><[]()#-:@ ü 🎉"),
        r"a\\b\*\_\~\`\|\>\<\[\]\(\)\#\-\:\@ ü 🎉"
    );
}

#[test]
fn teams_shows_item_text_only_in_text_runs_which_are_never_markdown() {
    let mut item = sample();
    item.action_name = "[Download here](https://evil.example/x) **now**".into();
    item.requested_by = Some("[ann](https://evil.example)".into());
    let teams = chat_sinks()[1].clone();
    for event in EventKind::ALL {
        let body = render(&teams, event, &item, unmapped(&item));
        let card = &body["attachments"][0]["content"];
        let mut runs = Vec::new();
        for block in card["body"].as_array().unwrap() {
            let markdown: Vec<&Value> = match block["type"].as_str() {
                Some("TextBlock") => vec![&block["text"]],
                Some("FactSet") => block["facts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|f| [&f["title"], &f["value"]])
                    .collect(),
                Some("RichTextBlock") => {
                    runs.extend(block["inlines"].as_array().unwrap().iter().cloned());
                    vec![]
                }
                _ => vec![],
            };
            for text in markdown {
                assert!(
                    !text.to_string().contains("evil.example"),
                    "{event}: {block}"
                );
            }
        }
        for wanted in [&item.action_name, item.requested_by.as_ref().unwrap()] {
            assert!(
                runs.iter()
                    .any(|r| r["type"] == "TextRun" && r["text"] == **wanted),
                "{event}: {wanted} not in a TextRun: {runs:?}"
            );
        }
    }
}

#[test]
fn a_failure_counts_its_attempts_in_words() {
    for (attempts, wanted) in [(1, "after 1 attempt."), (3, "after 3 attempts.")] {
        let mut item = sample();
        item.attempts = attempts;
        for sink in chat_sinks() {
            let body = render(&sink, EventKind::Failed, &item, unmapped(&item)).to_string();
            assert!(body.contains(wanted), "{}: {body}", sink.name);
            assert!(!body.contains("attempt(s)"), "{}: {body}", sink.name);
        }
    }
}
