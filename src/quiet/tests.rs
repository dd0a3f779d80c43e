use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::{QuietError, QuietWindow};

const OSLO: Tz = chrono_tz::Europe::Oslo;
const NEW_YORK: Tz = chrono_tz::America::New_York;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn window(from: &str, to: &str, days: &[&str]) -> QuietWindow {
    let days: Vec<String> = days.iter().map(|d| d.to_string()).collect();
    QuietWindow::parse(Some((from, to)), &days).unwrap()
}

#[test]
fn a_window_wraps_midnight() {
    let q = window("22:00", "06:00", &[]).in_zone(Tz::UTC);
    assert!(q.is_quiet(utc(2027, 5, 3, 23, 59)));
    assert!(q.is_quiet(utc(2027, 5, 4, 5, 59)));
    assert!(!q.is_quiet(utc(2027, 5, 4, 6, 0)));
    assert!(!q.is_quiet(utc(2027, 5, 4, 21, 59)));
    assert_eq!(
        q.quiet_until(utc(2027, 5, 3, 22, 0)),
        Some(utc(2027, 5, 4, 6, 0))
    );
    let noon = utc(2027, 5, 4, 12, 0);
    assert_eq!(q.quiet_until(noon), Some(noon));
}

#[test]
fn a_window_inside_one_day() {
    let q = window("12:00", "13:15", &[]).in_zone(Tz::UTC);
    assert!(!q.is_quiet(utc(2027, 5, 4, 11, 59)));
    assert_eq!(
        q.quiet_until(utc(2027, 5, 4, 12, 30)),
        Some(utc(2027, 5, 4, 13, 15))
    );
}

#[test]
fn oslo_spring_forward_ends_the_night_at_local_0730() {
    let q = window("19:00", "07:30", &[]).in_zone(OSLO);
    // Sat 27 Mar 2027 22:00 CET; the clocks go 02:00 → 03:00 that night.
    let until = q.quiet_until(utc(2027, 3, 27, 21, 0));
    assert_eq!(until, Some(utc(2027, 3, 28, 5, 30)), "07:30 CEST");
}

#[test]
fn an_end_in_the_skipped_hour_is_the_jump() {
    let q = window("19:00", "02:30", &[]).in_zone(OSLO);
    // 02:30 does not exist on 28 Mar 2027: the night ends at the jump to 03:00.
    let until = q.quiet_until(utc(2027, 3, 27, 22, 0));
    assert_eq!(until, Some(utc(2027, 3, 28, 1, 0)));
    assert!(q.is_quiet(utc(2027, 3, 28, 0, 59)));
}

#[test]
fn oslo_fall_back_ends_the_night_at_local_0730() {
    let q = window("19:00", "07:30", &[]).in_zone(OSLO);
    let until = q.quiet_until(utc(2027, 10, 30, 20, 0));
    assert_eq!(until, Some(utc(2027, 10, 31, 6, 30)), "07:30 CET");
}

#[test]
fn an_end_in_the_repeated_hour_applies_to_both_passes() {
    let q = window("19:00", "02:30", &[]).in_zone(OSLO);
    // The first 02:30 (CEST) ends the night...
    assert_eq!(
        q.quiet_until(utc(2027, 10, 30, 21, 0)),
        Some(utc(2027, 10, 31, 0, 30))
    );
    assert!(!q.is_quiet(utc(2027, 10, 31, 0, 45)));
    // ...and the repeated 02:00–02:30 (CET) is quiet again.
    assert!(q.is_quiet(utc(2027, 10, 31, 1, 10)));
    assert_eq!(
        q.quiet_until(utc(2027, 10, 31, 1, 10)),
        Some(utc(2027, 10, 31, 1, 30))
    );
}

#[test]
fn new_york_spring_forward() {
    let q = window("19:00", "07:30", &[]).in_zone(NEW_YORK);
    // Sat 13 Mar 2027 22:00 EST; 14 Mar 07:30 EDT is 11:30 UTC.
    assert_eq!(
        q.quiet_until(utc(2027, 3, 14, 3, 0)),
        Some(utc(2027, 3, 14, 11, 30))
    );
}

