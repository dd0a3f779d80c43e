//! Teams cards mention the requester: the real binary posting to a wiremock
//! Teams Workflows receiver; the card carries `<at>UPN</at>` with its
//! `msteams.entities` mention, and the envelope a top-level `recipient`.

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{item, text, Harness};

const TEAMS_PATH: &str = "/workflows/teams-s3cret/triggers/manual/run";

/// Posts item 7 requested by `who` through a Teams sink; returns the body.
async fn card_for(who: Value, extra: &str) -> Value {
    let h = Harness::start().await;
    let teams = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TEAMS_PATH))
        .respond_with(ResponseTemplate::new(202))
        .mount(&teams)
        .await;
    h.write_config(&format!(
        "[sinks.chat]\nkind = \"teams\"\nurl = \"{}{TEAMS_PATH}\"\n[[routes]]\nsinks = [\"chat\"]\n{extra}\n",
        teams.uri()
    ));
    let with = |status, downloadable| {
        let mut item = item(7, status, downloadable);
        item["RequestedBy"] = who.clone();
        item
    };
    h.queue.set_items(vec![with(1, false)]);
    assert!(h.bot(&["once"]).await.status.success());
    h.queue.set_items(vec![with(2, true)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let received = teams.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    serde_json::from_slice(&received[0].body).unwrap()
}

fn entities(body: &Value) -> &Value {
    &body["attachments"][0]["content"]["msteams"]["entities"]
}

/// The texts of the card's TextBlocks.
fn text_blocks(body: &Value) -> Vec<String> {
    let blocks = body["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    blocks
        .iter()
        .filter(|b| b["type"] == "TextBlock")
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_card_mentions_the_requester_and_names_the_recipient() {
    let body = card_for(json!("ann@example.com"), "").await;
    assert_eq!(body["recipient"], "ann@example.com");
    assert_eq!(
        entities(&body),
        &json!([{
            "type": "mention",
            "text": "<at>ann@example.com</at>",
            "mentioned": {"id": "ann@example.com", "name": "ann@example.com"}
        }])
    );
    assert!(text_blocks(&body).contains(&"<at>ann@example.com</at>".to_string()));
}

#[tokio::test]
async fn teams_upn_from_the_directory_wins_over_requested_by() {
    let directory =
        "[recipients.\"Ann@Example.com\"]\nteams_upn = \"ann.smith@contoso.onmicrosoft.com\"\n";
    let body = card_for(json!("ann@example.com"), directory).await;
    assert_eq!(body["recipient"], "ann.smith@contoso.onmicrosoft.com");
    let mentioned = &entities(&body)[0]["mentioned"]["id"];
    assert_eq!(mentioned, "ann.smith@contoso.onmicrosoft.com");
}

#[tokio::test]
async fn without_a_valid_address_there_is_no_mention() {
    for who in [json!("Ann Smith"), json!("a@x.test, b@x.test"), Value::Null] {
        let body = card_for(who.clone(), "").await;
        assert_eq!(body["recipient"], Value::Null, "{who}");
        assert!(entities(&body).is_null(), "{who}: {body}");
        assert!(!body.to_string().contains("<at>"), "{who}");
    }
}
