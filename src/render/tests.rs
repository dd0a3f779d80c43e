use std::collections::BTreeMap;

use super::*;
use crate::config::SinkKind;
use crate::domain::{ExportId, Snapshot, SAMPLE_QUEUE};
use crate::secret::Secret;

fn sink(name: &str, kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind,
        enabled: true,
        concurrency: 1,
        rate_limit: None,
        digest: None,
        vars: BTreeMap::new(),
        attach: None,
    }
}

fn webhook() -> SinkConfig {
    sink(
        "audit",
        SinkKind::Webhook {
            url: Secret::new("https://example.com/hook"),
            headers: BTreeMap::new(),
        },
    )
}

fn sample() -> ExportItem {
    Snapshot::parse(SAMPLE_QUEUE).unwrap().0.items[&ExportId(2439)].clone()
}

fn input(event: EventKind, item: &ExportItem) -> MessageInput<'_> {
    MessageInput {
        event,
        reason: (event == EventKind::Removed).then_some(RemovedReason::Expired),
        item,
        previous: None,
        nr_of_days: 7,
        recipient: RecipientView::new(item.requested_by.as_deref(), None),
        portal: "https://cloudiq.crayon.com/",
        now: "2024-05-30T14:00:00Z".parse().unwrap(),
        account: Default::default(),
    }
}

#[test]
fn every_builtin_renders_for_every_event_and_kind() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let item = sample();
    for event in EventKind::ALL {
        for sink in [webhook(), sink("stdout", SinkKind::Console)] {
            let message = renderer.render(&sink, &input(event, &item)).unwrap();
            for text in message.parts.values() {
                assert!(text.contains("2439"), "{event} {}: {text}", sink.name);
            }
        }
    }
}

#[test]
fn a_stored_context_renders_the_same_message_again_and_takes_additions() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let (item, sink) = (sample(), webhook());
    let first = renderer
        .render(&sink, &input(EventKind::Downloadable, &item))
        .unwrap();
    let stored: RenderedMessage =
        serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
    let mut context = stored
        .context
        .as_ref()
        .expect("the context is kept")
        .value();
    assert_eq!(context["item"]["id"], 2439);
    let again = renderer
        .rerender(EventKind::Downloadable, &sink, context.clone())
        .unwrap();
    assert_eq!(again.parts, first.parts);
    context["item"]["action_name"] = "Changed at send time".into();
    let changed = renderer
        .rerender(EventKind::Downloadable, &sink, context)
        .unwrap();
    assert!(changed.part("json").contains("Changed at send time"));
}

#[test]
fn webhook_body_is_json_with_the_item_fields() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let item = sample();
    let message = renderer
        .render(&webhook(), &input(EventKind::Downloadable, &item))
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(message.part("json")).unwrap();
    assert_eq!(body["event"], "downloadable");
    assert_eq!(body["item"]["id"], 2439);
    assert_eq!(body["item"]["created_date"], "2024-05-30T13:39:59Z");
    assert_eq!(body["item"]["expires_at"], "2024-06-06T13:39:59Z");
    assert_eq!(body["item"]["requested_by"], "lukasz.szczesniak@crayon.com");
    assert_eq!(body["portal"], "https://cloudiq.crayon.com/");
}

#[test]
fn hostile_item_text_stays_valid_json() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let mut item = sample();
    item.action_name = "\"}, \"evil\": true, {\"<!channel> \u{0}\n".into();
    item.requested_by = None;
    let message = renderer
        .render(&webhook(), &input(EventKind::Failed, &item))
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(message.part("json")).unwrap();
    // Kept but for the NUL and newline (control characters are dropped).
    assert_eq!(
        body["item"]["action_name"],
        "\"}, \"evil\": true, {\"<!channel>"
    );
    assert!(body["item"]["requested_by"].is_null());
    assert!(body.get("evil").is_none());
}

#[test]
fn dates_show_in_the_display_timezone() {
    let renderer = Renderer::new(None, chrono_tz::Europe::Oslo).unwrap();
    let item = sample();
    let message = renderer
        .render(
            &sink("stdout", SinkKind::Console),
            &input(EventKind::Downloadable, &item),
        )
        .unwrap();
    assert!(
        message.part("text").contains("2024-05-30 15:39 CEST"),
        "{}",
        message.part("text")
    );
}

