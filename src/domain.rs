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

mod account;
mod subject;

pub use account::{AccountId, InvalidAccountId};
pub use subject::{AlertCondition, AlertState, Subject};

/// An export queue item's id, as the API numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExportId(pub i64);

impl fmt::Display for ExportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The queue item's processing status. The API sends a number or its name
/// (any case); codes and names it may add later are kept as `Other` /
/// `OtherName` so a new status never breaks a poll or loses what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExportStatus {
    None,
    Queued,
    Processed,
    Deleted,
    Failed,
    Other(i64),
    /// A name the bot does not know, as the API spelled it.
    OtherName(std::sync::Arc<str>),
}

/// The known statuses with their codes and names, the one table both
/// directions read.
const KNOWN_STATUSES: [(ExportStatus, i64, &str); 5] = [
    (ExportStatus::None, 0, "None"),
    (ExportStatus::Queued, 1, "Queued"),
    (ExportStatus::Processed, 2, "Processed"),
    (ExportStatus::Deleted, 4, "Deleted"),
    (ExportStatus::Failed, 8, "Failed"),
];

impl ExportStatus {
    /// The API's numeric code; `None` for a status that only came as an
    /// unknown name.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Other(code) => Some(*code),
            Self::OtherName(_) => Option::None,
            known => KNOWN_STATUSES
                .iter()
                .find(|(status, _, _)| status == known)
                .map(|(_, code, _)| *code),
        }
    }

    /// The name shown to people in messages (`Unknown` for codes and names
    /// we do not know).
    pub fn name(&self) -> &'static str {
        KNOWN_STATUSES
            .iter()
            .find(|(status, _, _)| status == self)
            .map_or("Unknown", |(_, _, name)| name)
    }

    /// What identifies an unknown status: its code or the name as sent
    /// ("16", "Archived").
    pub fn raw(&self) -> String {
        match self {
            Self::OtherName(name) => name.to_string(),
            other => other.code().unwrap_or_default().to_string(),
        }
    }

    /// A status from its name, case-insensitively; unknown names are kept.
    pub fn from_name(name: &str) -> Self {
        KNOWN_STATUSES
            .iter()
            .find(|(_, _, known)| known.eq_ignore_ascii_case(name))
            .map_or_else(|| Self::OtherName(name.into()), |(s, _, _)| s.clone())
    }
}

impl From<i64> for ExportStatus {
    fn from(code: i64) -> Self {
        KNOWN_STATUSES
            .iter()
            .find(|(_, known, _)| *known == code)
            .map_or(Self::Other(code), |(status, _, _)| status.clone())
    }
}

impl<'de> Deserialize<'de> for ExportStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The wire form: a number or a name.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Code(i64),
            Name(String),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Code(code) => Self::from(code),
            Wire::Name(name) => Self::from_name(&name),
        })
    }
}

impl Serialize for ExportStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.code(), self) {
            (Some(code), _) => s.serialize_i64(code),
            (Option::None, Self::OtherName(name)) => s.serialize_str(name),
            (Option::None, _) => s.serialize_none(),
        }
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
        if let Some(naive) = parse_plain(text.as_bytes()) {
            return Some(naive.and_utc());
        }
        parse_general(text)
    }

    /// The shape every queue item has (`2024-05-30T13:39:59.387`, no
    /// offset), read without chrono's format machinery: that was ~10 % of a
    /// 100k-item poll. Anything else, leap seconds included, returns `None`
    /// and goes the general way.
    pub(super) fn parse_plain(b: &[u8]) -> Option<NaiveDateTime> {
        if b.len() < 19 || [b[4], b[7], b[10], b[13], b[16]] != *b"--T::" {
            return None;
        }
        let num = |range: std::ops::Range<usize>| {
            b[range].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let nanos = match &b[19..] {
            [] => 0,
            [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
                num(20..b.len())? * 10u32.pow(9 - digits.len() as u32)
            }
            _ => return None,
        };
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if second >= 60 {
            return None;
        }
        let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        date.and_hms_nano_opt(hour, minute, second, nanos)
    }

    /// Any RFC 3339 timestamp, or one without offset in chrono's own reading.
    pub(super) fn parse_general(text: &str) -> Option<DateTime<Utc>> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Some(dt.with_timezone(&Utc));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| naive.and_utc())
    }

    /// Reads the string in place (no copy per item, unlike `Cow<str>`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        struct DateVisitor;
        impl serde::de::Visitor<'_> for DateVisitor {
            type Value = DateTime<Utc>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse(text)
                    .ok_or_else(|| E::custom(format!("CreatedDate {text:?} is not a timestamp")))
            }
        }
        d.deserialize_str(DateVisitor)
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
    /// were listed more than once (in id order) so the caller can log them.
    ///
    /// Sorting first and building the map in bulk is about three times
    /// faster at 100k items than inserting one by one (see BENCHMARKS.md).
    pub fn from_answer(answer: QueueAnswer) -> (Snapshot, Vec<ExportId>) {
        let mut items = answer.items;
        let duplicates = sort_and_dedup(&mut items, |item| item.id);
        let snapshot = Snapshot {
            items: items.into_iter().map(|item| (item.id, item)).collect(),
            nr_of_days: answer.nr_of_days,
        };
        (snapshot, duplicates)
    }

    /// The items that differ between `previous` and `current`, in id order,
    /// found by walking both maps side by side (no lookups). Unchanged items
    /// are skipped: they can neither fire an event nor need a write. With no
    /// previous snapshot every item has appeared.
    pub fn changes<'a>(
        previous: Option<&'a Snapshot>,
        current: &'a Snapshot,
    ) -> impl Iterator<Item = Change<'a>> + 'a {
        let mut before = previous
            .map(|p| p.items.values())
            .into_iter()
            .flatten()
            .peekable();
        let mut after = current.items.values().peekable();
        std::iter::from_fn(move || loop {
            let change = match (before.peek(), after.peek()) {
                (None, None) => return None,
                (Some(b), Some(a)) if b.id == a.id => {
                    let (b, a) = (before.next()?, after.next()?);
                    if b == a {
                        continue;
                    }
                    Change::Changed(b, a)
                }
                (Some(b), Some(a)) if b.id < a.id => Change::Gone(before.next()?),
                (Some(_), None) => Change::Gone(before.next()?),
                _ => Change::Appeared(after.next()?),
            };
            return Some(change);
        })
    }
    /// Parses a queue body. Anything that is not the documented shape is an
    /// error, never an empty snapshot.
    pub fn parse(body: &[u8]) -> Result<(Snapshot, Vec<ExportId>), serde_json::Error> {
        Snapshot::parse_over(body, &mut None).map(|polled| (polled.snapshot, polled.duplicates))
    }
}

