//! The command line: parses arguments, sets up logging, runs one command and
//! maps its outcome onto the exit codes of the spec (0 ok, 1 runtime
//! failure, 2 bad config, template or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::domain::{AccountId, DeliveryId, DeliveryStatus, EventKind, ExportId};
use crate::reload;
use crate::render::Renderer;
use crate::service::{App, Reloads};
use crate::store::{Store, StoreError};
use crate::{preview, probe, report};

/// Writes a command's result to stdout. A reader that went away
/// (`render … | head`) ends the command quietly with exit 0 instead of a
/// panic; any other write error is reported like a runtime failure.
fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `print!` through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}

/// `println!` through [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `--version`: the crate version and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CRAYON_EXPORT_BOT_GIT_REV"),
    ")"
);

/// crayon-export-bot: tells people when their Crayon Cloud-iQ export is ready.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
pub struct Cli {
    /// The config file [default: $BOT_CONFIG, else bot.toml; `demo` reads
    /// none unless this is given].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll forever (the service); SIGINT/SIGTERM stop it cleanly.
    Run,
    /// One poll, then one attempt for every due delivery, then exit.
    Once,
    /// Validate config, ${VAR}s, routes and templates.
    Check {
        /// Also get a Crayon token and check each sink's host answers (sends nothing).
        #[arg(long)]
        online: bool,
    },
    /// Print what a sink would send for an event, or write an HTML preview page.
    Render {
        /// downloadable, failed, queued or removed.
        #[arg(long, required_unless_present = "html_preview")]
        event: Option<EventKind>,
        /// The sink's name in the config.
        #[arg(long, required_unless_present = "html_preview")]
        sink: Option<String>,
        /// One item in the API's shape (default: a built-in sample).
        #[arg(long)]
        item: Option<PathBuf>,
        /// Render as if now were this RFC 3339 time (reproducible previews).
        #[arg(long, value_parser = parse_rfc3339)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Write one HTML page showing every sink's rendering.
        #[arg(long, conflicts_with_all = ["event", "sink"])]
        html_preview: Option<PathBuf>,
    },
    /// Deliver one clearly marked test message through a sink.
    SendTest {
        /// The sink's name in the config.
        #[arg(long)]
        sink: String,
        /// Who a per-person sink (email, Discord DM) sends the test to.
        #[arg(long)]
        to: Option<String>,
    },
    /// Inspect and repair the outbox (works while `run` is running).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Run against a built-in simulated export queue: no credentials needed.
    Demo {
        /// How many polls of the simulated queue.
        #[arg(long, default_value_t = 6)]
        cycles: u32,
        /// Time between polls.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Show an item's stored states, fired events and deliveries.
    Why {
        /// The export queue item id.
        item_id: i64,
    },
}

/// `outbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// One row per delivery: id, sink, item, event, status, attempts, next attempt, last error.
    List {
        /// Only deliveries in this status (pending, sent, dead, skipped).
        #[arg(long)]
        status: Option<DeliveryStatus>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead delivery again (attempts start over).
    Retry {
        /// The delivery id (see `outbox list`).
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        /// Every dead delivery.
        #[arg(long)]
        all_dead: bool,
    },
    /// Delete sent and skipped deliveries older than a duration.
    Purge {
        /// e.g. 7d: deliveries sent more than this long ago are deleted.
        #[arg(long, value_parser = humantime::parse_duration)]
        sent_before: std::time::Duration,
    },
}

/// A command's failure, carrying its exit code.
pub enum Failure {
    /// Exit 2: fix the config, a template or the command line.
    Usage(anyhow::Error),
    /// Exit 1: something failed at run time.
    Runtime(anyhow::Error),
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let path = cli.config.clone().unwrap_or_else(|| {
        std::env::var_os("BOT_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("bot.toml"))
    });
    match cli.command {
        Command::Run => run(load(&path)?, path).await,
        Command::Once => once(load(&path)?).await,
        Command::Check { online } => check(&path, online).await,
        Command::Render {
            event,
            sink,
            item,
            now,
            html_preview,
        } => {
            let config = load(&path)?;
            let now = now.unwrap_or_else(chrono::Utc::now);
            match html_preview {
                Some(out) => render_page(&config, item.as_deref(), now, &out),
                None => render_one(&config, event, sink, item.as_deref(), now),
            }
        }
        Command::SendTest { sink, to } => {
            let config = load(&path)?;
            let ok = probe::send_test(&config, &sink, to.as_deref())
                .await
                .map_err(|e| {
                    if e.is_usage() {
                        Failure::Usage(e.into())
                    } else {
                        Failure::Runtime(e.into())
                    }
                })?;
            outln!("{ok}");
            Ok(())
        }
        Command::Outbox { action } => outbox(&path, action),
        Command::Why { item_id } => why(&path, item_id),
        Command::Demo { cycles, interval } => demo(cycles, interval, cli.config).await,
    }
}

async fn demo(
    cycles: u32,
    interval: std::time::Duration,
    config: Option<PathBuf>,
) -> Result<(), Failure> {
    let options = crate::demo::DemoOptions {
        cycles: cycles.max(1),
        interval,
        extra_config: config,
        mail_dir: PathBuf::from("demo-out"),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    crate::demo::run(options, shutdown)
        .await
        .map_err(|e| match e {
            crate::demo::DemoError::Config(_) => Failure::Usage(e.into()),
            crate::demo::DemoError::Service(ref s) if s.is_config() => Failure::Usage(e.into()),
            _ => Failure::Runtime(e.into()),
        })
}

/// Opens the state file named by the config, without taking the run lock.
fn open_store(path: &std::path::Path) -> Result<std::sync::Arc<dyn Store>, Failure> {
    let config = load(path)?;
    crate::store::open(&config.watch.state).map_err(|e| Failure::Runtime(e.into()))
}

fn outbox(path: &std::path::Path, action: OutboxAction) -> Result<(), Failure> {
    let store = open_store(path)?;
    let account = AccountId::default_account();
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    match action {
        OutboxAction::List { status, json } => {
            let deliveries = store.list_deliveries(&account, status).map_err(runtime)?;
            if json {
                outln!("{}", report::outbox_json(&deliveries));
            } else {
                out!("{}", report::outbox_table(&deliveries));
            }
        }
        OutboxAction::Retry { id, all_dead } => {
            let id = if all_dead { None } else { id.map(DeliveryId) };
            let n = store
                .retry_dead(&account, id, chrono::Utc::now())
                .map_err(runtime)?;
            if n == 0 {
                let what = id.map_or("no dead deliveries".to_string(), |id| {
                    format!("delivery {id} is not dead (or does not exist)")
                });
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "nothing to retry: {what}"
                )));
            }
            outln!(
                "{n} delivery(ies) pending again; a running `run` sends them now, or run `once`"
            );
        }
        OutboxAction::Purge { sent_before } => {
            let cutoff = crate::retention::cutoff(chrono::Utc::now(), sent_before);
            let keep_fired = chrono::DateTime::<chrono::Utc>::MIN_UTC;
            let (n, _) = store
                .prune(&account, cutoff, keep_fired, usize::MAX)
                .map_err(runtime)?;
            outln!("{n} sent or skipped delivery(ies) deleted");
        }
    }
    Ok(())
}