#[test]
fn user_templates_override_by_sink_name_then_kind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("downloadable.console.text.tera"),
        "kind {{ item.id }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("downloadable.loud.text.tera"),
        "name {{ sink.name }}",
    )
    .unwrap();
    let renderer = Renderer::new(Some(dir.path()), chrono_tz::UTC).unwrap();
    let item = sample();
    let by_kind = renderer
        .render(
            &sink("stdout", SinkKind::Console),
            &input(EventKind::Downloadable, &item),
        )
        .unwrap();
    assert_eq!(by_kind.part("text"), "kind 2439");
    let by_name = renderer
        .render(
            &sink("loud", SinkKind::Console),
            &input(EventKind::Downloadable, &item),
        )
        .unwrap();
    assert_eq!(by_name.part("text"), "name loud");
}

#[test]
fn errors_name_the_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("failed.console.text.tera"),
        "ok\n{{ item.nope }}",
    )
    .unwrap();
    let renderer = Renderer::new(Some(dir.path()), chrono_tz::UTC).unwrap();
    let item = sample();
    let err = renderer
        .render(
            &sink("stdout", SinkKind::Console),
            &input(EventKind::Failed, &item),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed.console.text.tera") && err.contains(":2:"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("failed.console.text.tera"),
        "{{ x | nofilter }}",
    )
    .unwrap();
    let err = Renderer::new(Some(dir.path()), chrono_tz::UTC)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nofilter") && err.contains("failed.console.text.tera"),
        "{err}"
    );
}

#[test]
fn invalid_json_from_a_template_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("downloadable.webhook.json.tera"),
        "{\"a\": {{ item.action_name }}}",
    )
    .unwrap();
    let renderer = Renderer::new(Some(dir.path()), chrono_tz::UTC).unwrap();
    let item = sample();
    let err = renderer
        .render(&webhook(), &input(EventKind::Downloadable, &item))
        .unwrap_err();
    assert!(matches!(err, RenderError::InvalidJson { .. }), "{err}");
}

#[test]
fn html_templates_are_autoescaped_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("downloadable.console.text.tera"),
        "{{ item.action_name }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("downloadable.page.html.tera"),
        "{{ item.action_name }}",
    )
    .unwrap();
    let renderer = Renderer::new(Some(dir.path()), chrono_tz::UTC).unwrap();
    let mut item = sample();
    item.action_name = "<b>&\"".into();
    let context = tera::Context::from_serialize(&context(
        &sink("stdout", SinkKind::Console),
        &input(EventKind::Downloadable, &item),
    ))
    .unwrap();
    let html = renderer
        .tera
        .render("downloadable.page.html.tera", &context)
        .unwrap();
    assert_eq!(html, "&lt;b&gt;&amp;&quot;");
    let text = renderer
        .tera
        .render("downloadable.console.text.tera", &context)
        .unwrap();
    assert_eq!(text, "<b>&\"");
}

#[test]
fn slack_escape_neutralises_control_characters() {
    assert_eq!(
        slack_escape("<!channel> & <http://x|y>"),
        "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    );
    assert_eq!(slack_escape("plain ü 🎉"), "plain ü 🎉");
}

fn email() -> SinkConfig {
    let config = crate::config::EmailConfig {
        smtp: "smtp://mail.example.com:587".parse().unwrap(),
        security: crate::config::SmtpSecurity::StartTls,
        username: None,
        password: None,
        from: "Export Bot <exports@example.com>".parse().unwrap(),
        requester: true,
        requester_domains: None,
        to: vec![],
        cc: vec![],
        bcc: vec![],
        reply_to: None,
        helo_name: None,
        pickup_dir: None,
    };
    sink("mail", SinkKind::Email(Box::new(config)))
}

#[test]
fn every_event_has_a_builtin_email_with_all_three_parts() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let item = sample();
    for event in EventKind::ALL {
        let message = renderer.render(&email(), &input(event, &item)).unwrap();
        for part in ["subject", "text", "html"] {
            let text = message.part(part);
            assert!(text.contains(&item.action_name), "{event} {part}: {text}");
        }
        assert!(message
            .part("html")
            .contains("href=\"https://cloudiq.crayon.com/\""));
        assert!(!message.part("html").contains(&item.action_url));
    }
}

