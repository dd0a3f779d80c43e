//! The status page with 10,000 outbox rows in a real SQLite file: gathering
//! the facts (`status::gather`, the bounded store reads), then the whole
//! HTML page (gather + Tera render) and the whole `/api/status` body
//! (gather + JSON). The target (issue 20): the page under 50 ms.
//!
//! The outbox: 8,000 sent deliveries (each with its attempt), 1,000 dead
//! (each after a failed attempt), 1,000 skipped, over a 1,000-item queue;
//! the page lists 50 recent + 500 dead + 500 skipped of them.
//!
//! `cargo bench --bench status_page` (see BENCHMARKS.md).

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crayon_export_bot::app::telemetry::Health;
use crayon_export_bot::domain::{
    AccountId, DeliveryStatus, Disposition, EventKind, ExportId, NewDelivery, RenderedMessage,
    Snapshot,
};
use crayon_export_bot::status::page::Page;
use crayon_export_bot::status::{gather, StatusSource};
use crayon_export_bot::store::{AttemptOutcome, PollCommit, SqliteStore, Store};
use criterion::{criterion_group, criterion_main, Criterion};
use support::Queued;

const ITEMS: usize = 1_000;
const ROWS: usize = 10_000;

/// A state file with [`ROWS`] deliveries as described above.
fn populated(dir: &tempfile::TempDir) -> SqliteStore {
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("state file");
    let account = AccountId::default_account();
    let now = Utc::now();
    let (snapshot, _) = Snapshot::parse(&support::queue_body(ITEMS, Queued::None, now)).unwrap();
    let ids: Vec<ExportId> = snapshot.items.keys().copied().collect();
    let deliveries: Vec<NewDelivery> = (0..ROWS)
        .map(|i| NewDelivery {
            item_id: ids[i % ids.len()],
            event: EventKind::Downloadable,
            sink: format!("sink{}", i % 4),
            recipient: Some(format!("user{}@example.com", i % 50)),
            message: RenderedMessage {
                parts: BTreeMap::from([("json".to_owned(), "{\"text\":\"ready\"}".repeat(8))]),
                context: None,
            },
            disposition: match i % 10 {
                9 => Disposition::Skipped(format!("RequestedBy user{i} is not one address")),
                _ => Disposition::Pending,
            },
        })
        .collect();
    let commit = PollCommit {
        account: &account,
        previous: None,
        snapshot: &snapshot,
        changes: None,
        fired: &[],
        deliveries: &deliveries,
        now,
    };
    store.commit_poll(&commit).expect("baseline");
    let pending = store
        .list_deliveries(&account, Some(DeliveryStatus::Pending))
        .unwrap();
    for (i, d) in pending.iter().enumerate() {
        let outcome = match i % 9 {
            8 => AttemptOutcome::Dead {
                error: "HTTP 404 from the webhook: not found".into(),
            },
            _ => AttemptOutcome::Sent,
        };
        let latency = Duration::from_millis(40);
        store
            .record_attempt(&account, d.id, &outcome, now, latency)
            .unwrap();
    }
    let counts = store.outbox_counts(&account).unwrap();
    println!("status_page: outbox {counts:?}");
    store
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(populated(&dir));
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    health.polled(Ok(()));
    let source = StatusSource {
        store,
        health,
        accounts: vec![AccountId::default_account()],
        timezone: chrono_tz::Europe::Oslo,
    };
    let page = Page::new(source.timezone).unwrap();
    let html = page.render(&gather(&source, Utc::now()).unwrap()).unwrap();
    println!("status_page: HTML {} bytes", html.len());

    let mut group = c.benchmark_group("status_page/10000_rows");
    group.bench_function("gather", |b| {
        b.iter(|| black_box(gather(&source, Utc::now()).unwrap()))
    });
    group.bench_function("html", |b| {
        b.iter(|| {
            let view = gather(&source, Utc::now()).unwrap();
            black_box(page.render(&view).unwrap())
        })
    });
    group.bench_function("json", |b| {
        b.iter(|| {
            let view = gather(&source, Utc::now()).unwrap();
            black_box(serde_json::to_vec(&view).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
