//! The `time_left` filter: how soon a timestamp comes, as people say it
//! ("tomorrow", "in 5 hours"), for the `expiring` messages:
//! `{{ item.expires_at | time_left(now=now) }}`. Calendar words are read in
//! `display.timezone`.
//!
//! Under an hour: "in N minutes"; under 12 hours: "in N hours"; then by the
//! local calendar: "today", "tomorrow", else "in N days". Already past: "now".

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tera::{Kwargs, State, TeraResult, Value};

use super::date::instant;

/// The phrase for `at` seen from `now`, calendar days in `zone`.
pub fn phrase(at: DateTime<Utc>, now: DateTime<Utc>, zone: Tz) -> String {
    let left = at.signed_duration_since(now);
    let plural = |n: i64, unit: &str| format!("in {n} {unit}{}", if n == 1 { "" } else { "s" });
    if left <= chrono::Duration::zero() {
        return "now".into();
    }
    if left < chrono::Duration::hours(1) {
        return plural(left.num_minutes().max(1), "minute");
    }
    if left < chrono::Duration::hours(12) {
        return plural(left.num_hours(), "hour");
    }
    let days =
        (at.with_timezone(&zone).date_naive() - now.with_timezone(&zone).date_naive()).num_days();
    match days {
        0 => "today".into(),
        1 => "tomorrow".into(),
        n => plural(n, "day"),
    }
}

/// The filter as Tera registers it, closing over the display zone.
pub fn filter(zone: Tz) -> impl Fn(&Value, Kwargs, &State) -> TeraResult<String> {
    move |value: &Value, kwargs: Kwargs, _: &State| {
        let now = match kwargs.get::<&Value>("now")? {
            Some(now) => instant(now)?,
            None => Utc::now(),
        };
        Ok(phrase(instant(value)?, now, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OSLO: Tz = chrono_tz::Europe::Oslo;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn says_minutes_hours_then_calendar_days() {
        let now = at("2027-03-10T10:00:00Z"); // 11:00 in Oslo
        let say = |t| phrase(at(t), now, OSLO);
        assert_eq!(say("2027-03-10T10:20:00Z"), "in 20 minutes");
        assert_eq!(say("2027-03-10T10:00:30Z"), "in 1 minute");
        assert_eq!(say("2027-03-10T11:10:00Z"), "in 1 hour");
        assert_eq!(say("2027-03-10T15:00:00Z"), "in 5 hours");
        assert_eq!(say("2027-03-10T22:30:00Z"), "today", "23:30 in Oslo");
        assert_eq!(say("2027-03-10T23:30:00Z"), "tomorrow", "00:30 in Oslo");
        assert_eq!(say("2027-03-11T09:00:00Z"), "tomorrow");
        assert_eq!(say("2027-03-13T09:00:00Z"), "in 3 days");
        assert_eq!(say("2027-03-10T09:00:00Z"), "now");
    }

    #[test]
    fn renders_in_a_template() {
        let mut tera = tera::Tera::default();
        tera.register_filter("time_left", filter(OSLO));
        tera.add_raw_template("t", "expires {{ v | time_left(now=n) }}")
            .unwrap();
        let mut context = tera::Context::new();
        context.insert("v", "2027-03-11T09:00:00Z");
        context.insert("n", "2027-03-10T10:00:00Z");
        assert_eq!(tera.render("t", &context).unwrap(), "expires tomorrow");
    }
}
