//! The filters the spec promises templates: `json`, `slack_escape`,
//! `discord_escape` and `date` (in `display.timezone`); the escapes take an
//! optional `max` (characters after escaping), and `shorten(max=N)` cuts
//! plain text, both between grapheme clusters.

use tera::{Kwargs, State, Tera, TeraResult};

/// Registers every filter on `tera`; `date` defaults to `timezone`.
pub fn register_filters(tera: &mut Tera, timezone: chrono_tz::Tz) {
    tera.register_filter(
        "json",
        |v: &tera::Value, _: Kwargs, _: &State| -> TeraResult<String> {
            serde_json::to_string(v).map_err(|e| tera::Error::message(format!("json filter: {e}")))
        },
    );
    tera.register_filter(
        "slack_escape",
        |s: &str, kwargs: Kwargs, _: &State| -> TeraResult<String> {
            Ok(fit_escaped(s, kwargs.get("max")?, slack_escape))
        },
    );
    tera.register_filter(
        "discord_escape",
        |s: &str, kwargs: Kwargs, _: &State| -> TeraResult<String> {
            Ok(fit_escaped(s, kwargs.get("max")?, discord_escape))
        },
    );
    tera.register_filter(
        "shorten",
        |s: &str, kwargs: Kwargs, _: &State| -> TeraResult<String> {
            Ok(crate::text::shorten(s, kwargs.must_get("max")?))
        },
    );
    tera.register_filter("date", super::date::filter(timezone));
    tera.register_filter("time_left", super::time_left::filter(timezone));
}

/// `escape(text)` in at most `max` characters (all of it without `max`):
/// the text is cut between grapheme clusters *before* escaping, so the cut is
/// never inside an escape (`&amp;`, `\*`) or a character people see as one,
/// and ends with `…`. Templates give each item text a budget that leaves room
/// for their own sentences, so the platform's limit never cuts those.
pub fn fit_escaped(text: &str, max: Option<usize>, escape: fn(&str) -> String) -> String {
    let full = escape(text);
    let Some(max) = max else { return full };
    if full.chars().count() <= max {
        return full;
    }
    let cost = |g: &str| escape(g).chars().count();
    let mut out = escape(&crate::text::keep_graphemes(
        text,
        max.saturating_sub(1),
        cost,
    ));
    out.push('…');
    out
}

/// Escapes the three characters Slack's mrkdwn treats as control (`& < >`),
/// so item text can neither ping `<!channel>` nor forge a link.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Backslash-escapes Discord markdown, so item text shows as typed: an
/// ActionName like `[Download](https://evil.example)` cannot become a masked
/// link, `https://…` is not auto-linked (the `:` is escaped), `<@id>` or
/// `<#channel>` do not render as mentions, and `**`, `||`, `# ` or code
/// fences do not restyle the message. Discord shows `\*` as `*`.
pub fn discord_escape(text: &str) -> String {
    const SPECIAL: &[char] = &[
        '\\', '*', '_', '~', '`', '|', '>', '<', '[', ']', '(', ')', '#', '-', ':', '@',
    ];
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_fits_its_budget_without_a_broken_escape_or_cluster() {
        let name = "a&b<c>d👩\u{200D}💻e".repeat(50);
        for max in 1..120 {
            for (escape, partial) in [
                (slack_escape as fn(&str) -> String, "&"),
                (discord_escape as fn(&str) -> String, "\\"),
            ] {
                let out = fit_escaped(&name, Some(max), escape);
                assert!(out.chars().count() <= max, "{max}: {out}");
                assert!(out.ends_with('…'), "{max}: {out}");
                let kept = out.trim_end_matches('…');
                assert_eq!(escape(&unescape(kept)), kept, "{max}: {out}");
                assert!(!kept.ends_with(partial) || kept.is_empty(), "{out}");
                assert_eq!(
                    kept.matches('👩').count(),
                    kept.matches("👩\u{200D}💻").count()
                );
            }
        }
        assert_eq!(fit_escaped("a&b", None, slack_escape), "a&amp;b");
        assert_eq!(fit_escaped("a&b", Some(7), slack_escape), "a&amp;b");
        assert_eq!(fit_escaped("a&b", Some(6), slack_escape), "a…");
    }

    /// Undoes either escape (test helper: the kept text must be whole escapes).
    fn unescape(text: &str) -> String {
        let text = text
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' {
                chars.next().unwrap_or(c)
            } else {
                c
            });
        }
        out
    }
}
