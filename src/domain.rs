//! Domain types shared by every module: what an export queue item is, what a
//! snapshot of the queue is, which events exist and what a delivery carries.
//!
//! The wire names (`Id`, `Status`, …) are the Crayon API's own; parsing here is
//! strict about the fields the bot relies on and tolerant of everything else, so
//! a body that is not the documented shape fails instead of looking empty.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// A real queue answer (two items), used as the sample item for `check`,
/// `render` and the built-in template tests.
pub const SAMPLE_QUEUE: &[u8] = include_bytes!("../tests/fixtures/exports-sample.json");

/// The account every row is keyed on until several Crayon accounts are supported.
pub const DEFAULT_ACCOUNT: &str = "default";

/// An export queue item's id, as the API numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExportId(pub i64);

impl fmt::Display for ExportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The queue item's processing status. Codes the API may add later are kept as
/// `Other` so a new status never breaks a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportStatus {
    None,
    Queued,
    Processed,
    Deleted,
    Failed,
    Other(i64),
}

impl ExportStatus {
    /// The API's numeric code.
    pub fn code(self) -> i64 {
        match self {
            Self::None => 0,
            Self::Queued => 1,
            Self::Processed => 2,
            Self::Deleted => 4,
            Self::Failed => 8,
            Self::Other(code) => code,
        }
    }

    /// The name shown to people in messages (`Unknown` for codes we do not know).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Queued => "Queued",
            Self::Processed => "Processed",
            Self::Deleted => "Deleted",
            Self::Failed => "Failed",
            Self::Other(_) => "Unknown",
        }
    }
}

impl From<i64> for ExportStatus {
    fn from(code: i64) -> Self {
        match code {
            0 => Self::None,
            1 => Self::Queued,
            2 => Self::Processed,
            4 => Self::Deleted,
            8 => Self::Failed,
            other => Self::Other(other),
        }
    }
}

impl<'de> Deserialize<'de> for ExportStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64::deserialize(d).map(Self::from)
    }
}

impl Serialize for ExportStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

/// One item of the export queue, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExportItem {
    #[serde(rename = "Id")]
    pub id: ExportId,
    #[serde(rename = "Status")]
    pub status: ExportStatus,
    #[serde(rename = "ActionUrl", default, deserialize_with = "null_as_empty")]
    pub action_url: String,
    #[serde(rename = "Downloadable")]
    pub downloadable: bool,
    #[serde(rename = "Attempts", default, deserialize_with = "null_as_zero")]
    pub attempts: i64,
    #[serde(rename = "ActionName", default, deserialize_with = "null_as_empty")]
    pub action_name: String,
    /// The requester's address as typed; `None` when the API left it out or null.
    #[serde(rename = "RequestedBy", default)]
    pub requested_by: Option<String>,
    #[serde(rename = "CreatedDate", with = "crayon_date")]
    pub created_date: DateTime<Utc>,
}

impl ExportItem {
    /// When the item leaves the queue: `CreatedDate + NrOfDays`. Both come
    /// from the API, so the sum saturates at chrono's last instant instead of
    /// panicking on a `CreatedDate` of year +262142 or a huge `NrOfDays`.
    pub fn expires_at(&self, nr_of_days: u32) -> DateTime<Utc> {
        self.created_date
            .checked_add_signed(chrono::Duration::days(i64::from(nr_of_days)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn null_as_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or_default())
}

/// `CreatedDate` comes without an offset (`2024-05-30T13:39:59.387`) and means
/// UTC; an explicit offset is accepted too.
pub mod crayon_date {
    use super::*;

    /// Parses an API timestamp, with or without offset, as UTC.
    pub fn parse(text: &str) -> Option<DateTime<Utc>> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Some(dt.with_timezone(&Utc));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| naive.and_utc())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("CreatedDate {text:?} is not a timestamp"))
        })
    }

    pub fn serialize<S: serde::Serializer>(dt: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dt.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
    }
}

