//! The lookup cache against a wiremock `users.lookupByEmail` and a real
//! state file: how long answers are trusted, and that expired ones are asked
//! again.

use chrono::Utc;
use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::api::Api;
use super::lookup::{Directory, HIT_FOR, MISS_FOR};
use crate::secret::Secret;
use crate::store::SlackLookup;

async fn slack(answer: serde_json::Value) -> (MockServer, Api) {
    let server = MockServer::start().await;
    Mock::given(path("/api/users.lookupByEmail"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = url::Url::parse(&format!("{}/api/", server.uri())).unwrap();
    (server, Api::new(client, base, Secret::new("xoxb-test")))
}

async fn lookups(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn hits_are_kept_7_days_and_misses_1_hour_in_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    for (answer, user, ttl) in [
        (
            json!({"ok": true, "user": {"id": "U0ANN"}}),
            Some("U0ANN"),
            HIT_FOR,
        ),
        (
            json!({"ok": false, "error": "users_not_found"}),
            None,
            MISS_FOR,
        ),
    ] {
        let (server, api) = slack(answer).await;
        let directory = Directory::new(
            &format!("s{}", ttl.num_hours()),
            Some(crate::store::StateLocation::File(state.clone())),
        );
        let found = directory.user_for(&api, "Ann@Example.com").await.unwrap();
        assert_eq!(found.as_deref(), user);
        let store = crate::store::open(&crate::store::StateLocation::File(state.clone())).unwrap();
        let sink = format!("s{}", ttl.num_hours());
        let row = store
            .slack_lookup(&sink, "ann@example.com", Utc::now())
            .unwrap();
        let row = row.expect("remembered in the state");
        let left = row.expires_at - Utc::now();
        assert!(
            left <= ttl && left > ttl - chrono::Duration::minutes(1),
            "{left}"
        );
        assert_eq!(lookups(&server).await, 1);
    }
}

#[tokio::test]
async fn an_expired_answer_is_looked_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let store = crate::store::open(&crate::store::StateLocation::File(state.clone())).unwrap();
    let expired = SlackLookup {
        user_id: None,
        expires_at: Utc::now() - chrono::Duration::seconds(1),
    };
    store
        .remember_slack_lookup("dm", "ann@example.com", &expired)
        .unwrap();
    let (server, api) = slack(json!({"ok": true, "user": {"id": "U0ANN"}})).await;
    let directory = Directory::new("dm", Some(crate::store::StateLocation::File(state)));
    let found = directory.user_for(&api, "ann@example.com").await.unwrap();
    assert_eq!(found.as_deref(), Some("U0ANN"));
    assert_eq!(lookups(&server).await, 1);
}
