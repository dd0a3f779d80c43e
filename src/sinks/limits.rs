//! Size budgets on a rendered JSON payload: the chat platforms refuse a
//! message over their limits, so long fields are shortened with `…` at a
//! character boundary (never inside a UTF-8 sequence) instead of the message
//! being rejected and lost. Each platform's module says which fields and
//! how long; the arithmetic lives here.

use serde_json::Value;

use crate::text::keep_graphemes;

/// Shortens the string at JSON `pointer` to at most `max` characters. A
/// missing field or a non-string is left alone. True when it changed.
pub fn cap(payload: &mut Value, pointer: &str, max: usize) -> bool {
    match payload.pointer_mut(pointer) {
        Some(Value::String(text)) if text.chars().count() > max => {
            *text = cut(text, max);
            true
        }
        _ => false,
    }
}

/// `text` in at most `max` characters ending with `…`: cut between grapheme
/// clusters and never inside an escape the template put there (a Slack
/// `&amp;` or a Discord `\*`), the platform's last resort when a template
/// gave item text no budget of its own.
fn cut(text: &str, max: usize) -> String {
    let kept = keep_graphemes(text, max.saturating_sub(1), |g| g.chars().count());
    let mut out = without_partial_escape(&kept).to_string();
    out.push('…');
    out
}

/// `cut` without a trailing entity that was begun but not closed (`&am`) or
/// a trailing lone backslash (which would escape the `…`).
fn without_partial_escape(cut: &str) -> &str {
    if let Some(at) = cut.rfind('&') {
        let tail = &cut[at + 1..];
        if tail.len() < 5 && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
            return &cut[..at];
        }
    }
    let backslashes = cut.len() - cut.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        return &cut[..cut.len() - 1];
    }
    cut
}

/// Cuts the array at `pointer` to its first `max` elements; true when it
/// changed.
pub fn cap_len(payload: &mut Value, pointer: &str, max: usize) -> bool {
    match payload.pointer_mut(pointer) {
        Some(Value::Array(items)) if items.len() > max => {
            items.truncate(max);
            true
        }
        _ => false,
    }
}

/// How many elements the array at `pointer` has (0 when it is not one).
pub fn len(payload: &Value, pointer: &str) -> usize {
    payload
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Shortens the longest of the strings at `pointers` until `measure` of the
/// payload is at most `budget`. `measure` must shrink by at least one unit
/// per character removed (characters or bytes both do). True when it changed.
pub fn shrink(
    payload: &mut Value,
    pointers: &[String],
    budget: usize,
    measure: impl Fn(&Value) -> usize,
) -> bool {
    let mut changed = false;
    loop {
        let size = measure(payload);
        if size <= budget {
            return changed;
        }
        let Some((pointer, chars)) = longest(payload, pointers) else {
            return changed;
        };
        if chars <= 1 {
            return changed;
        }
        // `…` may cost up to 3 bytes more than the character it replaces.
        let keep = chars.saturating_sub(size - budget + 3).max(1);
        changed |= cap(payload, pointer, keep);
    }
}

fn longest<'p>(payload: &Value, pointers: &'p [String]) -> Option<(&'p str, usize)> {
    pointers
        .iter()
        .filter_map(|p| {
            let chars = payload.pointer(p)?.as_str()?.chars().count();
            Some((p.as_str(), chars))
        })
        .max_by_key(|(_, chars)| *chars)
}

/// The number of characters of the strings at `pointers`.
pub fn chars_at(payload: &Value, pointers: &[String]) -> usize {
    pointers
        .iter()
        .filter_map(|p| payload.pointer(p)?.as_str())
        .map(|s| s.chars().count())
        .sum()
}

/// The payload's size in bytes once serialized compactly.
pub fn json_bytes(payload: &Value) -> usize {
    serde_json::to_vec(payload).map_or(usize::MAX, |b| b.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cap_shortens_at_a_character_boundary_and_ignores_other_values() {
        let mut v = json!({"a": "ééé🎉🎉", "b": 5});
        assert!(cap(&mut v, "/a", 4));
        assert_eq!(v["a"], "ééé…");
        assert!(!cap(&mut v, "/a", 4));
        assert!(!cap(&mut v, "/b", 1));
        assert!(!cap(&mut v, "/missing", 1));
    }

    #[test]
    fn cap_never_ends_inside_an_escape_or_a_grapheme() {
        let mut v = json!({"a": "Fabrikam &amp; Co", "b": "x\\*y", "c": "ab👩‍💻cd"});
        assert!(cap(&mut v, "/a", 12));
        assert_eq!(v["a"], "Fabrikam …");
        assert!(cap(&mut v, "/b", 3));
        assert_eq!(v["b"], "x…");
        assert!(cap(&mut v, "/c", 5));
        assert_eq!(v["c"], "ab…");
    }

    #[test]
    fn shrink_reaches_the_budget_by_cutting_the_longest_field() {
        let mut v = json!({"a": "🎉".repeat(5000), "b": "short", "c": "x".repeat(300)});
        let pointers = vec!["/a".to_string(), "/b".to_string(), "/c".to_string()];
        assert!(shrink(&mut v, &pointers, 1000, json_bytes));
        assert!(json_bytes(&v) <= 1000, "{}", json_bytes(&v));
        assert_eq!(v["b"], "short");
        assert!(v["a"].as_str().unwrap().ends_with('…'));
        let mut v = json!({"a": "abcdef", "b": "abcdef"});
        let pointers = vec!["/a".to_string(), "/b".to_string()];
        shrink(&mut v, &pointers, 8, |v| chars_at(v, &pointers));
        assert!(chars_at(&v, &pointers) <= 8);
    }

    #[test]
    fn shrink_gives_up_when_nothing_is_left_to_cut() {
        let mut v = json!({"a": "x"});
        assert!(!shrink(&mut v, &["/a".to_string()], 0, json_bytes));
        assert_eq!(v["a"], "x");
    }
}
