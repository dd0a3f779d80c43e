//! The dispatcher's digests in tokio's paused time: for any arrivals and
//! any window, every member goes out in exactly one send, with its own
//! recipient's members only, never before D after the window's first;
//! and with quiet hours besides, still exactly once and never in quiet time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use proptest::prelude::*;
use serde_json::{json, Value as Json};

use super::*;
use crate::config::SinkKind;
use crate::domain::{Disposition, EventKind, ExportId, NewDelivery, RenderedMessage};
use crate::secret::Secret;
use crate::sinks::{SendFuture, Sink};
use crate::store::SqliteStore;

/// One send as the sink saw it: (recipient, item ids, when).
type Sent = (Option<String>, Vec<i64>, DateTime<Utc>);

/// A sink that records what each send carried.
#[derive(Default)]
struct Recorder {
    sends: Mutex<Vec<Sent>>,
    clock: Mutex<Option<Clock>>,
}

impl Sink for Recorder {
    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        let context = d
            .message
            .context
            .as_ref()
            .map(|c| c.value())
            .unwrap_or_default();
        let ids = match context.get("entries").and_then(Json::as_array) {
            Some(entries) => entries
                .iter()
                .map(|e| e["item"]["id"].as_i64().unwrap())
                .collect(),
            None => vec![context["item"]["id"].as_i64().unwrap()],
        };
        let now = self.clock.lock().unwrap().as_ref().unwrap().now();
        self.sends
            .lock()
            .unwrap()
            .push((d.recipient.clone(), ids, now));
        Box::pin(std::future::ready(Ok(())))
    }
}

fn sink_config(window: Duration) -> SinkConfig {
    SinkConfig {
        name: "dm".into(),
        kind: SinkKind::Discord {
            webhook_url: None,
            bot_token: Some(Secret::new("bot-token")),
            api_base: None,
        },
        enabled: true,
        concurrency: 4,
        rate_limit: None,
        digest: Some(window),
        vars: BTreeMap::new(),
        attach: None,
    }
}

fn member(id: i64, recipient: &str) -> NewDelivery {
    let context = json!({
        "item": {"id": id, "action_name": format!("Report {id}"), "status_name": "Completed"},
        "previous": null, "event": "downloadable", "event_reason": null,
        "recipient": {"discord_user_id": recipient},
        "sink": {"name": "dm", "kind": "discord", "vars": {}},
        "links": {"portal": "https://portal.example"},
        "bot": {"name": "bot", "version": "0"}, "now": "2026-12-01T09:00:00Z",
    });
    NewDelivery {
        item_id: ExportId(id),
        event: EventKind::Downloadable,
        sink: "dm".into(),
        recipient: Some(recipient.into()),
        message: RenderedMessage {
            parts: BTreeMap::from([("json".into(), "{}".into())]),
            context: Some(context.into()),
        },
        disposition: Disposition::Pending,
    }
}

fn dispatcher(
    dir: &tempfile::TempDir,
    window: Duration,
    sink: Arc<Recorder>,
    quiet: QuietPlan,
) -> Dispatcher {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let clock = Clock::tokio();
    *sink.clock.lock().unwrap() = Some(clock.clone());
    let sinks = Sinks::from_sinks([("dm".to_string(), sink as Arc<dyn Sink>)].into());
    Dispatcher {
        store,
        account: AccountId::default_account(),
        sinks: Arc::new(sinks),
        renderer: Arc::new(Renderer::new(None, chrono_tz::UTC).unwrap()),
        digests: Arc::new([("dm".to_string(), sink_config(window))].into()),
        policy: RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(2),
        },
        limits: Arc::default(),
        in_flight: Arc::default(),
        writes: Arc::default(),
        quiet: Arc::new(quiet),
        held: Default::default(),
        clock,
        grace: Duration::from_secs(1),
        leading: crate::app::leading::Leading::always(),
        configs: Arc::default(),
        attacher: None,
        attach_cap: 0,
    }
}

