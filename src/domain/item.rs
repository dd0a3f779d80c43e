//! The queue item: its id, its status (a number or a name) and its fields
//! as the API lists them, with the `CreatedDate` rules.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

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
    /// A number or a name, read in place by a visitor (an untagged enum
    /// would buffer every item's status first: ~9 % of a 100k-item poll).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Wire;
        impl serde::de::Visitor<'_> for Wire {
            type Value = ExportStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status code or name")
            }
            fn visit_i64<E: serde::de::Error>(self, code: i64) -> Result<ExportStatus, E> {
                Ok(ExportStatus::from(code))
            }
            fn visit_u64<E: serde::de::Error>(self, code: u64) -> Result<ExportStatus, E> {
                i64::try_from(code)
                    .map(ExportStatus::from)
                    .map_err(|_| E::custom(format!("status code {code} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ExportStatus, E> {
                Ok(ExportStatus::from_name(name))
            }
        }
        d.deserialize_any(Wire)
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
    pub(in crate::domain) fn parse_plain(b: &[u8]) -> Option<NaiveDateTime> {
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
    pub(in crate::domain) fn parse_general(text: &str) -> Option<DateTime<Utc>> {
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
