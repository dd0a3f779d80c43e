//! `demo`: the bot against a built-in simulated export queue.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{stop_on_signal, Failure};

/// Runs the demo, stopped early by SIGINT/SIGTERM.
pub(super) async fn demo(
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
        .map_err(Failure::of)
}