fn why(path: &std::path::Path, item_id: i64) -> Result<(), Failure> {
    let store = open_store(path)?;
    let id = ExportId(item_id);
    let history = store
        .item_history(&AccountId::default_account(), id)
        .map_err(|e| Failure::Runtime(e.into()))?;
    out!("{}", report::why(id, &history));
    Ok(())
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    config::load(path).map_err(|e| Failure::Usage(e.into()))
}

fn build(config: Config) -> Result<App, Failure> {
    App::build(config).map_err(|e| {
        if e.is_config() {
            Failure::Usage(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    })
}

async fn run(config: Config, path: PathBuf) -> Result<(), Failure> {
    let (tx, requests) = tokio::sync::mpsc::channel(4);
    reload::on_sighup(tx.clone());
    let _watch = if config.watch.reload {
        let watch =
            reload::on_file_change(&path, config.templates_dir.as_deref(), tx).map_err(|e| {
                Failure::Runtime(anyhow::anyhow!(
                    "cannot watch {} for changes: {e}",
                    path.display()
                ))
            })?;
        Some(watch)
    } else {
        None
    };
    let app = build(config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let reloads = Reloads {
        requests,
        load: Box::new(move || config::load(&path)),
    };
    app.run(shutdown, Some(reloads))
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

async fn once(config: Config) -> Result<(), Failure> {
    let app = build(config)?;
    let (_, summary) = app.once().await.map_err(|e| Failure::Runtime(e.into()))?;
    if summary.all_sent() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{} of the due deliveries did not succeed ({} retrying, {} dead); see the log above",
            summary.retrying + summary.dead,
            summary.retrying,
            summary.dead
        )))
    }
}

