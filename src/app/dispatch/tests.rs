//! The dispatcher's unit tests: retry timing in virtual time, limits, outcomes.

use super::*;
use crate::domain::{Disposition, EventKind, ExportId, NewDelivery, Snapshot};
use crate::sinks::testkit::ScriptedSink;
use crate::sinks::Sink;
use crate::store::{PollCommit, SqliteStore};

/// A dispatcher over one scripted sink `s`, with one pending delivery.
pub(super) fn dispatcher_with(
    script: Vec<Result<(), SendError>>,
    dir: &tempfile::TempDir,
) -> (Dispatcher, Arc<ScriptedSink>) {
    dispatcher_over(ScriptedSink::new(script), dir)
}

/// A dispatcher over `sink` as sink `s`, with one pending delivery.
pub(super) fn dispatcher_over(
    sink: ScriptedSink,
    dir: &tempfile::TempDir,
) -> (Dispatcher, Arc<ScriptedSink>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let clock = Clock::tokio();
    let delivery = NewDelivery {
        item_id: ExportId(1),
        event: EventKind::Downloadable,
        sink: "s".into(),
        recipient: None,
        message: Default::default(),
        disposition: Disposition::Pending,
    };
    let snapshot = Snapshot::default();
    store
        .commit_poll(&PollCommit {
            account: &AccountId::default_account(),
            previous: None,
            snapshot: &snapshot,
            changes: None,
            fired: &[(ExportId(1), EventKind::Downloadable)],
            deliveries: &[delivery],
            now: clock.now(),
        })
        .unwrap();
    let sink = Arc::new(sink);
    let sinks = Sinks::from_sinks([("s".to_string(), sink.clone() as Arc<dyn Sink>)].into());
    let dispatcher = Dispatcher {
        store,
        account: AccountId::default_account(),
        sinks: Arc::new(sinks),
        renderer: Arc::new(crate::render::Renderer::new(None, chrono_tz::UTC).unwrap()),
        digests: Arc::default(),
        policy: policy(),
        limits: Arc::default(),
        in_flight: Arc::default(),
        clock,
        grace: Duration::from_secs(1),
        leading: crate::app::leading::Leading::always(),
        configs: Arc::default(),
        attacher: None,
        attach_cap: 0,
        writes: Arc::default(),
        quiet: Arc::default(),
        held: Default::default(),
    };
    (dispatcher, sink)
}

/// `dispatcher.run` in a task of its own; cancel the token to stop it.
pub(super) fn start_run(
    dispatcher: &Dispatcher,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (d, s) = (dispatcher.clone(), shutdown.clone());
        async move {
            d.run(s, Arc::new(Notify::new()), Duration::from_secs(1))
                .await
        }
    });
    (shutdown, task)
}

pub(super) async fn run_until_calls(dispatcher: &Dispatcher, sink: &ScriptedSink, calls: usize) {
    let (shutdown, task) = start_run(dispatcher);
    for _ in 0..10_000 {
        if sink.calls().len() >= calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

pub(super) fn gaps(calls: &[tokio::time::Instant]) -> Vec<u128> {
    calls
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retries_wait_the_backoff_and_retry_after_in_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        Err(SendError::Retryable("HTTP 500".into())),
        Err(SendError::RetryAfter {
            after: Duration::from_secs(120),
            message: "HTTP 429".into(),
        }),
    ];
    let (mut dispatcher, sink) = dispatcher_with(script, &dir);
    dispatcher.policy.max = Duration::from_secs(600);
    run_until_calls(&dispatcher, &sink, 3).await;
    let gaps = gaps(&sink.calls());
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(
        (2_000..2_100).contains(&gaps[0]),
        "backoff after attempt 1: {gaps:?}"
    );
    assert!(
        (120_000..120_100).contains(&gaps[1]),
        "Retry-After honoured: {gaps:?}"
    );
    let delivery = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, crate::domain::DeliveryStatus::Sent);
    assert_eq!(delivery.attempts, 3);
}

