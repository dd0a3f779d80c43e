//! Reading a queue body *against* the stored snapshot. The body is parsed
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

use crate::domain::{
    crayon_date, sort_and_dedup, Change, ExportId, ExportItem, ExportStatus, Snapshot,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QueueAnswer;

    fn body(items: &[(i64, i64, bool)]) -> Vec<u8> {
        let items: Vec<_> = items
            .iter()
            .map(|(id, status, downloadable)| {
                serde_json::json!({"Id": id, "Status": status, "Downloadable": downloadable,
                    "ActionUrl": "a\\/b?x=1", "ActionName": format!("Report {id}"),
                    "RequestedBy": null, "Attempts": null,
                    "CreatedDate": "2024-05-30T13:39:59.387"})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"Items": items, "NrOfDays": 7})).unwrap()
    }

    fn owned(body: &[u8]) -> Snapshot {
        Snapshot::from_answer(serde_json::from_slice::<QueueAnswer>(body).unwrap()).0
    }

    #[test]
    fn parses_exactly_what_the_owned_parse_reads() {
        let body = body(&[(3, 1, false), (1, 2, true), (3, 2, true)]);
        let polled = Snapshot::parse_over(&body, &mut None).unwrap();
        assert_eq!(polled.snapshot, owned(&body));
        assert_eq!(polled.duplicates, [ExportId(3)]);
        assert_eq!(
            polled.snapshot.items[&ExportId(1)].action_url,
            r"a\/b?x=1",
            "escaped: not borrowed"
        );
        assert!(polled.prior().is_none());
        assert_eq!(polled.changes().len(), 2);
    }

    #[test]
    fn changes_over_the_stored_snapshot_match_the_full_diff() {
        let before = owned(&body(&[(1, 1, false), (2, 1, false), (3, 2, true)]));
        let after_body = body(&[(2, 2, true), (3, 2, true), (4, 1, false)]);
        let after = owned(&after_body);
        let mut stored = Some(before.clone());
        let polled = Snapshot::parse_over(&after_body, &mut stored).unwrap();
        assert!(stored.is_none(), "the stored snapshot is taken");
        assert_eq!(polled.snapshot, after);
        assert_eq!(
            polled.changes(),
            Snapshot::changes(Some(&before), &after).collect::<Vec<_>>()
        );
        assert_eq!(polled.prior().unwrap().items.len(), 2, "1 gone, 2 changed");
    }

    #[test]
    fn a_bad_body_leaves_the_stored_snapshot_alone() {
        let before = owned(&body(&[(1, 1, false)]));
        let mut stored = Some(before.clone());
        assert!(
            Snapshot::parse_over(b"{\"Items\":[{\"Id\":1}],\"NrOfDays\":7}", &mut stored).is_err()
        );
        assert_eq!(stored, Some(before));
    }
}
