//! Where reload requests come from: SIGHUP always, and with
//! `watch.reload = true` a change of `bot.toml` or of a template on disk.
//! Folders are watched rather than files, so editors that save by writing a
//! new file and renaming it over the old one are seen too. And what a
//! reload leaves behind: the sinks it replaced, closed once unused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::sinks::Sinks;

/// How often a replaced sink set is checked for being unused.
const UNUSED_CHECK: Duration = Duration::from_millis(100);

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

/// The sink sets reloads replaced. Each is closed (SMTP QUIT) once nothing
/// but this holds it: every dispatcher that could send through it (a
/// send in flight holds one) is gone, so its sends are finished and
/// recorded and none can start; left to the drop, the server would just
/// see the connection go, or stay open until the pool's idle timeout.
#[derive(Default)]
pub(crate) struct RetiredSinks {
    closing: JoinSet<()>,
}

impl RetiredSinks {
    /// Closes `sinks` as soon as it is unused.
    pub(crate) fn retire(&mut self, sinks: Arc<Sinks>) {
        while self.closing.try_join_next().is_some() {}
        self.closing.spawn(async move {
            let since = tokio::time::Instant::now();
            while Arc::strong_count(&sinks) > 1 {
                tokio::time::sleep(UNUSED_CHECK).await;
            }
            sinks.close().await;
            let waited_ms = since.elapsed().as_millis() as u64;
            tracing::info!(waited_ms, "closed the sinks' sessions a reload replaced");
        });
    }

    /// Waits until every retired set is closed (at shutdown, after the
    /// sends in flight finished; the caller bounds it by the grace period).
    pub(crate) async fn closed(mut self) {
        while self.closing.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::Delivery;
    use crate::sinks::{CloseFuture, SendFuture, Sink};

    /// A sink counting its closes.
    #[derive(Default)]
    struct Closes(AtomicUsize);

    impl Sink for Closes {
        fn send<'a>(&'a self, _: &'a Delivery) -> SendFuture<'a> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn close(&self) -> CloseFuture<'_> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(()))
        }
    }

    /// A retired set still held elsewhere (a send in flight) is not closed
    /// until that holder lets go; then it is, once.
    #[tokio::test(start_paused = true)]
    async fn a_retired_set_is_closed_once_after_its_last_user_let_go() {
        let sink = Arc::new(Closes::default());
        let map = BTreeMap::from([("mail".to_owned(), sink.clone() as Arc<dyn Sink>)]);
        let sinks = Arc::new(Sinks::from_sinks(map));
        let in_flight = sinks.clone();
        let mut retired = RetiredSinks::default();
        retired.retire(sinks);
        tokio::time::sleep(UNUSED_CHECK * 10).await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 0, "not under a send");
        drop(in_flight);
        tokio::time::sleep(UNUSED_CHECK * 2).await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 1);
        retired.closed().await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 1, "closed once");
    }
}
