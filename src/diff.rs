//! The snapshot diff: which events one poll's answer means, given the last
//! stored snapshot. Pure and allocation-light (events borrow the items); the
//! "each (id, event) at most once" rule is applied afterwards against the
//! fired-event records in the state file.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    Change, EventKind, ExportId, ExportItem, ExportStatus, RemovedReason, Snapshot,
};

/// One event for one item. `item` is the current item, or for `removed` the
/// last stored one; `previous` is the stored item when there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub item: &'a ExportItem,
    pub previous: Option<&'a ExportItem>,
    pub reason: Option<RemovedReason>,
}

/// Settings the diff needs: items older than `max_age` never fire
/// `downloadable`, `failed` or `queued` (no floods when NrOfDays grows).
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    pub max_age: Duration,
}

/// Compares two snapshots. `previous = None` means "nothing stored", so every
/// item is new (the caller decides whether the first poll notifies at all).
/// Events come out in id order: `removed` events after the others.
pub fn diff<'a>(
    previous: Option<&'a Snapshot>,
    current: &'a Snapshot,
    now: DateTime<Utc>,
    options: DiffOptions,
) -> Vec<Event<'a>> {
    let previous_days = previous.map_or(0, |p| p.nr_of_days);
    diff_changes(
        Snapshot::changes(previous, current),
        previous_days,
        current,
        now,
        options,
    )
}

/// [`diff`] over changes already found (the poll gets them from
/// [`crate::domain::Polled::changes`] without a second walk over the
/// queue). `changes` must be in id order; unchanged items cannot fire
/// anything, so only the changes are needed. `previous_days` is the stored
/// `NrOfDays`.
pub fn diff_changes<'a>(
    changes: impl IntoIterator<Item = Change<'a>>,
    previous_days: u32,
    current: &Snapshot,
    now: DateTime<Utc>,
    options: DiffOptions,
) -> Vec<Event<'a>> {
    let mut events = Vec::new();
    let mut gone_events = Vec::new();
    for change in changes {
        let (before, item) = match change {
            Change::Appeared(item) => (None, item),
            Change::Changed(before, item) => (Some(before), item),
            Change::Gone(gone) => {
                if gone.status != ExportStatus::Deleted {
                    let days = previous_days.max(current.nr_of_days);
                    let reason = vanish_reason(gone, days, now);
                    gone_events.push(removed(gone, Some(gone), reason));
                }
                continue;
            }
        };
        if is_recent(item, now, options.max_age) {
            appeared_or_changed(item, before, &mut events);
        }
        if item.status == ExportStatus::Deleted
            && before.is_some_and(|b| b.status != ExportStatus::Deleted)
        {
            events.push(removed(item, before, RemovedReason::Deleted));
        }
    }
    events.extend(gone_events);
    events
}

/// The events whose (id, kind) is not among `fired`, the pairs the state
/// file says already fired. With [`diff`] this is the whole "each (id,
/// event) at most once" rule of the poll, so it lives here beside the diff
/// and the property tests exercise the same code the poll runs.
pub fn unfired<'e, 'a>(
    events: &'e [Event<'a>],
    fired: &HashSet<(ExportId, EventKind)>,
) -> Vec<&'e Event<'a>> {
    events
        .iter()
        .filter(|e| !fired.contains(&(e.item.id, e.kind)))
        .collect()
}

fn appeared_or_changed<'a>(
    item: &'a ExportItem,
    before: Option<&'a ExportItem>,
    events: &mut Vec<Event<'a>>,
) {
    let was_downloadable = before.is_some_and(|b| b.downloadable);
    let was_failed = before.is_some_and(|b| b.status == ExportStatus::Failed);
    let event = |kind| Event {
        kind,
        item,
        previous: before,
        reason: None,
    };
    if item.downloadable && !was_downloadable {
        events.push(event(EventKind::Downloadable));
    }
    if item.status == ExportStatus::Failed && !was_failed {
        events.push(event(EventKind::Failed));
    }
    if before.is_none() && !item.downloadable && item.status != ExportStatus::Failed {
        events.push(event(EventKind::Queued));
    }
}

