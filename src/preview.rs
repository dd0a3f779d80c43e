//! `render` and `render --html-preview`: exactly what a sink would send for an
//! event, and one HTML page that shows every sink's message the way people
//! will see it, so templates can be checked by looking rather than reading
//! JSON. Pure apart from reading the optional item file.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{Config, SinkConfig, SinkKind};
use crate::domain::{
    EventKind, ExportItem, RemovedReason, RenderedMessage, Snapshot, StoredContext, SAMPLE_QUEUE,
};
use crate::render::{AlertView, MessageInput, RecipientView, RenderError, Renderer};
use crate::route::Router;

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("cannot read item file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("item file {path} is not one export queue item (or a queue answer) in the API's shape: {reason}")]
    Item {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("no sink named {0:?} in the config")]
    NoSink(String),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// The item a preview is rendered for: from `file` (one item, or a whole
/// queue answer whose first item is used), else the built-in sample.
pub fn load_item(file: Option<&Path>) -> Result<(ExportItem, u32), PreviewError> {
    let Some(path) = file else {
        let (snapshot, _) = Snapshot::parse(SAMPLE_QUEUE).expect("the built-in sample parses");
        let item = newest(&snapshot).expect("sample has items");
        return Ok((item, snapshot.nr_of_days));
    };
    let bytes = std::fs::read(path).map_err(|source| PreviewError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| PreviewError::Item {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok((snapshot, _)) = Snapshot::parse(&bytes) {
        return newest(&snapshot)
            .map(|i| (i, snapshot.nr_of_days))
            .ok_or_else(|| bad("the queue answer has no items".into()));
    }
    let item: ExportItem = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok((item, 7))
}

/// The item a queue answer is previewed with, for the built-in sample and a
/// `--item` file alike: the one with the highest Id (the latest request).
fn newest(snapshot: &Snapshot) -> Option<ExportItem> {
    snapshot.items.values().next_back().cloned()
}

/// Renders one sink's message for one event (`alert`: the sample alert
/// `check` renders, since an alert is about the bot, not an item).
pub fn render_message(
    config: &Config,
    renderer: &Renderer,
    sink: &SinkConfig,
    event: EventKind,
    (item, nr_of_days): (&ExportItem, u32),
    now: DateTime<Utc>,
) -> Result<RenderedMessage, RenderError> {
    if event == EventKind::Alert {
        let alert = AlertView::sample(now);
        return renderer.render_alert(sink, &alert, config.portal.as_str(), now);
    }
    let router = Router::new(config);
    let requested_by = item.requested_by.as_deref();
    let input = MessageInput {
        event,
        reason: (event == EventKind::Removed).then_some(RemovedReason::Vanished),
        item,
        previous: None,
        nr_of_days,
        recipient: RecipientView::new(requested_by, router.recipient(requested_by)),
        portal: config.portal.as_str(),
        now,
        account: Default::default(),
    };
    let message = renderer.render(sink, &input)?;
    with_placeholder_file(renderer, sink, event, item, message)
}

/// For a sink with `attach = true`, the `downloadable` message rendered
/// again as it goes at send time with a file: a placeholder name and size
/// (the real file is only downloaded when the message is sent).
fn with_placeholder_file(
    renderer: &Renderer,
    sink: &SinkConfig,
    event: EventKind,
    item: &ExportItem,
    message: RenderedMessage,
) -> Result<RenderedMessage, RenderError> {
    let (Some(_), EventKind::Downloadable, Some(mut context)) = (
        sink.attach,
        event,
        message.context.as_ref().map(StoredContext::value),
    ) else {
        return Ok(message);
    };
    let file = crate::attach::AttachmentView::placeholder(&item.action_name);
    context["attachment"] = serde_json::to_value(file).unwrap_or_default();
    renderer.rerender(event, sink, context)
}

/// The preview card's note of the file a message would carry.
fn file_note(message: &RenderedMessage) -> String {
    let context = message.context.as_ref().map(StoredContext::value);
    let file = context.as_ref().map(|c| &c["attachment"]);
    match file.and_then(|f| Some((f["name"].as_str()?, f["size_text"].as_str()?))) {
        Some((name, size)) => format!(
            "<div class=\"ctx\">&#128206; would attach {} ({}, placeholder)</div>",
            esc(name),
            esc(size)
        ),
        None => String::new(),
    }
}

/// What `render` prints: pretty JSON for JSON sinks; for email `Subject: …`,
/// a blank line, the text part, `--- html ---` and the HTML part; the text
/// for the console.
pub fn format_for_terminal(message: &RenderedMessage) -> String {
    if let Some(json) = message.parts.get("json") {
        return serde_json::from_str::<Value>(json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| json.clone());
    }
    if message.parts.contains_key("subject") {
        return format!(
            "Subject: {}\n\n{}\n--- html ---\n{}",
            message.part("subject").trim(),
            message.part("text").trim_end(),
            message.part("html").trim_end()
        );
    }
    message.part("text").trim_end().to_string()
}

/// Looks up a sink by name.
pub fn sink<'a>(config: &'a Config, name: &str) -> Result<&'a SinkConfig, PreviewError> {
    config
        .sinks
        .get(name)
        .ok_or_else(|| PreviewError::NoSink(name.to_string()))
}

/// One self-contained HTML page (inline CSS, no scripts) showing every
/// enabled sink's `downloadable` and `failed` message side by side.
pub fn html_page(
    config: &Config,
    renderer: &Renderer,
    item: (&ExportItem, u32),
    now: DateTime<Utc>,
) -> Result<String, RenderError> {
    let mut cards = String::new();
    for event in [EventKind::Downloadable, EventKind::Failed] {
        cards.push_str(&format!(
            "<h2>{}</h2><div class=\"row\">",
            esc(event.as_str())
        ));
        for sink in config.sinks.values().filter(|s| s.enabled) {
            let message = render_message(config, renderer, sink, event, item, now)?;
            cards.push_str(&card(sink, &message));
        }
        cards.push_str("</div>");
    }
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>crayon-export-bot preview</title>\
         <style>{CSS}</style></head><body><h1>crayon-export-bot: message preview</h1>\
         <p class=\"meta\">item #{} · {} · rendered {}</p>{cards}</body></html>\n",
        item.0.id,
        esc(&crate::render::clean(&item.0.action_name)),
        now.to_rfc3339()
    ))
}

