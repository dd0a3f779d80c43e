//! Small text helpers shared by sinks and messages.

use unicode_segmentation::UnicodeSegmentation;

/// Shortens `text` to at most `max` characters, ending with `…` when cut.
/// Cuts between grapheme clusters, so neither a UTF-8 sequence nor a
/// character people see as one (👩‍💻, é as e + accent) is split.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out = keep_graphemes(text, max.saturating_sub(1), |g| g.chars().count());
    out.push('…');
    out
}

/// The longest run of whole grapheme clusters from the start of `text` whose
/// `cost` adds up to at most `budget`.
pub fn keep_graphemes(text: &str, budget: usize, cost: impl Fn(&str) -> usize) -> String {
    let mut spent = 0;
    let mut end = 0;
    for (at, grapheme) in text.grapheme_indices(true) {
        spent += cost(grapheme);
        if spent > budget {
            break;
        }
        end = at + grapheme.len();
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_at_character_boundaries() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
        assert_eq!(shorten("ééé🎉🎉", 4), "ééé…");
        assert_eq!(shorten("abc", 0), "…");
        assert_eq!(
            shorten("ab👩‍💻cd", 5),
            "ab…",
            "a cluster is kept whole or not at all"
        );
        assert_eq!(shorten("ab👩‍💻cd", 6), "ab👩‍💻…");
    }
}
