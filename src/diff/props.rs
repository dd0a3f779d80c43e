//! Property tests of the "each (id, event) at most once" rule: any sequence
//! of snapshots, diffed poll after poll and filtered by the fired records the
//! way `poll` does it ([`unfired`]), never lets one (id, kind) through twice.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::*;

const OPTIONS: DiffOptions = DiffOptions {
    max_age: Duration::from_secs(3 * 86_400),
};

fn start() -> DateTime<Utc> {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

/// One item as the API might list it: any known status or an unknown one,
/// either downloadable flag, young, old or far outside chrono's usual range.
fn item(id: i64) -> impl Strategy<Value = ExportItem> {
    let status = prop::sample::select(vec![0i64, 1, 2, 4, 8, 16, -1]);
    let age_hours = prop::sample::select(vec![-48i64, 0, 1, 70, 80, 24 * 400]);
    (status, any::<bool>(), age_hours).prop_map(move |(status, downloadable, age)| ExportItem {
        id: ExportId(id),
        status: ExportStatus::from(status),
        action_url: String::new(),
        downloadable,
        attempts: 1,
        action_name: format!("Report {id}"),
        requested_by: None,
        created_date: start() - chrono::Duration::hours(age),
    })
}

/// A snapshot over a pool of six ids, so items come, go and come back.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    let slots: Vec<_> = (0..6).map(|id| prop::option::of(item(id))).collect();
    let days = prop::sample::select(vec![0u32, 1, 7, 30, u32::MAX]);
    (slots, days).prop_map(|(slots, nr_of_days)| Snapshot {
        items: slots
            .into_iter()
            .flatten()
            .map(|item| (item.id, item))
            .collect::<BTreeMap<_, _>>(),
        nr_of_days,
    })
}

/// Polls `snapshots` in order, `hours` apart, starting from nothing stored;
/// returns every (id, kind) that got through, in order.
fn run_polls(snapshots: &[Snapshot], hours: i64) -> Vec<(ExportId, EventKind)> {
    let mut fired: HashSet<(ExportId, EventKind)> = HashSet::new();
    let mut emitted = Vec::new();
    let mut previous: Option<&Snapshot> = None;
    for (n, current) in snapshots.iter().enumerate() {
        let now = start() + chrono::Duration::hours(hours * n as i64);
        let events = diff(previous, current, now, OPTIONS);
        let fresh: Vec<(ExportId, EventKind)> = unfired(&events, &fired)
            .into_iter()
            .map(|e| (e.item.id, e.kind))
            .collect();
        emitted.extend(fresh.iter().copied());
        fired.extend(fresh);
        previous = Some(current);
    }
    emitted
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_id_ever_gets_one_event_kind_twice(
        snapshots in prop::collection::vec(snapshot(), 1..10),
        hours in 0i64..48,
    ) {
        let emitted = run_polls(&snapshots, hours);
        let mut seen = HashSet::new();
        for pair in &emitted {
            prop_assert!(seen.insert(*pair), "{pair:?} fired twice: {emitted:?}");
        }
    }

    #[test]
    fn one_diff_never_lists_an_id_and_kind_twice(
        before in prop::option::of(snapshot()),
        after in snapshot(),
    ) {
        let events = diff(before.as_ref(), &after, start(), OPTIONS);
        let mut seen = HashSet::new();
        for e in &events {
            prop_assert!(seen.insert((e.item.id, e.kind)), "{:?} twice", (e.item.id, e.kind));
            prop_assert_eq!(e.reason.is_some(), e.kind == EventKind::Removed);
        }
    }
}
