//! Slack's size limits for a Block Kit message: how big a message may be
//! before Slack refuses it, and the cut that keeps it under.

use serde_json::Value;

use crate::sinks::limits::{cap, cap_len, len};

/// Slack refuses a message with more blocks than this.
pub const MAX_BLOCKS: usize = 50;
/// A section's text (and any other mrkdwn text object).
pub const MAX_SECTION_TEXT: usize = 3000;
/// A header block's plain text.
pub const MAX_HEADER_TEXT: usize = 150;
/// One of a section's fields.
pub const MAX_FIELD_TEXT: usize = 2000;
/// A section has at most this many fields; a context this many elements.
pub const MAX_FIELDS: usize = 10;
/// A button's label.
pub const MAX_BUTTON_TEXT: usize = 75;
/// The top-level `text` fallback (Slack cuts longer ones itself).
pub const MAX_FALLBACK_TEXT: usize = 4000;

/// Shortens whatever would make Slack refuse the payload; true when it
/// changed anything.
pub fn fit(payload: &mut Value) -> bool {
    let mut changed = cap(payload, "/text", MAX_FALLBACK_TEXT);
    changed |= cap_len(payload, "/blocks", MAX_BLOCKS);
    for i in 0..len(payload, "/blocks") {
        changed |= fit_block(payload, &format!("/blocks/{i}"));
    }
    changed
}

fn fit_block(payload: &mut Value, block: &str) -> bool {
    let is_header = payload
        .pointer(&format!("{block}/type"))
        .and_then(Value::as_str)
        == Some("header");
    let text_max = if is_header {
        MAX_HEADER_TEXT
    } else {
        MAX_SECTION_TEXT
    };
    let mut changed = cap(payload, &format!("{block}/text/text"), text_max);
    for list in ["fields", "elements"] {
        let list = format!("{block}/{list}");
        changed |= cap_len(payload, &list, MAX_FIELDS);
        for j in 0..len(payload, &list) {
            let element = format!("{list}/{j}");
            let field_max = if list.ends_with("fields") {
                MAX_FIELD_TEXT
            } else {
                MAX_SECTION_TEXT
            };
            changed |= cap(payload, &format!("{element}/text"), field_max);
            changed |= cap(payload, &format!("{element}/text/text"), MAX_BUTTON_TEXT);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_texts_and_too_many_blocks_are_cut() {
        let long = "🎉".repeat(5000);
        let block = json!({"type": "section", "text": {"type": "mrkdwn", "text": long}});
        let mut payload = json!({
            "text": long,
            "blocks": std::iter::once(json!({"type": "header", "text": {"type": "plain_text", "text": long}}))
                .chain(std::iter::repeat_n(block, 60))
                .collect::<Vec<_>>(),
        });
        assert!(fit(&mut payload));
        let blocks = payload["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS);
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert_eq!(chars(&blocks[0]["text"]["text"]), MAX_HEADER_TEXT);
        assert_eq!(chars(&blocks[1]["text"]["text"]), MAX_SECTION_TEXT);
        assert!(chars(&payload["text"]) <= MAX_FALLBACK_TEXT);
        assert!(!fit(&mut payload), "fitting twice changes nothing");
    }

    #[test]
    fn fields_context_and_buttons_are_cut() {
        let long = "x".repeat(4000);
        let mut payload = json!({"text": "t", "blocks": [
            {"type": "section", "fields": [{"type": "mrkdwn", "text": long}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": long}]},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": long}}]},
        ]});
        assert!(fit(&mut payload));
        let b = &payload["blocks"];
        assert_eq!(
            b[0]["fields"][0]["text"].as_str().unwrap().chars().count(),
            MAX_FIELD_TEXT
        );
        assert_eq!(
            b[1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            MAX_SECTION_TEXT
        );
        assert_eq!(
            b[2]["elements"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            MAX_BUTTON_TEXT
        );
    }
}
