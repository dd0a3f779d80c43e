//! What a delivery carries: rendered message, outbox id and lifecycle.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EventKind, ExportId, Subject};

/// A delivery's lifecycle state in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Dead,
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "dead" => Ok(Self::Dead),
            "skipped" => Ok(Self::Skipped),
            other => Err(format!(
                "unknown delivery status {other:?} (expected pending, sent, dead or skipped)"
            )),
        }
    }
}

/// A message rendered at enqueue time: template part name (`json`, `text`,
/// `subject`, `html`) to rendered text. Stored as-is in the outbox so a retry
/// sends exactly what was rendered when the event fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedMessage {
    pub parts: BTreeMap<String, String>,
    /// The template context the parts were rendered from, kept so that a
    /// message can be rendered again at send time with what is only known
    /// then (an attachment's fate, the other members of a digest) from
    /// exactly the facts of the event, not from a later queue answer.
    /// Absent in rows written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<StoredContext>,
}

/// A message's template context as stored: the JSON text, decoded into a
/// tree only when the message is rendered again (an attaching sink, a
/// digest, a preview). Most sends never look at it, and decoding it for
/// each of them was most of what reading a due delivery cost (the context
/// is most of a stored message; BENCHMARKS.md, "Session 5").
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredContext(Box<serde_json::value::RawValue>);

impl StoredContext {
    /// The context of `value`, as it will be stored.
    pub fn new(value: &serde_json::Value) -> Self {
        // A `Value` always serializes (its map keys are strings).
        StoredContext(
            serde_json::value::to_raw_value(value).expect("a JSON value serializes as JSON"),
        )
    }

    /// The context as a tree, to render from. The text was checked to be
    /// JSON when it was read, so it parses again.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    /// The JSON text as stored.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl From<serde_json::Value> for StoredContext {
    fn from(value: serde_json::Value) -> Self {
        StoredContext::new(&value)
    }
}

impl PartialEq for StoredContext {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for StoredContext {}

impl fmt::Debug for StoredContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RenderedMessage {
    /// The named part, or an empty string when the sink kind has no such part.
    pub fn part(&self, name: &str) -> &str {
        self.parts.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A delivery to be written to the outbox in the poll's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub item_id: ExportId,
    pub event: EventKind,
    pub sink: String,
    /// Where the sink sends it when the sink is per-person (email address,
    /// Discord user id); `None` for channel sinks.
    pub recipient: Option<String>,
    pub message: RenderedMessage,
    pub disposition: Disposition,
}

/// The state a new delivery starts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// To be sent.
    Pending,
    /// Nothing to send it to (no mapped user, no valid address); the reason
    /// is kept. Not a failure, not an alert.
    Skipped(String),
    /// Could not even be rendered; the reason is kept for `outbox list`.
    Dead(String),
}

/// The outbox's key for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A delivery as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    /// The queue item or the alert this delivery is about.
    pub subject: Subject,
    pub event: EventKind,
    pub sink: String,
    pub recipient: Option<String>,
    #[serde(skip)]
    pub message: RenderedMessage,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}
