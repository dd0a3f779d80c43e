//! `render`: print one sink's message for an event, or write the HTML
//! preview page of every sink.

use crate::config::Config;
use crate::domain::EventKind;
use crate::preview;
use crate::render::Renderer;

use super::Failure;

/// `--now`: an RFC 3339 time, with an example in the error.
pub(super) fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2024-05-30T14:00:00Z): {e}"))
}

/// The config's templates; a broken template is the user's to fix (exit 2).
fn renderer(config: &Config) -> Result<Renderer, Failure> {
    Renderer::new(config.templates_dir.as_deref(), config.timezone)
        .map_err(|e| Failure::Usage(e.into()))
}

/// What `render --event` shows: one event's message, or a digest.
#[derive(Debug, Clone, Copy)]
pub enum RenderEvent {
    /// The message of one event.
    Event(EventKind),
    /// The sink's digest of three sample entries (`digest`).
    Digest,
}

impl std::str::FromStr for RenderEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "digest" => Ok(RenderEvent::Digest),
            other => other
                .parse()
                .map(RenderEvent::Event)
                .map_err(|e: String| format!("{e}, or digest")),
        }
    }
}

/// `render --event E --sink S`: the message on stdout as the terminal shows
/// it. Without `--now`, now; for `expiring`, 20 hours before the item
/// expires (the sample item is old, and "expires now" shows nothing).
pub(super) fn render_one(
    config: &Config,
    event: Option<RenderEvent>,
    sink: Option<String>,
    item: Option<&std::path::Path>,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), Failure> {
    let usage = |e: preview::PreviewError| Failure::Usage(e.into());
    let (event, sink) = event.zip(sink).ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "render needs --event and --sink (or --html-preview FILE)"
        ))
    })?;
    let sink = preview::sink(config, &sink).map_err(usage)?;
    let (item, days) = preview::load_item(item).map_err(usage)?;
    let now = now.unwrap_or_else(|| match event {
        RenderEvent::Event(EventKind::Expiring) => {
            item.expires_at(days) - chrono::Duration::hours(20)
        }
        _ => chrono::Utc::now(),
    });
    let renderer = renderer(config)?;
    let message = match event {
        RenderEvent::Event(event) => {
            preview::render_message(config, &renderer, sink, event, (&item, days), now)
        }
        RenderEvent::Digest => crate::digest::sample(config, &renderer, sink, (&item, days), now),
    }
    .map_err(|e| Failure::Usage(e.into()))?;
    outln!("{}", preview::format_for_terminal(&message));
    Ok(())
}

/// `render --html-preview FILE`: every sink's rendering in one page.
pub(super) fn render_page(
    config: &Config,
    item: Option<&std::path::Path>,
    now: chrono::DateTime<chrono::Utc>,
    out: &std::path::Path,
) -> Result<(), Failure> {
    let (item, days) = preview::load_item(item).map_err(|e| Failure::Usage(e.into()))?;
    let page = preview::html_page(config, &renderer(config)?, (&item, days), now)
        .map_err(|e| Failure::Usage(e.into()))?;
    std::fs::write(out, page)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write {}: {e}", out.display())))?;
    outln!("wrote {}", out.display());
    Ok(())
}