async fn check(path: &std::path::Path, online: bool) -> Result<(), Failure> {
    let config = load(path)?;
    let report = crate::check::check(&config);
    for warning in &report.warnings {
        outln!("warning: {warning}");
    }
    if !report.problems.is_empty() {
        let list = report.problems.join("\n");
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} problem(s) in {}:\n{list}",
            report.problems.len(),
            path.display()
        )));
    }
    outln!(
        "ok: {} ({} sinks, {} routes, {} templates rendered)",
        path.display(),
        config.sinks.len(),
        config.routes.len(),
        report.rendered
    );
    if online {
        return check_online(&config).await;
    }
    Ok(())
}

async fn check_online(config: &Config) -> Result<(), Failure> {
    let mut failed = 0;
    for check in probe::online(config).await {
        match check.result {
            Ok(detail) => outln!("ok: {}: {detail}", check.what),
            Err(reason) => {
                failed += 1;
                outln!("FAILED: {}: {reason}", check.what);
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{failed} online check(s) failed"
        )));
    }
    Ok(())
}

fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2024-05-30T14:00:00Z): {e}"))
}

fn renderer(config: &Config) -> Result<Renderer, Failure> {
    Renderer::new(config.templates_dir.as_deref(), config.timezone)
        .map_err(|e| Failure::Usage(e.into()))
}

fn render_one(
    config: &Config,
    event: Option<EventKind>,
    sink: Option<String>,
    item: Option<&std::path::Path>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    let usage = |e: preview::PreviewError| Failure::Usage(e.into());
    let (event, sink) = event.zip(sink).ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "render needs --event and --sink (or --html-preview FILE)"
        ))
    })?;
    let sink = preview::sink(config, &sink).map_err(usage)?;
    let (item, days) = preview::load_item(item).map_err(usage)?;
    let message =
        preview::render_message(config, &renderer(config)?, sink, event, (&item, days), now)
            .map_err(|e| Failure::Usage(e.into()))?;
    outln!("{}", preview::format_for_terminal(&message));
    Ok(())
}

fn render_page(
    config: &Config,
    item: Option<&std::path::Path>,
    now: chrono::DateTime<chrono::Utc>,
    out: &std::path::Path,
) -> Result<(), Failure> {
    let (item, days) = preview::load_item(item).map_err(|e| Failure::Usage(e.into()))?;
    let page = preview::html_page(config, &renderer(config)?, (&item, days), now)
        .map_err(|e| Failure::Usage(e.into()))?;
    std::fs::write(out, page)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    outln!("wrote {}", out.display());
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop requested; finishing sends in flight");
    shutdown.cancel();
}

/// Crates whose own logs are never shown, whatever `RUST_LOG` says (even
/// `serenity::http=trace`): serenity's request spans record the webhook
/// route with its token, and the HTTP, TLS and SMTP stacks log connection
/// details at debug and trace. The bot logs every outcome itself.
pub const MUTED_TARGETS: &[&str] = &[
    "serenity",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "lettre",
    "tower",
    "tungstenite",
    "tokio_tungstenite",
];

/// True when `target` (a tracing target or a `log` record's module path)
/// belongs to one of the [`MUTED_TARGETS`] crates.
pub fn is_muted(target: &str) -> bool {
    MUTED_TARGETS.iter().any(|muted| {
        target
            .strip_prefix(muted)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A global filter after the env filter: no directive can re-enable these.
    let muted = tracing_subscriber::filter::filter_fn(|meta| !is_muted(meta.target()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(muted);
    let _ = match format {
        LogFormat::Pretty => registry.with(fmt.with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::is_muted;

    #[test]
    fn dependency_logs_are_muted_by_crate_not_by_prefix() {
        for target in [
            "serenity",
            "serenity::http::request",
            "hyper_util::client",
            "rustls::conn",
        ] {
            assert!(is_muted(target), "{target}");
        }
        for target in [
            "crayon_export_bot::poll",
            "serenity_extra",
            "hyperion",
            "lettres",
        ] {
            assert!(!is_muted(target), "{target}");
        }
    }
}
