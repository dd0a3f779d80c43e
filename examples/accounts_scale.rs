//! Several accounts at scale (#18), a benchmark rather than a timed test:
//! 1,000 accounts × 50 items in one `run` process against a fast loopback
//! fake Crayon API, interval 60s, for one start-up interval plus three
//! steady ones. Reports the slowest account's gap between polls, the
//! steady RSS and CPU of the `run` process, and token requests per account
//! per token lifetime.
//!
//! ```text
//! cargo build --release --example accounts_scale
//! target/release/examples/accounts_scale
//! ACCOUNTS=50 INTERVAL_SECS=5 target/release/examples/accounts_scale   # quick look
//! ```
//!
//! The `run` process is this same executable re-started with
//! `ACCOUNTS_SCALE_BOT=1`, which hands over to the bot's own command line
//! (`crayon_export_bot::cli::main`: logging, config loading, `run`), so what
//! is measured is exactly the `run` of the binary. Settings: `ACCOUNTS`
//! (1000), `ITEMS` (50), `INTERVAL_SECS` (60), `STEADY_INTERVALS` (3),
//! `TOKEN_LIFETIME_SECS` (120: shorter than the run, so renewals are seen).

use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    if std::env::var_os("ACCOUNTS_SCALE_BOT").is_some() {
        return crayon_export_bot::cli::main();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(Settings::from_env()));
    ExitCode::SUCCESS
}

/// The benchmark's knobs (see the module docs).
struct Settings {
    accounts: usize,
    items: usize,
    interval: Duration,
    steady: u32,
    lifetime: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Settings {
            accounts: get("ACCOUNTS", 1000) as usize,
            items: get("ITEMS", 50) as usize,
            interval: Duration::from_secs(get("INTERVAL_SECS", 60)),
            steady: get("STEADY_INTERVALS", 3) as u32,
            lifetime: Duration::from_secs(get("TOKEN_LIFETIME_SECS", 120)),
        }
    }
}

/// What the fake API saw, per account.
struct Seen {
    tokens: Vec<AtomicU32>,
    polls: Vec<Mutex<Vec<Instant>>>,
    queue: Vec<u8>,
    token: Vec<u8>,
}

async fn bench(s: Settings) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen {
        tokens: (0..s.accounts).map(|_| AtomicU32::new(0)).collect(),
        polls: (0..s.accounts).map(|_| Mutex::new(Vec::new())).collect(),
        queue: queue_body(s.items),
        token: format!(
            r#"{{"AccessToken":"bench-token","ExpiresIn":{}}}"#,
            s.lifetime.as_secs()
        )
        .into_bytes(),
    });
    tokio::spawn(serve(listener, seen.clone()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bot.toml");
    std::fs::write(&config, config_text(&s, port)).unwrap();
    let log = std::fs::File::create(dir.path().join("bot.log")).unwrap();
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("ACCOUNTS_SCALE_BOT", "1")
        .env("RUST_LOG", "info")
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let steady_from = started + s.interval + s.interval / 10;
    let end = started + s.interval * (s.steady + 1) + s.interval / 5;
    let mut samples = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((Instant::now(), cpu_ticks(pid), rss_kib(pid)));
    }
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    println!("{}", report(&s, &seen, started, steady_from, &samples));
    println!(
        "run exited with {status}; log: {} lines",
        log_lines(dir.path())
    );
    if let Some(keep) = std::env::var_os("KEEP_LOG") {
        let _ = std::fs::copy(dir.path().join("bot.log"), keep);
    }
}

/// `[crayon]` defaults, one sink, and `[accounts.aNNNN]` for each account,
/// each at its own path of the fake API.
fn config_text(s: &Settings, port: u16) -> String {
    let mut text = format!(
        "[crayon]\nbase_url = \"http://127.0.0.1:{port}/\"\nclient_id = \"bench\"\n\
         client_secret = \"bench-secret\"\npassword = \"bench-password\"\n\n\
         [watch]\ninterval = \"{}s\"\nstate = \"state.db\"\n\n\
         [sinks.console]\nkind = \"console\"\n\n",
        s.interval.as_secs()
    );
    for n in 0..s.accounts {
        let _ = write!(
            text,
            "[accounts.a{n:04}]\nbase_url = \"http://127.0.0.1:{port}/a{n:04}/\"\n\
             username = \"bot{n}@example.com\"\n\n"
        );
    }
    text
}

