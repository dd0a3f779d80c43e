//! Discord's size limits for a message (content and embeds). Discord refuses
//! the whole message when one is exceeded, so long fields are shortened.

use serde_json::Value;

use crate::sinks::limits::{cap, cap_len, chars_at, len, shrink};

/// The message's `content`.
pub const MAX_CONTENT: usize = 2000;
/// An embed's `description`.
pub const MAX_DESCRIPTION: usize = 4096;
/// All embeds' titles, descriptions, field names and values, footers and
/// author names together.
pub const MAX_EMBEDS_TOTAL: usize = 6000;
/// Embeds per message.
pub const MAX_EMBEDS: usize = 10;
/// Fields per embed.
pub const MAX_FIELDS: usize = 25;

/// Per-embed texts and their own limits; all of them count towards
/// [`MAX_EMBEDS_TOTAL`].
const EMBED_TEXTS: &[(&str, usize)] = &[
    ("title", 256),
    ("description", MAX_DESCRIPTION),
    ("footer/text", 2048),
    ("author/name", 256),
];
/// Per-field texts and their limits.
const FIELD_TEXTS: &[(&str, usize)] = &[("name", 256), ("value", 1024)];

/// Shortens whatever would make Discord refuse the payload; true when it
/// changed anything.
pub fn fit(payload: &mut Value) -> bool {
    let mut changed = cap(payload, "/content", MAX_CONTENT);
    changed |= cap_len(payload, "/embeds", MAX_EMBEDS);
    let mut counted = Vec::new();
    for i in 0..len(payload, "/embeds") {
        let embed = format!("/embeds/{i}");
        changed |= cap_all(payload, &embed, EMBED_TEXTS, &mut counted);
        let fields = format!("{embed}/fields");
        changed |= cap_len(payload, &fields, MAX_FIELDS);
        for j in 0..len(payload, &fields) {
            changed |= cap_all(payload, &format!("{fields}/{j}"), FIELD_TEXTS, &mut counted);
        }
    }
    changed
        | shrink(payload, &counted, MAX_EMBEDS_TOTAL, |v| {
            chars_at(v, &counted)
        })
}

fn cap_all(
    payload: &mut Value,
    at: &str,
    texts: &[(&str, usize)],
    counted: &mut Vec<String>,
) -> bool {
    let mut changed = false;
    for (field, max) in texts {
        let pointer = format!("{at}/{field}");
        changed |= cap(payload, &pointer, *max);
        counted.push(pointer);
    }
    changed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chars(v: &Value) -> usize {
        v.as_str().map_or(0, |s| s.chars().count())
    }

    #[test]
    fn content_and_each_embed_text_are_cut_to_their_limits() {
        let long = "👩‍💻é".repeat(3000);
        let mut payload = json!({
            "content": long,
            "embeds": [{"title": long, "description": long,
                        "fields": [{"name": "Requested by", "value": long}]}],
        });
        assert!(fit(&mut payload));
        assert!(chars(&payload["content"]) <= MAX_CONTENT);
        let embed = &payload["embeds"][0];
        assert!(chars(&embed["title"]) <= 256);
        assert!(chars(&embed["description"]) <= MAX_DESCRIPTION);
        assert!(chars(&embed["fields"][0]["value"]) <= 1024);
        assert_eq!(embed["fields"][0]["name"], "Requested by");
    }

    #[test]
    fn all_embeds_together_stay_under_the_total() {
        let long = "x".repeat(4000);
        let embed = json!({"title": "t", "description": long, "footer": {"text": long}});
        let mut payload = json!({"embeds": [embed.clone(), embed]});
        assert!(fit(&mut payload));
        let total: usize = payload["embeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]))
            .sum();
        assert!(total <= MAX_EMBEDS_TOTAL, "{total}");
        assert!(!fit(&mut payload));
    }
}
