use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::json;
use url::Url;

use super::*;
use crate::secret::Secret;
use crate::sinks::slack::AppSettings;

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, minute, second)
        .unwrap()
}

fn discord(dm: bool) -> SinkKind {
    SinkKind::Discord {
        webhook_url: (!dm).then(|| Secret::new("https://discord.example/api/webhooks/1/x")),
        bot_token: dm.then(|| Secret::new("bot-token")),
        api_base: None,
    }
}

fn slack_app(channel: Option<&str>) -> SinkKind {
    SinkKind::SlackApp(Box::new(AppSettings {
        bot_token: Secret::new("xoxb-1"),
        channel: channel.map(str::to_string),
        api_base: Url::parse("https://slack.example/api/").unwrap(),
    }))
}

#[test]
fn per_person_sinks_key_by_recipient_channel_sinks_by_sink() {
    let person = window_key(&discord(true), "dm", Some("u1"));
    assert_eq!(person.recipient.as_deref(), Some("u1"));
    assert_ne!(person, window_key(&discord(true), "dm", Some("u2")));
    let dm = window_key(&slack_app(None), "slack", Some("a@example.com"));
    assert_eq!(dm.recipient.as_deref(), Some("a@example.com"));
    // Channel mode mentions the requester but posts in one channel.
    let channel = slack_app(Some("#exports"));
    assert_eq!(
        window_key(&channel, "slack", Some("a@example.com")),
        window_key(&channel, "slack", Some("b@example.com"))
    );
    let hook = SinkKind::Webhook {
        url: Secret::new("https://hooks.example/x"),
        headers: BTreeMap::new(),
    };
    for kind in [hook, SinkKind::Console, discord(false)] {
        let key = window_key(&kind, "chan", Some("someone"));
        assert_eq!(key.recipient, None, "{kind:?}");
        assert_eq!(key.sink, "chan");
    }
}

#[test]
fn a_window_is_due_d_after_its_first_member() {
    let d = Duration::from_secs(15 * 60);
    assert_eq!(timing(at(0, 0), d, at(0, 0)), Timing::WaitUntil(at(15, 0)));
    assert_eq!(
        timing(at(0, 0), d, at(14, 59)),
        Timing::WaitUntil(at(15, 0))
    );
    assert_eq!(timing(at(0, 0), d, at(15, 0)), Timing::Due);
    assert_eq!(timing(at(0, 0), d, at(40, 0)), Timing::Due);
    assert_eq!(
        window_end(DateTime::<Utc>::MAX_UTC, d),
        DateTime::<Utc>::MAX_UTC
    );
}

#[test]
fn one_member_sends_the_ordinary_message() {
    assert_eq!(shape(1), Shape::Ordinary);
    assert_eq!(shape(2), Shape::Digest);
    assert_eq!(shape(30), Shape::Digest);
}

fn member(id: i64, event: &str) -> Json {
    json!({
        "item": {"id": id, "action_name": format!("Report {id}")},
        "previous": null,
        "event": event,
        "event_reason": if event == "removed" { json!("expired") } else { Json::Null },
        "recipient": {"email": "a@example.com"},
        "sink": {"name": "mail", "kind": "email", "vars": {}},
        "links": {"portal": "https://portal.example"},
        "bot": {"name": "crayon-export-bot", "version": "0"},
        "now": "2026-12-01T09:00:00Z",
    })
}

#[test]
fn the_context_lists_the_members_in_order_with_the_shared_fields() {
    let members: Vec<Json> = (1..=3)
        .map(|i| member(i, if i == 3 { "removed" } else { "downloadable" }))
        .collect();
    let value = context(&members, 3, at(15, 0));
    let ids: Vec<i64> = value["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["item"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(value["entries"][2]["event"], "removed");
    assert_eq!(value["entries"][2]["event_reason"], "expired");
    assert_eq!(value["more"], 0);
    assert_eq!(value["total"], 3);
    assert_eq!(value["recipient"]["email"], "a@example.com");
    assert_eq!(value["sink"]["name"], "mail");
    assert_eq!(value["links"]["portal"], "https://portal.example");
    assert_eq!(value["now"], "2026-12-01T09:15:00Z");
    let cut = context(&members, 1, at(15, 0));
    assert_eq!(cut["entries"].as_array().unwrap().len(), 1);
    assert_eq!(cut["more"], 2);
}

#[test]
fn most_that_fit_finds_the_largest_count_under_the_budget() {
    for budget in 1..=40 {
        let n = most_that_fit::<()>(30, |n| Ok(n <= budget)).unwrap();
        assert_eq!(n, budget.min(30));
    }
    assert_eq!(most_that_fit::<()>(30, |_| Ok(false)).unwrap(), 1);
    assert_eq!(most_that_fit::<()>(0, |_| Ok(false)).unwrap(), 0);
    assert_eq!(most_that_fit(5, |_| Err("boom")), Err("boom"));
}

fn sink(kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: "chan".into(),
        kind,
        enabled: true,
        concurrency: 1,
        rate_limit: None,
        digest: Some(Duration::from_secs(60)),
        vars: BTreeMap::new(),
        attach: None,
    }
}

