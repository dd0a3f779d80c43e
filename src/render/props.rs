//! Property tests of the filters and the built-in templates: every filter
//! the renderer registers (`json`, `slack_escape`, `discord_escape`, `date`)
//! is total over arbitrary strings (an `Err` is fine where a value is not a
//! date or a format is not one; a panic is not), and every built-in template
//! renders any item the queue parser accepts.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::config::{EmailConfig, SinkKind, SmtpSecurity};
use crate::domain::ExportId;
use crate::secret::Secret;

fn renderer() -> &'static Renderer {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    RENDERER.get_or_init(|| Renderer::new(None, chrono_tz::Europe::Oslo).unwrap())
}

/// Renders a one-off template over `{"v": value}` with the real filters.
fn apply(template: &str, value: Value) -> tera::TeraResult<String> {
    let context = Context::from_serialize(&json!({ "v": value })).unwrap();
    renderer().tera.render_str(template, &context, false)
}

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

/// One sink of every kind, so every built-in template is rendered.
fn every_sink() -> Vec<SinkConfig> {
    let url = Secret::new("https://hooks.example.com/x");
    let email = EmailConfig {
        smtp: "smtp://mail.example.com:587".parse().unwrap(),
        security: SmtpSecurity::StartTls,
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
    vec![
        sink("console", SinkKind::Console),
        sink(
            "webhook",
            SinkKind::Webhook {
                url: url.clone(),
                headers: BTreeMap::new(),
            },
        ),
        sink("slack", SinkKind::Slack { url: url.clone() }),
        sink("teams", SinkKind::Teams { url: url.clone() }),
        sink(
            "discord",
            SinkKind::Discord {
                webhook_url: Some(url),
                bot_token: None,
                api_base: None,
            },
        ),
        sink("mail", SinkKind::Email(Box::new(email))),
    ]
}

/// Text as hostile as a person can type it: markup, mentions, control
/// characters, quotes, backslashes, non-ASCII, plus anything at all.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "<!channel>",
        "@everyone",
        "<@123>",
        "[x](https://evil.example)",
        "</script>",
        "\"",
        "\\",
        "{{",
        "{%",
        "\r\n",
        "\u{0}",
        "\u{202e}",
        "&amp;",
        "***",
        "`",
        "é",
        "👩‍💻",
        " ",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat()),
        any::<String>(),
    ]
}

fn item() -> impl Strategy<Value = (ExportItem, u32)> {
    let seconds = prop_oneof![
        // Ordinary dates (year 1 to 9000): templates must render.
        3 => (-62_000_000_000i64..221_845_392_000).prop_map(Some),
        // Anywhere chrono can represent: rendering may fail, never panic.
        1 => any::<i64>().prop_map(|s| Some(s / 1000)),
    ];
    (
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
        any::<i64>(),
        hostile_text(),
        prop::option::of(hostile_text()),
        hostile_text(),
        seconds,
        prop_oneof![Just(7u32), any::<u32>()],
    )
        .prop_map(
            |(id, status, downloadable, attempts, name, by, url, secs, days)| {
                let created = secs
                    .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                    .unwrap_or_default();
                let item = ExportItem {
                    id: ExportId(id),
                    status: status.into(),
                    action_url: url,
                    downloadable,
                    attempts,
                    action_name: name,
                    requested_by: by,
                    created_date: created,
                };
                (item, days)
            },
        )
}

/// The range the samples keep to (chrono formats far wider).
fn in_date_range(t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (1..=9000).contains(&t.year())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_filter_round_trips_any_string(s in any::<String>()) {
        let out = apply("{{ v | json }}", Value::from(s.clone())).unwrap();
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
    }

    #[test]
    fn json_filter_takes_any_value(v in prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        prop::collection::vec(any::<String>(), 0..4).prop_map(|v| json!(v)),
        prop::collection::btree_map(any::<String>(), any::<String>(), 0..4).prop_map(|m| json!(m)),
    ]) {
        let out = apply("{{ v | json }}", v.clone()).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
    }

    #[test]
    fn slack_escape_leaves_no_angle_bracket_and_undoes_cleanly(s in hostile_text()) {
        let out = apply("{{ v | slack_escape }}", Value::from(s.clone())).unwrap();
        prop_assert!(!out.contains('<') && !out.contains('>'));
        let undone = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        prop_assert_eq!(undone, s);
    }

    #[test]
    fn discord_escape_leaves_no_bare_markdown_and_undoes_cleanly(s in hostile_text()) {
        let out = apply("{{ v | discord_escape }}", Value::from(s.clone())).unwrap();
        let mut undone = String::new();
        let mut chars = out.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let next = chars.next();
                prop_assert!(next.is_some(), "a dangling backslash in {out:?}");
                undone.extend(next);
            } else {
                prop_assert!(!"*_~`|<>[]()#-:@".contains(c), "bare {c:?} in {out:?}");
                undone.push(c);
            }
        }
        prop_assert_eq!(undone, s);
    }

    #[test]
    fn date_filter_is_total_over_any_string_and_format(
        value in prop_oneof![any::<String>(), Just("2024-05-30T13:39:59Z".to_string())],
        format in prop_oneof![any::<String>(), "%[a-zA-Z%:.0-9 -]{0,4}"],
        timezone in prop_oneof![any::<String>(), Just("Europe/Oslo".to_string())],
    ) {
        let _ = apply("{{ v | date }}", Value::from(value.clone()));
        let context = Context::from_serialize(
            &json!({ "v": value, "f": format, "z": timezone }),
        ).unwrap();
        for template in [
            "{{ v | date(format=f) }}",
            "{{ v | date(format=f, timezone=z) }}",
        ] {
            let _ = renderer().tera.render_str(template, &context, false);
        }
    }

    #[test]
    fn date_filter_is_total_over_any_number(n in any::<i64>()) {
        let _ = apply("{{ v | date }}", Value::from(n));
    }

}

proptest! {
    // 64 cases: each renders 4 events × 6 sinks (every built-in template).
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_builtin_renders_any_parsed_item((item, days) in item()) {
        for event in EventKind::ALL {
            let input = MessageInput {
                event,
                reason: (event == EventKind::Removed).then_some(RemovedReason::Vanished),
                item: &item,
                previous: Some(&item),
                nr_of_days: days,
                recipient: RecipientView::new(item.requested_by.as_deref(), None),
                portal: "https://cloudiq.crayon.com/",
                now: Utc::now(),
                account: Default::default(),
            };
            let ordinary = in_date_range(item.created_date)
                && in_date_range(item.expires_at(days));
            for sink in every_sink() {
                match renderer().render(&sink, &input) {
                    Ok(message) => {
                        if let Some(json) = message.parts.get("json") {
                            prop_assert!(serde_json::from_str::<Value>(json).is_ok());
                        }
                    }
                    Err(e) => prop_assert!(!ordinary, "{event} {}: {e}", sink.name),
                }
            }
        }
    }
}
