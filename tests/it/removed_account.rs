//! An account removed from `bot.toml` while the bot was stopped: at the next
//! `run` or `once`, its deliveries still pending in the state (retrying) go
//! out through the configured sinks, exactly once, without polling it.
//! And the sinks a reload replaces: their sessions are closed (SMTP QUIT)
//! once their sends are done, not left to the drop.

use std::process::Stdio;
use std::time::Duration;

use wiremock::MockServer;

use crate::email::plain_config;
use crate::helpers::{
    baseline_then_flip, item, outbox_json, second_api, signal, text, wait_for_bodies, wait_until,
    Harness, LiveLog, HOOK_PATH,
};
use crate::smtp::{Security, SmtpServer};

/// Enough attempts that no retry in these tests goes dead.
const NEVER_DEAD: (&str, &str) = ("BOT__DELIVERY__MAX_ATTEMPTS", "1000");

const ADOPTED: &str = "account not in the config; its pending deliveries still go";

/// Accounts `default` (the harness's `[crayon]`, an empty queue) and
/// `contoso` (with `tables` after it), whose item 3 turns downloadable while
/// the hook answers 500: a `run` tries it and is stopped, leaving the
/// delivery pending (retrying, due again within 200 ms). Then contoso (and
/// `tables`) leave `bot.toml` and the hook answers 200. Returns the contoso
/// API.
async fn contoso_delivery_left_retrying(h: &Harness, tables: &str) -> MockServer {
    h.hook_answers(500).await;
    let (api, queue) = second_api().await;
    let contoso = format!(
        "[accounts.contoso]\nbase_url = \"{}\"\nusername = \"bot@contoso.example\"\n{tables}",
        api.uri()
    );
    h.write_config(&contoso);
    queue.set_items(vec![item(3, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "baselines: {}", text(&out));
    queue.set_items(vec![item(3, 2, true)]);
    let (run, log) = start_run(h);
    log.wait_for("outcome=\"retry\"", 1).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    assert_listed_pending_for_contoso(h).await;
    h.write_config("");
    h.hook_answers(200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    api
}

/// `outbox list --json` shows one row: contoso's, pending.
async fn assert_listed_pending_for_contoso(h: &Harness) {
    let rows = outbox_json(h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0]["account"].as_str(), rows[0]["status"].as_str()),
        (Some("contoso"), Some("pending")),
        "{rows:?}"
    );
}

/// A `run` whose retries never go dead, its stderr followed.
fn start_run(h: &Harness) -> (tokio::process::Child, LiveLog) {
    let mut cmd = h.command(&["run"]);
    cmd.env(NEVER_DEAD.0, NEVER_DEAD.1).stderr(Stdio::piped());
    let mut run = cmd.spawn().unwrap();
    let log = LiveLog::follow(&mut run);
    (run, log)
}

/// The statuses of contoso's outbox rows, read from the state file (the
/// CLI lists a removed account's rows only while one is pending).
fn contoso_statuses(h: &Harness) -> Vec<String> {
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let mut stmt = db
        .prepare("SELECT status FROM outbox WHERE account = 'contoso'")
        .unwrap();
    let rows = stmt.query_map([], |row| row.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// The one body the hook received, checked to be contoso's item 3, and the
/// outbox row sent.
async fn sent_once(h: &Harness, log: &str) {
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1, "exactly once: {bodies:?}\n{log}");
    assert_eq!(bodies[0]["item"]["id"], 3, "{log}");
    assert_eq!(bodies[0]["account"], "contoso", "{log}");
    assert_eq!(contoso_statuses(h), ["sent"], "{log}");
    assert_eq!(log.matches(ADOPTED).count(), 1, "logged once: {log}");
    assert!(log.contains("account=contoso"), "{log}");
}

#[tokio::test]
async fn run_sends_a_removed_accounts_pending_delivery_once() {
    let h = Harness::start().await;
    let api = contoso_delivery_left_retrying(&h, "").await;
    let polled = api.received_requests().await.unwrap().len();
    let (run, log) = start_run(&h);
    let bodies = wait_for_bodies(&h, 1, Duration::from_secs(15)).await;
    assert_eq!(bodies.len(), 1, "the delivery never went:\n{}", log.text());
    tokio::time::sleep(Duration::from_millis(800)).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    sent_once(&h, &log.text()).await;
    let polled_after = api.received_requests().await.unwrap().len();
    assert_eq!(polled_after, polled, "contoso is not polled any more");
}

#[tokio::test]
async fn once_sends_a_removed_accounts_pending_delivery_once() {
    let h = Harness::start().await;
    let api = contoso_delivery_left_retrying(&h, "").await;
    let polled = api.received_requests().await.unwrap().len();
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    sent_once(&h, &text(&out)).await;
    let again = h.bot(&["once"]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(h.hook_bodies().await.len(), 1, "{}", text(&again));
    assert!(!text(&again).contains(ADOPTED), "{}", text(&again));
    let polled_after = api.received_requests().await.unwrap().len();
    assert_eq!(polled_after, polled, "contoso is not polled any more");
}

/// `outbox list` and `why` show what the next `run` will send: the removed
/// account's pending delivery, under its account.
#[tokio::test]
async fn outbox_list_and_why_show_a_removed_accounts_pending_delivery() {
    let h = Harness::start().await;
    let _api = contoso_delivery_left_retrying(&h, "").await;
    assert_listed_pending_for_contoso(&h).await;
    let out = h.bot(&["outbox", "list"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("contoso"), "{}", text(&out));
    for args in [&["why", "3"][..], &["why", "3", "--account", "contoso"]] {
        let out = h.bot(args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let shown = text(&out);
        assert!(shown.contains("account contoso"), "{args:?}: {shown}");
        assert!(shown.contains("pending"), "{args:?}: {shown}");
    }
}

/// A removed account's delivery to a sink that left the config too goes
/// dead with the usual reason, as for a configured account.
#[tokio::test]
async fn a_removed_accounts_delivery_to_a_removed_sink_goes_dead() {
    let h = Harness::start().await;
    let ops = format!(
        "[sinks.ops]\nkind = \"webhook\"\nurl = \"{}{HOOK_PATH}\"\n\
         [[routes]]\naccounts = [\"contoso\"]\nsinks = [\"ops\"]\n",
        h.hook.uri()
    );
    contoso_delivery_left_retrying(&h, &ops).await;
    let out = h.bot(&["once"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "dead is a failure: {}",
        text(&out)
    );
    assert!(h.hook_bodies().await.is_empty(), "{}", text(&out));
    assert_eq!(contoso_statuses(&h), ["dead"], "{}", text(&out));
    let db = rusqlite::Connection::open(h.state()).unwrap();
    let error: String = db
        .query_row("SELECT last_error FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(error.contains("\"ops\" is not configured"), "{error}");
}

/// A reload that replaces the email sink (another `from`) ends the old
/// sink's SMTP session with QUIT once its send is recorded, while the bot
/// keeps running; the new sink sends with the new settings.
#[tokio::test]
async fn a_reload_closes_the_replaced_sinks_smtp_session() {
    let h = Harness::start().await;
    let server = SmtpServer::start(Security::Plain).await;
    let config = plain_config(&server, "");
    h.write_config(&config);
    baseline_then_flip(&h, [5]).await;
    let mut run = h.command(&["run"]).stderr(Stdio::piped()).spawn().unwrap();
    let log = LiveLog::follow(&mut run);
    let mailed = wait_until(Duration::from_secs(15), || async {
        server.delivered().len() == 1
    })
    .await;
    assert!(mailed, "the first mail never came:\n{}", log.text());
    assert!(
        server.sessions().is_empty(),
        "the session stays open for reuse"
    );

    h.write_config(&config.replace("exports@example.com", "other@example.com"));
    signal(&run, "-HUP");
    log.wait_for("config reloaded", 1).await;
    let quit = wait_until(Duration::from_secs(5), || async {
        !server.sessions().is_empty()
    })
    .await;
    assert!(run.try_wait().unwrap().is_none(), "still running");
    assert!(quit, "the old session never ended:\n{}", log.text());
    assert_eq!(
        server.sessions(),
        [true],
        "ended with QUIT:\n{}",
        log.text()
    );

    h.queue.set_items(vec![item(5, 2, true), item(6, 2, true)]);
    let mailed = wait_until(Duration::from_secs(15), || async {
        server.delivered().len() == 2
    })
    .await;
    assert!(mailed, "the second mail never came:\n{}", log.text());
    assert!(server.delivered()[1]
        .mail_from
        .contains("other@example.com"));
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    assert_eq!(server.sessions(), [true, true], "{}", log.text());
}
