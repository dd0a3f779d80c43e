//! Small text helpers shared by sinks and messages.

/// Shortens `text` to at most `max` characters, ending with `…` when cut.
/// Cuts at a character boundary, never inside a UTF-8 sequence.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
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
    }
}
