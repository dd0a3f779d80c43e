use std::path::Path;

use chrono::{TimeZone, Utc};

use crate::config::{load_from_str, Config, ConfigError};

const BASE: &str = r#"
[crayon]
base_url = "https://api.crayon.com"
client_id = "id"
client_secret = "s"
username = "bot@example.com"
password = "p"

[display]
timezone = "Europe/Oslo"
"#;

fn load(extra: &str) -> Result<Config, ConfigError> {
    let text = format!("{BASE}\n{extra}");
    load_from_str(&text, Path::new("/etc/bot/bot.toml"), &|_| None, Vec::new())
}

fn error_of(extra: &str) -> String {
    load(extra).unwrap_err().to_string()
}

#[test]
fn a_sink_and_a_recipient_get_their_quiet_time_and_zones() {
    let config = load(
        r#"
[sinks.hook]
kind = "webhook"
url = "https://hooks.example.com/x"
quiet_hours = { from = "19:00", to = "07:30" }
quiet_days = ["sat", "sun"]
timezone = "America/New_York"

[sinks.plain]
kind = "console"

[recipients."Ann@Example.com"]
timezone = "Asia/Tokyo"
"#,
    )
    .unwrap();
    let quiet = config.quiet["hook"];
    assert_eq!(quiet.timezone, Some(chrono_tz::America::New_York));
    let at = Utc.with_ymd_and_hms(2027, 3, 15, 1, 0, 0).unwrap(); // Sun 21:00 EDT
    assert!(quiet
        .window
        .in_zone(chrono_tz::America::New_York)
        .is_quiet(at));
    assert!(!config.quiet.contains_key("plain"));
    assert_eq!(
        config.recipients["ann@example.com"].timezone,
        Some(chrono_tz::Asia::Tokyo)
    );
}

#[test]
fn bad_quiet_settings_name_their_key() {
    let sink = |lines: &str| {
        format!("[sinks.hook]\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n{lines}")
    };
    let cases = [
        (
            sink(r#"quiet_hours = { from = "25:00", to = "07:30" }"#),
            "sinks.hook.quiet_hours.from",
            "25:00",
        ),
        (
            sink(r#"quiet_hours = { from = "19:00", to = "7h" }"#),
            "sinks.hook.quiet_hours.to",
            "7h",
        ),
        (
            sink(r#"quiet_hours = { from = "07:00", to = "07:00" }"#),
            "sinks.hook.quiet_hours",
            "both 07:00",
        ),
        (
            sink(r#"quiet_days = ["sat", "caturday"]"#),
            "sinks.hook.quiet_days",
            "caturday",
        ),
        (
            sink(r#"timezone = "Mars/Olympus""#),
            "sinks.hook.timezone",
            "Mars/Olympus",
        ),
        (
            "[recipients.\"ann@example.com\"]\ntimezone = \"Europe/Osloo\"".to_string(),
            "recipients.\"ann@example.com\".timezone",
            "Europe/Osloo",
        ),
    ];
    for (extra, key, shown) in cases {
        let message = error_of(&extra);
        assert!(message.contains(key), "{message:?} should name {key}");
        assert!(message.contains(shown), "{message:?} should show {shown}");
    }
}
