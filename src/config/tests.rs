use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[crayon]
base_url = "https://api.crayon.com"
client_id = "id"
client_secret = "${SECRET}"
username = "bot@example.com"
password = "${PASSWORD}"

[sinks.audit]
kind = "webhook"
url = "https://hooks.example.com/x"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("client-secret-value".into()),
        "PASSWORD" => Some("pass&word=+".into()),
        _ => None,
    }
}

fn load_str(text: &str, overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_from_str(text, Path::new("/etc/bot/bot.toml"), &env, overrides)
}

#[test]
fn minimal_config_gets_the_spec_defaults() {
    let config = load_str(MINIMAL, &[]).unwrap();
    assert_eq!(
        config.accounts[0].crayon.base_url.as_str(),
        "https://api.crayon.com/"
    );
    assert_eq!(config.accounts[0].crayon.password.expose(), "pass&word=+");
    assert_eq!(config.accounts[0].crayon.scope, "CustomerApi");
    assert_eq!(config.accounts[0].crayon.max_body, 64 * 1024 * 1024);
    assert_eq!(config.watch.interval.as_secs(), 60);
    assert_eq!(config.watch.first_run, FirstRun::Baseline);
    assert_eq!(config.watch.state, Path::new("/etc/bot/state.db"));
    assert_eq!(
        config
            .watch
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>(),
        ["downloadable", "failed"]
    );
    assert_eq!(config.delivery.max_attempts, 8);
    assert_eq!(config.sinks["audit"].concurrency, 4);
}