/// How one item differs between two snapshots (see [`Snapshot::changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Listed now, not before.
    Appeared(&'a ExportItem),
    /// Listed both times with some field different: (before, now).
    Changed(&'a ExportItem, &'a ExportItem),
    /// Listed before, not now.
    Gone(&'a ExportItem),
}

/// Sorts queue items by id and drops repeated ids, keeping the one listed
/// first (the sort is stable); returns the dropped ids, in id order.
pub fn sort_and_dedup<T>(items: &mut Vec<T>, id: impl Fn(&T) -> ExportId) -> Vec<ExportId> {
    items.sort_by_key(&id);
    let mut duplicates = Vec::new();
    items.dedup_by(|later, kept| {
        let duplicate = id(later) == id(kept);
        if duplicate {
            duplicates.push(id(later));
        }
        duplicate
    });
    duplicates
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
    /// Not a queue event: the bot's own alert (`[alerts]`), which travels
    /// through the same outbox. Never watched, never fired by the diff.
    Alert,
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
        assert_eq!(item.status.code(), Some(16));
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
    fn the_fast_date_path_reads_what_the_general_one_reads() {
        for text in [
            "2024-05-30T13:39:59.387",
            "2024-05-30T13:39:59",
            "2024-05-30T13:39:59.1",
            "2024-05-30T13:39:59.123456789",
            "2024-02-29T00:00:00.000",
            "1999-12-31T23:59:59.999",
        ] {
            let fast = crayon_date::parse(text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, crayon_date::parse_general(text), "{text}");
        }
        for text in [
            "2023-02-29T00:00:00",
            "2024-13-01T00:00:00",
            "2024-05-30T24:00:00",
            "2024-05-30T13:39:59.",
            "2024-05-30T13:39:59.1234567890",
            "2024-05-30 13:39:59",
            "2024-5-30T13:39:59",
            "not a date",
        ] {
            assert_eq!(
                crayon_date::parse_plain(text.as_bytes()),
                None,
                "{text} must take the general path"
            );
        }
        assert_eq!(
            crayon_date::parse("2024-05-30T13:39:59+02:00")
                .unwrap()
                .to_rfc3339(),
            "2024-05-30T11:39:59+00:00"
        );
    }

    #[test]
    fn changes_skip_equal_items_and_come_in_id_order() {
        let item = |id: i64, status: i64| ExportItem {
            id: ExportId(id),
            status: ExportStatus::from(status),
            action_url: String::new(),
            downloadable: false,
            attempts: 1,
            action_name: String::new(),
            requested_by: None,
            created_date: DateTime::UNIX_EPOCH,
        };
        let snap = |items: Vec<ExportItem>| {
            Snapshot::from_answer(QueueAnswer {
                items,
                nr_of_days: 7,
            })
            .0
        };
        let before = snap(vec![item(1, 1), item(2, 1), item(3, 1)]);
        let after = snap(vec![item(4, 1), item(3, 1), item(2, 2)]);
        let changes: Vec<_> = Snapshot::changes(Some(&before), &after).collect();
        assert_eq!(
            changes,
            [
                Change::Gone(&before.items[&ExportId(1)]),
                Change::Changed(&before.items[&ExportId(2)], &after.items[&ExportId(2)]),
                Change::Appeared(&after.items[&ExportId(4)]),
            ]
        );
        assert_eq!(Snapshot::changes(None, &after).count(), 3);
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
