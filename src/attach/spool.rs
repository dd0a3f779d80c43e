//! The spool folder: export files downloaded once per (account, item) and
//! kept until no pending delivery needs them. A body is streamed chunk by
//! chunk into a temporary `.part-*` file (never held whole in memory) and
//! renamed to its name only when complete, so a download that dies
//! mid-stream leaves nothing a later send could attach. Concurrent sends of
//! one item wait for the one download (a lock per item).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use tempfile::NamedTempFile;

use super::{human_size, name, Attachment};
use crate::crayon::{CrayonClient, CrayonError};
use crate::domain::{AccountId, ExportId};
use crate::store::StateLocation;

/// The folder name used in the temp dir for a PostgreSQL state.
const TEMP_FOLDER: &str = "crayon-export-bot-spool";

/// How many bytes of the start of a file decide its type.
const SNIFF_BYTES: usize = 8;

/// Whether an item's file could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Downloaded completely; in the spool folder.
    Ready(Arc<Attachment>),
    /// It cannot be had (too big, 4xx): the message goes without it and
    /// says why. Retrying would not change it.
    Unavailable(String),
}

/// Why the spool could not do its part. Texts name the item and the
/// folder, never the download URL or the token.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot prepare the attachment spool folder {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Worth another try later (5xx, timeout, connection cut mid-body, disk).
    #[error("the download of item {item}'s export file failed: {reason}")]
    Transient { item: ExportId, reason: String },
}

type Slot = Arc<tokio::sync::Mutex<Option<Fetched>>>;

/// The spool folder and what it holds. One per process.
pub struct Spool {
    dir: PathBuf,
    slots: Mutex<HashMap<(AccountId, ExportId), Slot>>,
    /// Set once the leftovers of earlier runs are gone.
    cleared: std::sync::Once,
}

impl Spool {
    /// The folder for a state: `<state file>.spool` beside a file state;
    /// for PostgreSQL, `delivery.spool_dir`, else `<temp dir>/crayon-export-bot-spool`.
    pub fn folder_for(state: &StateLocation, spool_dir: Option<&Path>) -> PathBuf {
        match (state, spool_dir) {
            (_, Some(dir)) => dir.to_path_buf(),
            (StateLocation::File(path), None) => {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(".spool");
                path.with_file_name(name)
            }
            (StateLocation::Postgres(_), None) => std::env::temp_dir().join(TEMP_FOLDER),
        }
    }