/// The queue answer as the API sends it (`ExportQueueResult`).
#[derive(Debug, Deserialize)]
pub struct QueueAnswer {
    #[serde(rename = "Items")]
    pub items: Vec<ExportItem>,
    #[serde(rename = "NrOfDays")]
    pub nr_of_days: u32,
}

/// One poll's view of the queue, keyed by id. Ids are unique here: duplicates
/// in an answer are dropped when the snapshot is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub items: BTreeMap<ExportId, ExportItem>,
    pub nr_of_days: u32,
}

impl Snapshot {
    /// Builds a snapshot keeping the first item of each id; returns the ids that
    /// were listed more than once so the caller can log them.
    pub fn from_answer(answer: QueueAnswer) -> (Snapshot, Vec<ExportId>) {
        let mut items = BTreeMap::new();
        let mut duplicates = Vec::new();
        for item in answer.items {
            match items.entry(item.id) {
                std::collections::btree_map::Entry::Occupied(_) => duplicates.push(item.id),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(item);
                }
            }
        }
        let snapshot = Snapshot {
            items,
            nr_of_days: answer.nr_of_days,
        };
        (snapshot, duplicates)
    }

    /// Parses a queue body. Anything that is not the documented shape is an
    /// error, never an empty snapshot.
    pub fn parse(body: &[u8]) -> Result<(Snapshot, Vec<ExportId>), serde_json::Error> {
        serde_json::from_slice::<QueueAnswer>(body).map(Snapshot::from_answer)
    }
}

/// The events of the spec. `as_str` is the name used in config, templates and
/// the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Downloadable,
    Failed,
    Queued,
    Removed,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Downloadable,
        EventKind::Failed,
        EventKind::Queued,
        EventKind::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downloadable => "downloadable",
            Self::Failed => "failed",
            Self::Queued => "queued",
            Self::Removed => "removed",
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
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!("unknown event {s:?} (expected downloadable, failed, queued or removed)")
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
    pub item_id: ExportId,
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

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_real_sample_answer() {
        let body = include_bytes!("../tests/fixtures/exports-sample.json");
        let (snapshot, dups) = Snapshot::parse(body).unwrap();
        assert_eq!(snapshot.items.len(), 2);
        assert!(dups.is_empty());
        assert_eq!(snapshot.nr_of_days, 7);
        let item = &snapshot.items[&ExportId(2439)];
        assert_eq!(item.status, ExportStatus::Processed);
        assert!(item.downloadable);
        assert_eq!(
            item.created_date.to_rfc3339(),
            "2024-05-30T13:39:59.387+00:00"
        );
    }

    #[test]
    fn unknown_status_is_kept_and_null_requester_tolerated() {
        let body = br#"{"Items":[{"Id":1,"Status":16,"Downloadable":false,"RequestedBy":null,
            "CreatedDate":"2024-05-30T13:39:59","Extra":true}],"NrOfDays":7}"#;
        let (snapshot, _) = Snapshot::parse(body).unwrap();
        let item = &snapshot.items[&ExportId(1)];
        assert_eq!(item.status, ExportStatus::Other(16));
        assert_eq!(item.status.code(), 16);
        assert_eq!(item.requested_by, None);
    }

    #[test]
    fn bodies_not_of_the_documented_shape_are_errors() {
        for body in [
            &b"{}"[..],
            b"[]",
            b"{\"Items\":null,\"NrOfDays\":7}",
            b"{\"Items\":[{\"Id\":1}],\"NrOfDays\":7}",
            b"<html>maintenance</html>",
            b"",
        ] {
            assert!(
                Snapshot::parse(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn duplicate_ids_keep_the_first_and_are_reported() {
        let body = br#"{"Items":[
            {"Id":5,"Status":1,"Downloadable":false,"CreatedDate":"2024-05-30T13:39:59"},
            {"Id":5,"Status":2,"Downloadable":true,"CreatedDate":"2024-05-30T13:39:59"}],
            "NrOfDays":7}"#;
        let (snapshot, dups) = Snapshot::parse(body).unwrap();
        assert_eq!(dups, vec![ExportId(5)]);
        assert_eq!(snapshot.items[&ExportId(5)].status, ExportStatus::Queued);
    }
}
