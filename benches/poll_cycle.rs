//! The poll cycle at 1k, 10k and 100k queue items, against a real SQLite
//! file: the raw typed parse of the body alone, then the whole cycle through
//! `Watcher::process` (what `once` and `run` call after the HTTP GET) with no
//! change and with 1 % of the items turning downloadable.
//!
//! Every figure is taken twice: wall time (criterion's default) and the
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), under `wall/…` and `cpu/…`.
//! Rows written per cycle (`CommitStats`) are printed once per size to show
//! that writes follow the changes, not the queue's size.
//!
//! `cargo bench --bench poll_cycle` (see BENCHMARKS.md).

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crayon_export_bot::app::poll::{PollReport, Watcher};
use crayon_export_bot::app::App;
use crayon_export_bot::domain::{QueueAnswer, Snapshot};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use support::Queued;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// One bot with a baseline of `n` items already committed.
struct Cycle {
    dir: tempfile::TempDir,
    _app: App,
    watcher: Watcher,
    /// 1 % of the items queued: the stored state between iterations.
    base: Vec<u8>,
    /// Everything downloadable: 1 % flipped against `base`.
    changed: Vec<u8>,
    now: DateTime<Utc>,
}

impl Cycle {
    fn new(n: usize) -> Cycle {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = support::bot_config(
            dir.path(),
            support::NO_CRAYON,
            "http://127.0.0.1:9/hook",
            None,
            "",
        );
        let app = App::build(config).expect("app builds");
        let mut watcher = app.watcher();
        let now = Utc::now();
        let base = support::queue_body(n, Queued::OnePercent, now);
        let changed = support::queue_body(n, Queued::None, now);
        let report = watcher.process(&base, now).expect("baseline");
        assert!(report.baseline);
        Cycle {
            dir,
            _app: app,
            watcher,
            base,
            changed,
            now,
        }
    }

    fn no_change(&mut self) -> PollReport {
        self.watcher.process(&self.base, self.now).expect("poll")
    }

    /// Back to `base` with no fired records, so `one_percent` fires again.
    fn reset(&mut self) {
        self.watcher.process(&self.base, self.now).expect("reset");
        support::forget_events(&support::state_path(self.dir.path()));
    }

    fn one_percent(&mut self) -> PollReport {
        self.watcher.process(&self.changed, self.now).expect("poll")
    }
}

/// Thread CPU time as a criterion measurement.
struct CpuTime;

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        support::thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        support::thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn wall_clock() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn print_rows(n: usize, cycle: &mut Cycle) {
    let same = cycle.no_change();
    cycle.reset();
    let flip = cycle.one_percent();
    cycle.reset();
    eprintln!(
        "rows n={n}: no change {:?}; 1% changed {:?} (events {}, deliveries {})",
        same.commit, flip.commit, flip.events, flip.deliveries
    );
}

fn poll_cycle<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    prefix: &str,
    clock: fn() -> Duration,
) {
    for n in SIZES {
        let mut cycle = Cycle::new(n);
        if prefix == "wall" {
            print_rows(n, &mut cycle);
        }
        let mut group = c.benchmark_group(format!("{prefix}/{n}"));
        configure(&mut group, n, cycle.base.len());
        group.bench_function("raw_parse", |b| {
            b.iter(|| serde_json::from_slice::<QueueAnswer>(black_box(&cycle.base)).unwrap())
        });
        group.bench_function("snapshot_parse", |b| {
            b.iter(|| Snapshot::parse(black_box(&cycle.base)).unwrap())
        });
        group.bench_function("cycle_no_change", |b| b.iter(|| cycle.no_change()));
        group.bench_function("cycle_1pct", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    cycle.reset();
                    let start = clock();
                    black_box(cycle.one_percent());
                    total += clock() - start;
                }
                total
            })
        });
        group.finish();
    }
}

fn configure<M: Measurement>(group: &mut BenchmarkGroup<'_, M>, n: usize, bytes: usize) {
    group.throughput(Throughput::Bytes(bytes as u64));
    if n >= 10_000 {
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if n >= 100_000 { 8 } else { 3 }));
    }
}

fn wall(c: &mut Criterion) {
    poll_cycle(c, "wall", wall_clock);
}

fn cpu(c: &mut Criterion<CpuTime>) {
    poll_cycle(c, "cpu", support::thread_cpu_time);
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