#[test]
fn a_rate_limit_allows_its_burst_then_holds_back() {
    let sink = SinkConfig {
        name: "s".into(),
        kind: crate::config::SinkKind::Console,
        enabled: true,
        concurrency: 2,
        rate_limit: Some((3, Duration::from_secs(60))),
        digest: None,
        vars: Default::default(),
        attach: None,
    };
    let limits = SinkLimits::new(&sink);
    let rate = limits.rate.expect("a limiter");
    assert!((0..3).all(|_| rate.check().is_ok()));
    assert!(
        rate.check().is_err(),
        "the 4th send within the minute waits"
    );
    assert_eq!(limits.in_flight.available_permits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_goes_dead_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![Err(SendError::Permanent(
        "HTTP 400: invalid_payload".into(),
    ))];
    let (dispatcher, sink) = dispatcher_with(script, &dir);
    run_until_calls(&dispatcher, &sink, 1).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(sink.calls().len(), 1);
    let delivery = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, crate::domain::DeliveryStatus::Dead);
    assert_eq!(
        delivery.last_error.as_deref(),
        Some("HTTP 400: invalid_payload")
    );
}

#[tokio::test]
async fn drain_due_attempts_every_due_delivery_once_even_past_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let failing = vec![Err(SendError::RetryAfter {
        after: Duration::ZERO,
        message: "HTTP 429".into(),
    })];
    let (dispatcher, sink) = dispatcher_with(failing, &dir);
    let more: Vec<NewDelivery> = (2..=BATCH as i64 + 50)
        .map(|id| NewDelivery {
            item_id: ExportId(id),
            event: EventKind::Downloadable,
            sink: "s".into(),
            recipient: None,
            message: Default::default(),
            disposition: Disposition::Pending,
        })
        .collect();
    dispatcher
        .store
        .enqueue(&AccountId::default_account(), &more, dispatcher.clock.now())
        .unwrap();
    let summary = dispatcher.drain_due().await.unwrap();
    assert_eq!(
        sink.calls().len(),
        BATCH + 50,
        "each due delivery exactly once"
    );
    assert_eq!(summary.sent, BATCH + 49);
    assert_eq!(
        summary.retrying, 1,
        "a zero Retry-After is not retried within the same drain"
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_run_out_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let script = vec![Err(SendError::Retryable("HTTP 503".into())); 5];
    let (dispatcher, sink) = dispatcher_with(script, &dir);
    run_until_calls(&dispatcher, &sink, 3).await;
    let before = sink.calls().len();
    assert_eq!(before, 3);
    let delivery = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, crate::domain::DeliveryStatus::Dead);
    assert!(delivery
        .last_error
        .unwrap()
        .contains("gave up after 3 attempts"));
}

pub(super) fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial: Duration::from_secs(2),
        max: Duration::from_secs(10),
    }
}

pub(super) fn now() -> DateTime<Utc> {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter_inside_it() {
    let p = policy();
    let ceilings: Vec<u64> = (1..=5).map(|n| p.backoff_ceiling(n).as_secs()).collect();
    assert_eq!(ceilings, [2, 4, 8, 10, 10]);
    for n in 1..=5 {
        for _ in 0..50 {
            let d = p.backoff(n);
            assert!(d >= p.initial && d <= p.backoff_ceiling(n), "{n}: {d:?}");
        }
    }
}

#[test]
fn outcomes_follow_the_error_class() {
    let p = policy();
    assert_eq!(p.outcome(1, &Ok(()), now()), AttemptOutcome::Sent);
    let dead = p.outcome(1, &Err(SendError::Permanent("HTTP 400: bad".into())), now());
    assert_eq!(
        dead,
        AttemptOutcome::Dead {
            error: "HTTP 400: bad".into()
        }
    );
    match p.outcome(1, &Err(SendError::Retryable("HTTP 500".into())), now()) {
        AttemptOutcome::Retry {
            next_attempt_at, ..
        } => {
            assert!(next_attempt_at >= now() + chrono::Duration::seconds(2));
            assert!(next_attempt_at <= now() + chrono::Duration::seconds(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn retry_after_overrides_the_backoff() {
    let p = RetryPolicy {
        max: Duration::from_secs(600),
        ..policy()
    };
    let err = SendError::RetryAfter {
        after: Duration::from_secs(120),
        message: "HTTP 429".into(),
    };
    match p.outcome(2, &Err(err), now()) {
        AttemptOutcome::Retry {
            next_attempt_at, ..
        } => {
            assert_eq!(next_attempt_at, now() + chrono::Duration::seconds(120));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attempts_run_out_into_dead_with_the_last_reason() {
    let p = policy();
    let outcome = p.outcome(3, &Err(SendError::Retryable("HTTP 503".into())), now());
    assert_eq!(
        outcome,
        AttemptOutcome::Dead {
            error: "gave up after 3 attempts: HTTP 503".into()
        }
    );
}
