//! The size budget of a Teams Workflows message (an Adaptive Card in a
//! `message` envelope), and the cut that keeps a card under it.

use serde_json::Value;

use crate::sinks::limits::{json_bytes, shrink};

/// Teams refuses messages of about 28 KB; this leaves room for the headers
/// and whatever the Workflow adds.
pub const MAX_BODY_BYTES: usize = 27 * 1024;

/// Keys whose string values are text people read (and may be shortened).
const TEXT_KEYS: &[&str] = &["text", "value", "title"];

/// Shortens the card's longest texts until the body fits; true when it
/// changed anything.
pub fn fit(payload: &mut Value) -> bool {
    if json_bytes(payload) <= MAX_BODY_BYTES {
        return false;
    }
    let mut pointers = Vec::new();
    collect_texts(payload, String::new(), &mut pointers);
    shrink(payload, &pointers, MAX_BODY_BYTES, json_bytes)
}

/// JSON pointers of every readable text in the card bodies, so URLs, types
/// and other machine fields are never cut.
fn collect_texts(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if child.is_string() && TEXT_KEYS.contains(&key.as_str()) {
                    out.push(path);
                } else {
                    collect_texts(child, path, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_texts(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_oversized_card_is_cut_below_the_budget_keeping_urls() {
        let long = "日本🎉".repeat(20_000);
        let url = format!("https://cloudiq.crayon.com/{}", "p".repeat(500));
        let mut payload = json!({"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"type": "AdaptiveCard", "body": [
                {"type": "TextBlock", "text": long, "wrap": true},
                {"type": "FactSet", "facts": [{"title": "Name", "value": long}]},
            ], "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": url}]}
        }]});
        assert!(fit(&mut payload));
        assert!(json_bytes(&payload) <= MAX_BODY_BYTES);
        let card = &payload["attachments"][0]["content"];
        assert_eq!(card["actions"][0]["url"], url.as_str());
        assert!(card["body"][0]["text"].as_str().unwrap().ends_with('…'));
        assert_eq!(card["body"][1]["facts"][0]["title"], "Name");
    }

    #[test]
    fn a_small_card_is_left_alone() {
        let mut payload = json!({"type": "message", "attachments": []});
        assert!(!fit(&mut payload));
    }
}
