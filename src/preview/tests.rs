//! The preview page and terminal rendering.

use super::*;

#[test]
fn the_sample_item_is_the_newest_of_the_fixture() {
    let (item, days) = load_item(None).unwrap();
    assert_eq!(item.id.0, 2439);
    assert_eq!(days, 7);
}

#[test]
fn email_messages_print_subject_text_and_html() {
    let mut message = RenderedMessage::default();
    for (k, v) in [
        ("subject", "Ready"),
        ("text", "plain\n"),
        ("html", "<p>x</p>"),
    ] {
        message.parts.insert(k.into(), v.into());
    }
    assert_eq!(
        format_for_terminal(&message),
        "Subject: Ready\n\nplain\n--- html ---\n<p>x</p>"
    );
}

#[test]
fn the_page_escapes_what_it_shows() {
    assert_eq!(esc("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
    let slack = serde_json::json!({"blocks": [{"type": "header", "text": {"text": "<b>"}}]});
    assert_eq!(slack_body(&slack), "<div class=\"hdr\">&lt;b&gt;</div>");
}

#[test]
fn wire_escapes_are_shown_as_the_platform_shows_them() {
    assert_eq!(
        slack_shown("a &amp;lt; &lt;b&gt; &amp; c"),
        "a &lt; <b> & c"
    );
    assert_eq!(
        discord_shown(r"License\-based Report\@2015 \\ a\b"),
        r"License-based Report@2015 \ a\b"
    );
}