#[test]
fn the_email_html_part_is_autoescaped_and_the_text_part_is_not() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let mut item = sample();
    item.action_name = "<script>alert(1)</script> & \"Q\"".into();
    item.requested_by = Some("<b>ann</b>@example.com".into());
    let message = renderer
        .render(&email(), &input(EventKind::Downloadable, &item))
        .unwrap();
    let html = message.part("html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; &amp; &quot;Q&quot;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Q&quot;"),
        "{html}"
    );
    assert!(!html.contains("<b>ann</b>"), "{html}");
    assert!(message.part("text").contains("<script>alert(1)</script>"));
}

#[test]
fn the_downloadable_email_shows_what_a_requester_needs() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let item = sample();
    let message = renderer
        .render(&email(), &input(EventKind::Downloadable, &item))
        .unwrap();
    let html = message.part("html");
    for expected in [
        "Your export is ready",
        "lukasz.szczesniak@crayon.com",
        "2024-05-30 13:39 UTC",
        "2024-06-06 13:39 UTC",
        "Processed",
        "Download in Cloud-iQ",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    let text = message.part("text");
    for expected in [
        "lukasz.szczesniak@crayon.com",
        "Available until: 2024-06-06 13:39 UTC",
        "Processed",
        "https://cloudiq.crayon.com/",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // Inline CSS only, but for the one narrow-screen media query (which
    // cannot be inline): label over value below 480px.
    let style = html
        .split("<style>")
        .nth(1)
        .and_then(|s| s.split("</style>").next());
    let style = style.unwrap_or_default().trim();
    assert!(
        style.starts_with("@media only screen and (max-width: 480px)"),
        "{style}"
    );
    assert_eq!(html.matches("<style").count(), 1, "{html}");
    assert_eq!(
        message.part("subject").trim(),
        format!("Your export is ready: {}", item.action_name)
    );
}

#[test]
fn every_alert_template_renders_for_every_kind() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let alert = AlertView {
        condition: "polls_failing".into(),
        state: "firing".into(),
        summary: "Polls <!channel> are failing".into(),
        details: "Last error: HTTP 503 & \"quotes\"".into(),
        since: "2024-05-30T13:00:00Z".into(),
    };
    let now = "2024-05-30T14:00:00Z".parse().unwrap();
    let kinds = [
        sink("stdout", SinkKind::Console),
        webhook(),
        sink(
            "ops",
            SinkKind::Slack {
                url: Secret::new("https://hooks.slack.com/x"),
            },
        ),
        sink(
            "ops_teams",
            SinkKind::Teams {
                url: Secret::new("https://example.com/x"),
            },
        ),
        sink(
            "ops_discord",
            SinkKind::Discord {
                webhook_url: Some(Secret::new("https://discord.com/api/webhooks/1/t")),
                bot_token: None,
                api_base: None,
            },
        ),
        email(),
    ];
    for sink in kinds {
        let message = renderer
            .render_alert(&sink, &alert, "https://cloudiq.crayon.com/", now)
            .unwrap();
        assert_eq!(
            message.parts.len(),
            sink.kind.parts().len(),
            "{}",
            sink.name
        );
        let all: String = message.parts.values().cloned().collect();
        assert!(all.contains("Polls"), "{}: {all}", sink.name);
        if let Some(json) = message.parts.get("json") {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            if sink.kind.name() == "slack" {
                let fallback = value["text"].as_str().unwrap();
                assert!(
                    fallback.contains("&lt;!channel&gt;"),
                    "mrkdwn is escaped: {fallback}"
                );
            }
        }
    }
}

#[test]
fn no_builtin_template_marks_anything_safe() {
    for (name, source) in BUILTINS {
        let squeezed: String = source.split_whitespace().collect();
        assert!(!squeezed.contains("|safe"), "{name} uses the safe filter");
    }
}
