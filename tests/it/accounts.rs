//! Several Crayon accounts in one process (`[accounts.NAME]`): each polled
//! on its own, keyed apart in the state, isolated from each other's
//! failures, added and removed by a reload.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, outbox_json, second_api, signal, text, Harness, QueueAnswer};

/// A fake Crayon API that answers nothing for a minute, on every request.
async fn hanging_api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&api)
        .await;
    api
}

/// `[accounts.contoso]` at `api`, with extra lines in its table.
fn contoso(api: &str, extra: &str) -> String {
    format!(
        "[accounts.contoso]\nbase_url = \"{api}\"\nusername = \"bot@contoso.example\"\n{extra}\n"
    )
}

/// The ids of the items the hook was told about (sorted).
async fn delivered(h: &Harness) -> Vec<i64> {
    let mut ids: Vec<i64> = h
        .hook_bodies()
        .await
        .iter()
        .map(|b| b["item"]["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_same_id_in_two_accounts_notifies_twice_once_each() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let (api, queue) = second_api().await;
    h.write_config(&contoso(&api.uri(), ""));
    h.queue.set_items(vec![item(7, 1, false)]);
    queue.set_items(vec![item(7, 1, false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        h.hook_bodies().await.is_empty(),
        "both baselines: {}",
        text(&out)
    );
    h.queue.set_items(vec![item(7, 2, true)]);
    queue.set_items(vec![item(7, 2, true)]);
    for _ in 0..2 {
        let out = h.bot(&["once"]).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(delivered(&h).await, [7, 7], "one per account, never again");
    let mut accounts: Vec<String> = h
        .hook_bodies()
        .await
        .iter()
        .map(|b| b["account"].as_str().unwrap().to_string())
        .collect();
    accounts.sort();
    assert_eq!(accounts, ["contoso", "default"]);

    let rows = outbox_json(&h).await;
    let mut listed: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap().into(),
                r["item_id"].as_i64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, [("contoso".into(), 7), ("default".into(), 7)]);
    let table = h.bot(&["outbox", "list"]).await;
    assert!(text(&table).contains("ACCOUNT"), "{}", text(&table));

    let out = h.bot(&["why", "7"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("several accounts (contoso, default)")
            && text(&out).contains("--account"),
        "{}",
        text(&out)
    );
    let out = h.bot(&["why", "7", "--account", "contoso"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("account contoso"), "{}", text(&out));
    assert!(
        text(&out).contains("event downloadable fired"),
        "{}",
        text(&out)
    );
    let out = h.bot(&["why", "7", "--account", "northwind"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("northwind"), "{}", text(&out));
}

/// Templates see `account.name` and `account.vars`.
#[tokio::test]
async fn templates_see_the_account_and_its_vars() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let (api, queue) = second_api().await;
    let templates = h.dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("downloadable.webhook.json.tera"),
        r#"{"item": {"id": {{ item.id }}}, "who": {{ account.name | json }}, "customer": {{ account.vars.customer | default(value="-") | json }}}"#,
    )
    .unwrap();
    let extra = contoso(&api.uri(), "vars = { customer = \"Contoso Ltd\" }")
        + "[templates]\ndir = \"templates\"\n";
    h.write_config(&extra);
    queue.set_items(vec![item(4, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    queue.set_items(vec![item(4, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1, "{}", text(&out));
    assert_eq!(bodies[0]["who"], "contoso");
    assert_eq!(bodies[0]["customer"], "Contoso Ltd");
}

#[tokio::test]
async fn routes_take_only_the_accounts_they_list() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let (api, queue) = second_api().await;
    let routes = "[[routes]]\naccounts = [\"contoso\"]\nsinks = [\"audit\"]\n";
    h.write_config(&(contoso(&api.uri(), "") + routes));
    h.queue.set_items(vec![item(1, 1, false)]);
    queue.set_items(vec![item(2, 1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![item(1, 2, true)]);
    queue.set_items(vec![item(2, 2, true)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(delivered(&h).await, [2], "only contoso's item");

    let unknown = routes.replace("contoso", "northwind");
    h.write_config(&(contoso(&api.uri(), "") + &unknown));
    let out = h.bot(&["check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("routes[0].accounts") && text(&out).contains("northwind"),
        "{}",
        text(&out)
    );
}

/// One account's API hangs on every request (token included, longer than
/// the test); the other account's flip is still polled and delivered
/// within a few of its intervals.
#[tokio::test]
async fn a_hanging_account_delays_no_other_accounts_polls_or_deliveries() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let hang = hanging_api().await;
    h.write_config(&contoso(&hang.uri(), "timeout = \"60s\""));
    h.queue.set_items(vec![item(5, 1, false)]);
    let mut run = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "contoso's first request",
        Duration::from_secs(10),
        async || {
            !hang
                .received_requests()
                .await
                .unwrap_or_default()
                .is_empty()
        },
    )
    .await;
    // The default account's baseline is taken while contoso hangs.
    crate::helpers::wait_for_baseline(&h, 0).await;
    h.queue.set_items(vec![item(5, 2, true)]);
    let flipped = tokio::time::Instant::now();
    wait_until(
        "the default account's delivery",
        Duration::from_secs(5),
        async || !h.hook_bodies().await.is_empty(),
    )
    .await;
    assert!(
        flipped.elapsed() < Duration::from_secs(3),
        "{:?}",
        flipped.elapsed()
    );
    assert_eq!(delivered(&h).await, [5]);
    signal(&run, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(10), run.wait())
        .await
        .expect("run stops although an account hangs");
    assert_eq!(out.unwrap().code(), Some(0));
    let _ = run.kill().await;
}

/// `/healthz` is 503 while one account's credentials are refused and says
/// which; the metrics carry the account label.
#[tokio::test]
async fn healthz_names_the_failing_account_and_metrics_are_labelled() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let refused = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&refused)
        .await;
    let port = free_port();
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    h.write_config(&(contoso(&refused.uri(), "") + &server));
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut health = Value::Null;
    wait_until("/healthz failing", Duration::from_secs(15), async || {
        let Ok(r) = reqwest::get(format!("{base}/healthz")).await else {
            return false;
        };
        let status = r.status().as_u16();
        health = r.json().await.unwrap_or_default();
        status == 503
    })
    .await;
    assert_eq!(health["accounts"].as_array().unwrap().len(), 1, "{health}");
    assert_eq!(health["accounts"][0]["account"], "contoso", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("account contoso"),
        "{health}"
    );
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let status = reqwest::get(format!("{base}/api/status")).await.unwrap();
    let status: Value = status.json().await.unwrap();
    let shown: Vec<(&str, &str)> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap(),
                a["last_poll"]["result"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(shown, [("contoso", "error"), ("default", "ok")], "{status}");
    for line in [
        "crayon_export_bot_polls_total{account=\"contoso\",outcome=\"error\"}",
        "crayon_export_bot_polls_total{account=\"default\",outcome=\"ok\"}",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    drop(run);
}

/// Self-alerts are per account and name it: contoso's refused credentials
/// alert once about contoso; the default account, polling fine, raises none.
#[tokio::test]
async fn self_alerts_name_the_account() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let refused = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/connect/token/"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&refused)
        .await;
    let ops = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ops)
        .await;
    let alerts = format!(
        "[sinks.ops]\nkind = \"webhook\"\nurl = \"{}/ops\"\n\
         [alerts]\nsink = \"ops\"\nafter = \"300ms\"\nrepeat = \"1h\"\n\
         [[routes]]\nsinks = [\"audit\"]\n",
        ops.uri()
    );
    h.write_config(&(contoso(&refused.uri(), "") + &alerts));
    let run = h
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let posted = async || ops.received_requests().await.unwrap_or_default();
    wait_until("an alert", Duration::from_secs(10), async || {
        posted().await.len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    let bodies: Vec<Value> = posted()
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let mut conditions: Vec<&str> = bodies
        .iter()
        .map(|b| b["alert"]["condition"].as_str().unwrap())
        .collect();
    conditions.sort();
    assert_eq!(
        conditions,
        ["credentials_refused", "polls_failing"],
        "{}",
        text(&out)
    );
    for body in &bodies {
        let summary = body["alert"]["summary"].as_str().unwrap();
        assert!(summary.starts_with("Account contoso: "), "{summary}");
    }
}

/// A reload adds an account without a restart; removing it again leaves
/// its pending delivery to go out once its sink answers.
#[tokio::test]
async fn reload_adds_and_removes_accounts_and_a_removed_accounts_deliveries_still_go() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let (api, queue) = second_api().await;
    let ops = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&ops)
        .await;
    let sink = format!(
        "[sinks.ops]\nkind = \"webhook\"\nurl = \"{}/ops\"\n\
         [[routes]]\naccounts = [\"default\"]\nsinks = [\"audit\"]\n",
        ops.uri()
    );
    let contoso_route = "[[routes]]\naccounts = [\"contoso\"]\nsinks = [\"ops\"]\n";
    h.write_config(&sink);
    let mut cmd = h.command(&["run"]);
    let run = cmd
        .env("BOT__DELIVERY__MAX_ATTEMPTS", "1000")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(api.received_requests().await.unwrap().is_empty());

    queue.set_items(vec![item(3, 1, false)]);
    h.write_config(&(sink.clone() + &contoso(&api.uri(), "") + contoso_route));
    signal(&run, "-HUP");
    wait_until("contoso's baseline", Duration::from_secs(10), async || {
        !api.received_requests().await.unwrap_or_default().is_empty()
    })
    .await;
    wait_until(
        "contoso's baseline done",
        Duration::from_secs(10),
        async || {
            let requests = api.received_requests().await.unwrap_or_default();
            let polls = requests
                .iter()
                .filter(|r| r.url.path() == "/api/v1/exports/");
            polls.count() >= 2
        },
    )
    .await;
    queue.set_items(vec![item(3, 2, true)]);
    let ops_posts = async || ops.received_requests().await.unwrap_or_default().len();
    wait_until(
        "contoso's delivery attempted",
        Duration::from_secs(10),
        async || ops_posts().await > 0,
    )
    .await;

    h.write_config(&sink);
    signal(&run, "-HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let polls_after = api.received_requests().await.unwrap().len();
    ops.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ops)
        .await;
    wait_until(
        "the removed account's delivery",
        Duration::from_secs(10),
        async || ops_posts().await > 0,
    )
    .await;
    let body: Value =
        serde_json::from_slice(&ops.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["item"]["id"], 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let polls_later = api.received_requests().await.unwrap().len();
    assert!(
        polls_later <= polls_after + 1,
        "contoso is no longer polled"
    );
    signal(&run, "-TERM");
    let out = run.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(h.hook_bodies().await.is_empty(), "{}", text(&out));
}

/// `check --online` logs in to every account and tells per account how
/// many items its queue holds and which RequestedBy domains it sees.
#[tokio::test]
async fn check_online_shows_each_accounts_queue_and_requester_domains() {
    let h = Harness::start().await;
    let (api, queue) = second_api().await;
    h.write_config(&contoso(&api.uri(), ""));
    let mut other = item(2, 1, false);
    other["RequestedBy"] = json!("Bob@Contoso.example");
    queue.set_items(vec![item(1, 1, false), other, item(3, 1, false)]);
    h.queue.set_items(vec![item(9, 1, false)]);
    let out = h.bot(&["check", "--online"]).await;
    let shown = text(&out);
    assert!(
        shown.contains("crayon account contoso: token granted")
            && shown.contains(
                "3 item(s) in the queue; RequestedBy domains: contoso.example, example.com"
            ),
        "{shown}"
    );
    assert!(
        shown.contains("crayon account default: token granted")
            && shown.contains("1 item(s) in the queue; RequestedBy domains: example.com"),
        "{shown}"
    );
}

/// A v0.1 state file keeps its history for `default` when accounts are
/// added beside it; the new account starts with its own baseline.
#[tokio::test]
async fn a_v01_state_keeps_default_and_a_new_account_takes_its_own_baseline() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    let (api, queue) = second_api().await;
    h.write_config(&contoso(&api.uri(), ""));
    std::fs::copy("tests/fixtures/state-v1.db", h.state()).unwrap();
    let sample: Value =
        serde_json::from_slice(&std::fs::read("tests/fixtures/exports-sample.json").unwrap())
            .unwrap();
    h.queue.set(QueueAnswer::Json(sample.clone()));
    queue.set(QueueAnswer::Json(sample));
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let baselines: Vec<&str> = text(&out)
        .lines()
        .filter(|l| l.contains("baseline"))
        .map(|_| "baseline")
        .collect();
    assert_eq!(baselines.len(), 1, "only contoso's: {}", text(&out));
    assert!(text(&out).contains("contoso"), "{}", text(&out));
    assert!(h.hook_bodies().await.is_empty(), "nothing fired again");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
