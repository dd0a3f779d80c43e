//! `demo`: the bot working in one command, with no credentials and no chat
//! workspace. A simulated Crayon API runs in-process on 127.0.0.1; the real
//! pipeline (client, diff, SQLite state in a temporary folder, outbox,
//! dispatcher) polls it and delivers to the console. With `--config`, the
//! sinks of that file receive the demo's events too.

mod queue;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, ServiceError};
use crate::config::{self, Config, ConfigError, SinkKind};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulated Crayon API: {0}")]
    Server(std::io::Error),
    #[error("cannot create a temporary folder for the demo state: {0}")]
    TempDir(std::io::Error),
    #[error("cannot create {0} for the demo's emails: {1}")]
    MailDir(PathBuf, std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Demo settings from the command line.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub cycles: u32,
    pub interval: Duration,
    /// A user config whose sinks also receive the demo's events.
    pub extra_config: Option<PathBuf>,
    /// Where the demo's emails are written as `.eml` files.
    pub mail_dir: PathBuf,
}

/// Runs the demo until `cycles` polls are done and delivered, or `shutdown`.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> Result<(), DemoError> {
    let sim: queue::Shared = Arc::new(Mutex::new(queue::Simulation::seeded(chrono::Utc::now())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Server)?;
    let base_url = format!(
        "http://{}/",
        listener.local_addr().map_err(DemoError::Server)?
    );
    let server = tokio::spawn({
        let router = queue::router(sim.clone());
        async move { axum::serve(listener, router).await }
    });
    let state_dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    std::fs::create_dir_all(&options.mail_dir)
        .map_err(|e| DemoError::MailDir(options.mail_dir.clone(), e))?;
    let before = count_eml(&options.mail_dir);
    let config = demo_config(&base_url, state_dir.path(), &options)?;
    eprintln!(
        "demo: simulated Crayon export queue at {base_url}; {} polls, every {}; state in {}",
        options.cycles,
        humantime::format_duration(options.interval),
        state_dir.path().display()
    );
    let app = App::build(config)?;
    let result = poll_cycles(&app, options.cycles, options.interval, &shutdown).await;
    server.abort();
    result?;
    let polls = sim.lock().unwrap_or_else(|e| e.into_inner()).polls();
    let written = count_eml(&options.mail_dir).saturating_sub(before);
    eprintln!(
        "demo: done; {polls} poll(s) of the simulated queue; {written} email(s) written as .eml files to {} (open them with any mail client)",
        options.mail_dir.display()
    );
    Ok(())
}

fn count_eml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// Exactly `cycles` polls, each followed by one attempt at every delivery
/// then due (`once`), `interval` apart; `shutdown` ends it between polls.
/// (Driving `run` and watching it stopped after a varying number of polls.)
async fn poll_cycles(
    app: &App,
    cycles: u32,
    interval: Duration,
    shutdown: &CancellationToken,
) -> Result<(), ServiceError> {
    for cycle in 1..=cycles {
        let (_, summary) = app.once().await?;
        tracing::debug!(cycle, sent = summary.sent, "demo poll delivered");
        if cycle == cycles {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}

/// The demo's config: the simulated API, a fresh state file, a console sink
/// (and, with `--config`, that file's sinks, routes and recipients).
fn demo_config(
    base_url: &str,
    state_dir: &Path,
    options: &DemoOptions,
) -> Result<Config, ConfigError> {
    let mut text = format!(
        r#"
[crayon]
base_url = "{base_url}"
client_id = "demo"
client_secret = "demo-secret"
username = "demo@example.com"
password = "demo-password"
timeout = "5s"

[watch]
interval = "{interval}"
state = "{state}"
first_run = "baseline"
events = ["downloadable", "failed"]

[delivery]
max_attempts = 3
backoff_initial = "200ms"
backoff_max = "1s"
shutdown_grace = "5s"

[sinks.demo_console]
kind = "console"

[sinks.demo_mail]
kind = "email"
smtp = "smtp://127.0.0.1:25"
tls = "none"
from = "Crayon Export Bot <exports@demo.example>"
attach = true
"#,
        interval = humantime::format_duration(options.interval),
        state = state_dir.join("state.db").display(),
    );
    let path = match &options.extra_config {
        Some(user) => {
            text.push_str(&user_sinks(user)?);
            user.clone()
        }
        None => PathBuf::from("demo.toml"),
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut config = config::load_from_str(&text, &path, &env, Vec::new())?;
    if let Some(SinkKind::Email(mail)) = config.sinks.get_mut("demo_mail").map(|s| &mut s.kind) {
        mail.pickup_dir = Some(options.mail_dir.clone());
    }
    Ok(config)
}

/// The `[sinks]`, `[[routes]]`, `[recipients]` and `[templates]` of a user's
/// config, as TOML to append to the demo's.
fn user_sinks(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut user: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut kept = toml::Table::new();
    for key in [
        "sinks",
        "routes",
        "recipients",
        "templates",
        "links",
        "display",
    ] {
        if let Some(value) = user.remove(key) {
            kept.insert(key.to_string(), value);
        }
    }
    if let Some(toml::Value::Array(routes)) = kept.get_mut("routes") {
        let mut demo = toml::Table::new();
        demo.insert(
            "sinks".into(),
            toml::Value::Array(vec!["demo_console".into()]),
        );
        routes.push(toml::Value::Table(demo));
    }
    let mut out = toml::to_string(&kept).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    out.insert(0, '\n');
    Ok(out)
}
