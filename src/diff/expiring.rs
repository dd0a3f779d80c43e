//! The `expiring` event: a downloadable item close to leaving the queue.
//! Unlike the other events it follows the clock, not the queue answer (an
//! item enters the window with nothing about it changed), so it is found by
//! looking at every item of the current snapshot, and only when `expiring`
//! is watched, so polls without it pay nothing. "Once per item" is the
//! fired records' job, as for every event.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Event;
use crate::domain::{EventKind, ExportItem, ExportStatus, Snapshot};

/// Every item of `current` that is downloadable, not deleted, and leaves
/// the queue (`CreatedDate + NrOfDays`) after `now` but less than
/// `remind_before` after it; in id order.
pub fn expiring(current: &Snapshot, now: DateTime<Utc>, remind_before: Duration) -> Vec<Event<'_>> {
    let window = chrono::Duration::from_std(remind_before).unwrap_or(chrono::Duration::MAX);
    current
        .items
        .values()
        .filter(|item| in_window(item, current.nr_of_days, now, window))
        .map(|item| Event {
            kind: EventKind::Expiring,
            item,
            previous: None,
            reason: None,
        })
        .collect()
}

fn in_window(
    item: &ExportItem,
    nr_of_days: u32,
    now: DateTime<Utc>,
    window: chrono::Duration,
) -> bool {
    if !item.downloadable || item.status == ExportStatus::Deleted {
        return false;
    }
    let left = item.expires_at(nr_of_days).signed_duration_since(now);
    left > chrono::Duration::zero() && left < window
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExportId, QueueAnswer};

    const DAY: Duration = Duration::from_secs(86_400);

    fn now() -> DateTime<Utc> {
        "2027-03-10T12:00:00Z".parse().unwrap()
    }

    /// An item created `age_hours` ago in a 7-day queue.
    fn item(id: i64, status: i64, downloadable: bool, age_hours: i64) -> ExportItem {
        ExportItem {
            id: ExportId(id),
            status: ExportStatus::from(status),
            action_url: String::new(),
            downloadable,
            attempts: 1,
            action_name: format!("Report {id}"),
            requested_by: None,
            created_date: now() - chrono::Duration::hours(age_hours),
        }
    }

    fn ids(snapshot: &Snapshot, at: DateTime<Utc>) -> Vec<i64> {
        expiring(snapshot, at, DAY)
            .iter()
            .map(|e| e.item.id.0)
            .collect()
    }

    fn snap(items: Vec<ExportItem>) -> Snapshot {
        Snapshot::from_answer(QueueAnswer {
            items,
            nr_of_days: 7,
        })
        .0
    }

    #[test]
    fn only_downloadable_items_inside_the_window_fire() {
        let snapshot = snap(vec![
            item(1, 2, true, 6 * 24 + 1),  // 23 h left
            item(2, 2, true, 5 * 24),      // 48 h left
            item(3, 1, false, 6 * 24 + 1), // queued
            item(4, 4, true, 6 * 24 + 1),  // deleted
            item(5, 2, true, 7 * 24 + 1),  // already past its expiry
            item(6, 2, true, 6 * 24),      // exactly 24 h left: not less
        ]);
        assert_eq!(ids(&snapshot, now()), [1]);
    }

    #[test]
    fn the_window_is_reached_by_time_alone() {
        let snapshot = snap(vec![item(2, 2, true, 5 * 24)]);
        assert!(ids(&snapshot, now()).is_empty());
        let later = now() + chrono::Duration::hours(25);
        assert_eq!(ids(&snapshot, later), [2], "same answer, a day later");
        let gone = now() + chrono::Duration::hours(49);
        assert!(ids(&snapshot, gone).is_empty());
    }

    #[test]
    fn the_window_follows_remind_before() {
        let snapshot = snap(vec![item(1, 2, true, 6 * 24 + 1)]);
        assert!(expiring(&snapshot, now(), Duration::from_secs(3600)).is_empty());
        assert_eq!(expiring(&snapshot, now(), 2 * DAY).len(), 1);
        assert_eq!(expiring(&snapshot, now(), Duration::MAX).len(), 1);
    }

    #[test]
    fn events_carry_the_item_and_no_previous() {
        let snapshot = snap(vec![item(1, 2, true, 6 * 24 + 1)]);
        let events = expiring(&snapshot, now(), DAY);
        assert_eq!(events[0].kind, EventKind::Expiring);
        assert_eq!(events[0].previous, None);
        assert_eq!(events[0].reason, None);
    }
}
