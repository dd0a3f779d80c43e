//! The `date` filter: a timestamp (RFC 3339 string, naive date-time or
//! date read as UTC, or Unix seconds) formatted with a strftime `format`
//! (default `%Y-%m-%d`) in `timezone` (default `display.timezone`). Built on
//! chrono + chrono-tz, the crate's one date-time stack (tera-contrib's
//! filter brought jiff and ICU along for the same job).

use chrono::format::StrftimeItems;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use tera::{Kwargs, State, TeraResult, Value};

/// `{{ value | date(format="%Y-%m-%d %H:%M %Z", timezone="Europe/Oslo") }}`.
pub fn date(value: &Value, kwargs: Kwargs, default_zone: Tz) -> TeraResult<String> {
    let format = kwargs.get::<&str>("format")?.unwrap_or("%Y-%m-%d");
    let zone = match kwargs.get::<&str>("timezone")? {
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| tera::Error::message(format!("Unknown timezone: {name}")))?,
        None => default_zone,
    };
    let items = StrftimeItems::new(format)
        .parse()
        .map_err(|_| tera::Error::message(format!("Invalid date format `{format}`")))?;
    let at = instant(value)?.with_timezone(&zone);
    Ok(at.format_with_items(items.iter()).to_string())
}

/// The instant a template value names.
pub(super) fn instant(value: &Value) -> TeraResult<DateTime<Utc>> {
    if let Some(text) = value.as_str() {
        return parse(text).ok_or_else(|| {
            tera::Error::message(format!(
                "The string {text} cannot be parsed as a valid date"
            ))
        });
    }
    if let Some(seconds) = value.as_i128() {
        return i64::try_from(seconds)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| tera::Error::message(format!("Invalid timestamp: {seconds}")));
    }
    Err(tera::Error::message(format!(
        "Invalid value: expected a string or integer, got {}",
        value.name()
    )))
}

/// RFC 3339, else a date-time without offset, else a date (both as UTC).
fn parse(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(at.and_utc());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}

/// The filter as Tera registers it, closing over the default zone.
pub fn filter(zone: Tz) -> impl Fn(&Value, Kwargs, &State) -> TeraResult<String> {
    move |value: &Value, kwargs: Kwargs, _: &State| date(value, kwargs, zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, value: Value) -> TeraResult<String> {
        let mut tera = tera::Tera::default();
        tera.register_filter("date", filter(chrono_tz::Europe::Oslo));
        tera.add_raw_template("t", template)?;
        let mut context = tera::Context::new();
        context.insert("v", &value);
        tera.render("t", &context)
    }

    #[test]
    fn formats_in_the_default_zone_or_the_given_one_across_dst() {
        let winter = Value::from("2027-01-15T12:00:00Z");
        let summer = Value::from("2027-07-15T12:00:00+00:00");
        let f = r#"{{ v | date(format="%Y-%m-%d %H:%M %Z") }}"#;
        assert_eq!(render(f, winter).unwrap(), "2027-01-15 13:00 CET");
        assert_eq!(render(f, summer.clone()).unwrap(), "2027-07-15 14:00 CEST");
        let ny = r#"{{ v | date(format="%H:%M %Z", timezone="America/New_York") }}"#;
        assert_eq!(render(ny, summer).unwrap(), "08:00 EDT");
    }

    #[test]
    fn reads_naive_dates_and_unix_seconds_as_utc() {
        assert_eq!(
            render("{{ v | date }}", Value::from("2024-05-30T23:39:59.387")).unwrap(),
            "2024-05-31"
        );
        assert_eq!(
            render("{{ v | date }}", Value::from("2016-12-26")).unwrap(),
            "2016-12-26"
        );
        assert_eq!(
            render(r#"{{ v | date(format="%H:%M") }}"#, Value::from(1482720453)).unwrap(),
            "03:47"
        );
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let error = render("{{ v | date }}", Value::from("soon")).unwrap_err();
        assert!(format!("{error:?}").contains("soon"), "{error:?}");
        render(r#"{{ v | date(format="%Q") }}"#, Value::from("2024-05-30")).unwrap_err();
        render(r#"{{ v | date(timezone="Mars/Olympus") }}"#, Value::from(1)).unwrap_err();
        render("{{ v | date }}", Value::from(i64::MAX)).unwrap_err();
        render("{{ v | date }}", Value::from(true)).unwrap_err();
    }
}
