//! What the poll-cycle benchmarks, the burst example and the footprint
//! example share: queue bodies of any size in the API's own shape, and a bot
//! configured in a temporary folder with a real SQLite state file.
//!
//! Included with `#[path]` by `benches/` and `examples/`, so it is compiled
//! into each of them; not every user needs every item.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crayon_export_bot::config::{self, Config};

/// Ids start here so they look like the API's.
pub const FIRST_ID: i64 = 1_000_000;

/// Which items of a generated queue are still queued (not yet downloadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// None: every item is processed and downloadable.
    None,
    /// Every hundredth item (1 %) is queued; flipping to `None` fires
    /// `downloadable` for exactly those.
    OnePercent,
    /// Every item is queued (the burst example flips them all at once).
    All,
}

impl Queued {
    fn is_queued(self, index: usize) -> bool {
        match self {
            Queued::None => false,
            Queued::OnePercent => index.is_multiple_of(100),
            Queued::All => true,
        }
    }
}

/// A queue answer with `n` items shaped like the real sample (same field
/// lengths: a ~270-byte ActionUrl, a 57-byte ActionName), created an hour
/// before `now` so every event is recent enough to notify.
pub fn queue_body(n: usize, queued: Queued, now: DateTime<Utc>) -> Vec<u8> {
    let created = (now - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    let mut body = Vec::with_capacity(n * 520 + 64);
    body.extend_from_slice(b"{\"Items\":[");
    for index in 0..n {
        if index > 0 {
            body.push(b',');
        }
        let (status, downloadable) = if queued.is_queued(index) {
            (1, false)
        } else {
            (2, true)
        };
        write!(
            body,
            "{{\"Id\":{id},\"Status\":{status},\"ActionUrl\":\"subscriptions/file/xlsx?tenantId={tenant}\
             &organizationId=4014363&userId=ab69b121-b662-4388-abbc-1ddd7810605a\
             &from=2015-01-01T00%3a00%3a00.0000000%2b00%3a00&to=2024-05-22T00%3a00%3a00.0000000%2b00%3a00\
             &publisherId=2&cloudAccountId=&invoiceProfileId=\",\"Downloadable\":{downloadable},\
             \"Attempts\":1,\"ActionName\":\"New Commerce License-based Report@2015.01.01 - 2024.05.22\",\
             \"RequestedBy\":\"user{user}@example.com\",\"CreatedDate\":\"{created}\"}}",
            id = FIRST_ID + index as i64,
            tenant = 4000 + index % 977,
            user = index % 50,
        )
        .expect("writing to a Vec cannot fail");
    }
    body.extend_from_slice(b"],\"NrOfDays\":7}");
    body
}

/// Where the benchmarks' bot thinks Crayon is when nothing is listening
/// (the cycle benchmarks never fetch).
pub const NO_CRAYON: &str = "http://127.0.0.1:9/";

/// A checked config in `dir`: Crayon at `crayon_url`, state file
/// `dir/state.db`, one generic webhook sink `audit` posting to `hook_url`
/// with `concurrency` (default when `None`), and `extra` TOML appended.
pub fn bot_config(
    dir: &Path,
    crayon_url: &str,
    hook_url: &str,
    concurrency: Option<usize>,
    extra: &str,
) -> Config {
    let concurrency = concurrency
        .map(|c| format!("concurrency = {c}"))
        .unwrap_or_default();
    let text = format!(
        r#"
[crayon]
base_url = "{crayon_url}"
client_id = "bench"
client_secret = "bench-secret"
username = "bench@example.com"
password = "bench-password"

[watch]
interval = "60s"
state = "state.db"

[sinks.audit]
kind = "webhook"
url = "{hook_url}"
{concurrency}
{extra}
"#
    );
    let path = dir.join("bot.toml");
    std::fs::write(&path, &text).expect("write bot.toml");
    config::load_from_str(&text, &path, &|_| None, Vec::new()).expect("bench config is valid")
}

/// The state file of a config made by [`bot_config`].
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.db")
}

/// Forgets every fired record and delivery, so the same 1 % can fire again
/// in the next benchmark iteration (the snapshot is reset by the caller).
pub fn forget_events(state: &Path) {
    let conn = rusqlite::Connection::open(state).expect("open state");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.execute_batch("DELETE FROM fired; DELETE FROM outbox;")
        .expect("reset fired and outbox");
}

/// CPU time of the calling thread (user + system), for CPU-time figures next
/// to criterion's wall time.
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (all threads), for examples that run tokio.
pub fn process_cpu_time() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The monotonic clock (what `perf record -k CLOCK_MONOTONIC` stamps).
pub fn monotonic_now() -> Duration {
    clock(libc::CLOCK_MONOTONIC)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({id})");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The process's peak resident set so far (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

/// The process's current resident set (`VmRSS`), in KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A minimal HTTP/1.1 receiver on loopback (keep-alive, `200` to every
/// request) that counts the connections it accepted and the requests it
/// answered: enough to tell connection reuse from one connection per send.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Notified after every answered request.
    pub answered: std::sync::Arc<tokio::sync::Notify>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0` and serves until the runtime ends.
    pub async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let receiver = Receiver {
            addr: listener.local_addr().expect("local addr"),
            connections: Arc::default(),
            requests: Arc::default(),
            answered: Arc::default(),
        };
        let (connections, requests, answered) = (
            receiver.connections.clone(),
            receiver.requests.clone(),
            receiver.answered.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (requests, answered) = (requests.clone(), answered.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &requests, &answered).await;
                });
            }
        });
        receiver
    }

    /// The URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

/// Answers requests on one connection until the client closes it.
async fn serve(
    stream: tokio::net::TcpStream,
    requests: &std::sync::atomic::AtomicUsize,
    answered: &tokio::sync::Notify,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        answered.notify_waiters();
    }
}
