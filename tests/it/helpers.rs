//! Fakes and a configured bot: a wiremock Crayon API whose queue the test
//! changes between polls, a wiremock webhook receiver, a temp folder holding
//! `bot.toml` and the state file, and a runner for the real binary.

use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_SECRET: &str = "client-secret-Zq9";
pub const PASSWORD: &str = "p&ss=w0rd+Xy7";
pub const TOKEN: &str = "token-Abc123-secret";
pub const HOOK_PATH: &str = "/hooks/T0SECRET/B0SECRET/xyzzy";

/// What the fake queue answers with next.
#[derive(Clone)]
pub enum QueueAnswer {
    Json(Value),
    Status(u16),
    Raw(&'static str),
    Slow(Duration),
}

/// Serves the current queue answer, changeable between polls.
#[derive(Clone)]
pub struct Queue(Arc<Mutex<QueueAnswer>>);

impl Queue {
    /// A queue answering an empty list until set.
    pub fn empty() -> Queue {
        Queue(Arc::new(Mutex::new(QueueAnswer::Json(
            json!({"Items": [], "NrOfDays": 7}),
        ))))
    }

    pub fn set(&self, answer: QueueAnswer) {
        *self.0.lock().unwrap() = answer;
    }

    pub fn set_items(&self, items: Vec<Value>) {
        self.set(QueueAnswer::Json(json!({ "Items": items, "NrOfDays": 7 })));
    }
}

impl Respond for Queue {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        match self.0.lock().unwrap().clone() {
            QueueAnswer::Json(v) => ResponseTemplate::new(200).set_body_json(v),
            QueueAnswer::Status(s) => ResponseTemplate::new(s).set_body_string("upstream trouble"),
            QueueAnswer::Raw(body) => ResponseTemplate::new(200).set_body_string(body),
            QueueAnswer::Slow(d) => ResponseTemplate::new(200)
                .set_delay(d)
                .set_body_json(json!({"Items": [], "NrOfDays": 7})),
        }
    }
}

/// A queue item in the API's shape, created an hour ago.
pub fn item(id: i64, status: i64, downloadable: bool) -> Value {
    let created = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    json!({
        "Id": id,
        "Status": status,
        "ActionUrl": "subscriptions/file/xlsx?tenantId=4663",
        "Downloadable": downloadable,
        "Attempts": 1,
        "ActionName": format!("New Commerce License-based Report #{id}"),
        "RequestedBy": "ann@example.com",
        "CreatedDate": created,
    })
}

/// The fakes and the folder a bot runs in.
pub struct Harness {
    pub crayon: MockServer,
    pub hook: MockServer,
    pub queue: Queue,
    pub dir: TempDir,
}

impl Harness {
    /// Starts the fake Crayon API (token + queue, initially empty) and a
    /// webhook receiver answering 200.
    pub async fn start() -> Harness {
        let crayon = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/v1/connect/token/"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"AccessToken": TOKEN, "ExpiresIn": 3600})),
            )
            .mount(&crayon)
            .await;
        let queue = Queue(Arc::new(Mutex::new(QueueAnswer::Json(
            json!({"Items": [], "NrOfDays": 7}),
        ))));
        Mock::given(method("GET"))
            .and(path("/api/v1/exports/"))
            .respond_with(queue.clone())
            .mount(&crayon)
            .await;
        let hook = MockServer::start().await;
        Harness {
            crayon,
            hook,
            queue,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Makes the webhook receiver answer `status` from now on.
    pub async fn hook_answers(&self, status: u16) {
        self.hook.reset().await;
        Mock::given(method("POST"))
            .and(path(HOOK_PATH))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.hook)
            .await;
    }

    /// The webhook bodies received so far.
    pub async fn hook_bodies(&self) -> Vec<Value> {
        self.hook
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == HOOK_PATH)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("bot.toml")
    }

    /// Writes a `bot.toml` pointing at the fakes (secrets as `${VAR}`), with
    /// `extra` appended.
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            r#"
[crayon]
base_url = "{crayon}"
client_id = "bot-client"
client_secret = "${{CRAYON_CLIENT_SECRET}}"
username = "bot@example.com"
password = "${{CRAYON_PASSWORD}}"
timeout = "500ms"

[watch]
interval = "200ms"
state = "state.db"

[delivery]
max_attempts = 3
backoff_initial = "100ms"
backoff_max = "200ms"
shutdown_grace = "2s"

