//! Where reload requests come from: SIGHUP always, and with
//! `watch.reload = true` a change of `bot.toml` or of a template on disk.
//! Folders are watched rather than files, so editors that save by writing a
//! new file and renaming it over the old one are seen too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A live file watcher; dropping it stops watching.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Sends `()` on `tx` for every SIGHUP.
pub fn on_sighup(tx: mpsc::Sender<()>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading config and templates");
            let _ = tx.try_send(());
        }
    });
}

/// Watches the config file and the templates folder; changes are debounced
/// (editors write several events per save) into one request on `tx`.
pub fn on_file_change(
    config: &Path,
    templates: Option<&Path>,
    tx: mpsc::Sender<()>,
) -> notify::Result<FileWatch> {
    let config_name = config.file_name().map(|n| n.to_os_string());
    let config_dir = parent(config);
    let templates = templates.map(Path::to_path_buf);
    let (raw_tx, mut raw_rx) = mpsc::channel::<()>(64);
    let relevant = {
        let templates = templates.clone();
        move |path: &Path| {
            let is_config = path.file_name().map(|n| n.to_os_string()) == config_name;
            let in_templates = templates.as_ref().is_some_and(|t| path.starts_with(t));
            is_config || in_templates
        }
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() && event.paths.iter().any(|p| relevant(p)) {
                let _ = raw_tx.try_send(());
            }
        }
    })?;
    watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
    if let Some(dir) = &templates {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            while raw_rx.try_recv().is_ok() {}
            tracing::info!("config or templates changed on disk: reloading");
            let _ = tx.try_send(());
        }
    });
    Ok(FileWatch { _watcher: watcher })
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
