//! The queue snapshot and ALL its parsing: [`QueueAnswer`] as sent,
//! [`Snapshot`] keyed by id, [`Change`] between two, and
//! [`Snapshot::parse_over`] reading a body against the stored snapshot.
//!
//! `parse_over` reads a queue body *against* the stored snapshot. The body is parsed
//! borrowing its strings; an item equal to its stored version is moved over
//! from the stored snapshot instead of being allocated again, and only the
//! items that changed are copied out of the body. A 100k-item poll then holds
//! one snapshot plus the body instead of two snapshots plus the body, and
//! allocates nothing for the items that did not change (see BENCHMARKS.md).
//!
//! The result, [`Polled`], is this poll's full snapshot together with the
//! stored versions of the items that changed or left, which is all the diff
//! and the state write need.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

use super::{crayon_date, ExportId, ExportItem, ExportStatus};

/// This poll's snapshot and how it differs from the stored one.
#[derive(Debug)]
pub struct Polled {
    /// The queue as this poll saw it (every item, ids unique).
    pub snapshot: Snapshot,
    /// Ids the answer listed more than once (the first was kept), in id order.
    pub duplicates: Vec<ExportId>,
    /// `None` when nothing was stored before; otherwise the stored versions
    /// of the items that changed or left, and the stored `NrOfDays`.
    prior: Option<Snapshot>,
    /// Ids new in this poll, in order (empty when `prior` is `None`).
    appeared: Vec<ExportId>,
}

impl Polled {
    /// The previous snapshot's part that differs (`None`: no baseline yet).
    pub fn prior(&self) -> Option<&Snapshot> {
        self.prior.as_ref()
    }

    /// The items that differ from the stored snapshot, in id order; the same
    /// as [`Snapshot::changes`] against the full stored snapshot.
    pub fn changes(&self) -> Vec<Change<'_>> {
        let Some(prior) = &self.prior else {
            return self.snapshot.items.values().map(Change::Appeared).collect();
        };
        let mut changes: Vec<Change<'_>> = prior
            .items
            .values()
            .map(|old| match self.snapshot.items.get(&old.id) {
                Some(new) => Change::Changed(old, new),
                None => Change::Gone(old),
            })
            .chain(
                self.appeared
                    .iter()
                    .filter_map(|id| self.snapshot.items.get(id))
                    .map(Change::Appeared),
            )
            .collect();
        changes.sort_by_key(|change| match change {
            Change::Appeared(item) | Change::Changed(_, item) | Change::Gone(item) => item.id,
        });
        changes
    }
}

impl Snapshot {
    /// Parses a queue body against `stored` (the snapshot from the previous
    /// poll, `None` when there is none). A body that is not the documented
    /// shape is an error and leaves `stored` untouched; otherwise `stored` is
    /// taken: its unchanged items move into the new snapshot.
    pub fn parse_over(
        body: &[u8],
        stored: &mut Option<Snapshot>,
    ) -> Result<Polled, serde_json::Error> {
        let answer: AnswerRef<'_> = serde_json::from_slice(body)?;
        let mut items = answer.items;
        let duplicates = sort_and_dedup(&mut items, |item| item.id);
        let Some(stored) = stored.take() else {
            let items = items.into_iter().map(|i| (i.id, i.into_item())).collect();
            return Ok(Polled {
                snapshot: Snapshot {
                    items,
                    nr_of_days: answer.nr_of_days,
                },
                duplicates,
                prior: None,
                appeared: Vec::new(),
            });
        };
        let (current, prior, appeared) = merge(items, stored.items);
        Ok(Polled {
            snapshot: Snapshot {
                items: current,
                nr_of_days: answer.nr_of_days,
            },
            duplicates,
            prior: Some(Snapshot {
                items: prior,
                nr_of_days: stored.nr_of_days,
            }),
            appeared,
        })
    }
}

type Items = BTreeMap<ExportId, ExportItem>;

