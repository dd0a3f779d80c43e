//! The command line: parses arguments, sets up logging, runs one command and
//! maps its outcome onto the exit codes of the spec (0 ok, 1 runtime
//! failure, 2 bad config, template or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::domain::DeliveryStatus;
use crate::store::Store;

/// Writes a command's result to stdout. A reader that went away
/// (`render … | head`) ends the command quietly with exit 0 instead of a
/// panic; any other write error is reported like a runtime failure.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(EXIT_RUNTIME.into());
        }
    }
}

/// `print!` through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!($($arg)*)) };
}

/// `println!` through [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

mod check;
mod demo;
mod logging;
mod outbox;
mod render;
mod run;
mod send_test;
pub mod state;
mod why;

pub use logging::{is_muted, MUTED_TARGETS};

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
        /// downloadable, failed, queued, removed or expiring; or digest (a sample of 3).
        #[arg(long, required_unless_present = "html_preview")]
        event: Option<render::RenderEvent>,
        /// The sink's name in the config.
        #[arg(long, required_unless_present = "html_preview")]
        sink: Option<String>,
        /// One item in the API's shape (default: a built-in sample).
        #[arg(long)]
        item: Option<PathBuf>,
        /// Render as if now were this RFC 3339 time (reproducible previews).
        #[arg(long, value_parser = render::parse_rfc3339)]
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
    /// Move a state between an SQLite file and PostgreSQL (`state copy`).
    State {
        #[command(subcommand)]
        action: state::StateAction,
    },
    /// Show an item's stored states, fired events and deliveries.
    Why {
        /// The export queue item id.
        item_id: i64,
        /// The account (`[accounts.NAME]`) whose item it is; needed only
        /// when the Id exists in more than one account.
        #[arg(long)]
        account: Option<String>,
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

/// A command's failure. Which variant decides the exit code, in one place:
/// [`exit_code`].
pub enum Failure {
    /// Exit 2: fix the config, a template or the command line.
    Usage(anyhow::Error),
    /// Exit 1: something failed at run time.
    Runtime(anyhow::Error),
}

/// Errors that know whether their fix is in the config or command line
/// (exit 2) or not (exit 1), so commands classify them with [`Failure::of`]
/// instead of each matching on variants.
pub trait Blame {
    /// True when the user fixes this in the config, templates or arguments.
    fn is_usage(&self) -> bool;
}

impl Blame for crate::app::ServiceError {
    fn is_usage(&self) -> bool {
        self.is_config()
    }
}

impl Blame for crate::probe::ProbeError {
    fn is_usage(&self) -> bool {
        crate::probe::ProbeError::is_usage(self)
    }
}

impl Blame for crate::demo::DemoError {
    fn is_usage(&self) -> bool {
        match self {
            crate::demo::DemoError::Config(_) => true,
            crate::demo::DemoError::Service(s) => s.is_config(),
            _ => false,
        }
    }
}

impl Failure {
    /// Wraps an error that knows its own blame.
    pub fn of<E>(e: E) -> Self
    where
        E: Blame + Into<anyhow::Error>,
    {
        if e.is_usage() {
            Failure::Usage(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    }
}

/// Exit code of a runtime failure.
const EXIT_RUNTIME: u8 = 1;
/// Exit code of a config, template or usage failure.
const EXIT_USAGE: u8 = 2;

/// THE mapping from a command's outcome to the process exit code (spec:
/// 0 ok, 1 runtime failure, 2 config, template or usage).
pub fn exit_code(outcome: Result<(), &Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(_)) => ExitCode::from(EXIT_RUNTIME),
        Err(Failure::Usage(_)) => ExitCode::from(EXIT_USAGE),
    }
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are "errors" on stdout that end well.
            let outcome = e.use_stderr().then(|| Failure::Usage(e.into()));
            return exit_code(outcome.as_ref().map_or(Ok(()), Err));
        }
    };
    logging::init_logging(cli.log_format);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(dispatch(cli)));
    if let Err(Failure::Usage(e) | Failure::Runtime(e)) = &outcome {
        eprintln!("error: {e:#}");
    }
    exit_code(outcome.as_ref().map(|_| ()))
}

/// Runs the parsed command; the config path defaults to $BOT_CONFIG, then bot.toml.
async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let path = cli.config.clone().unwrap_or_else(|| {
        std::env::var_os("BOT_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("bot.toml"))
    });
    match cli.command {
        Command::Run => run::run(load(&path)?, path).await,
        Command::Once => run::once(load(&path)?).await,
        Command::Check { online } => check::check(&path, online).await,
        Command::Render {
            event,
            sink,
            item,
            now,
            html_preview,
        } => {
            let config = load(&path)?;
            match html_preview {
                Some(out) => {
                    let now = now.unwrap_or_else(chrono::Utc::now);
                    render::render_page(&config, item.as_deref(), now, &out)
                }
                None => render::render_one(&config, event, sink, item.as_deref(), now),
            }
        }
        Command::SendTest { sink, to } => send_test::send_test(&path, &sink, to.as_deref()).await,
        Command::Outbox { action } => outbox::outbox(&path, action),
        Command::Why { item_id, account } => why::why(&path, item_id, account),
        Command::State { action } => state::state(action),
        Command::Demo { cycles, interval } => demo::demo(cycles, interval, cli.config).await,
    }
}

/// Opens the state file named by the config, without taking the run lock.
pub(super) fn open_store(
    path: &std::path::Path,
) -> Result<(Config, std::sync::Arc<dyn Store>), Failure> {
    let config = load(path)?;
    let store = crate::store::open(&config.watch.state).map_err(|e| Failure::Runtime(e.into()))?;
    Ok((config, store))
}

/// Loads the config; any problem in it exits 2.
pub(super) fn load(path: &std::path::Path) -> Result<Config, Failure> {
    config::load(path).map_err(|e| Failure::Usage(e.into()))
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub(super) async fn stop_on_signal(shutdown: CancellationToken) {
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