[sinks.audit]
kind = "webhook"
url = "${{AUDIT_WEBHOOK_URL}}"
{extra}
"#,
            crayon = self.crayon.uri(),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// The environment the bot runs with: secrets, no proxies, debug logs.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("CRAYON_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("CRAYON_PASSWORD", PASSWORD.to_string()),
            (
                "AUDIT_WEBHOOK_URL",
                format!("{}{HOOK_PATH}", self.hook.uri()),
            ),
            ("RUST_LOG", "debug".to_string()),
            ("NO_PROXY", "*".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs the real binary with `args` and waits for it.
    pub async fn bot(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// The real binary, configured, not yet started.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"));
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .envs(self.env())
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("BOT_CONFIG")
            .kill_on_drop(true);
        cmd
    }
}

/// stdout and stderr of a finished command, for assertions and messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Sends `sig` (e.g. `-TERM`, `-HUP`) to a running bot, as an operator would.
pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("child still running").to_string();
    std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
}

/// Waits (up to `limit`) until the hook has received `n` bodies; returns what
/// it received by then.
pub async fn wait_for_bodies(h: &Harness, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let bodies = h.hook_bodies().await;
        if bodies.len() >= n || tokio::time::Instant::now() > deadline {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A baseline poll (`once`) with `ids` queued; then they turn downloadable
/// (the next poll sees the flip).
pub async fn baseline_then_flip(h: &Harness, ids: impl IntoIterator<Item = i64> + Clone) {
    h.queue.set_items(
        ids.clone()
            .into_iter()
            .map(|id| item(id, 1, false))
            .collect(),
    );
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue
        .set_items(ids.into_iter().map(|id| item(id, 2, true)).collect());
}

/// The rows of `outbox list --json`, as the operator sees them.
pub async fn outbox_json(h: &Harness) -> Vec<Value> {
    let out = h.bot(&["outbox", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks `condition` every 20 ms until it holds or `limit` passes; true when
/// it held. Tests wait on what they need instead of sleeping a fixed time,
/// which a busy machine outlasts.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many queue polls the fake Crayon API has answered so far.
pub async fn polls(h: &Harness) -> usize {
    let requests = h.crayon.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == "/api/v1/exports/")
        .count()
}

/// Waits until `n` more polls than `seen` reached the fake API; panics after
/// 15 s. Polls of one account are sequential, so the (n-1)th more poll has
/// been fully handled (baseline recorded, events queued) once the nth
/// arrives.
pub async fn wait_for_polls_after(h: &Harness, seen: usize, n: usize) {
    let arrived = wait_until(Duration::from_secs(15), || async {
        polls(h).await >= seen + n
    })
    .await;
    assert!(arrived, "{n} more poll(s) after {seen} never came");
}

/// Waits until a `run` started after `before` polls has finished its
/// baseline poll (its second poll arrived); it holds the state lock by then.
pub async fn wait_for_baseline(h: &Harness, before: usize) {
    wait_for_polls_after(h, before, 2).await;
}

/// A running bot's stderr, read as it comes, so a test can wait for a log
/// line (a reload applied) instead of sleeping.
#[derive(Clone, Default)]
pub struct LiveLog(Arc<Mutex<String>>);

impl LiveLog {
    /// Takes `child`'s piped stderr and collects it until the child exits.
    pub fn follow(child: &mut tokio::process::Child) -> LiveLog {
        use tokio::io::AsyncBufReadExt;
        let log = LiveLog::default();
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.0.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        log
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// How often `needle` was logged so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }

    /// Waits (up to 15 s) until `needle` was logged `n` times; panics with the
    /// log otherwise.
    pub async fn wait_for(&self, needle: &str, n: usize) {
        let seen = wait_until(Duration::from_secs(15), || async {
            self.count(needle) >= n
        })
        .await;
        assert!(
            seen,
            "{needle:?} never logged {n} time(s):\n{}",
            self.text()
        );
    }
}

/// A second fake Crayon API (the account `contoso`), its queue answering
/// empty until the test sets it.
pub async fn second_api() -> (MockServer, Queue) {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"AccessToken": TOKEN, "ExpiresIn": 3600})),
        )
        .mount(&api)
        .await;
    let queue = Queue::empty();
    Mock::given(method("GET"))
        .and(path("/api/v1/exports/"))
        .respond_with(queue.clone())
        .mount(&api)
        .await;
    (api, queue)
}
