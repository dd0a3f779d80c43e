//! The dispatcher under faults, on the real wire: a sink that hangs, a reload
//! while a send is slower than the shutdown grace, an absurd `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{item, text, Harness, HOOK_PATH};

/// A webhook host that accepts connections and never answers: a sink hung
/// for as long as the test lasts. Counts the connections it accepted.
struct BlackHole {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.push(socket);
                }
            }
        });
        BlackHole {
            url,
            accepted,
            task,
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("child still running").to_string();
    std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
}

/// Waits (up to `limit`) until the hook has received `n` requests; the count.
async fn wait_requests(h: &Harness, n: usize, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = h.hook_bodies().await.len();
        if got >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (status, attempts, ms from the last update to the next attempt, last error)
/// of every outbox row of `sink`, oldest first.
fn outbox(h: &Harness, sink: &str) -> Vec<(String, i64, Option<i64>, Option<String>)> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT status, attempts, next_attempt_at - updated_at, last_error FROM outbox \
             WHERE sink = ?1 ORDER BY id",
        )
        .unwrap();
    stmt.query_map([sink], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A baseline poll (`once`) with `items` queued; then they turn downloadable.
async fn baseline_then_flip(h: &Harness, items: std::ops::RangeInclusive<i64>) {
    h.queue
        .set_items(items.clone().map(|id| item(id, 1, false)).collect());
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items(items.map(|id| item(id, 2, true)).collect());
}

const STUCK_SINK: &str = "[sinks.stuck]\nkind = \"webhook\"\nurl = \"${STUCK_URL}\"";

#[tokio::test]
async fn a_hung_sink_holds_back_no_other_sink() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let stuck = BlackHole::start().await;
    h.write_config(STUCK_SINK);
    // Item 301 stays queued for now: it shows the latency once the hung
    // sink's backlog is far past any shared window.
    h.queue
        .set_items((1..=301).map(|id| item(id, 1, false)).collect());
    let once = h.command(&["once"]).env("STUCK_URL", &stuck.url).output();
    let out = once.await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut items: Vec<_> = (1..=300).map(|id| item(id, 2, true)).collect();
    items.push(item(301, 1, false));
    h.queue.set_items(items.clone());

    // The log goes to a file: 600 deliveries log more than a pipe holds.
    let log = h.dir.path().join("run.log");
    let mut cmd = h.command(&["run"]);
    cmd.env("STUCK_URL", &stuck.url);
    let run = cmd
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log).unwrap();
    let got = wait_requests(&h, 300, Duration::from_secs(20)).await;
    assert_eq!(got, 300, "every message reaches the healthy sink");

    items[300] = item(301, 2, true);
    h.queue.set_items(items);
    let flipped = tokio::time::Instant::now();
    let got = wait_requests(&h, 301, Duration::from_secs(10)).await;
    let latency = flipped.elapsed();
    let accepted = stuck.accepted.load(Ordering::SeqCst);
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(got, 301, "{}", log());
    // One poll interval (200 ms) plus the send, with room for a busy machine.
    assert!(
        latency < Duration::from_secs(2),
        "the next message took {latency:?}: {}",
        log()
    );
    assert!(
        (1..=4).contains(&accepted),
        "the hung sink holds at most its concurrency: {accepted}"
    );
    assert_eq!(out.status.code(), Some(0), "{}", log());
    let pending = outbox(&h, "stuck")
        .iter()
        .filter(|r| r.0 == "pending")
        .count();
    assert_eq!(pending, 301, "the hung sink's messages wait, none lost");
}

#[tokio::test]
async fn a_reload_during_a_send_slower_than_the_grace_sends_it_once() {
    let h = Harness::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&h.hook)
        .await;
    h.write_config("");
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    let config = config.replace("shutdown_grace = \"2s\"", "shutdown_grace = \"300ms\"");
    std::fs::write(h.config_path(), config).unwrap();
    baseline_then_flip(&h, 1..=1).await;

    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = wait_requests(&h, 1, Duration::from_secs(10)).await;
    assert_eq!(got, 1, "the send started");
    signal(&run, "-HUP");
    // The send takes 3 s; a re-send after the reload would arrive by then.
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert!(text(&out).contains("config reloaded"), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1, "{}", text(&out));
    let rows = outbox(&h, "audit");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1),
        ("sent", 1),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn an_absurd_retry_after_records_the_attempt_and_retries_within_backoff_max() {
    let h = Harness::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", "99999999999999999999"),
        )
        .mount(&h.hook)
        .await;
    h.write_config("");
    baseline_then_flip(&h, 1..=1).await;

    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rows = outbox(&h, "audit");
    let (status, attempts, wait_ms, error) = &rows[0];
    assert_eq!(
        (status.as_str(), *attempts),
        ("pending", 1),
        "{}",
        text(&out)
    );
    assert!(error.is_some(), "the failed attempt says why");
    let wait_ms = wait_ms.expect("a next attempt time");
    assert!(
        (0..=200).contains(&wait_ms),
        "retried within backoff_max (200ms), not never: {wait_ms} ms"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = h.bot(&["once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(outbox(&h, "audit")[0].1, 2, "the next `once` tries again");
    assert_eq!(h.hook_bodies().await.len(), 2);
}