const CSS: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;background:#f4f5f7;margin:24px;color:#1d1c1d}\
h1{font-size:22px}h2{font-size:16px;text-transform:uppercase;color:#555;margin-top:28px}.meta{color:#666}\
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}\
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15);width:380px;padding:14px;overflow:hidden}\
.card h3{margin:0 0 10px;font-size:13px;color:#fff;padding:6px 10px;border-radius:4px;display:inline-block}\
.slack h3{background:#4a154b}.teams h3{background:#5b5fc7}.discord h3{background:#5865f2}.email h3{background:#0b7a75}\
.webhook h3{background:#444}.console h3{background:#222}\
.hdr{font-weight:700;font-size:16px;margin:6px 0}.ctx{color:#616061;font-size:12px}\
.btn{display:inline-block;background:#007a5a;color:#fff;padding:6px 12px;border-radius:4px;text-decoration:none;margin-top:8px;font-size:13px}\
.facts td{padding:2px 8px 2px 0;font-size:13px;vertical-align:top}.facts td:first-child{font-weight:600}\
.embed{border-left:4px solid #5865f2;background:#f2f3f5;padding:8px 10px;border-radius:4px;margin-top:6px}\
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f6f8fa;padding:8px;border-radius:4px}\
iframe{width:100%;height:420px;border:1px solid #ddd;border-radius:4px;background:#fff}";

fn card(sink: &SinkConfig, message: &RenderedMessage) -> String {
    let kind = sink.kind.name();
    let json = || serde_json::from_str::<Value>(message.part("json")).unwrap_or(Value::Null);
    let body = match &sink.kind {
        SinkKind::Email(_) => email_body(message),
        SinkKind::Console => format!("<pre>{}</pre>", esc(message.part("text"))),
        SinkKind::Slack { .. } => slack_body(&json()),
        SinkKind::SlackApp(app) => slack_app_body(app.channel.as_deref(), &json()),
        SinkKind::Teams { .. } => teams_body(&json()),
        SinkKind::Discord { .. } => discord_body(&json()),
        SinkKind::Webhook { .. } => format!("<pre>{}</pre>", esc(&format_for_terminal(message))),
    };
    format!(
        "<div class=\"card {kind}\"><h3>{} · {kind}</h3>{body}{}</div>",
        esc(&sink.name),
        file_note(message)
    )
}

fn email_body(message: &RenderedMessage) -> String {
    format!(
        "<div class=\"hdr\">{}</div><iframe sandbox srcdoc=\"{}\"></iframe>",
        esc(message.part("subject")),
        esc(message.part("html"))
    )
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("text").map(text_of).unwrap_or_default(),
        _ => String::new(),
    }
}

/// A Slack app's message, with where it goes: the requester's DM, or the
/// channel where the requester is mentioned when Slack knows them.
fn slack_app_body(channel: Option<&str>, json: &Value) -> String {
    let place = match channel {
        None => "sent as a DM to the requester (looked up by address)".to_string(),
        Some(c) => format!("posted in channel {c}; the requester is mentioned as @name when found"),
    };
    format!(
        "<div class=\"ctx\">{}</div>{}",
        esc(&place),
        slack_body(json)
    )
}

fn slack_body(json: &Value) -> String {
    let mut out = String::new();
    for block in json["blocks"].as_array().into_iter().flatten() {
        out.push_str(&match block["type"].as_str().unwrap_or("") {
            "header" => format!(
                "<div class=\"hdr\">{}</div>",
                esc(&slack_shown(&text_of(&block["text"])))
            ),
            "section" => {
                let mut s = format!("<p>{}</p>", esc(&slack_shown(&text_of(&block["text"]))));
                for f in block["fields"].as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "<div class=\"ctx\">{}</div>",
                        esc(&slack_shown(&text_of(f)))
                    ));
                }
                s
            }
            "context" => block["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "<div class=\"ctx\">{}</div>",
                        esc(&slack_shown(&text_of(e)))
                    )
                })
                .collect(),
            "actions" => buttons(&block["elements"], |e| {
                (slack_shown(&text_of(&e["text"])), e["url"].clone())
            }),
            "divider" => "<hr>".into(),
            _ => String::new(),
        });
    }
    if out.is_empty() {
        out = format!("<p>{}</p>", esc(&slack_shown(&text_of(&json["text"]))));
    }
    out
}