fn removed<'a>(
    item: &'a ExportItem,
    previous: Option<&'a ExportItem>,
    reason: RemovedReason,
) -> Event<'a> {
    Event {
        kind: EventKind::Removed,
        item,
        previous,
        reason: Some(reason),
    }
}

/// `CreatedDate + max_age >= now`; a sum past chrono's range (an item "from"
/// year +262142) counts as recent instead of panicking.
fn is_recent(item: &ExportItem, now: DateTime<Utc>, max_age: Duration) -> bool {
    chrono::Duration::from_std(max_age)
        .ok()
        .and_then(|max_age| item.created_date.checked_add_signed(max_age))
        .is_none_or(|limit| limit >= now)
}

/// An item that left the queue after NrOfDays expired; anything younger
/// vanished for a reason the bot cannot see.
fn vanish_reason(item: &ExportItem, nr_of_days: u32, now: DateTime<Utc>) -> RemovedReason {
    if item.expires_at(nr_of_days) <= now {
        RemovedReason::Expired
    } else {
        RemovedReason::Vanished
    }
}

mod expiring;
pub use expiring::expiring;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QueueAnswer;

    const OPTIONS: DiffOptions = DiffOptions {
        max_age: Duration::from_secs(3 * 86_400),
    };

    fn now() -> DateTime<Utc> {
        "2024-06-01T12:00:00Z".parse().unwrap()
    }

    fn item(id: i64, status: i64, downloadable: bool, age_hours: i64) -> ExportItem {
        ExportItem {
            id: ExportId(id),
            status: ExportStatus::from(status),
            action_url: "subscriptions/file/xlsx".into(),
            downloadable,
            attempts: 1,
            action_name: format!("Report {id}"),
            requested_by: Some("ann@example.com".into()),
            created_date: now() - chrono::Duration::hours(age_hours),
        }
    }

    fn snap(items: Vec<ExportItem>) -> Snapshot {
        Snapshot::from_answer(QueueAnswer {
            items,
            nr_of_days: 7,
        })
        .0
    }

    fn kinds(events: &[Event<'_>]) -> Vec<(i64, EventKind, Option<RemovedReason>)> {
        events
            .iter()
            .map(|e| (e.item.id.0, e.kind, e.reason))
            .collect()
    }

    #[test]
    fn first_appearance_already_downloadable_fires_downloadable() {
        let current = snap(vec![item(1, 2, true, 1)]);
        let events = diff(None, &current, now(), OPTIONS);
        assert_eq!(kinds(&events), [(1, EventKind::Downloadable, None)]);
        assert!(events[0].previous.is_none());
    }

    #[test]
    fn false_to_true_fires_downloadable_with_previous() {
        let before = snap(vec![item(1, 1, false, 1)]);
        let after = snap(vec![item(1, 2, true, 1)]);
        let events = diff(Some(&before), &after, now(), OPTIONS);
        assert_eq!(kinds(&events), [(1, EventKind::Downloadable, None)]);
        assert!(!events[0].previous.unwrap().downloadable);
    }

    #[test]
    fn true_to_true_fires_nothing() {
        let before = snap(vec![item(1, 2, true, 1)]);
        let after = snap(vec![item(1, 2, true, 1)]);
        assert!(diff(Some(&before), &after, now(), OPTIONS).is_empty());
    }

    #[test]
    fn turning_failed_fires_failed_once() {
        let before = snap(vec![item(1, 1, false, 1)]);
        let after = snap(vec![item(1, 8, false, 1)]);
        let events = diff(Some(&before), &after, now(), OPTIONS);
        assert_eq!(kinds(&events), [(1, EventKind::Failed, None)]);
        assert!(diff(Some(&after), &after, now(), OPTIONS).is_empty());
    }

    #[test]
    fn new_queued_item_fires_queued_only() {
        let before = snap(vec![]);
        let after = snap(vec![item(1, 1, false, 1)]);
        let events = diff(Some(&before), &after, now(), OPTIONS);
        assert_eq!(kinds(&events), [(1, EventKind::Queued, None)]);
    }

    #[test]
    fn relisted_item_fires_again_for_the_fired_records_to_absorb() {
        let with = snap(vec![item(1, 2, true, 1)]);
        let without = snap(vec![]);
        let gone = diff(Some(&with), &without, now(), OPTIONS);
        assert_eq!(
            kinds(&gone),
            [(1, EventKind::Removed, Some(RemovedReason::Vanished))]
        );
        let back = diff(Some(&without), &with, now(), OPTIONS);
        assert_eq!(kinds(&back), [(1, EventKind::Downloadable, None)]);
    }

    #[test]
    fn vanished_expired_and_deleted_are_told_apart() {
        let before = snap(vec![
            item(1, 2, true, 1),
            item(2, 2, true, 8 * 24),
            item(3, 2, true, 1),
        ]);
        let after = snap(vec![item(3, 4, true, 1)]);
        let events = diff(Some(&before), &after, now(), OPTIONS);
        assert_eq!(
            kinds(&events),
            [
                (3, EventKind::Removed, Some(RemovedReason::Deleted)),
                (1, EventKind::Removed, Some(RemovedReason::Vanished)),
                (2, EventKind::Removed, Some(RemovedReason::Expired)),
            ]
        );
    }

    #[test]
    fn deleted_item_disappearing_later_fires_no_second_removed() {
        let deleted = snap(vec![item(3, 4, true, 1)]);
        let empty = snap(vec![]);
        assert!(diff(Some(&deleted), &empty, now(), OPTIONS).is_empty());
    }

    #[test]
    fn items_older_than_max_age_fire_nothing_but_removed() {
        let old = snap(vec![item(1, 2, true, 4 * 24), item(2, 8, false, 4 * 24)]);
        assert!(diff(None, &old, now(), OPTIONS).is_empty());
        let empty = snap(vec![]);
        let events = diff(Some(&old), &empty, now(), OPTIONS);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.kind == EventKind::Removed));
    }

    #[test]
    fn duplicate_ids_in_one_answer_fire_once() {
        let (current, dups) = Snapshot::from_answer(QueueAnswer {
            items: vec![item(1, 2, true, 1), item(1, 2, true, 1)],
            nr_of_days: 7,
        });
        assert_eq!(dups, [ExportId(1)]);
        let events = diff(None, &current, now(), OPTIONS);
        assert_eq!(kinds(&events), [(1, EventKind::Downloadable, None)]);
    }

    #[test]
    fn failed_and_downloadable_at_once_fire_both() {
        let current = snap(vec![item(1, 8, true, 1)]);
        let events = diff(None, &current, now(), OPTIONS);
        assert_eq!(
            kinds(&events),
            [
                (1, EventKind::Downloadable, None),
                (1, EventKind::Failed, None)
            ]
        );
    }

    /// `CreatedDate` and `NrOfDays` are API text,
    /// and `created + days` used to panic past chrono's year 262142.
    #[test]
    fn dates_and_nr_of_days_at_the_edge_of_time_do_not_panic() {
        let far = br#"{"Items":[{"Id":1,"Status":1,"Downloadable":false,
            "CreatedDate":"+262142-12-31T23:59:59"}],"NrOfDays":4294967295}"#;
        let (far, _) = Snapshot::parse(far).unwrap();
        let empty = Snapshot {
            nr_of_days: u32::MAX,
            ..Snapshot::default()
        };
        let events = diff(Some(&far), &far, now(), OPTIONS);
        assert!(events.is_empty());
        let events = diff(Some(&far), &empty, now(), OPTIONS);
        assert_eq!(
            kinds(&events),
            [(1, EventKind::Removed, Some(RemovedReason::Vanished))]
        );
        let item = &far.items[&ExportId(1)];
        assert_eq!(item.expires_at(u32::MAX), DateTime::<Utc>::MAX_UTC);
        let mut old = item.clone();
        old.created_date = DateTime::<Utc>::MIN_UTC;
        let (old, empty) = (snap(vec![old]), snap(vec![]));
        let events = diff(Some(&old), &empty, now(), OPTIONS);
        assert_eq!(events[0].reason, Some(RemovedReason::Expired));
    }
}
