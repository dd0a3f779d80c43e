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

/// Runs `demo --cycles N` in a fresh folder; returns the output and how many
/// `.eml` files it wrote.
async fn demo_run(cycles: &str, interval: &str) -> (std::process::Output, usize) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crayon-export-bot"))
        .args(["demo", "--cycles", cycles, "--interval", interval])
        .current_dir(dir.path())
        .env_remove("BOT_CONFIG")
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    let emails = std::fs::read_dir(dir.path().join("demo-out"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "eml")
            })
            .count()
        })
        .unwrap_or(0);
    (out, emails)
}

#[tokio::test]
async fn demo_cycles_polls_exactly_that_often_and_writes_the_same_emails_every_run() {
    // Intervals of whole seconds and of a few milliseconds both made the
    // old demo overshoot (it watched `run` from outside).
    let (first, first_emails) = demo_run("4", "1s").await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("demo: done; 4 poll(s) of the simulated queue"),
        "{}",
        text(&first)
    );
    for interval in ["20ms", "20ms", "1s"] {
        let (again, emails) = demo_run("4", interval).await;
        assert!(again.status.success(), "{}", text(&again));
        assert!(text(&again).contains("4 poll(s)"), "{}", text(&again));
        assert_eq!(emails, first_emails, "{}", text(&again));
    }
    assert!(first_emails > 0, "{}", text(&first));
}
