//! Burst delivery: 1,000 queued exports turn downloadable at once and go to
//! one generic webhook sink on loopback, with the default concurrency.
//!
//! The poll is the real one (`Watcher::poll`: the real Crayon client against
//! a wiremock Crayon), the deliveries go through the real dispatcher loop
//! that `run` uses, and an in-process HTTP receiver counts the connections it
//! accepted. Reported per round: time from poll start to the last delivery
//! recorded as sent, connections opened, process CPU time; then the median.
//!
//! `cargo run --release --example burst [-- ROUNDS [ITEMS]]` (see BENCHMARKS.md).

#[path = "../benches/support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crayon_export_bot::app::App;
use crayon_export_bot::domain::DeliveryStatus;
use serde_json::json;
use support::{Queued, Receiver};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What one round measured.
struct Round {
    elapsed: Duration,
    cpu: Duration,
    connections: usize,
    requests: usize,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let items: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let r = burst(items).await;
        println!(
            "round {round}: {items} deliveries in {:>4} ms (cpu {:>4} ms), \
             {} connections, {} requests",
            r.elapsed.as_millis(),
            r.cpu.as_millis(),
            r.connections,
            r.requests
        );
        results.push(r);
    }
    results.sort_by_key(|r| r.elapsed);
    let median = &results[results.len() / 2];
    println!(
        "median: {} ms poll start → last delivery confirmed, cpu {} ms, {} connections",
        median.elapsed.as_millis(),
        median.cpu.as_millis(),
        median.connections
    );
}

/// A fake Crayon whose queue lists `items` queued exports on the first poll
/// and all of them downloadable from the second on.
async fn fake_crayon(items: usize) -> MockServer {
    let now = Utc::now();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"AccessToken": "t", "ExpiresIn": 3600})),
        )
        .mount(&server)
        .await;
    let body = |queued| {
        ResponseTemplate::new(200)
            .set_body_raw(support::queue_body(items, queued, now), "application/json")
    };
    Mock::given(method("GET"))
        .and(path("/api/v1/exports/"))
        .respond_with(body(Queued::All))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/exports/"))
        .respond_with(body(Queued::None))
        .mount(&server)
        .await;
    server
}

async fn burst(items: usize) -> Round {
    let receiver = Receiver::start().await;
    let crayon = fake_crayon(items).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = support::bot_config(
        dir.path(),
        &format!("{}/", crayon.uri()),
        &receiver.url(),
        None,
        "",
    );
    let app = App::build(config).expect("app builds");
    let mut watcher = app.watcher();
    assert!(watcher.poll().await.expect("baseline poll").baseline);

    let (shutdown, wake) = (CancellationToken::new(), Arc::new(Notify::new()));
    let dispatcher = tokio::spawn({
        let (d, s, w) = (app.dispatcher.clone(), shutdown.clone(), wake.clone());
        async move { d.run(s, w, Duration::from_secs(5)).await }
    });

    let (started, cpu) = (Instant::now(), support::process_cpu_time());
    let report = watcher.poll().await.expect("burst poll");
    assert_eq!(report.deliveries, items);
    wake.notify_one();
    while sent(&app) < items {
        let answered = receiver.answered.notified();
        let _ = tokio::time::timeout(Duration::from_millis(5), answered).await;
    }
    let round = Round {
        elapsed: started.elapsed(),
        cpu: support::process_cpu_time() - cpu,
        connections: receiver.connections.load(Ordering::SeqCst),
        requests: receiver.requests.load(Ordering::SeqCst),
    };
    shutdown.cancel();
    dispatcher.await.expect("dispatcher stops");
    round
}

/// Deliveries recorded as sent in the outbox.
fn sent(app: &App) -> usize {
    app.store
        .outbox_counts(&app.account)
        .expect("outbox counts")
        .iter()
        .filter(|(_, status, _)| *status == DeliveryStatus::Sent)
        .map(|(_, _, n)| *n as usize)
        .sum()
}
