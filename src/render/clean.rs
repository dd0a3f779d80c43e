//! Item text is cleaned once, where the template input is built: the queue is
//! written by people (and by whoever can request an export), so a name could
//! carry control characters (NUL, BEL, ESC sequences that repaint a console,
//! CR that rewrites a line) or bidirectional overrides (U+202E makes
//! `gnp.exe` display as `exe.png`). Every sink and the console then see text
//! that displays as what it is.

/// `text` without control characters and bidirectional embedding, override
/// and isolate characters (U+202A–202E, U+2066–2069), trimmed.
pub fn clean(text: &str) -> String {
    let kept: String = text.chars().filter(|c| !is_hostile(*c)).collect();
    kept.trim().to_string()
}

/// True for a character that changes how other text displays rather than
/// being displayed: C0/C1 controls (newlines included) and the bidi
/// embeddings, overrides and isolates.
pub fn is_hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_dropped_and_the_rest_kept() {
        assert_eq!(clean("Report\u{202E}gnp.exe"), "Reportgnp.exe");
        assert_eq!(
            clean(" a\u{0}b\u{7}c\u{1b}[31md\re\nf\u{85}g "),
            "abc[31mdefg"
        );
        assert_eq!(clean("\u{2066}x\u{2069}\u{202A}y\u{202C}"), "xy");
        assert_eq!(clean("Fabrikam & Co 👩‍💻 é"), "Fabrikam & Co 👩‍💻 é");
        assert_eq!(clean("\u{202E}\n "), "");
    }
}
