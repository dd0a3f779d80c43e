//! The status view and page over a real SQLite state: what is listed, what
//! is escaped, and the HTML parsed back (scraper) as a browser would see it.

use std::sync::Arc;
use std::time::Duration;

use scraper::{Html, Selector};

use super::page::Page;
use super::*;
use crate::domain::{Disposition, EventKind};
use crate::store::contract::{commit_for, new_delivery, sample, t};
use crate::store::{AttemptOutcome, SqliteStore};

const HOSTILE: &str = "<script>alert(1)</script>";

/// A state with item 2439 named [`HOSTILE`]: one sent, one dead (after a
/// failed attempt), one skipped and one pending delivery.
fn source(dir: &tempfile::TempDir) -> StatusSource {
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let account = AccountId::default_account();
    let mut snap = sample();
    snap.items.get_mut(&ExportId(2439)).unwrap().action_name = HOSTILE.into();
    let mut dead = new_delivery(2439, "mail", None);
    dead.event = EventKind::Failed;
    let deliveries = [
        new_delivery(2439, "audit", None),
        dead,
        new_delivery(2438, "mail", Some("no email address for bob")),
        new_delivery(2438, "audit", None),
    ];
    let fired = [];
    let commit = commit_for(&account, None, &snap, &fired, &deliveries, t(0));
    store.commit_poll(&commit).unwrap();
    let ids: Vec<_> = store.list_deliveries(&account, None).unwrap();
    let id = |sink: &str, item: i64| {
        let found = ids
            .iter()
            .find(|d| d.sink == sink && d.subject.item() == Some(ExportId(item)));
        found.unwrap().id
    };
    let attempt = |id, outcome: AttemptOutcome, at| {
        let latency = Duration::from_millis(5);
        store
            .record_attempt(&account, id, &outcome, t(at), latency)
            .unwrap();
    };
    attempt(id("audit", 2439), AttemptOutcome::Sent, 1);
    let refused = "SMTP 550 mailbox unavailable".to_owned();
    attempt(id("mail", 2439), AttemptOutcome::Dead { error: refused }, 2);
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    health.polled(Ok(()));
    StatusSource {
        store: Arc::new(store),
        health,
        accounts: vec![account],
        timezone: chrono_tz::Europe::Oslo,
    }
}

#[test]
fn the_view_lists_counts_dead_skipped_recent_and_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let view = gather(&source(&dir), t(10)).unwrap();
    assert_eq!(
        (view.version, view.role),
        (env!("CARGO_PKG_VERSION"), Role::Leader)
    );
    let account = &view.accounts[0];
    let counts: Vec<_> = account.outbox.iter().map(|(s, n)| (*s, *n)).collect();
    assert_eq!(
        counts,
        [("dead", 1), ("pending", 1), ("sent", 1), ("skipped", 1)]
    );
    assert_eq!(account.recent.len(), 4);
    assert_eq!(account.recent[0].subject, "2438");
    let dead = &account.dead[0];
    assert_eq!(
        (dead.sink.as_str(), dead.event, dead.attempts),
        ("mail", "failed", 1)
    );
    assert_eq!(dead.item_name.as_deref(), Some(HOSTILE));
    assert_eq!(dead.reason.as_deref(), Some("SMTP 550 mailbox unavailable"));
    assert_eq!(
        account.skipped[0].reason.as_deref(),
        Some("no email address for bob")
    );
    let sinks: Vec<_> = account.sinks.iter().map(|s| s.sink.as_str()).collect();
    assert_eq!(sinks, ["audit", "mail"]);
    assert_eq!(account.sinks[0].last_success_at, Some(t(1)));
    assert_eq!(account.sinks[1].last_error_at, Some(t(2)));
    assert!(account.last_poll.is_some());
}

#[test]
fn the_json_has_rfc3339_times_and_no_message_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let view = gather(&source(&dir), t(10)).unwrap();
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["generated_at"], "2024-05-29T16:26:50Z");
    assert_eq!(
        json["accounts"][0]["sinks"][0]["last_success_at"],
        "2024-05-29T16:26:41Z"
    );
    assert_eq!(json["accounts"][0]["outbox"]["dead"], 1);
    assert!(
        !json.to_string().contains("is ready"),
        "rendered messages stay out"
    );
}

fn texts(html: &Html, selector: &str) -> Vec<String> {
    let selector = Selector::parse(selector).unwrap();
    html.select(&selector)
        .map(|e| e.text().collect::<String>())
        .collect()
}

#[test]
fn the_page_escapes_item_text_and_shows_local_times() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(&dir);
    let html = Page::new(source.timezone)
        .unwrap()
        .render(&gather(&source, t(10)).unwrap())
        .unwrap();
    assert!(!html.contains(HOSTILE), "raw item text in the HTML");
    let doc = Html::parse_document(&html);
    assert!(texts(&doc, "script").is_empty(), "a script element got in");
    let refresh = Selector::parse(r#"meta[http-equiv="refresh"]"#).unwrap();
    let refresh = doc.select(&refresh).next().expect("meta refresh");
    assert_eq!(refresh.value().attr("content"), Some("30"));
    let viewport = Selector::parse(r#"meta[name="viewport"]"#).unwrap();
    assert!(doc.select(&viewport).next().is_some());

    let cells = texts(&doc, "td");
    assert!(
        cells.iter().any(|c| c == &format!("2439 {HOSTILE}")),
        "{cells:?}"
    );
    assert!(cells.iter().any(|c| c == "SMTP 550 mailbox unavailable"));
    assert!(cells.iter().any(|c| c == "no email address for bob"));
    // t(1) is 16:26:41 UTC: 18:26:41 in Oslo (CEST).
    assert!(
        cells.iter().any(|c| c == "2024-05-29 18:26:41 CEST"),
        "{cells:?}"
    );
    let headings = texts(&doc, "h3");
    assert!(
        headings.contains(&"Dead deliveries (1)".to_owned()),
        "{headings:?}"
    );
    assert!(headings.contains(&"Skipped deliveries (1)".to_owned()));
    let counts = texts(&doc, ".counts li");
    assert_eq!(counts, ["dead: 1", "pending: 1", "sent: 1", "skipped: 1"]);
    let meta = texts(&doc, ".meta").concat();
    assert!(meta.contains("role leader") && meta.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_disposition_dead_at_birth_is_listed_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(&dir);
    let mut broken = new_delivery(2438, "chat", None);
    broken.disposition = Disposition::Dead("template failed.chat.json.tera: oops".into());
    let account = AccountId::default_account();
    source.store.enqueue(&account, &[broken], t(5)).unwrap();
    let view = gather(&source, t(10)).unwrap();
    let dead = &view.accounts[0].dead;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].sink, "chat");
    assert_eq!(dead[0].attempts, 0);
}

#[test]
fn the_page_renders_before_the_first_poll_and_after_a_failed_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = source(&dir);
    source.health = Arc::new(Health::new(Duration::from_secs(60)));
    let page = Page::new(source.timezone).unwrap();
    let render = |source: &StatusSource| {
        let html = page.render(&gather(source, t(10)).unwrap()).unwrap();
        texts(&Html::parse_document(&html), "dd")
    };
    assert!(render(&source).contains(&"none yet".to_owned()));
    source
        .health
        .polled(Err("HTTP 503 from the Crayon API".into()));
    let facts = render(&source);
    assert!(
        facts.contains(&"HTTP 503 from the Crayon API".to_owned()),
        "{facts:?}"
    );
    assert!(
        facts
            .iter()
            .any(|f| f.contains("error") && !f.contains("items")),
        "{facts:?}"
    );
}