    /// Creates `dir` (mode 0700). What an earlier run left in it is
    /// removed by the first download ([`Spool::clear_leftovers`]), not
    /// here: a process that builds its app and then finds the state locked
    /// by a running one must not touch that one's files.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        let failed = |source| SpoolError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        restrict(dir).map_err(failed)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            slots: Mutex::default(),
            cleared: std::sync::Once::new(),
        })
    }

    /// Removes every file in the folder: before this process's first
    /// download (it holds the state then) nothing in it is this process's,
    /// so each entry is an orphan of an earlier run (or a `.part-*` of one
    /// that died). Done once per process.
    pub fn clear_leftovers(&self) {
        self.cleared.call_once(|| {
            let Ok(entries) = std::fs::read_dir(&self.dir) else {
                return;
            };
            let removed = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && std::fs::remove_file(p).is_ok())
                .count();
            if removed > 0 {
                tracing::info!(folder = %self.dir.display(), removed,
                    "removed files left in the attachment spool");
            }
        });
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Item `item`'s file for `account`: downloaded now unless already here
    /// (concurrent callers wait for one download), refused above `cap`
    /// bytes. A transient failure is not remembered: the next call tries again.
    pub async fn fetch(
        &self,
        client: &CrayonClient,
        account: &AccountId,
        item: ExportId,
        action_name: &str,
        cap: u64,
    ) -> Result<Fetched, SpoolError> {
        self.clear_leftovers();
        let slot = self.slot(account, item);
        let mut known = slot.lock().await;
        match known.as_ref() {
            // Someone removed the file from the folder: download it again.
            Some(Fetched::Ready(file)) if !file.path.is_file() => {}
            Some(fetched) => return Ok(fetched.clone()),
            None => {}
        }
        let fetched = download(client, &self.dir, item, action_name, cap).await?;
        if let Fetched::Ready(file) = &fetched {
            tracing::info!(account = %account, item = item.0, file = %file.name,
                size = file.size, "downloaded the export file into the spool");
        }
        Ok(known.insert(fetched).clone())
    }

    /// The items the spool holds something for (files or remembered refusals).
    pub fn held(&self) -> Vec<(AccountId, ExportId)> {
        self.lock().keys().cloned().collect()
    }

    /// Forgets `item` and removes its file (no pending delivery needs it).
    pub fn release(&self, account: &AccountId, item: ExportId) {
        let Some(slot) = self.lock().remove(&(account.clone(), item)) else {
            return;
        };
        let path = match slot.try_lock() {
            Ok(known) => match known.as_ref() {
                Some(Fetched::Ready(file)) => Some(file.path.clone()),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(path) = path {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(item = item.0, "removed the export file from the spool"),
                Err(e) => tracing::warn!(item = item.0, file = %path.display(), error = %e,
                    "cannot remove the export file from the spool"),
            }
        }
    }

    fn slot(&self, account: &AccountId, item: ExportId) -> Slot {
        self.lock()
            .entry((account.clone(), item))
            .or_default()
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AccountId, ExportId), Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(unix)]
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Streams item `item`'s file into `dir`.
async fn download(
    client: &CrayonClient,
    dir: &Path,
    item: ExportId,
    action_name: &str,
    cap: u64,
) -> Result<Fetched, SpoolError> {
    let transient = |reason: String| SpoolError::Transient { item, reason };
    let mut response = match client.download_export(item).await {
        Ok(response) => response,
        Err(e) => {
            return match refused(&e) {
                Some(reason) => Ok(Fetched::Unavailable(reason)),
                None => Err(transient_of(item, e)),
            }
        }
    };
    if response.content_length().is_some_and(|len| len > cap) {
        return Ok(too_big(cap));
    }
    let header = |h| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (disposition, declared_type) = (header(CONTENT_DISPOSITION), header(CONTENT_TYPE));
    let disk = |e: std::io::Error| transient(format!("cannot write to the spool folder: {e}"));
    let mut part = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(dir)
        .map_err(disk)?;
    let (mut size, mut first) = (0u64, Vec::with_capacity(SNIFF_BYTES));
    let stall = client.stall_timeout();
    loop {
        let chunk = match tokio::time::timeout(stall, response.chunk()).await {
            Err(_) => return Err(transient(format!("the body stalled for {stall:?}"))),
            Ok(Err(e)) => return Err(transient(format!("the body was cut: {}", e.without_url()))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > cap {
            return Ok(too_big(cap));
        }
        let want = SNIFF_BYTES.saturating_sub(first.len()).min(chunk.len());
        first.extend_from_slice(&chunk[..want]);
        part.write_all(&chunk).map_err(disk)?;
    }
    part.flush().map_err(disk)?;
    let (shown, content_type) = match disposition.as_deref().and_then(name::from_disposition) {
        Some(given) => {
            let shown = name::safe_name(&given);
            let kind = name::type_for_name(&shown, &first, declared_type.as_deref());
            (shown, kind)
        }
        None => {
            let (ext, kind) = name::sniff(&first, declared_type.as_deref());
            (name::from_action_name(action_name, ext), kind)
        }
    };
    let path = persist_new(part, dir, &shown).map_err(disk)?;
    Ok(Fetched::Ready(Arc::new(Attachment {
        path,
        name: shown,
        size,
        content_type,
    })))
}

fn too_big(cap: u64) -> Fetched {
    Fetched::Unavailable(format!("the file is larger than {}", human_size(cap)))
}

/// The refusals retrying cannot fix (4xx, a redirect), as the reason the
/// message gives; `None` for the transient ones.
fn refused(error: &CrayonError) -> Option<String> {
    match error {
        CrayonError::Status { status, .. } if (400..500).contains(status) => {
            Some(format!("the file could not be downloaded (HTTP {status})"))
        }
        CrayonError::Unauthorized => Some("the file could not be downloaded (HTTP 401)".into()),
        CrayonError::Redirected { status, .. } => Some(format!(
            "the file could not be downloaded (HTTP {status}, a redirect the bot does not follow)"
        )),
        _ => None,
    }
}

fn transient_of(item: ExportId, error: CrayonError) -> SpoolError {
    SpoolError::Transient {
        item,
        reason: error.to_string(),
    }
}

/// Renames the complete `part` to `name` in `dir`, or `2-name`, `3-name`, …
/// when that is taken: never over another spool file.
pub(crate) fn persist_new(
    mut part: NamedTempFile,
    dir: &Path,
    name: &str,
) -> std::io::Result<PathBuf> {
    for n in 1..=1000u32 {
        let candidate = match n {
            1 => dir.join(name),
            n => dir.join(format!("{n}-{name}")),
        };
        match part.persist_noclobber(&candidate) {
            Ok(_) => return Ok(candidate),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => part = e.file,
            Err(e) => return Err(e.error),
        }
    }
    Err(std::io::Error::other("too many files of that name"))
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