#[test]
fn new_york_fall_back() {
    let q = window("19:00", "07:30", &[]).in_zone(NEW_YORK);
    // Sat 6 Nov 2027 22:00 EDT; 7 Nov 07:30 EST is 12:30 UTC.
    assert_eq!(
        q.quiet_until(utc(2027, 11, 7, 2, 0)),
        Some(utc(2027, 11, 7, 12, 30))
    );
    // 01:30 happens twice; both passes are quiet.
    assert!(q.is_quiet(utc(2027, 11, 7, 5, 30)));
    assert!(q.is_quiet(utc(2027, 11, 7, 6, 30)));
}

#[test]
fn a_weekend_joins_the_nights_into_one_stretch() {
    // Fri 26 Mar 2027 20:00 CET → Mon 29 Mar 07:30 CEST, across the change.
    let q = window("19:00", "07:30", &["sat", "sun"]).in_zone(OSLO);
    let friday_evening = utc(2027, 3, 26, 19, 0);
    assert_eq!(q.quiet_until(friday_evening), Some(utc(2027, 3, 29, 5, 30)));
    assert!(q.is_quiet(utc(2027, 3, 27, 12, 0)), "Saturday noon");
    assert!(!q.is_quiet(utc(2027, 3, 26, 12, 0)), "Friday noon");
}

#[test]
fn quiet_days_alone_are_whole_local_days() {
    let days = vec!["Sunday".to_string()];
    let q = QuietWindow::parse(None, &days).unwrap().in_zone(NEW_YORK);
    // Sun 14 Mar 2027 is 23 hours long in New York.
    assert_eq!(
        q.quiet_until(utc(2027, 3, 14, 12, 0)),
        Some(utc(2027, 3, 15, 4, 0))
    );
    assert!(!q.is_quiet(utc(2027, 3, 14, 4, 59)), "Saturday 23:59 EST");
}

#[test]
fn bad_settings_are_refused() {
    let none: &[String] = &[];
    let bad = |from, to| QuietWindow::parse(Some((from, to)), none).unwrap_err();
    assert_eq!(bad("25:00", "07:00"), QuietError::BadTime("25:00".into()));
    assert_eq!(bad("19:00", "7:30"), QuietError::BadTime("7:30".into()));
    assert_eq!(bad("19:00", "07:60"), QuietError::BadTime("07:60".into()));
    assert_eq!(bad("07:00", "07:00"), QuietError::SameTimes("07:00".into()));
    let days = |list: &[&str]| {
        let list: Vec<String> = list.iter().map(|d| d.to_string()).collect();
        QuietWindow::parse(None, &list)
    };
    assert_eq!(
        days(&["sonday"]),
        Err(QuietError::UnknownDay("sonday".into()))
    );
    assert_eq!(days(&["mo"]), Err(QuietError::UnknownDay("mo".into())));
    let all = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    assert_eq!(days(&all), Err(QuietError::AllDays));
    assert!(days(&[]).unwrap().is_empty());
}

const ZONES: [Tz; 5] = [
    chrono_tz::Europe::Oslo,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Asia::Kathmandu,
    chrono_tz::UTC,
];

proptest! {
    #[test]
    fn quiet_until_is_the_end_of_a_quiet_stretch(
        zone in 0..ZONES.len(),
        from in 0u32..1440,
        len in 1u32..1440,
        days in 0u8..0x7f,
        at in 1_767_225_600i64..1_861_920_000,
        probes in proptest::collection::vec(0.0f64..1.0, 32),
    ) {
        let to = (from + len) % 1440;
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let day_names: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .enumerate()
            .filter(|(i, _)| days & (1 << i) != 0)
            .map(|(_, d)| d.to_string())
            .collect();
        let q = QuietWindow::parse(Some((&hhmm(from), &hhmm(to))), &day_names)
            .unwrap()
            .in_zone(ZONES[zone]);
        let t = DateTime::from_timestamp(at, 0).unwrap();
        let until = q.quiet_until(t).expect("a checked window always ends");
        prop_assert!(until >= t);
        prop_assert!(!q.is_quiet(until), "quiet_until({t}) = {until} is quiet");
        let span = (until - t).num_seconds();
        for p in probes {
            let between = t + chrono::Duration::seconds((span as f64 * p) as i64);
            if between < until {
                prop_assert!(q.is_quiet(between), "{between} between {t} and {until} is not quiet");
            }
        }
        if until > t {
            prop_assert!(q.is_quiet(until - chrono::Duration::seconds(1)));
        }
    }
}
