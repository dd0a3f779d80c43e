//! What `outbox list` and `why` print: plain tables for people, JSON for
//! scripts. Pure formatting over what the state file holds.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::{AccountId, AlertCondition, Delivery, ExportId};
use crate::store::ItemHistory;

/// One `outbox list --json` row: exactly the fields the spec names, plus
/// `alert` (the condition) on the bot's own alerts, whose `item_id` is null.
#[derive(Debug, Serialize)]
pub struct OutboxRow<'a> {
    pub id: i64,
    /// The Crayon account whose event this is (`default` for `[crayon]` alone).
    pub account: &'a str,
    pub sink: &'a str,
    pub item_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertCondition>,
    pub event: &'a str,
    pub status: &'a str,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<&'a str>,
    /// Whom a per-person delivery goes to (email: `to:`/`cc:`/`bcc:` and the
    /// address, one row per recipient); absent for channel sinks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<&'a str>,
    /// Where it stands with its digest ("waiting for digest until …",
    /// "sent in digest #N …"; see `crate::digest::note`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl<'a> OutboxRow<'a> {
    /// The row of `account`'s delivery `d`.
    pub fn new(account: &'a AccountId, d: &'a Delivery) -> Self {
        OutboxRow {
            id: d.id.0,
            account: account.as_str(),
            sink: &d.sink,
            item_id: d.subject.item().map(|id| id.0),
            alert: d.subject.alert(),
            event: d.event.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(time),
            last_error: d.last_error.as_deref(),
            recipient: d.recipient.as_deref(),
            digest: None,
        }
    }
}

/// The rows of `deliveries`, each naming its account, with its digest note
/// (`notes` parallel; missing notes are none).
fn noted<'a>(
    deliveries: &'a [(AccountId, Delivery)],
    notes: &[Option<String>],
) -> Vec<OutboxRow<'a>> {
    deliveries
        .iter()
        .enumerate()
        .map(|(i, (a, d))| OutboxRow {
            digest: notes.get(i).cloned().flatten(),
            ..OutboxRow::new(a, d)
        })
        .collect()
}

/// `outbox list --json`: an array of rows, each naming its account (with
/// their digest notes).
pub fn outbox_json(deliveries: &[(AccountId, Delivery)], notes: &[Option<String>]) -> String {
    let rows = noted(deliveries, notes);
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
}

/// `outbox list`: one aligned row per delivery under a header; unless all
/// rows are the `default` account's (`[crayon]` alone), each row starts
/// with its account (of several, or a named one, or one that left the
/// config); a digest note comes before the last error.
pub fn outbox_table(deliveries: &[(AccountId, Delivery)], notes: &[Option<String>]) -> String {
    let default = AccountId::default_account();
    let several = deliveries.iter().any(|(a, _)| *a != default);
    let account = |name: &str| {
        if several {
            format!("{name:<14} ")
        } else {
            String::new()
        }
    };
    let mut out = account("ACCOUNT");
    out += &format!(
        "{:>6}  {:<14} {:>8}  {:<12} {:<8} {:>8}  {:<20}  {:<28}  {}\n",
        "ID",
        "SINK",
        "ITEM",
        "EVENT",
        "STATUS",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "RECIPIENT",
        "NOTE / LAST ERROR"
    );
    for ((_, d), row) in deliveries.iter().zip(noted(deliveries, notes)) {
        let subject = d.subject.to_string();
        out.push_str(&account(row.account));
        let last = match (&row.digest, row.last_error) {
            (Some(note), Some(error)) => format!("{note}; {error}"),
            (Some(note), None) => note.clone(),
            (None, error) => error.unwrap_or("-").to_string(),
        };
        out.push_str(&format!(
            "{:>6}  {:<14} {:>8}  {:<12} {:<8} {:>8}  {:<20}  {:<28}  {}\n",
            row.id,
            row.sink,
            subject,
            row.event,
            row.status,
            row.attempts,
            row.next_attempt_at.unwrap_or_else(|| "-".into()),
            row.recipient.unwrap_or("-"),
            last,
        ));
    }
    out
}

/// `why ITEM_ID`: the item's stored state, the events fired for it, and each
/// delivery with its attempts and digest note (`notes` parallel to the
/// deliveries); `waiting` says what a pending delivery waits for, when the
/// config knows (e.g. "quiet hours until …").
pub fn why(
    id: ExportId,
    history: &ItemHistory,
    notes: &[Option<String>],
    waiting: &dyn Fn(&Delivery) -> Option<String>,
) -> String {
    let mut out = format!("item {id}\n");
    match &history.item {
        Some(item) => out.push_str(&format!(
            "  stored: status {} ({}), downloadable {}, attempts {}, requested by {}, created {}\n  name: {}\n",
            item.status.raw(),
            item.status.name(),
            item.downloadable,
            item.attempts,
            item.requested_by.as_deref().unwrap_or("(none)"),
            time(item.created_date),
            item.action_name,
        )),
        None => out.push_str("  stored: not in the last stored snapshot\n"),
    }
    if history.fired.is_empty() {
        out.push_str("  events: none fired\n");
    }
    for (event, at) in &history.fired {
        out.push_str(&format!("  event {event} fired at {}\n", time(*at)));
    }
    for (i, (d, attempts)) in history.deliveries.iter().enumerate() {
        let note = notes.get(i).cloned().flatten();
        out.push_str(&format!(
            "  delivery {} to {} ({}){}: {}{}, {} attempt{}{}\n",
            d.id,
            d.sink,
            d.event,
            d.recipient
                .as_deref()
                .map(|r| format!(" for {r}"))
                .unwrap_or_default(),
            d.status.as_str(),
            note.map(|n| format!(" ({n})")).unwrap_or_default(),
            d.attempts,
            if d.attempts == 1 { "" } else { "s" },
            d.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
        if let Some(note) = waiting(d) {
            out.push_str(&format!("    waiting: {note}\n"));
        }
        for a in attempts {
            out.push_str(&format!(
                "    {} {} after {} ms{}\n",
                time(a.at),
                a.outcome,
                a.latency_ms,
                a.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
