//! The events of the spec and why a `removed` fired.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The events of the spec. `as_str` is the name used in config, templates and
/// the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Downloadable,
    Failed,
    Queued,
    Removed,
    /// A downloadable item is less than `watch.remind_before` from leaving
    /// the queue (off unless listed in `watch.events`).
    Expiring,
    /// Not a queue event: the bot's own alert (`[alerts]`), which travels
    /// through the same outbox. Never watched, never fired by the diff.
    Alert,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Downloadable,
        EventKind::Failed,
        EventKind::Queued,
        EventKind::Removed,
        EventKind::Expiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downloadable => "downloadable",
            Self::Failed => "failed",
            Self::Queued => "queued",
            Self::Removed => "removed",
            Self::Expiring => "expiring",
            Self::Alert => "alert",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .chain([EventKind::Alert])
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!("unknown event {s:?} (expected downloadable, failed, queued, removed or expiring)")
            })
    }
}

/// Why a `removed` event fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedReason {
    /// The item's status turned Deleted.
    Deleted,
    /// It dropped out because it is older than the queue's NrOfDays.
    Expired,
    /// It disappeared for no reason the bot can see.
    Vanished,
}

impl RemovedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Expired => "expired",
            Self::Vanished => "vanished",
        }
    }
}
