//! `render`, `render --html-preview`, `send-test` and `check --online`.

use crate::helpers::{text, Harness, HOOK_PATH};

#[tokio::test]
async fn render_prints_each_sinks_payload_with_the_item_name() {
    let h = Harness::start().await;
    h.write_config("[sinks.stdout]\nkind = \"console\"");
    let out = h
        .bot(&[
            "render",
            "--event",
            "downloadable",
            "--sink",
            "audit",
            "--now",
            "2024-05-30T14:00:00Z",
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["item"]["action_name"],
        "New Commerce License-based Report@2015.01.01 - 2024.05.22"
    );
    assert_eq!(body["detected_at"], "2024-05-30T14:00:00Z");

    let out = h
        .bot(&["render", "--event", "failed", "--sink", "stdout"])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("New Commerce License-based Report"));
}

#[tokio::test]
async fn render_takes_an_item_file_and_names_bad_input() {
    let h = Harness::start().await;
    h.write_config("");
    let item = h.dir.path().join("item.json");
    std::fs::write(
        &item,
        r#"{"Id": 1, "Status": 2, "Downloadable": true, "ActionName": "Quarterly <Billing>",
            "RequestedBy": null, "CreatedDate": "2024-05-30T13:39:59.387"}"#,
    )
    .unwrap();
    let item_arg = item.to_str().unwrap();
    let out = h
        .bot(&[
            "render",
            "--event",
            "downloadable",
            "--sink",
            "audit",
            "--item",
            item_arg,
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["item"]["action_name"], "Quarterly <Billing>");
    assert!(body["item"]["requested_by"].is_null());

    std::fs::write(&item, "{\"Id\": \"x\"}").unwrap();
    let out = h
        .bot(&[
            "render",
            "--event",
            "downloadable",
            "--sink",
            "audit",
            "--item",
            item_arg,
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("item.json"), "{}", text(&out));
    let out = h
        .bot(&["render", "--event", "downloadable", "--sink", "nope"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = h
        .bot(&["render", "--event", "ready", "--sink", "audit"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn html_preview_writes_one_page_with_every_sink() {
    let h = Harness::start().await;
    h.write_config("[sinks.stdout]\nkind = \"console\"");
    let page = h.dir.path().join("preview.html");
    let out = h
        .bot(&["render", "--html-preview", page.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.contains("audit · webhook") && html.contains("stdout · console"),
        "{html}"
    );
    assert!(html.contains("New Commerce License-based Report"));
}

#[tokio::test]
async fn send_test_reports_the_sinks_answer() {
    let h = Harness::start().await;
    h.write_config("");
    h.hook_answers(200).await;
    let out = h.bot(&["send-test", "--sink", "audit"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = h.hook_bodies().await;
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0]["item"]["action_name"]
        .as_str()
        .unwrap()
        .starts_with("[TEST]"));

    h.hook_answers(500).await;
    let out = h.bot(&["send-test", "--sink", "audit"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("HTTP 500"), "{}", text(&out));
    assert!(!text(&out).contains(HOOK_PATH), "{}", text(&out));
    assert!(
        !h.state().exists(),
        "send-test never touches the state file"
    );
}

#[tokio::test]
async fn check_online_gets_a_token_and_reaches_each_host_sending_nothing() {
    let h = Harness::start().await;
    h.write_config("");
    h.hook_answers(200).await;
    let out = h.bot(&["check", "--online"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: crayon credentials: token granted"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("ok: sink audit (webhook): 127.0.0.1 answers"),
        "{}",
        text(&out)
    );
    assert!(h.hook_bodies().await.is_empty(), "nothing was sent");
    let posts = h.hook.received_requests().await.unwrap();
    assert!(posts
        .iter()
        .all(|r| r.method.as_str() == "HEAD" && r.url.path() == "/"));

    h.crayon.reset().await;
    let out = h.bot(&["check", "--online"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAILED: crayon credentials"),
        "{}",
        text(&out)
    );
}

/// One sink of every kind, for `render`.
const EVERY_KIND: &str = r#"
[sinks.chat]
kind = "slack"
url = "https://hooks.slack.com/services/T0/B0/x"
[sinks.room]
kind = "teams"
url = "https://example.webhook.office.com/workflow/x"
[sinks.guild]
kind = "discord"
webhook_url = "https://discord.com/api/webhooks/1/token"
[sinks.mail]
kind = "email"
smtp = "smtp://mail.example.com:587"
from = "Export Bot <exports@example.com>"
[sinks.stdout]
kind = "console"
"#;

#[tokio::test]
async fn render_output_is_valid_for_every_sink_kind() {
    let h = Harness::start().await;
    h.write_config(EVERY_KIND);
    let name = "New Commerce License-based Report@2015.01.01 - 2024.05.22";
    for sink in ["audit", "chat", "room", "guild", "mail", "stdout"] {
        for event in ["downloadable", "failed"] {
            let out = h.bot(&["render", "--event", event, "--sink", sink]).await;
            assert!(out.status.success(), "{sink} {event}: {}", text(&out));
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            match sink {
                "mail" => {
                    assert!(stdout.starts_with("Subject: "), "{stdout}");
                    let (_, html) = stdout.split_once("\n--- html ---\n").expect("an html part");
                    assert!(html.contains("<html") && html.contains(name), "{html}");
                }
                "stdout" => assert!(stdout.contains(name), "{stdout}"),
                _ => {
                    let json: serde_json::Value = serde_json::from_str(&stdout)
                        .unwrap_or_else(|e| panic!("{sink} {event}: {e}\n{stdout}"));
                    // Discord's markdown escapes (`\-`) are not shown.
                    let shown = json.to_string().replace(r"\\", "");
                    assert!(shown.contains(name), "{sink}: {json}");
                }
            }
        }
    }
}