fn teams_body(json: &Value) -> String {
    let card = &json["attachments"][0]["content"];
    let mut out = String::new();
    for element in card["body"].as_array().into_iter().flatten() {
        match element["type"].as_str().unwrap_or("") {
            "TextBlock" => out.push_str(&format!("<p>{}</p>", esc(&text_of(&element["text"])))),
            "RichTextBlock" => {
                let runs: String = element["inlines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|run| text_of(&run["text"]))
                    .collect();
                out.push_str(&format!("<p>{}</p>", esc(&runs)));
            }
            "FactSet" => {
                out.push_str("<table class=\"facts\">");
                for fact in element["facts"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td></tr>",
                        esc(&text_of(&fact["title"])),
                        esc(&text_of(&fact["value"]))
                    ));
                }
                out.push_str("</table>");
            }
            _ => {}
        }
    }
    out + &buttons(&card["actions"], |a| {
        (text_of(&a["title"]), a["url"].clone())
    })
}

fn discord_body(json: &Value) -> String {
    let mut out = format!("<p>{}</p>", esc(&discord_shown(&text_of(&json["content"]))));
    for embed in json["embeds"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "<div class=\"embed\"><div class=\"hdr\">{}</div><p>{}</p>",
            esc(&discord_shown(&text_of(&embed["title"]))),
            esc(&discord_shown(&text_of(&embed["description"])))
        ));
        for f in embed["fields"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "<div class=\"ctx\"><b>{}</b> {}</div>",
                esc(&discord_shown(&text_of(&f["name"]))),
                esc(&discord_shown(&text_of(&f["value"])))
            ));
        }
        out.push_str("</div>");
    }
    out
}

fn buttons(list: &Value, label: impl Fn(&Value) -> (String, Value)) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|element| {
            let (text, url) = label(element);
            format!(
                "<a class=\"btn\" href=\"{}\">{}</a> ",
                esc(url.as_str().unwrap_or("#")),
                esc(&text)
            )
        })
        .collect()
}

/// Slack text as Slack shows it: `&amp;`, `&lt;` and `&gt;` decoded (the
/// preview shows the message, not its wire escapes).
fn slack_shown(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Discord text as Discord shows it: a backslash-escaped character is shown
/// as itself (`\-` is `-`, `\\` is `\`).
fn discord_shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next)) if next.is_ascii_punctuation() => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// HTML-escapes text for the preview page (attribute-safe: quotes too).
fn esc(text: &str) -> String {
    crate::render::slack_escape(text)
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests;
