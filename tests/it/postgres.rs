//! The real binary on a real PostgreSQL state (a throwaway cluster, a fresh
//! database per test): `once` and `outbox list` against it, the database
//! password masked in every output even at trace level, and `state copy`
//! SQLite -> PostgreSQL -> SQLite with `${VAR}` in the arguments.

use crate::helpers::{item, text, Harness};
use crate::pg_cluster::{self, PG_PASSWORD};

/// The environment variable the configs name the password by.
const PW_VAR: &str = "STATE_DB_PASSWORD";

/// `db_url` with its password replaced by `${STATE_DB_PASSWORD}`.
fn with_var(db_url: &str) -> String {
    db_url.replace(PG_PASSWORD, &format!("${{{PW_VAR}}}"))
}

/// The harness config with `watch.state` set to `state` (a path or URL).
fn config_with_state(h: &Harness, state: &str) {
    h.write_config("");
    let path = h.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("state = \"state.db\"", &format!("state = \"{state}\""));
    std::fs::write(path, text).unwrap();
}

/// Runs the binary with the password in the environment, at trace level.
async fn bot(h: &Harness, password: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = h.command(args);
    cmd.env(PW_VAR, password).env("RUST_LOG", "trace");
    cmd.output().await.unwrap()
}

/// A baseline poll, then two items turn downloadable and are sent.
async fn two_sends(h: &Harness, password: &str) {
    h.hook_answers(200).await;
    h.queue
        .set_items(vec![item(3, 1, false), item(4, 1, false)]);
    let out = bot(h, password, &["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    h.queue.set_items(vec![item(3, 2, true), item(4, 2, true)]);
    let out = bot(h, password, &["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PG_PASSWORD), "{}", text(&out));
}

async fn outbox_json(h: &Harness) -> Vec<serde_json::Value> {
    let out = bot(h, PG_PASSWORD, &["outbox", "list", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PG_PASSWORD), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn once_and_outbox_list_work_on_postgres_and_never_show_the_password() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    config_with_state(&h, &with_var(&db));
    two_sends(&h, PG_PASSWORD).await;
    assert_eq!(h.hook_bodies().await.len(), 2);
    let out = bot(&h, PG_PASSWORD, &["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        h.hook_bodies().await.len(),
        2,
        "fired records live in PostgreSQL"
    );
    let rows = outbox_json(&h).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(!h.state().exists(), "no state file was made");
}

#[tokio::test]
async fn a_refused_database_password_is_masked_everywhere() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    config_with_state(&h, &with_var(&db));
    let wrong = "Wr0ngDbPw-Qx81";
    for args in [&["once"][..], &["outbox", "list"], &["why", "3"]] {
        let out = bot(&h, wrong, args).await;
        let all = text(&out);
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(!all.contains(wrong), "{args:?} leaked it: {all}");
        assert!(
            all.contains("password authentication failed"),
            "{args:?}: {all}"
        );
        assert!(all.contains("postgres:***@127.0.0.1"), "{args:?}: {all}");
    }
    let out = bot(&h, wrong, &["check"]).await;
    assert!(
        !text(&out).contains(wrong),
        "check leaked it: {}",
        text(&out)
    );
}

#[tokio::test]
async fn state_copy_moves_a_file_to_postgres_and_back() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let h = Harness::start().await;
    config_with_state(&h, "state.db");
    two_sends(&h, PG_PASSWORD).await;
    let from_file = outbox_json(&h).await;

    let env = |name: &str| match name {
        PW_VAR => Some(PG_PASSWORD.to_string()),
        "STATE_DIR" => Some(h.config_path().parent().unwrap().display().to_string()),
        _ => None,
    };
    let copy = |from: &str, to: &str| {
        let args = crayon_export_bot::cli::state::StateCopyArgs {
            from: from.to_string(),
            to: to.to_string(),
            ca_file: None,
        };
        crayon_export_bot::cli::state::run(&args, &env)
    };
    let counts = copy("${STATE_DIR}/state.db", &with_var(&db)).unwrap();
    assert!(counts.contains(&("outbox", 2)), "{counts:?}");

    config_with_state(&h, &with_var(&db));
    assert_eq!(outbox_json(&h).await, from_file);
    let out = bot(&h, PG_PASSWORD, &["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        h.hook_bodies().await.len(),
        2,
        "the copy kept the fired records"
    );

    copy(&with_var(&db), "${STATE_DIR}/back.db").unwrap();
    config_with_state(&h, "back.db");
    assert_eq!(outbox_json(&h).await, from_file);

    let from = h.dir.path().join("back.db").display().to_string();
    let out = bot(
        &h,
        PG_PASSWORD,
        &["state", "copy", "--from", &from, "--to", &with_var(&db)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already holds state"), "{}", text(&out));
    assert!(!text(&out).contains(PG_PASSWORD), "{}", text(&out));
    let err = copy("${STATE_DIR}/back.db", &with_var(&db)).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("already holds state"), "{shown}");
    assert!(!shown.contains(PG_PASSWORD), "{shown}");
}

#[tokio::test]
async fn verify_full_needs_tls_ca_file_for_a_private_ca() {
    let Some(db) = pg_cluster::fresh_db() else {
        return;
    };
    let cluster = pg_cluster::cluster().unwrap();
    let h = Harness::start().await;
    let url = with_var(&db).replace("sslmode=disable", "sslmode=verify-full");
    config_with_state(&h, &url);
    let out = bot(&h, PG_PASSWORD, &["outbox", "list"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate"), "{}", text(&out));

    let path = h.config_path();
    let config = std::fs::read_to_string(&path).unwrap();
    let ca = cluster.ca_file.display();
    std::fs::write(&path, format!("{config}\n[tls]\nca_file = \"{ca}\"\n")).unwrap();
    let out = bot(&h, PG_PASSWORD, &["outbox", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PG_PASSWORD), "{}", text(&out));
}