/// Plays `arrivals` (seconds from the start, recipient) through a dispatcher
/// draining at every arrival and whenever something comes due; returns the
/// sends and each member's (recipient, arrival time).
async fn play(
    window: Duration,
    arrivals: &[(u64, usize)],
    quiet: QuietPlan,
) -> (Vec<Sent>, HashMap<i64, (String, DateTime<Utc>)>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let d = dispatcher(&dir, window, sink.clone(), quiet);
    let start = tokio::time::Instant::now();
    let mut members = HashMap::new();
    let mut pending = arrivals.iter().enumerate().peekable();
    for _ in 0..10_000 {
        let next_arrival = pending
            .peek()
            .map(|(_, (at, _))| start + Duration::from_secs(*at));
        let next_due = d.store.next_due_at(&d.account).unwrap().map(|at| {
            let wait = (at - d.clock.now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + wait
        });
        let Some(next) = [next_arrival, next_due].into_iter().flatten().min() else {
            break;
        };
        tokio::time::advance(next.saturating_duration_since(tokio::time::Instant::now())).await;
        while let Some((i, (_, who))) = pending
            .next_if(|(_, (at, _))| start + Duration::from_secs(*at) <= tokio::time::Instant::now())
        {
            let (id, who) = (i as i64 + 1, format!("u{who}"));
            let now = d.clock.now();
            d.store
                .enqueue(&d.account, &[member(id, &who)], now)
                .unwrap();
            // As stored: to the millisecond.
            let stored = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap();
            members.insert(id, (who, stored));
        }
        d.drain_due().await.unwrap();
    }
    let sends = sink.sends.lock().unwrap().clone();
    (sends, members)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_member_is_in_exactly_one_send_of_its_own_window(
        window in 1u64..900,
        mut arrivals in prop::collection::vec((0u64..3600, 0usize..3), 1..40),
    ) {
        arrivals.sort();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let window = Duration::from_secs(window);
        let (sends, members) = runtime.block_on(play(window, &arrivals, QuietPlan::default()));
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for (recipient, ids, at) in &sends {
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", ids);
            let first = ids.iter().map(|id| members[id].1).min().unwrap();
            prop_assert!(*at >= crate::digest::window_end(first, window), "sent early");
            for id in ids {
                *seen.entry(*id).or_default() += 1;
                prop_assert_eq!(Some(&members[id].0), recipient.as_ref(), "own window only");
            }
        }
        prop_assert_eq!(seen.len(), members.len(), "every member sent");
        prop_assert!(seen.values().all(|n| *n == 1), "each exactly once: {:?}", seen);
    }
}

/// The "dm" sink quiet from `from`:00 to `to`:00 in Europe/Oslo, as a plan
/// and as the times the test checks sends against.
fn quiet_plan(from: u32, to: u32) -> (QuietPlan, crate::quiet::QuietTime) {
    let (from, to) = (format!("{from:02}:00"), format!("{to:02}:00"));
    let window = crate::quiet::QuietWindow::parse(Some((&from, &to)), &[]).unwrap();
    let zone = chrono_tz::Europe::Oslo;
    let quiet = crate::config::SinkQuiet {
        window,
        timezone: Some(zone),
    };
    let kind = sink_config(Duration::from_secs(1)).kind;
    let plan = QuietPlan::one_sink("dm", &kind, quiet, chrono_tz::UTC);
    (plan, window.in_zone(zone))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Digests and quiet hours together, over a day and a half of arrivals:
    /// every member still goes exactly once, and nothing goes in quiet time.
    #[test]
    fn with_quiet_hours_every_member_goes_once_and_nothing_goes_in_quiet_time(
        window in 1u64..3600,
        from in 0u32..24,
        length in 1u32..23,
        mut arrivals in prop::collection::vec((0u64..129_600, 0usize..3), 1..30),
    ) {
        arrivals.sort();
        let (plan, quiet) = quiet_plan(from, (from + length) % 24);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let window = Duration::from_secs(window);
        let (sends, members) = runtime.block_on(play(window, &arrivals, plan));
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for (recipient, ids, at) in &sends {
            prop_assert!(!quiet.is_quiet(*at), "sent in quiet time at {}", at);
            for id in ids {
                *seen.entry(*id).or_default() += 1;
                prop_assert_eq!(Some(&members[id].0), recipient.as_ref(), "own window only");
            }
        }
        prop_assert_eq!(seen.len(), members.len(), "every member sent");
        prop_assert!(seen.values().all(|n| *n == 1), "each exactly once: {:?}", seen);
    }
}
