//! Digests (`digest = "15m"` per sink, issue #17): a sink's messages for one
//! recipient wait until D after the first of them, then go as one message.
//! This module is the pure part — which window a delivery belongs to, when
//! that window is sent, and the template context of the one message — so
//! the rules are unit-tested without a store, a clock or a sink. The store
//! keeps the windows (`Store::gather_digest`), the dispatcher sends them
//! (`app::dispatch::digest`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::config::{Config, SinkConfig, SinkKind};
use crate::domain::{
    Delivery, DeliveryStatus, EventKind, ExportId, ExportItem, RenderedMessage, StoredContext,
    Subject,
};
use crate::render::{Fit, RenderError, Renderer};
use crate::store::DigestMembership;

/// The longest digest window a config may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Which deliveries are gathered into one message: one sink's, for one
/// person (per-person sinks) or all of them (channel sinks).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    /// The sink's name.
    pub sink: String,
    /// The person (the outbox row's `recipient`) for a per-person sink;
    /// `None` for a channel sink, whose window holds every recipient.
    pub recipient: Option<String>,
}

/// True when `kind` sends each message to one person, so a digest is per
/// person: email (one outbox row per address already), a Slack app in DM
/// mode, Discord in DM mode. Everything else posts to a channel.
pub fn per_person(kind: &SinkKind) -> bool {
    match kind {
        SinkKind::Email(_) => true,
        SinkKind::SlackApp(app) => app.channel.is_none(),
        SinkKind::Discord { bot_token, .. } => bot_token.is_some(),
        SinkKind::Console
        | SinkKind::Webhook { .. }
        | SinkKind::Slack { .. }
        | SinkKind::Teams { .. } => false,
    }
}

/// The window a delivery of `sink` (of kind `kind`) to `recipient` joins.
pub fn window_key(kind: &SinkKind, sink: &str, recipient: Option<&str>) -> WindowKey {
    WindowKey {
        sink: sink.to_string(),
        recipient: recipient.filter(|_| per_person(kind)).map(str::to_string),
    }
}

/// When a window whose first member arrived at `first` is sent: D after
/// it (saturating at the end of time rather than wrapping).
pub fn window_end(first: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|d| first.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What to do with a window at `now`: wait until it ends, or send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Still gathering: every member waits until then.
    WaitUntil(DateTime<Utc>),
    /// D has passed since the first member: send what was gathered.
    Due,
}

/// The window's timing at `now` for its first member's arrival `first`.
pub fn timing(first: DateTime<Utc>, window: Duration, now: DateTime<Utc>) -> Timing {
    let end = window_end(first, window);
    if now < end {
        Timing::WaitUntil(end)
    } else {
        Timing::Due
    }
}

/// How a gathered window is sent: a window of one sends the ordinary
/// message (the contract: "a window that holds one event sends the
/// ordinary message"); more members make a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Ordinary,
    Digest,
}

/// The shape of a window of `members` deliveries.
pub fn shape(members: usize) -> Shape {
    if members <= 1 {
        Shape::Ordinary
    } else {
        Shape::Digest
    }
}

/// One digest entry from a member's stored template context: what the
/// member's own message told (`event`, `event_reason`, `item`, `previous`).
pub fn entry(context: &Json) -> Json {
    let field = |name: &str| context.get(name).cloned().unwrap_or(Json::Null);
    json!({
        "event": field("event"),
        "event_reason": field("event_reason"),
        "item": field("item"),
        "previous": field("previous"),
    })
}

