//! The dispatcher near its limit: 1,000 pending deliveries to one generic
//! webhook sink (default concurrency, 4) on a loopback HTTP/1.1 receiver
//! that answers `200` at once (`support::Receiver`, keep-alive).
//!
//! Measured per round, each on a fresh state file holding the same 1,000
//! rendered deliveries (made by the real `Watcher::process`):
//!
//! - `floor`: the same number of POSTs of the same bodies from a plain
//!   `reqwest::Client`, at the sink's concurrency: what the network and the
//!   receiver cost, the bound no dispatcher can beat;
//! - `run`: the real `Dispatcher::run` loop, from its start to the last
//!   delivery recorded as `sent` in the outbox;
//! - `once`: `Dispatcher::drain_due` (what `once` does), start to return.
//!
//! Printed: every round (with the process CPU of `floor` and `run`: the
//! burst is CPU-bound), then medians and the ratios to the floor.
//! `cargo bench --bench dispatch [-- ROUNDS [DELIVERIES]]` (see BENCHMARKS.md).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crayon_export_bot::app::App;
use crayon_export_bot::domain::{DeliveryStatus, RenderedMessage};
use support::{Queued, Receiver};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The sink's concurrency (the configured default).
const CONCURRENCY: usize = 4;

/// What one round measured, in milliseconds.
#[derive(Default, Clone, Copy)]
struct Round {
    floor: f64,
    run: f64,
    once: f64,
    run_cpu: f64,
    floor_cpu: f64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(9);
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut all = Vec::new();
    for round in 1..=rounds {
        let r = runtime.block_on(measure(n));
        println!(
            "round {round}: floor {:6.1} ms (cpu {:6.1} ms) | run {:6.1} ms (cpu {:6.1} ms) | once {:6.1} ms",
            r.floor, r.floor_cpu, r.run, r.run_cpu, r.once
        );
        all.push(r);
    }
    let median = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (floor, run, once) = (median(|r| r.floor), median(|r| r.run), median(|r| r.once));
    println!(
        "median of {rounds}, {n} deliveries: floor {floor:.1} ms (cpu {:.1} ms), run {run:.1} ms \
         ({:.2}x floor, cpu {:.1} ms), once {once:.1} ms ({:.2}x floor)",
        median(|r| r.floor_cpu),
        run / floor,
        median(|r| r.run_cpu),
        once / floor
    );
}

async fn measure(n: usize) -> Round {
    let receiver = Receiver::start().await;
    let mut round = Round::default();
    let bot = Bot::new(n, &receiver);
    let cpu = support::process_cpu_time();
    round.floor = floor(&bot.messages, &receiver.url()).await;
    round.floor_cpu = ms(support::process_cpu_time() - cpu);
    // Each bot's state file has a checkpoint thread: dropped before the next
    // phase, so it does not copy its WAL back during that phase.
    drop(bot);

    let bot = Bot::new(n, &receiver);
    let (shutdown, wake) = (CancellationToken::new(), Arc::new(Notify::new()));
    let before = receiver.requests.load(Ordering::SeqCst);
    let (started, cpu) = (Instant::now(), support::process_cpu_time());
    let dispatcher = tokio::spawn({
        let (d, s) = (bot.app.dispatcher.clone(), shutdown.clone());
        async move { d.run(s, wake, Duration::from_secs(5)).await }
    });
    bot.wait_all_sent(n, &receiver, before + n).await;
    round.run = ms(started.elapsed());
    round.run_cpu = ms(support::process_cpu_time() - cpu);
    phase("run", started);
    shutdown.cancel();
    dispatcher.await.expect("dispatcher stops");
    drop(bot);

    let bot = Bot::new(n, &receiver);
    let started = Instant::now();
    let summary = bot.app.dispatcher.drain_due().await.expect("drain");
    round.once = ms(started.elapsed());
    phase("once", started);
    assert_eq!(summary.sent, n, "once sent everything");
    assert_eq!(bot.sent(), n);
    round
}

/// With `DISPATCH_PHASES` set, prints the phase's start and end on the
/// monotonic clock (what `perf record -k CLOCK_MONOTONIC` stamps), to cut
/// a profile to one phase with `perf script --time START,END`.
fn phase(name: &str, started: Instant) {
    if std::env::var_os("DISPATCH_PHASES").is_some() {
        let end = support::monotonic_now();
        let start = end - started.elapsed();
        println!(
            "PHASE {name} {:.6},{:.6}",
            start.as_secs_f64(),
            end.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A bot in a temp folder with `n` pending deliveries to the receiver.
struct Bot {
    _dir: tempfile::TempDir,
    app: App,
    messages: Vec<RenderedMessage>,
}

impl Bot {
    fn new(n: usize, receiver: &Receiver) -> Bot {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = support::bot_config(dir.path(), support::NO_CRAYON, &receiver.url(), None, "");
        let app = App::build(config).expect("app builds");
        let mut watcher = app.watcher();
        let now = Utc::now();
        watcher
            .process(&support::queue_body(n, Queued::All, now), now)
            .expect("baseline");
        let report = watcher
            .process(&support::queue_body(n, Queued::None, now), now)
            .expect("burst");
        assert_eq!(report.deliveries, n);
        let messages = app
            .store
            .list_deliveries(&app.account, Some(DeliveryStatus::Pending))
            .expect("pending")
            .into_iter()
            .map(|d| d.message)
            .collect();
        Bot {
            _dir: dir,
            app,
            messages,
        }
    }

    /// Deliveries recorded as sent.
    fn sent(&self) -> usize {
        self.app
            .store
            .outbox_counts(&self.app.account)
            .expect("outbox counts")
            .iter()
            .filter(|(_, status, _)| *status == DeliveryStatus::Sent)
            .map(|(_, _, n)| *n as usize)
            .sum()
    }

    /// Returns once all `n` are recorded as sent. Until the receiver has
    /// answered `answered` requests in all it only watches that counter
    /// (reading the state file every 0.5 ms through the burst cost the
    /// dispatcher CPU it was being measured on); then it looks every 0.1 ms
    /// through a connection of its own: a WAL reader never holds up the
    /// store's writes (looking through the store would take its lock
    /// between the dispatcher's commits).
    async fn wait_all_sent(&self, n: usize, receiver: &Receiver, answered: usize) {
        let reader = rusqlite::Connection::open(support::state_path(self._dir.path()))
            .expect("open the state file to read");
        while receiver.requests.load(Ordering::SeqCst) < answered {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let sent = || -> usize {
            reader
                .query_row(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .expect("count sent") as usize
        };
        // Tokio's timer has a 1 ms resolution; a thread sleep is finer.
        tokio::task::block_in_place(|| {
            while sent() < n {
                std::thread::sleep(Duration::from_micros(100));
            }
        });
    }
}

/// The same POSTs from a plain client at the sink's concurrency.
async fn floor(messages: &[RenderedMessage], url: &str) -> f64 {
    let client = reqwest::Client::new();
    let bodies: Arc<Vec<String>> = Arc::new(
        messages
            .iter()
            .map(|m| serde_json::to_string(m).expect("json"))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.to_owned());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                assert!(answer.status().is_success());
            }
        });
    }
    while workers.join_next().await.is_some() {}
    ms(started.elapsed())
}
