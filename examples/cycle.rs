//! The poll cycle as a plain program, for CPU time, peak RSS and profilers
//! (`perf stat -e instructions`, `valgrind --tool=callgrind`), which
//! criterion's harness gets in the way of.
//!
//! `cargo run --release --example cycle -- N MODE ITERS` with MODE one of
//! `raw` (typed parse of the body alone), `snapshot` (`Snapshot::parse`),
//! `same` (the cycle with no change) or `flip` (the cycle with 1 % turning
//! downloadable; the untimed reset between iterations is counted by outside
//! profilers too). Prints median wall and thread CPU per iteration, the rows
//! the last cycle wrote, and the peak RSS. Setup (the baseline commit) runs
//! first, so subtract a run with ITERS = 0 for per-iteration instruction
//! counts.

#[path = "../benches/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use crayon_export_bot::app::App;
use crayon_export_bot::domain::{QueueAnswer, Snapshot};
use support::Queued;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "same".into());
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

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
    watcher.process(&base, now).expect("baseline");
    let state = support::state_path(dir.path());

    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last = None;
    for _ in 0..iters {
        let (wall, cpu) = (Instant::now(), support::thread_cpu_time());
        match mode.as_str() {
            "raw" => drop(serde_json::from_slice::<QueueAnswer>(&base).expect("parse")),
            "snapshot" => drop(Snapshot::parse(&base).expect("parse")),
            "same" => last = Some(watcher.process(&base, now).expect("poll")),
            "flip" => last = Some(watcher.process(&changed, now).expect("poll")),
            other => panic!("unknown mode {other:?}: raw, snapshot, same or flip"),
        }
        cpus.push(support::thread_cpu_time() - cpu);
        walls.push(wall.elapsed());
        if mode == "flip" {
            watcher.process(&base, now).expect("reset");
            support::forget_events(&state);
        }
    }
    println!(
        "n={n} mode={mode} iters={iters}: median wall {:.1} ms, cpu {:.1} ms; peak RSS {} KiB; {} bytes of body",
        median_ms(&mut walls),
        median_ms(&mut cpus),
        support::peak_rss_kib(),
        base.len()
    );
    if let Some(report) = last {
        println!("rows written by the last cycle: {:?}", report.commit);
    }
}

fn median_ms(values: &mut [Duration]) -> f64 {
    values.sort();
    values
        .get(values.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
