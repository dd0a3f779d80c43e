//! The dispatcher under faults: a server asking to wait for ages, a sink
//! that panics, a state file refusing writes, a sink far slower than the
//! others.

use std::io::Write;

use super::attempt::SEND_PANICKED;
use super::lanes::{Lanes, REFILL_BELOW};
use super::tests::{
    dispatcher_over, dispatcher_with, gaps, now, policy, run_until_calls, start_run,
};
use super::*;
use crate::config::SinkKind;
use crate::domain::{DeliveryStatus, Disposition, EventKind, ExportId, NewDelivery};
use crate::sinks::testkit::ScriptedSink;
use crate::sinks::Sink;

fn new_delivery(item: i64, sink: &str) -> NewDelivery {
    NewDelivery {
        item_id: ExportId(item),
        event: EventKind::Downloadable,
        sink: sink.into(),
        recipient: None,
        message: Default::default(),
        disposition: Disposition::Pending,
    }
}

fn delivery(d: &Dispatcher, id: i64) -> Delivery {
    d.store
        .get_delivery(&d.account, DeliveryId(id))
        .unwrap()
        .unwrap()
}

#[test]
fn a_server_wait_beyond_backoff_max_is_cut_to_backoff_max() {
    let p = policy();
    for after in [
        Duration::from_secs(11),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let err = SendError::RetryAfter {
            after,
            message: "HTTP 429".into(),
        };
        match p.outcome(1, &Err(err), now()) {
            AttemptOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                let max = now() + chrono::Duration::seconds(10);
                assert_eq!(next_attempt_at, max, "{after:?}");
                assert!(
                    error.starts_with("HTTP 429") && error.contains("10s"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn drain_due_records_a_panicking_send_as_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, sink) = dispatcher_over(ScriptedSink::panicking_first(1, vec![]), &dir);
    let summary = dispatcher.drain_due().await.unwrap();
    assert_eq!(sink.calls().len(), 1);
    assert_eq!(
        summary,
        DrainSummary {
            sent: 0,
            retrying: 1,
            dead: 0,
            ..DrainSummary::default()
        }
    );
    let d = delivery(&dispatcher, 1);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(d.last_error.as_deref(), Some(SEND_PANICKED));
}

#[tokio::test(start_paused = true)]
async fn run_retries_a_panicking_send_after_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, sink) = dispatcher_over(ScriptedSink::panicking_first(1, vec![]), &dir);
    run_until_calls(&dispatcher, &sink, 2).await;
    let gaps = gaps(&sink.calls());
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!((2_000..2_100).contains(&gaps[0]), "backoff: {gaps:?}");
    let d = delivery(&dispatcher, 1);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 2));
}

/// Log lines written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Waits (in real time, up to 10 s) until `done`.
/// A connection to the state file that makes every outbox update fail (as a
/// locked file would) until `DROP TRIGGER busy`.
fn refuse_updates(dir: &tempfile::TempDir) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER busy BEFORE UPDATE ON outbox \
         BEGIN SELECT RAISE(ABORT, 'database is locked'); END;",
    )
    .unwrap();
    db
}

async fn until(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// Real time: in paused time the old code's instant re-sends would keep the
// runtime busy and virtual time from advancing, so the test would hang
// instead of failing.
#[tokio::test]
async fn a_failing_write_after_the_send_is_retried_and_the_message_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, sink) = dispatcher_with(vec![], &dir);
    let logs = Logs::default();
    let _guard = logs.capture();
    let db = refuse_updates(&dir);
    let (shutdown, task) = start_run(&dispatcher);
    until(|| !sink.calls().is_empty()).await;
    // The writes at about 0, 0.1, 0.3 and 0.7 s fail; a later one works.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.execute_batch("DROP TRIGGER busy").unwrap();
    until(|| delivery(&dispatcher, 1).status == DeliveryStatus::Sent).await;
    shutdown.cancel();
    task.await.unwrap();

    assert_eq!(sink.calls().len(), 1, "sent once");
    let d = delivery(&dispatcher, 1);
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1));
    let logs = logs.text();
    let warned = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("retrying the write"))
        .collect::<Vec<_>>();
    assert!(warned.len() >= 2, "{logs}");
    assert!(warned.iter().all(|l| l.contains("delivery=1")), "{logs}");
}