fn members(n: i64, name_len: usize) -> Vec<Delivery> {
    (1..=n)
        .map(|id| {
            let mut context = member(id, "downloadable");
            context["item"] = json!({
                "id": id, "status": 2, "status_name": "Completed", "downloadable": true,
                "attempts": 1, "action_name": format!("Report {id} {}", "x".repeat(name_len)),
                "action_url": "u", "requested_by": "a@example.com",
                "created_date": "2026-12-01T08:00:00Z", "expires_at": "2026-12-08T08:00:00Z",
            });
            Delivery {
                id: crate::domain::DeliveryId(id),
                subject: Subject::Item(crate::domain::ExportId(id)),
                event: crate::domain::EventKind::Downloadable,
                sink: "chan".into(),
                recipient: None,
                message: RenderedMessage {
                    parts: Default::default(),
                    context: Some(context.into()),
                },
                status: crate::domain::DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: None,
                last_error: None,
                created_at: at(0, 0),
            }
        })
        .collect()
}

fn contexts(n: i64, name_len: usize) -> Vec<Json> {
    members(n, name_len).iter().map(member_context).collect()
}

fn chat_kinds() -> Vec<SinkKind> {
    let url = || Secret::new("https://hooks.example/x");
    vec![
        SinkKind::Slack { url: url() },
        SinkKind::Teams { url: url() },
        discord(false),
        SinkKind::Webhook {
            url: url(),
            headers: BTreeMap::new(),
        },
        SinkKind::Console,
    ]
}

#[test]
fn every_kind_renders_a_digest_listing_every_entry() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    for kind in chat_kinds() {
        let sink = sink(kind);
        let message = render(&renderer, &sink, &contexts(3, 0), at(15, 0)).unwrap();
        let text: String = message.parts.values().cloned().collect();
        for id in 1..=3 {
            assert!(text.contains(&format!("Report {id}")), "{text}");
        }
        assert!(!text.contains("more"), "{text}");
        if let Some(json) = message.parts.get("json") {
            serde_json::from_str::<Json>(json).unwrap();
        }
    }
}

#[test]
fn a_digest_too_long_for_the_platform_ends_with_and_n_more_never_over() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    for kind in chat_kinds().into_iter().take(3) {
        let sink = sink(kind);
        let budget = sink.kind.fit();
        let message = render(&renderer, &sink, &contexts(120, 120), at(15, 0)).unwrap();
        let json = &message.parts["json"];
        let mut payload: Json = serde_json::from_str(json).unwrap();
        assert!(
            !budget(&mut payload),
            "{} is over the budget",
            sink.kind.name()
        );
        let shown = (1..=120)
            .filter(|id| json.contains(&format!("Report {id} ")))
            .count();
        assert!(shown > 0 && shown < 120, "{}: {shown}", sink.kind.name());
        let more = format!("…and {} more", 120 - shown);
        assert!(json.contains(&more), "{}: {json}", sink.kind.name());
    }
}

#[test]
fn notes_tell_where_a_delivery_stands_with_its_digest() {
    let mut d = members(1, 0).remove(0);
    d.next_attempt_at = Some(at(15, 0));
    assert_eq!(
        note(&d, None, true).as_deref(),
        Some("waiting for digest until 2026-12-01T09:15:00Z")
    );
    assert_eq!(note(&d, None, false), None, "no digest on the sink");
    let claimed = DigestMembership {
        digest: crate::domain::DeliveryId(7),
        next_attempt_at: Some(at(20, 0)),
        members: 3,
    };
    assert_eq!(
        note(&d, Some(&claimed), true).as_deref(),
        Some("in digest #7 (3 deliveries), next attempt at 2026-12-01T09:20:00Z")
    );
    d.status = crate::domain::DeliveryStatus::Sent;
    assert_eq!(
        note(&d, Some(&claimed), true).as_deref(),
        Some("sent in digest #7 (3 deliveries)")
    );
    let alone = DigestMembership {
        members: 1,
        ..claimed
    };
    assert_eq!(note(&d, Some(&alone), true), None, "the ordinary message");
}

#[test]
fn the_sample_digest_renders_for_every_kind() {
    let renderer = Renderer::new(None, chrono_tz::UTC).unwrap();
    let text = "[crayon]\nbase_url = \"https://api.crayon.com\"\nclient_id = \"i\"\n\
        client_secret = \"s\"\nusername = \"u@example.com\"\npassword = \"p\"\n\
        [sinks.chan]\nkind = \"console\"\n";
    let config =
        crate::config::load_from_str(text, std::path::Path::new("/b.toml"), &|_| None, vec![])
            .unwrap();
    let (item, days) = crate::preview::load_item(None).unwrap();
    for kind in chat_kinds() {
        let sink = sink(kind);
        let message = sample(&config, &renderer, &sink, (&item, days), at(15, 0)).unwrap();
        let text: String = message.parts.values().cloned().collect();
        let array = serde_json::from_str::<Json>(&text).ok();
        let entries = array.as_ref().and_then(Json::as_array).map(Vec::len);
        assert!(
            text.contains("3 export updates") || entries == Some(3),
            "{text}"
        );
    }
}
