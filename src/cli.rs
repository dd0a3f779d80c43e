//! The command line: parses arguments, sets up logging, runs one command and
//! maps its outcome onto the exit codes of the spec (0 ok, 1 runtime
//! failure, 2 bad config, template or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::service::App;

/// crayon-export-bot: tells people when their Crayon Cloud-iQ export is ready.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "BOT_CONFIG", default_value = "bot.toml")]
    pub config: PathBuf,
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
    Check,
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
    match cli.command {
        Command::Run => run(load(&cli.config)?).await,
        Command::Once => once(load(&cli.config)?).await,
        Command::Check => check(&cli.config),
    }
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

async fn run(config: Config) -> Result<(), Failure> {
    let app = build(config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run(shutdown)
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

fn check(path: &std::path::Path) -> Result<(), Failure> {
    let config = load(path)?;
    let report = crate::check::check(&config);
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if !report.problems.is_empty() {
        let list = report.problems.join("\n");
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} problem(s) in {}:\n{list}",
            report.problems.len(),
            path.display()
        )));
    }
    println!(
        "ok: {} ({} sinks, {} routes, {} templates rendered)",
        path.display(),
        config.sinks.len(),
        config.routes.len(),
        report.rendered
    );
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // serenity's request spans record the webhook route, token included;
        // the Discord sink logs its own outcomes.
        .add_directive("serenity=off".parse().expect("a valid static directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