#[test]
fn environment_overrides_scalars_and_keeps_strings_verbatim() {
    let config = load_str(
        MINIMAL,
        &[
            ("BOT__WATCH__INTERVAL", "30s"),
            ("BOT__DELIVERY__MAX_ATTEMPTS", "3"),
            ("BOT__CRAYON__USERNAME", "00123"),
            ("BOT__SINKS__AUDIT__ENABLED", "false"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config.watch.interval.as_secs(), 30);
    assert_eq!(config.delivery.max_attempts, 3);
    assert_eq!(config.accounts[0].crayon.username, "00123");
    assert!(!config.sinks["audit"].enabled);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = MINIMAL.replace("kind = \"webhook\"", "kind = \"webhook\"\nurll = \"x\"");
    let err = load_str(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("urll"), "{err}");
    assert!(err.contains("sinks.audit"), "{err}");
    assert!(err.contains("line 11"), "{err}");
}

#[test]
fn unknown_sink_kind_is_named() {
    let err = load_str(&MINIMAL.replace("\"webhook\"", "\"slak\""), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sinks.audit.kind") && err.contains("slak"),
        "{err}"
    );
}

#[test]
fn unset_variable_is_named_with_the_key() {
    let err = load_str(&MINIMAL.replace("${SECRET}", "${NOPE}"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NOPE") && err.contains("crayon.client_secret"),
        "{err}"
    );
}

#[test]
fn route_naming_a_missing_sink_is_an_error() {
    let text = format!("{MINIMAL}\n[[routes]]\nsinks = [\"audit\", \"nope\"]\n");
    let err = load_str(&text, &[]).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].sinks") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn sink_no_route_names_is_a_warning() {
    let text =
        format!("{MINIMAL}\n[sinks.stdout]\nkind = \"console\"\n[[routes]]\nsinks = [\"audit\"]\n");
    let config = load_str(&text, &[]).unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(config.warnings[0].contains("stdout"));
}

#[test]
fn plain_http_webhook_is_refused_unless_loopback_and_never_echoed() {
    let text = MINIMAL.replace(
        "https://hooks.example.com/x",
        "http://hooks.example.com/tok3n",
    );
    let err = load_str(&text, &[]).unwrap_err().to_string();
    assert!(
        err.contains("sinks.audit.url") && err.contains("https"),
        "{err}"
    );
    assert!(!err.contains("tok3n"), "{err}");
    let loopback = MINIMAL.replace("https://hooks.example.com/x", "http://127.0.0.1:9/x");
    assert!(load_str(&loopback, &[]).is_ok());
}

#[test]
fn kind_specific_keys_are_checked() {
    let text = MINIMAL.replace(
        "kind = \"webhook\"",
        "kind = \"webhook\"\nsmtp = \"smtp://x\"",
    );
    let err = load_str(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("sinks.audit.smtp"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    for (from, to, key) in [
        (
            "[sinks.audit]",
            "[watch]\ninterval = \"soon\"\n[sinks.audit]",
            "watch.interval",
        ),
        (
            "[sinks.audit]",
            "[watch]\nfirst_run = \"maybe\"\n[sinks.audit]",
            "watch.first_run",
        ),
        (
            "[sinks.audit]",
            "[watch]\nevents = [\"ready\"]\n[sinks.audit]",
            "watch.events",
        ),
        (
            "[sinks.audit]",
            "[display]\ntimezone = \"Mars/Base\"\n[sinks.audit]",
            "display.timezone",
        ),
        (
            "[sinks.audit]",
            "[sinks.Audit2]\nkind = \"console\"\n[sinks.audit]",
            "sinks.Audit2",
        ),
    ] {
        let err = load_str(&MINIMAL.replace(from, to), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn discord_api_base_must_be_https_unless_loopback() {
    let discord = |base: &str| {
        MINIMAL.to_string()
            + &format!(
                "[sinks.chat]\nkind = \"discord\"\nbot_token = \"t0ken\"\napi_base = \"{base}\"\n"
            )
    };
    let err = load_str(&discord("http://discord-proxy.example.com"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sinks.chat.api_base") && err.contains("https"),
        "{err}"
    );
    assert!(load_str(&discord("http://127.0.0.1:9"), &[]).is_ok());
    assert!(load_str(&discord("https://discord-proxy.example.com"), &[]).is_ok());
}

#[test]
fn debug_of_a_config_with_every_secret_shows_none() {
    let text = MINIMAL.to_string()
        + r#"
[sinks.slack]
kind = "slack"
url = "https://hooks.slack.com/services/T0/B0/slack-tok"
[sinks.teams]
kind = "teams"
url = "https://teams.example.com/workflows/1/run?sig=teams-sig"
[sinks.hook]
kind = "discord"
webhook_url = "https://discord.com/api/webhooks/1/discord-tok"
[sinks.dm]
kind = "discord"
bot_token = "bot-tok"
[sinks.mail]
kind = "email"
smtp = "smtps://mail.example.com"
from = "bot@example.com"
username = "mailer"
password = "smtp-pw"
to = ["ops@example.com"]
"#;
    let config = load_str(&text, &[]).unwrap();
    let debug = format!("{config:?} {:#?}", config);
    for secret in [
        "client-secret-value",
        "pass&word",
        "slack-tok",
        "teams-sig",
        "discord-tok",
        "bot-tok",
        "smtp-pw",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("***"));
}

#[test]
fn debug_of_the_config_shows_no_secret() {
    let text = MINIMAL.replace(
        "kind = \"webhook\"",
        "kind = \"webhook\"\nheaders = { Authorization = \"Bearer ${SECRET}\" }",
    );
    let config = load_str(&text, &[]).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("client-secret-value"), "{debug}");
    assert!(!debug.contains("pass&word"), "{debug}");
    assert!(!debug.contains("hooks.example.com"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn rate_limits_parse() {
    let text = MINIMAL.replace(
        "kind = \"webhook\"",
        "kind = \"webhook\"\nrate_limit = \"1/s\"",
    );
    let config = load_str(&text, &[]).unwrap();
    assert_eq!(
        config.sinks["audit"].rate_limit,
        Some((1, std::time::Duration::from_secs(1)))
    );
}

#[test]
fn digest_windows_parse_on_every_kind_and_bad_ones_name_the_key() {
    let with = |value: &str| {
        let text = MINIMAL.replace(
            "kind = \"webhook\"",
            &format!("kind = \"webhook\"\ndigest = \"{value}\""),
        );
        load_str(&text, &[])
    };
    let config = with("15m").unwrap();
    assert_eq!(
        config.sinks["audit"].digest,
        Some(std::time::Duration::from_secs(900))
    );
    assert_eq!(load_str(MINIMAL, &[]).unwrap().sinks["audit"].digest, None);
    for bad in ["0s", "25h", "soon"] {
        let err = with(bad).unwrap_err().to_string();
        assert!(err.contains("sinks.audit.digest"), "{bad}: {err}");
    }
    let console = format!("{MINIMAL}\n[sinks.out]\nkind = \"console\"\ndigest = \"24h\"\n");
    let config = load_str(&console, &[]).unwrap();
    assert_eq!(
        config.sinks["out"].digest,
        Some(std::time::Duration::from_secs(86400))
    );
}

fn email_sink(lines: &str) -> Result<Config, ConfigError> {
    let text = format!(
        "{MINIMAL}\n[sinks.mail]\nkind = \"email\"\nfrom = \"Export Bot <exports@example.com>\"\n{lines}\n"
    );
    load_str(&text, &[])
}

fn email_of(config: &Config) -> &EmailConfig {
    match &config.sinks["mail"].kind {
        SinkKind::Email(email) => email,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_smtp_scheme_picks_starttls_or_implicit_tls() {
    let starttls = email_sink("smtp = \"smtp://mail.example.com:587\"").unwrap();
    assert_eq!(email_of(&starttls).security, SmtpSecurity::StartTls);
    let implicit = email_sink("smtp = \"smtps://mail.example.com\"").unwrap();
    assert_eq!(email_of(&implicit).security, SmtpSecurity::Implicit);
    let email = email_of(&implicit);
    assert_eq!(email.from.email.to_string(), "exports@example.com");
    assert!(email.requester);
}

#[test]
fn plain_smtp_is_refused_unless_loopback_or_allowed() {
    let err = email_sink("smtp = \"smtp://mail.example.com:25\"\ntls = \"none\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sinks.mail.tls") && err.contains("allow_insecure"),
        "{err}"
    );
    let loopback = email_sink("smtp = \"smtp://127.0.0.1:2525\"\ntls = \"none\"").unwrap();
    assert_eq!(email_of(&loopback).security, SmtpSecurity::None);
    let allowed =
        email_sink("smtp = \"smtp://mail.example.com:25\"\ntls = \"none\"\nallow_insecure = true")
            .unwrap();
    assert_eq!(email_of(&allowed).security, SmtpSecurity::None);
}

#[test]
fn email_settings_that_cannot_work_name_their_key() {
    let smtp = "smtp = \"smtp://mail.example.com\"";
    for (lines, key) in [
        ("smtp = \"http://mail.example.com\"".to_string(), "sinks.mail.smtp"),
        (format!("{smtp}\ntls = \"starttls\""), "sinks.mail.tls"),
        ("smtp = \"smtps://mail.example.com\"\ntls = \"none\"".into(), "sinks.mail.tls"),
        (format!("{smtp}\nrequester = false"), "sinks.mail.requester"),
        (format!("{smtp}\nto = [\"ops@example.com, x@evil.test\"]"), "sinks.mail.to[0]"),
        (format!("{smtp}\nbcc = [\"not an address\"]"), "sinks.mail.bcc[0]"),
        (format!("{smtp}\nrequester_domains = [\"exa mple.com\"]"), "sinks.mail.requester_domains[0]"),
        (format!("{smtp}\npassword = \"pw\""), "sinks.mail.username"),
        (
            format!("{smtp}\n[recipients.\"ann@example.com\"]\nemail = \"a@example.com\\r\\nBcc: x@evil.test\""),
            "recipients.\"ann@example.com\".email",
        ),
    ] {
        let err = email_sink(&lines).unwrap_err().to_string();
        assert!(err.contains(key), "{lines}: {err}");
    }
    let text = format!(
        "{MINIMAL}\n[sinks.mail]\nkind = \"email\"\nsmtp = \"smtp://mail.example.com\"\nfrom = \"Bot\\r\\nBcc: x@evil.test <exports@example.com>\"\n"
    );
    let err = load_str(&text, &[]).unwrap_err().to_string();
    assert!(
        err.contains("sinks.mail.from") && err.contains("line break"),
        "{err}"
    );
}

#[test]
fn requester_domains_are_normalised() {
    let config = email_sink(
        "smtp = \"smtp://mail.example.com\"\nrequester_domains = [\"@Example.COM\", \"corp.example\"]",
    )
    .unwrap();
    assert_eq!(
        email_of(&config).requester_domains.as_deref(),
        Some(&["example.com".to_string(), "corp.example".to_string()][..])
    );
}

#[test]
fn a_postgres_state_url_is_a_secret_and_trusts_tls_ca_file() {
    let text = format!(
        "{MINIMAL}\n[watch]\nstate = \"postgresql://bot:${{PASSWORD}}@db.internal/bot?sslmode=require\"\n\
         lease = \"30s\"\n[tls]\nca_file = \"ca.pem\"\n"
    );
    let config = load_str(&text, &[]).unwrap();
    let crate::store::StateLocation::Postgres(url) = &config.watch.state else {
        panic!("{:?}", config.watch.state)
    };
    assert!(url.expose().contains("pass&word=+"));
    assert_eq!(url.ca_file(), Some(Path::new("/etc/bot/ca.pem")));
    assert_eq!(config.watch.lease, std::time::Duration::from_secs(30));
    let shown = format!("{config:?} {}", config.watch.state.display());
    assert!(!shown.contains("pass&word"), "{shown}");
    assert!(shown.contains("bot:***@db.internal"), "{shown}");
}

#[test]
fn a_lease_under_three_seconds_is_refused() {
    let text = format!("{MINIMAL}\n[watch]\nlease = \"1s\"\n");
    let err = load_str(&text, &[]).unwrap_err();
    assert!(err.to_string().contains("watch.lease"), "{err}");
}

#[test]
fn helo_name_and_reply_to_are_checked_and_named_on_error() {
    let smtp = "smtp = \"smtp://mail.example.com\"";
    let config = email_sink(&format!(
        "{smtp}\nhelo_name = \"Bot.Example.com\"\nreply_to = \"Desk <desk@example.com>\""
    ))
    .unwrap();
    let email = email_of(&config);
    assert_eq!(email.helo_name.as_deref(), Some("bot.example.com"));
    assert_eq!(
        email.reply_to.as_ref().unwrap().email.to_string(),
        "desk@example.com"
    );
    assert_eq!(email_of(&email_sink(smtp).unwrap()).reply_to, None);
    for (lines, key) in [
        (
            format!("{smtp}\nhelo_name = \"bot example\""),
            "sinks.mail.helo_name",
        ),
        (
            format!("{smtp}\nhelo_name = \"bot.\\r\\nMAIL FROM:<x@evil.test>\""),
            "sinks.mail.helo_name",
        ),
        (format!("{smtp}\nhelo_name = \"\""), "sinks.mail.helo_name"),
        (
            format!("{smtp}\nreply_to = \"a@example.com, b@example.com\""),
            "sinks.mail.reply_to",
        ),
    ] {
        let err = email_sink(&lines).unwrap_err().to_string();
        assert!(err.contains(key), "{lines}: {err}");
    }
}
