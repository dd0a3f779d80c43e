//! `run` (poll forever, reload on SIGHUP or file change) and `once`.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::app::reload;
use crate::app::{App, Reloads};
use crate::config::{self, Config};

use super::{stop_on_signal, Failure};

/// Builds the app; a config-level failure exits 2.
pub(super) fn build(config: Config) -> Result<App, Failure> {
    App::build(config).map_err(Failure::of)
}

/// `run`: poll until SIGINT/SIGTERM, reloading on SIGHUP (and on file change
/// with `watch.reload`).
pub(super) async fn run(config: Config, path: PathBuf) -> Result<(), Failure> {
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

/// `once`: exit 1 unless every due delivery was sent.
pub(super) async fn once(config: Config) -> Result<(), Failure> {
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
