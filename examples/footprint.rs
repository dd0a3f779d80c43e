//! Footprint of the real binary, measured from outside the way a user would
//! see it: release binary size; peak RSS (`VmHWM`) of `run` idling between
//! polls with every sink kind this build has (webhook, console); peak RSS of
//! `run` polling a 100k-item queue; whole-process wall and CPU time of
//! `once` delivering one event to a loopback webhook and of `send-test`
//! sending one test message there (the issue's ≤ 30 ms bounds).
//!
//! Crayon is a wiremock fake and the webhook an in-process receiver.
//! Build the binary first: `cargo build --release`, then
//! `cargo run --release --example footprint [-- BINARY]` (see BENCHMARKS.md).

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use support::{Queued, Receiver};
use tokio::io::{AsyncBufReadExt, BufReader};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The queue body the fake serves, changeable between runs.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<u8>>>);

impl Respond for Queue {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let body = self.0.lock().expect("queue lock").clone();
        ResponseTemplate::new(200).set_body_raw(body, "application/json")
    }
}

impl Queue {
    fn set(&self, n: usize, queued: Queued) {
        *self.0.lock().expect("queue lock") = support::queue_body(n, queued, Utc::now());
    }
}

#[tokio::main]
async fn main() {
    let bin = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/crayon-export-bot")
        });
    let size = std::fs::metadata(&bin)
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release first)", bin.display()))
        .len();
    println!("binary {}: {:.2} MiB", bin.display(), mib(size));

    let (crayon, queue) = fake_crayon().await;
    let receiver = Receiver::start().await;
    let bot = Bot {
        bin,
        crayon: format!("{}/", crayon.uri()),
        hook: receiver.url(),
    };

    queue.set(10, Queued::None);
    let (peak, rss, anon) = bot.run_until_polls(3, "1s").await;
    println!(
        "run, idle between polls (10 items, webhook + console): peak RSS {peak} KiB, RSS {rss} KiB \
         (anonymous {anon} KiB; the rest is mapped files: the binary's pages, libc)"
    );

    queue.set(100_000, Queued::None);
    let (peak, _, _) = bot.run_until_polls(3, "2s").await;
    println!("run, three polls of 100k items: peak RSS {peak} KiB");

    let rounds = 21;
    let once = bot.once_one_delivery(&queue, &receiver, rounds).await;
    print_runs("once, one delivery to a loopback webhook", once);
    let send_test = bot.send_test(&receiver, rounds).await;
    print_runs("send-test, one message to a loopback webhook", send_test);
}

/// One whole process: its wall time and the CPU time it used.
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn print_runs(what: &str, mut runs: Vec<Run>) {
    let n = runs.len();
    runs.sort_by_key(|r| r.wall);
    let (median, min, max) = (&runs[n / 2], &runs[0], &runs[n - 1]);
    let mut cpu: Vec<Duration> = runs.iter().map(|r| r.cpu).collect();
    cpu.sort();
    println!(
        "{what}: wall median {:.1} ms (min {:.1}, max {:.1}), CPU median {:.1} ms, over {n}",
        ms(median.wall),
        ms(min.wall),
        ms(max.wall),
        ms(cpu[n / 2])
    );
}

/// CPU time (user + system) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Times `cmd` as a whole process (spawn to exit); it must succeed.
async fn timed(mut cmd: tokio::process::Command) -> Run {
    let cpu = children_cpu();
    let started = Instant::now();
    let status = cmd.status().await.expect("spawn the bot");
    let wall = started.elapsed();
    assert!(status.success(), "the bot failed: {status}");
    Run {
        wall,
        cpu: children_cpu() - cpu,
    }
}

async fn fake_crayon() -> (MockServer, Queue) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"AccessToken": "t", "ExpiresIn": 3600})),
        )
        .mount(&server)
        .await;
    let queue = Queue::default();
    Mock::given(method("GET"))
        .and(path("/api/v1/exports/"))
        .respond_with(queue.clone())
        .mount(&server)
        .await;
    (server, queue)
}

struct Bot {
    bin: PathBuf,
    crayon: String,
    hook: String,
}

impl Bot {
    /// A folder with a `bot.toml` polling every `interval`.
    fn folder(&self, interval: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        support::bot_config(
            dir.path(),
            &self.crayon,
            &self.hook,
            None,
            "[sinks.stdout]\nkind = \"console\"\n",
        );
        let toml = dir.path().join("bot.toml");
        let text = std::fs::read_to_string(&toml).expect("read bot.toml");
        std::fs::write(
            &toml,
            text.replace("interval = \"60s\"", &format!("interval = \"{interval}\"")),
        )
        .expect("write bot.toml");
        dir
    }

    fn command(&self, dir: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--config")
            .arg(dir.join("bot.toml"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_PROXY", "*")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Starts `run`, waits for `polls` poll lines, then reads its peak,
    /// current and anonymous RSS and stops it with SIGTERM. The anonymous
    /// part (heap, stacks) is the bot's own; the file-backed rest follows how
    /// the kernel maps the binary's pages and varies between runs of one
    /// binary.
    async fn run_until_polls(&self, polls: usize, interval: &str) -> (u64, u64, u64) {
        let dir = self.folder(interval);
        let mut child = self
            .command(dir.path(), &["run"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start run");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(" poll ") || line.contains("baseline") {
                seen += 1;
                if seen >= polls {
                    break;
                }
            }
        }
        // Half an interval after the last poll: idle between polls.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let result = (field("VmHWM:"), field("VmRSS:"), field("RssAnon:"));
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        result
    }

    /// Baselines one queued item, then `rounds` times restores that state
    /// and times a whole `once` process that finds it downloadable and
    /// delivers it.
    async fn once_one_delivery(
        &self,
        queue: &Queue,
        receiver: &Receiver,
        rounds: usize,
    ) -> Vec<Run> {
        let dir = self.folder("60s");
        let state = support::state_path(dir.path());
        queue.set(1, Queued::All);
        assert!(self
            .command(dir.path(), &["once"])
            .status()
            .await
            .expect("once")
            .success());
        let saved = dir.path().join("baseline.db");
        std::fs::copy(&state, &saved).expect("save baseline");
        queue.set(1, Queued::None);
        let mut walls = Vec::new();
        for _ in 0..rounds {
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
            }
            std::fs::copy(&saved, &state).expect("restore baseline");
            let before = receiver.requests.load(Ordering::SeqCst);
            walls.push(timed(self.command(dir.path(), &["once"])).await);
            assert_eq!(
                receiver.requests.load(Ordering::SeqCst),
                before + 1,
                "one delivery"
            );
        }
        walls
    }

    /// `rounds` whole `send-test --sink audit` processes, each sending one
    /// test message to the receiver.
    async fn send_test(&self, receiver: &Receiver, rounds: usize) -> Vec<Run> {
        let dir = self.folder("60s");
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let before = receiver.requests.load(Ordering::SeqCst);
            let cmd = self.command(dir.path(), &["send-test", "--sink", "audit"]);
            runs.push(timed(cmd).await);
            assert_eq!(
                receiver.requests.load(Ordering::SeqCst),
                before + 1,
                "one test message"
            );
        }
        runs
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
