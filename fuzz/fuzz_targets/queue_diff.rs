//! Fuzzes the queue parser and the diff together, as a poll runs them: two
//! queue bodies (the stored snapshot's answer and the new one) are parsed;
//! whatever parses is diffed both ways and from nothing, filtered by the
//! fired records, and every expiry is computed. Nothing may panic, and the
//! "at most once" rule must hold within a poll and across the two polls.
//!
//! Input: `previous body` 0xFF `current body` [0xFF `hours byte`]; a body
//! without the separator is both.

#![no_main]

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crayon_export_bot::diff::{diff, unfired, DiffOptions};
use crayon_export_bot::domain::{EventKind, ExportId, Snapshot};
use libfuzzer_sys::fuzz_target;

const OPTIONS: DiffOptions = DiffOptions {
    max_age: Duration::from_secs(3 * 86_400),
};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0xFF);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or(first);
    let hours = parts.next().and_then(|h| h.first()).copied().unwrap_or(0);
    let now: DateTime<Utc> = DateTime::from_timestamp(1_717_243_200, 0).unwrap();
    let later = now + chrono::Duration::hours(i64::from(hours));

    let previous = Snapshot::parse(first).ok().map(|(s, _)| s);
    let Ok((current, duplicates)) = Snapshot::parse(second) else {
        return;
    };
    for id in &duplicates {
        assert!(current.items.contains_key(id));
    }
    for item in current.items.values() {
        let _ = item.expires_at(current.nr_of_days);
    }

    let mut fired: HashSet<(ExportId, EventKind)> = HashSet::new();
    let mut poll = |before: Option<&Snapshot>, after: &Snapshot, at: DateTime<Utc>| {
        let events = diff(before, after, at, OPTIONS);
        for pair in unfired(&events, &fired).iter().map(|e| (e.item.id, e.kind)) {
            assert!(fired.insert(pair), "{pair:?} fired twice");
        }
    };
    // Baseline-less first poll of `previous`, then the change to `current`,
    // then `current` again: the second repeat must add nothing new twice.
    if let Some(previous) = &previous {
        poll(None, previous, now);
        poll(Some(previous), &current, later);
        poll(Some(&current), &current, later);
        poll(Some(&current), previous, later);
    } else {
        poll(None, &current, now);
        poll(Some(&current), &Snapshot::default(), later);
        poll(Some(&Snapshot::default()), &current, later);
    }
});