/// 50 items in the API's shape (the same for every account: each account
/// keys its own).
fn queue_body(items: usize) -> Vec<u8> {
    let created = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    let items: Vec<serde_json::Value> = (1..=items as i64)
        .map(|id| {
            serde_json::json!({
                "Id": id, "Status": 2, "Downloadable": true, "Attempts": 1,
                "ActionUrl": "subscriptions/file/xlsx?tenantId=4663",
                "ActionName": format!("New Commerce License-based Report #{id}"),
                "RequestedBy": format!("user{}@example.com", id % 7),
                "CreatedDate": created,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"Items": items, "NrOfDays": 7})).unwrap()
}

async fn serve(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(socket, seen.clone()));
    }
}

/// HTTP/1.1 with keep-alive, just enough for the token and queue requests.
async fn connection(mut socket: TcpStream, seen: Arc<Seen>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = content_length(&head);
        while buf.len() < head_end + length {
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        buf.drain(..head_end + length);
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let body = answer(&seen, path);
        let mut response = format!(
            "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            if body.is_some() {
                "200 OK"
            } else {
                "404 Not Found"
            },
            body.map_or(0, <[u8]>::len)
        )
        .into_bytes();
        response.extend_from_slice(body.unwrap_or_default());
        if socket.write_all(&response).await.is_err() {
            return;
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Counts the request against its account (`/aNNNN/…`) and answers it.
fn answer<'a>(seen: &'a Seen, path: &str) -> Option<&'a [u8]> {
    let (account, rest) = path.trim_start_matches("/a").split_once('/')?;
    let n: usize = account.parse().ok()?;
    match rest {
        "api/v1/connect/token/" => {
            seen.tokens.get(n)?.fetch_add(1, Ordering::Relaxed);
            Some(&seen.token)
        }
        "api/v1/exports/" => {
            seen.polls.get(n)?.lock().unwrap().push(Instant::now());
            Some(&seen.queue)
        }
        _ => None,
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn log_lines(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("bot.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

type Sample = (Instant, u64, u64);

fn report(
    s: &Settings,
    seen: &Seen,
    started: Instant,
    steady_from: Instant,
    samples: &[Sample],
) -> String {
    let polls: Vec<Vec<Instant>> = seen
        .polls
        .iter()
        .map(|p| p.lock().unwrap().clone())
        .collect();
    let total: usize = polls.iter().map(Vec::len).sum();
    let never = polls.iter().filter(|p| p.is_empty()).count();
    let slowest = polls
        .iter()
        .flat_map(|p| p.windows(2).map(|w| w[1] - w[0]))
        .max()
        .unwrap_or_default();
    let last_first = polls.iter().filter_map(|p| p.first()).max();
    let spread = last_first.map_or(Duration::ZERO, |at| *at - started);
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|(at, ..)| *at >= steady_from)
        .collect();
    let (first, last) = (steady.first(), steady.last());
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = match (first, last) {
        (Some(a), Some(b)) if b.0 > a.0 => {
            (b.1 - a.1) as f64 / hz / (b.0 - a.0).as_secs_f64() * 100.0
        }
        _ => f64::NAN,
    };
    let rss_max = steady.iter().map(|s| s.2).max().unwrap_or(0);
    let rss_end = last.map_or(0, |s| s.2);
    let tokens: u32 = seen.tokens.iter().map(|t| t.load(Ordering::Relaxed)).sum();
    let active = samples.last().map_or(Duration::ZERO, |l| l.0 - started);
    // Token lifetimes each account's polls spanned: a token is fetched at
    // the first poll and renewed at the poll that finds it (nearly) expired.
    let lifetimes: f64 = polls
        .iter()
        .filter_map(|p| Some(*p.last()? - *p.first()?))
        .map(|span| 1.0 + (span.as_secs_f64() / s.lifetime.as_secs_f64()).floor())
        .sum();
    let per_account = tokens as f64 / s.accounts as f64;
    format!(
        "accounts {} × {} items, interval {}s, {} steady intervals\n\
         polls: {total} ({:.2} per account), accounts never polled: {never}\n\
         first polls spread over {:.1}s\n\
         slowest account's gap between polls: {:.2}s ({:.3} × interval)\n\
         steady RSS: max {:.1} MiB, at the end {:.1} MiB\n\
         steady CPU: {cpu:.2} % of one core\n\
         token requests: {tokens} ({per_account:.2} per account over {:.0}s; \
         {:.2} per account per token lifetime of {}s)",
        s.accounts,
        s.items,
        s.interval.as_secs(),
        s.steady,
        total as f64 / s.accounts as f64,
        spread.as_secs_f64(),
        slowest.as_secs_f64(),
        slowest.as_secs_f64() / s.interval.as_secs_f64(),
        rss_max as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        active.as_secs_f64(),
        tokens as f64 / lifetimes.max(1.0),
        s.lifetime.as_secs(),
    )
}
