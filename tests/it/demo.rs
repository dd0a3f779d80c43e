//! `demo`: one command, no credentials, the real pipeline against the
//! built-in simulated queue.

use crate::helpers::text;

#[tokio::test]
async fn demo_runs_three_cycles_and_prints_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["demo", "--cycles", "3", "--interval", "300ms"])
        .current_dir(dir.path())
        .env_remove("BOT_CONFIG")
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("READY"), "{}", text(&out));
    assert!(stdout.contains("FAILED"), "{}", text(&out));
    assert!(
        text(&out).contains("baseline: 5 items recorded"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("state.db").exists(),
        "the demo keeps its state elsewhere"
    );
}

#[tokio::test]
async fn demo_ignores_a_bot_toml_in_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bot.toml"), "this is not toml [").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["demo", "--cycles", "2", "--interval", "200ms"])
        .current_dir(dir.path())
        .env_remove("BOT_CONFIG")
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