/// The digest's template context from its members' stored contexts, in
/// order: the first `shown` as `entries`, how many are left out as `more`
/// (the "…and N more" line), `total`, and the first member's `recipient`,
/// `sink`, `links` and `bot`; `now` is the send time (RFC 3339).
pub fn context(members: &[Json], shown: usize, now: DateTime<Utc>) -> Json {
    let shown = shown.min(members.len());
    let first = members.first().cloned().unwrap_or(Json::Null);
    let field = |name: &str| first.get(name).cloned().unwrap_or(Json::Null);
    let entries: Vec<Json> = members[..shown].iter().map(entry).collect();
    json!({
        "entries": entries,
        "more": members.len() - shown,
        "total": members.len(),
        "recipient": field("recipient"),
        "sink": field("sink"),
        "links": field("links"),
        "bot": field("bot"),
        "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// The most entries (at least 1, at most `total`) for which `fits` holds,
/// by bisection (`fits` is monotone: fewer entries never make a message
/// longer), and whether that is all of them. `fits(1)` failing still gives
/// 1: the platform's own cut then shortens that one entry.
pub fn most_that_fit<E>(
    total: usize,
    mut fits: impl FnMut(usize) -> Result<bool, E>,
) -> Result<usize, E> {
    if total == 0 || fits(total)? {
        return Ok(total);
    }
    let (mut good, mut bad) = (1, total);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if fits(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

/// A member's stored template context, or (a row written before contexts
/// were stored) what the row itself tells: its event and item id.
pub fn member_context(member: &Delivery) -> Json {
    member
        .message
        .context
        .as_ref()
        .map(StoredContext::value)
        .unwrap_or_else(|| {
            let id = match member.subject {
                Subject::Item(id) => json!(id.0),
                Subject::Alert { .. } => Json::Null,
            };
            json!({ "event": member.event.as_str(), "item": { "id": id } })
        })
}

/// The digest message of its members' contexts (oldest first; see
/// [`member_context`]) for `sink` at `now`: as many entries as fit the
/// platform's size budget (the kind's `fit` would cut nothing), the rest
/// counted in "…and N more"; the kind's cut still applies to the result,
/// so it is never over the budget.
pub fn render(
    renderer: &Renderer,
    sink: &SinkConfig,
    contexts: &[Json],
    now: DateTime<Utc>,
) -> Result<RenderedMessage, RenderError> {
    let budget = sink.kind.fit();
    let shown = most_that_fit(contexts.len(), |n| {
        let full = renderer.render_digest(sink, context(contexts, n, now), measure)?;
        Ok(!over_budget(&full, budget))
    })?;
    renderer.render_digest(sink, context(contexts, shown, now), budget)
}

/// A digest of three sample entries — `item` ready, then two more ids
/// failed and removed — as `sink` renders it: what `check` renders, so a
/// broken `digest.*` template shows before the first digest is due.
pub fn sample(
    config: &Config,
    renderer: &Renderer,
    sink: &SinkConfig,
    (item, nr_of_days): (&ExportItem, u32),
    now: DateTime<Utc>,
) -> Result<RenderedMessage, RenderError> {
    let events = [
        EventKind::Downloadable,
        EventKind::Failed,
        EventKind::Removed,
    ];
    let mut contexts = Vec::new();
    for (offset, event) in (0..).zip(events) {
        let mut entry = item.clone();
        entry.id = ExportId(item.id.0 + offset);
        let message = crate::preview::render_message(
            config,
            renderer,
            sink,
            event,
            (&entry, nr_of_days),
            now,
        )?;
        contexts.push(message.context.map(|c| c.value()).unwrap_or_default());
    }
    render(renderer, sink, &contexts, now)
}

/// Renders without cutting anything, to measure against the budget.
fn measure(_: &mut Json) -> bool {
    false
}

/// True when the kind's budget would have to cut the message's JSON part.
fn over_budget(message: &RenderedMessage, budget: Fit) -> bool {
    message
        .parts
        .get("json")
        .and_then(|text| serde_json::from_str::<Json>(text).ok())
        .is_some_and(|mut payload| budget(&mut payload))
}

/// What `outbox list` and `why` say about a delivery's digest, if
/// anything: "waiting for digest until <time>" while its window gathers
/// (`gathering`: its sink has a digest), "in digest #N, next attempt at
/// <time>" while a claimed digest waits, "sent in digest #N" (or dead,
/// skipped) after. A window of one went as the ordinary message: nothing.
pub fn note(
    delivery: &Delivery,
    membership: Option<&DigestMembership>,
    gathering: bool,
) -> Option<String> {
    let at = |t: Option<DateTime<Utc>>| {
        t.map_or("-".into(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    match (membership, delivery.status) {
        (Some(m), _) if m.members <= 1 => None,
        (Some(m), DeliveryStatus::Pending) => Some(format!(
            "in digest #{} ({} deliveries), next attempt at {}",
            m.digest,
            m.members,
            at(m.next_attempt_at)
        )),
        (Some(m), status) => Some(format!(
            "{} in digest #{} ({} deliveries)",
            status.as_str(),
            m.digest,
            m.members
        )),
        (None, DeliveryStatus::Pending) if gathering && delivery.attempts == 0 => Some(format!(
            "waiting for digest until {}",
            at(delivery.next_attempt_at)
        )),
        (None, _) => None,
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
