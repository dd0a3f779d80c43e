use std::path::Path;

use super::AttachSettings;
use crate::config::{load_from_str, Config, ConfigError};

const BASE: &str = r#"
[crayon]
base_url = "https://api.crayon.com"
client_id = "id"
client_secret = "s"
username = "bot@example.com"
password = "p"
"#;

const MIB: u64 = 1024 * 1024;

fn with_sink(sink: &str) -> Result<Config, ConfigError> {
    let text = format!("{BASE}\n[sinks.s]\n{sink}\n");
    load_from_str(&text, Path::new("/etc/bot/bot.toml"), &|_| None, Vec::new())
}

fn attach_of(sink: &str) -> Option<AttachSettings> {
    with_sink(sink).unwrap().sinks["s"].attach
}

#[test]
fn attach_is_off_unless_asked_and_each_kind_has_its_default_cap() {
    let email = "kind = \"email\"\nsmtp = \"smtp://127.0.0.1:25\"\ntls = \"none\"\nfrom = \"b@example.com\"";
    assert_eq!(attach_of(email), None);
    let on = |s: &str| attach_of(&format!("{s}\nattach = true")).map(|a| a.max);
    assert_eq!(on(email), Some(10 * MIB));
    let discord = "kind = \"discord\"\nwebhook_url = \"https://discord.com/api/webhooks/1/t\"";
    assert_eq!(on(discord), Some(10 * MIB));
    assert_eq!(on("kind = \"discord\"\nbot_token = \"t\""), Some(10 * MIB));
    let slack_app = "kind = \"slack\"\nbot_token = \"xoxb-1-2\"";
    assert_eq!(on(slack_app), Some(100 * MIB));
    let capped = attach_of(&format!("{email}\nattach = true\nattach_max = \"2MiB\""));
    assert_eq!(capped.map(|a| a.max), Some(2 * MIB));
}

#[test]
fn attach_elsewhere_is_an_error_naming_the_key() {
    for (sink, key) in [
        (
            "kind = \"slack\"\nurl = \"https://hooks.slack.com/services/x\"\nattach = true",
            "sinks.s.attach",
        ),
        (
            "kind = \"teams\"\nurl = \"https://example.com/x\"\nattach = true",
            "sinks.s.attach",
        ),
        (
            "kind = \"webhook\"\nurl = \"https://example.com/x\"\nattach_max = \"1MiB\"",
            "sinks.s.attach_max",
        ),
        ("kind = \"console\"\nattach = true", "sinks.s.attach"),
        (
            "kind = \"discord\"\nbot_token = \"t\"\nattach = true\nattach_max = \"lots\"",
            "sinks.s.attach_max",
        ),
    ] {
        let error = with_sink(sink).unwrap_err().to_string();
        assert!(error.contains(key), "{sink}: {error}");
    }
}
