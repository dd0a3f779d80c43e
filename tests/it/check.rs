//! `check`: the example config passes, every kind of mistake exits 2 naming
//! the key (or file and line).

use crate::helpers::{text, Harness};

async fn check_with(extra: &str) -> std::process::Output {
    let h = Harness::start().await;
    h.write_config(extra);
    h.bot(&["check"]).await
}

#[tokio::test]
async fn the_example_config_passes_once_its_variables_are_set() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["--config", "bot.toml", "check"])
        .env("CRAYON_CLIENT_ID", "id")
        .env("CRAYON_CLIENT_SECRET", "secret")
        .env("CRAYON_USERNAME", "user@example.com")
        .env("CRAYON_PASSWORD", "pw")
        .env("AUDIT_WEBHOOK_URL", "https://example.com/hooks/x")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: bot.toml"), "{}", text(&out));
}

#[tokio::test]
async fn the_example_config_names_each_unset_variable() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["--config", "bot.toml", "check"])
        .env_remove("CRAYON_CLIENT_ID")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("CRAYON_CLIENT_ID") && text(&out).contains("crayon.client_id"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn each_kind_of_mistake_exits_2_and_names_the_key() {
    let cases = [
        ("[display]\ntimezon = \"UTC\"", "timezon"),
        ("[sinks.chat]\nkind = \"slak\"", "sinks.chat.kind"),
        (
            "[sinks.chat]\nkind = \"webhook\"\nurl = \"${NOT_SET_ANYWHERE}\"",
            "NOT_SET_ANYWHERE",
        ),
        ("[[routes]]\nsinks = [\"nowhere\"]", "routes[0].sinks"),
        ("[server]\nlisten = \"everywhere\"", "server.listen"),
    ];
    for (extra, key) in cases {
        let out = check_with(extra).await;
        assert_eq!(out.status.code(), Some(2), "{extra}: {}", text(&out));
        assert!(text(&out).contains(key), "{extra}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}

#[tokio::test]
async fn an_unknown_key_is_located_by_file_and_line() {
    let out = check_with("[sinks.stdout]\nkind = \"console\"\ncolour = true").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bot.toml line"), "{}", text(&out));
    assert!(text(&out).contains("colour"), "{}", text(&out));
}

#[tokio::test]
async fn a_template_rendering_invalid_json_is_named() {
    let h = Harness::start().await;
    let templates = h.dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("downloadable.audit.json.tera"),
        "{\"name\": {{ item.action_name }}}",
    )
    .unwrap();
    h.write_config("[templates]\ndir = \"templates\"");
    let out = h.bot(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("downloadable.audit.json.tera"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("invalid JSON"), "{}", text(&out));
}

#[tokio::test]
async fn a_sink_no_route_names_is_a_warning_not_an_error() {
    let out =
        check_with("[sinks.stdout]\nkind = \"console\"\n[[routes]]\nsinks = [\"audit\"]").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("warning: sink \"stdout\""),
        "{}",
        text(&out)
    );
}

/// The example's commented-out chat sinks, uncommented.
fn example_with_chat_sinks() -> String {
    let example = std::fs::read_to_string("bot.toml").unwrap();
    let mut in_block = false;
    let mut out = Vec::new();
    for line in example.lines() {
        in_block = match line {
            "# [sinks.team_slack]" | "# [sinks.finance_teams]" | "# [sinks.discord]" => true,
            "" => false,
            _ => in_block,
        };
        out.push(match line.strip_prefix("# ") {
            Some(active) if in_block => active.to_string(),
            _ => line.to_string(),
        });
    }
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    out.join("\n")
        .replace("dir = \"templates\"", &format!("dir = {templates:?}"))
        + "\n[[routes]]\nsinks = [\"team_slack\", \"finance_teams\", \"discord\"]\n"
}

#[tokio::test]
async fn the_example_chat_sinks_pass_check_once_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bot.toml");
    let example = example_with_chat_sinks();
    assert!(
        example.contains("\n[sinks.discord]\nkind = \"discord\""),
        "{example}"
    );
    std::fs::write(&config, example).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .env("CRAYON_CLIENT_ID", "id")
        .env("CRAYON_CLIENT_SECRET", "secret")
        .env("CRAYON_USERNAME", "user@example.com")
        .env("CRAYON_PASSWORD", "pw")
        .env("AUDIT_WEBHOOK_URL", "https://example.com/hooks/x")
        .env(
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        )
        .env(
            "TEAMS_WEBHOOK_URL",
            "https://example.logic.azure.com/workflows/x",
        )
        .env(
            "DISCORD_WEBHOOK_URL",
            "https://discord.com/api/webhooks/1/tok",
        )
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("5 sinks"), "{}", text(&out));
    assert!(!text(&out).contains("hooks.slack.com"), "{}", text(&out));
}

/// Every key the example `bot.toml` shows (set or commented out) is in the
/// README's configuration reference, so the two cannot drift apart.
#[test]
fn the_readme_reference_covers_every_key_of_the_example_config() {
    let example = std::fs::read_to_string("bot.toml").unwrap();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let reference = &readme[readme.find("## Configuration reference").unwrap()..];
    let mut missing = Vec::new();
    for line in example.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if is_key
            && !reference.contains(&format!("`{key}`"))
            && !reference.contains(&format!(".{key}`"))
        {
            missing.push(key.to_string());
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "keys of bot.toml missing from the README reference: {missing:?}"
    );
}
