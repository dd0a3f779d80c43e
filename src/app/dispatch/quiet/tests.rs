//! Quiet hours in the dispatcher: the zone each delivery is read in, and a
//! held delivery in virtual time (sent at the end, not before, no attempt
//! counted meanwhile).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::QuietPlan;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::dispatch::tests::dispatcher_with;
use crate::app::dispatch::Clock;
use crate::config::{load_from_str, Config};
use crate::domain::{AccountId, DeliveryId, DeliveryStatus};

fn config(sinks: &str) -> Config {
    let text = format!(
        r#"
[crayon]
base_url = "https://api.crayon.com"
client_id = "id"
client_secret = "s"
username = "bot@example.com"
password = "p"

[display]
timezone = "Europe/Oslo"

[recipients."ann@example.com"]
email = "ann.home@example.com"
timezone = "Asia/Tokyo"

{sinks}
"#
    );
    load_from_str(&text, Path::new("/etc/bot.toml"), &|_| None, Vec::new()).unwrap()
}

const NIGHTS: &str = r#"quiet_hours = { from = "19:00", to = "07:30" }"#;

#[test]
fn per_person_sinks_use_the_recipients_zone_channels_their_own() {
    let plan = QuietPlan::new(&config(&format!(
        r#"
[sinks.mail]
kind = "email"
smtp = "smtp://127.0.0.1:2525"
tls = "none"
from = "bot@example.com"
{NIGHTS}

[sinks.hook]
kind = "webhook"
url = "https://hooks.example.com/x"
timezone = "America/New_York"
{NIGHTS}

[sinks.plain]
kind = "console"
"#
    )));
    let zone = |sink, who| plan.time_for(sink, who).map(|q| q.zone());
    let tokyo = Some(chrono_tz::Asia::Tokyo);
    assert_eq!(zone("mail", Some("to:ann.home@example.com")), tokyo);
    assert_eq!(zone("mail", Some("cc:ann@example.com")), tokyo);
    assert_eq!(
        zone("mail", Some("ann.home@example.com")),
        tokyo,
        "an old row"
    );
    assert_eq!(zone("mail", Some("ANN@example.com")), tokyo);
    assert_eq!(
        zone("mail", Some("bob@example.com")),
        Some(chrono_tz::Europe::Oslo)
    );
    assert_eq!(
        zone("hook", Some("ann@example.com")),
        Some(chrono_tz::America::New_York)
    );
    assert_eq!(zone("hook", None), Some(chrono_tz::America::New_York));
    assert_eq!(zone("plain", None), None);
}

/// Sink `s` quiet 19:00–07:30 Oslo; the clock at 07:00 CEST on the morning
/// after the spring change (05:00 UTC).
fn quiet_dispatcher(
    dir: &tempfile::TempDir,
) -> (
    super::Dispatcher,
    Arc<crate::sinks::testkit::ScriptedSink>,
    DateTime<Utc>,
) {
    let (mut dispatcher, sink) = dispatcher_with(vec![], dir);
    let plan = QuietPlan::new(&config(&format!("[sinks.s]\nkind = \"console\"\n{NIGHTS}")));
    dispatcher.quiet = Arc::new(plan);
    let wall = Utc.with_ymd_and_hms(2027, 3, 28, 5, 0, 0).unwrap();
    dispatcher.clock = Clock::Tokio {
        wall_at_start: wall,
        start: tokio::time::Instant::now(),
    };
    (dispatcher, sink, wall)
}

#[tokio::test(start_paused = true)]
async fn run_holds_a_delivery_until_the_quiet_end_then_sends_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, sink, _) = quiet_dispatcher(&dir);
    let started = tokio::time::Instant::now();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (d, s) = (dispatcher.clone(), shutdown.clone());
        async move {
            d.run(s, Arc::new(Notify::new()), Duration::from_secs(1))
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(1799)).await;
    assert!(sink.calls().is_empty(), "nothing before 07:30 CEST");
    let held = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!((held.status, held.attempts), (DeliveryStatus::Pending, 0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    run.await.unwrap();
    let calls = sink.calls();
    assert_eq!(calls.len(), 1, "sent once at the end");
    let waited = calls[0] - started;
    assert!(
        (Duration::from_secs(1800)..Duration::from_millis(1_800_100)).contains(&waited),
        "sent at 07:30 CEST, 30 minutes in: {waited:?}"
    );
    let d = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Sent, 1));
}

#[tokio::test(start_paused = true)]
async fn drain_due_defers_without_an_attempt_and_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, sink, wall) = quiet_dispatcher(&dir);
    let summary = dispatcher.drain_due().await.unwrap();
    assert_eq!((summary.deferred, summary.sent), (1, 0));
    assert!(summary.all_sent(), "waiting is not failing");
    assert!(sink.calls().is_empty());
    let d = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 0));
    let end = wall + chrono::Duration::minutes(30);
    assert_eq!(d.next_attempt_at, Some(end));
    let note = dispatcher.quiet.waiting_note(&d, wall).unwrap();
    assert_eq!(
        note,
        "quiet hours until 2027-03-28 07:30 CEST (Europe/Oslo)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_due_in_quiet_time_waits_for_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, _, wall) = quiet_dispatcher(&dir);
    let d = dispatcher
        .store
        .get_delivery(&AccountId::default_account(), DeliveryId(1))
        .unwrap()
        .unwrap();
    let retry = crate::store::AttemptOutcome::Retry {
        error: "HTTP 503".into(),
        next_attempt_at: wall + chrono::Duration::minutes(5),
    };
    let moved = dispatcher.retry_after_quiet(&d, retry);
    assert_eq!(
        moved.next_attempt_at(),
        Some(wall + chrono::Duration::minutes(30))
    );
}