#[tokio::test]
async fn a_full_window_parks_the_rest_while_other_sinks_take_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, _) = dispatcher_with(vec![], &dir);
    let mut more: Vec<NewDelivery> = (2..=300).map(|i| new_delivery(i, "s")).collect();
    more.extend((301..=303).map(|i| new_delivery(i, "t")));
    let now = dispatcher.clock.now();
    dispatcher
        .store
        .enqueue(&AccountId::default_account(), &more, now)
        .unwrap();

    let mut lanes = Lanes::default();
    let taken = lanes.scan(&dispatcher, now).unwrap();
    let to = |sink: &str| taken.iter().filter(|d| d.sink == sink).count();
    assert_eq!((to("s"), to("t")), (BATCH, 3));
    assert_eq!(lanes.parked(), 300 - BATCH);
    assert!(
        lanes.scan(&dispatcher, now).unwrap().is_empty(),
        "nothing new"
    );

    let mut refilled = Vec::new();
    for _ in 0..BATCH - REFILL_BELOW {
        refilled.extend(lanes.finished(&dispatcher, "s", now));
    }
    let ids: Vec<i64> = refilled.iter().map(|d| d.id.0).collect();
    let parked: Vec<i64> = (BATCH as i64 + 1..=300).collect();
    assert_eq!(ids, parked, "the parked ones follow, in due order");
    assert_eq!(lanes.parked(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_sink_stuck_behind_its_rate_limit_holds_back_no_other_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (mut dispatcher, slow) = dispatcher_with(vec![], &dir);
    let fast = Arc::new(ScriptedSink::new(vec![]));
    let sinks = [
        ("s".to_string(), slow.clone() as Arc<dyn Sink>),
        ("f".to_string(), fast.clone() as Arc<dyn Sink>),
    ];
    dispatcher.sinks = Arc::new(Sinks::from_sinks(sinks.into()));
    let once_an_hour = SinkConfig {
        rate_limit: Some((1, Duration::from_secs(3600))),
        digest: None,
        ..sink_config("s", 4)
    };
    let limits = [("s".to_string(), Arc::new(SinkLimits::new(&once_an_hour)))];
    dispatcher.limits = Arc::new(limits.into());
    let more: Vec<NewDelivery> = (2..=300)
        .flat_map(|i| [new_delivery(i, "f"), new_delivery(i, "s")])
        .chain([new_delivery(1, "f")])
        .collect();
    let now = dispatcher.clock.now();
    dispatcher
        .store
        .enqueue(&AccountId::default_account(), &more, now)
        .unwrap();

    run_until_calls(&dispatcher, &fast, 300).await;
    assert_eq!(fast.calls().len(), 300, "every message of the fast sink");
    assert_eq!(slow.calls().len(), 1, "the slow sink sent its one per hour");
}

fn sink_config(name: &str, concurrency: usize) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind: SinkKind::Console,
        enabled: true,
        concurrency,
        rate_limit: None,
        digest: None,
        vars: Default::default(),
        attach: None,
    }
}

fn limits_of(sinks: &[(&str, usize)]) -> Arc<HashMap<String, Arc<SinkLimits>>> {
    let limits = sinks
        .iter()
        .map(|(name, n)| {
            (
                name.to_string(),
                Arc::new(SinkLimits::new(&sink_config(name, *n))),
            )
        })
        .collect();
    Arc::new(limits)
}

#[test]
fn a_reloaded_dispatcher_keeps_the_in_flight_record_and_unchanged_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut old, _) = dispatcher_with(vec![], &dir);
    old.limits = limits_of(&[("a", 4), ("b", 4)]);
    old.in_flight.lock().unwrap().insert(DeliveryId(7));
    let mut reloaded = old.clone();
    reloaded.in_flight = Arc::default();
    reloaded.limits = limits_of(&[("a", 4), ("b", 2), ("c", 1)]);

    let next = reloaded.succeeding(&old);
    assert!(
        Arc::ptr_eq(&next.limits["a"], &old.limits["a"]),
        "sends still running under the old config count against a's limit"
    );
    assert!(!Arc::ptr_eq(&next.limits["b"], &old.limits["b"]));
    assert_eq!(next.limits["b"].in_flight.available_permits(), 2);
    assert!(next.limits.contains_key("c"));
    assert!(next.in_flight.lock().unwrap().contains(&DeliveryId(7)));
}

/// A send's slot is freed once its outcome is queued for the write (the
/// sink's next send overlaps the write), yet no more than 2 × concurrency
/// attempts are ever sent and not recorded, which bounds what a crash can
/// send twice: with every write refused, a sink at concurrency 2 gets
/// exactly 4 sends (the old writer, holding the slot until the write: 2;
/// without the bound: all 10); once writes work, each is sent once.
#[tokio::test]
async fn while_nothing_can_be_recorded_a_sink_gets_twice_its_concurrency_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let (mut dispatcher, sink) = dispatcher_with(vec![], &dir);
    dispatcher.limits = limits_of(&[("s", 2)]);
    let more: Vec<NewDelivery> = (2..=10).map(|i| new_delivery(i, "s")).collect();
    let now = dispatcher.clock.now();
    dispatcher
        .store
        .enqueue(&AccountId::default_account(), &more, now)
        .unwrap();
    let db = refuse_updates(&dir);
    let (shutdown, task) = start_run(&dispatcher);
    until(|| sink.calls().len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.calls().len(),
        4,
        "sent and unrecorded: 2 × concurrency"
    );

    db.execute_batch("DROP TRIGGER busy").unwrap();
    let all_sent = || (1..=10).all(|id| delivery(&dispatcher, id).status == DeliveryStatus::Sent);
    until(all_sent).await;
    shutdown.cancel();
    task.await.unwrap();
    assert!(all_sent(), "every delivery recorded as sent");
    assert_eq!(sink.calls().len(), 10, "each sent once");
}
