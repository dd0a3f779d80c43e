//! The built-in templates, compiled into the binary from `templates/`; a
//! file of `[templates] dir` with the same name overrides one.

/// A built-in template whose file under `templates/` has its lookup name.
macro_rules! builtin {
    ($name:literal) => {
        ($name, include_str!(concat!("../../templates/", $name)))
    };
}

/// Built-in templates as (lookup name, source). The generic webhook body and
/// the email HTML layout are the same for every event; every event has one per chat kind, because
/// `check` renders every watched event for every sink.
pub const BUILTINS: &[(&str, &str)] = &[
    builtin!("digest.console.text.tera"),
    builtin!("digest.webhook.json.tera"),
    builtin!("digest.slack.json.tera"),
    builtin!("digest.teams.json.tera"),
    builtin!("digest.discord.json.tera"),
    builtin!("digest.email.subject.tera"),
    builtin!("digest.email.text.tera"),
    builtin!("digest.email.html.tera"),
    builtin!("alert.console.text.tera"),
    builtin!("alert.webhook.json.tera"),
    builtin!("alert.slack.json.tera"),
    builtin!("alert.teams.json.tera"),
    builtin!("alert.discord.json.tera"),
    builtin!("alert.email.subject.tera"),
    builtin!("alert.email.text.tera"),
    builtin!("alert.email.html.tera"),
    builtin!("downloadable.slack.json.tera"),
    builtin!("failed.slack.json.tera"),
    builtin!("queued.slack.json.tera"),
    builtin!("removed.slack.json.tera"),
    builtin!("expiring.slack.json.tera"),
    builtin!("downloadable.teams.json.tera"),
    builtin!("failed.teams.json.tera"),
    builtin!("queued.teams.json.tera"),
    builtin!("removed.teams.json.tera"),
    builtin!("expiring.teams.json.tera"),
    builtin!("downloadable.discord.json.tera"),
    builtin!("failed.discord.json.tera"),
    builtin!("queued.discord.json.tera"),
    builtin!("removed.discord.json.tera"),
    builtin!("expiring.discord.json.tera"),
    builtin!("downloadable.console.text.tera"),
    builtin!("failed.console.text.tera"),
    builtin!("queued.console.text.tera"),
    builtin!("removed.console.text.tera"),
    builtin!("expiring.console.text.tera"),
    builtin!("downloadable.email.subject.tera"),
    builtin!("downloadable.email.text.tera"),
    (
        "downloadable.email.html.tera",
        include_str!("../../templates/email.html.tera"),
    ),
    builtin!("failed.email.subject.tera"),
    builtin!("failed.email.text.tera"),
    (
        "failed.email.html.tera",
        include_str!("../../templates/email.html.tera"),
    ),
    builtin!("queued.email.subject.tera"),
    builtin!("queued.email.text.tera"),
    (
        "queued.email.html.tera",
        include_str!("../../templates/email.html.tera"),
    ),
    builtin!("removed.email.subject.tera"),
    builtin!("removed.email.text.tera"),
    (
        "removed.email.html.tera",
        include_str!("../../templates/email.html.tera"),
    ),
    builtin!("expiring.email.subject.tera"),
    builtin!("expiring.email.text.tera"),
    (
        "expiring.email.html.tera",
        include_str!("../../templates/email.html.tera"),
    ),
    (
        "downloadable.webhook.json.tera",
        include_str!("../../templates/webhook.json.tera"),
    ),
    (
        "failed.webhook.json.tera",
        include_str!("../../templates/webhook.json.tera"),
    ),
    (
        "queued.webhook.json.tera",
        include_str!("../../templates/webhook.json.tera"),
    ),
    (
        "removed.webhook.json.tera",
        include_str!("../../templates/webhook.json.tera"),
    ),
    (
        "expiring.webhook.json.tera",
        include_str!("../../templates/webhook.json.tera"),
    ),
];