/// Walks the parsed items (sorted, unique) and the stored ones side by side:
/// returns the new items (unchanged ones moved over), the stored versions of
/// changed and gone items, and the ids that appeared.
fn merge(parsed: Vec<ItemRef<'_>>, stored: Items) -> (Items, Items, Vec<ExportId>) {
    let mut current = Vec::with_capacity(parsed.len());
    let mut prior = Vec::new();
    let mut appeared = Vec::new();
    let mut stored = stored.into_iter().peekable();
    for new in parsed {
        while let Some((_, gone)) = stored.next_if(|(id, _)| *id < new.id) {
            prior.push((gone.id, gone));
        }
        match stored.next_if(|(id, _)| *id == new.id) {
            Some((id, old)) if new.same_as(&old) => current.push((id, old)),
            Some((id, old)) => {
                prior.push((id, old));
                current.push((id, new.into_item()));
            }
            None => {
                appeared.push(new.id);
                current.push((new.id, new.into_item()));
            }
        }
    }
    prior.extend(stored);
    let current = current.into_iter().collect();
    (current, prior.into_iter().collect(), appeared)
}

/// The queue answer with its strings borrowed from the body. Same rules as
/// [`crate::domain::QueueAnswer`]: strict about the fields the bot relies
/// on, tolerant of everything else.
#[derive(Deserialize)]
struct AnswerRef<'a> {
    #[serde(rename = "Items", borrow)]
    items: Vec<ItemRef<'a>>,
    #[serde(rename = "NrOfDays")]
    nr_of_days: u32,
}

/// [`ExportItem`] borrowing its strings; `null` and missing read as for it.
#[derive(Deserialize)]
struct ItemRef<'a> {
    #[serde(rename = "Id")]
    id: ExportId,
    #[serde(rename = "Status")]
    status: ExportStatus,
    #[serde(rename = "ActionUrl", default, borrow)]
    action_url: Option<Text<'a>>,
    #[serde(rename = "Downloadable")]
    downloadable: bool,
    #[serde(rename = "Attempts", default)]
    attempts: Option<i64>,
    #[serde(rename = "ActionName", default, borrow)]
    action_name: Option<Text<'a>>,
    #[serde(rename = "RequestedBy", default, borrow)]
    requested_by: Option<Text<'a>>,
    #[serde(rename = "CreatedDate", deserialize_with = "crayon_date::deserialize")]
    created_date: DateTime<Utc>,
}

impl ItemRef<'_> {
    fn text<'t>(text: &'t Option<Text<'_>>) -> &'t str {
        text.as_ref().map_or("", |t| &t.0)
    }

    /// Field by field what `ExportItem`'s `==` compares, without allocating.
    fn same_as(&self, item: &ExportItem) -> bool {
        self.id == item.id
            && self.status == item.status
            && self.downloadable == item.downloadable
            && self.attempts.unwrap_or_default() == item.attempts
            && self.created_date == item.created_date
            && Self::text(&self.action_url) == item.action_url
            && Self::text(&self.action_name) == item.action_name
            && self.requested_by.as_ref().map(|t| &*t.0) == item.requested_by.as_deref()
    }

    fn into_item(self) -> ExportItem {
        let owned = |text: Option<Text<'_>>| text.map(|t| t.0.into_owned());
        ExportItem {
            id: self.id,
            status: self.status,
            action_url: owned(self.action_url).unwrap_or_default(),
            downloadable: self.downloadable,
            attempts: self.attempts.unwrap_or_default(),
            action_name: owned(self.action_name).unwrap_or_default(),
            requested_by: owned(self.requested_by),
            created_date: self.created_date,
        }
    }
}

/// A JSON string, borrowed from the body unless it had escapes. (serde's
/// own `Cow<str>` always copies, and `&str` fails on escapes.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
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

/// A queue body that is not the documented shape: the poll fails and the
/// stored snapshot stays. Named like the client's errors, since to the
/// operator it is the API's answer that is wrong.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Crayon exports endpoint answered with a body that is not the documented shape: {reason}"
)]
pub struct MalformedQueue {
    /// What serde found wrong (line, column, field), never body text.
    pub reason: String,
}

impl From<serde_json::Error> for MalformedQueue {
    fn from(e: serde_json::Error) -> Self {
        MalformedQueue {
            reason: e.to_string(),
        }
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

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
