//! Issue 14 item 10: `Status` arriving as a name (any case) instead of a
//! number, on the real wire; unknown names are kept through the store.

use crate::helpers::{item, text, Harness};

/// `item(..)` with `Status` sent as the given name.
fn named(id: i64, status: &str, downloadable: bool) -> serde_json::Value {
    let mut value = item(id, 0, downloadable);
    value["Status"] = serde_json::json!(status);
    value
}

#[tokio::test]
async fn status_names_are_read_case_insensitively_and_unknown_names_survive_the_store() {
    let h = Harness::start().await;
    h.hook_answers(200).await;
    h.write_config("");
    h.queue
        .set_items(vec![named(3, "queued", false), named(4, "Archived", false)]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));

    h.queue.set_items(vec![
        named(3, "PROCESSED", true),
        named(4, "Archived", false),
    ]);
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let bodies = h.hook_bodies().await;
    assert_eq!(
        bodies.len(),
        1,
        "only item 3 became downloadable: {bodies:?}"
    );
    assert_eq!(bodies[0]["event"], "downloadable");
    assert_eq!(bodies[0]["item"]["id"], 3);
    assert_eq!(bodies[0]["item"]["status"], 2);
    assert_eq!(bodies[0]["item"]["status_name"], "Processed");

    // The unknown name came back from the store equal to what the API
    // sends again: no change, nothing new; and `why` shows it as sent.
    let out = h.bot(&["once"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.hook_bodies().await.len(), 1);
    let out = h.bot(&["why", "4"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("status Archived (Unknown)"),
        "{}",
        text(&out)
    );
}
