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
        }
    }
}

/// `outbox list --json`: an array of rows, each naming its account.
pub fn outbox_json(deliveries: &[(AccountId, Delivery)]) -> String {
    let rows: Vec<OutboxRow<'_>> = deliveries
        .iter()
        .map(|(a, d)| OutboxRow::new(a, d))
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
}

/// `outbox list`: one aligned row per delivery under a header; with rows
/// of several accounts, each row starts with its account.
pub fn outbox_table(deliveries: &[(AccountId, Delivery)]) -> String {
    let several = deliveries.iter().any(|(a, _)| *a != deliveries[0].0);
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
        "LAST ERROR"
    );
    for (a, d) in deliveries {
        let subject = d.subject.to_string();
        let row = OutboxRow::new(a, d);
        out.push_str(&account(row.account));
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
            row.last_error.unwrap_or("-"),
        ));
    }
    out
}

/// `why ITEM_ID`: the item's stored state, the events fired for it, and each
/// delivery with its attempts.
pub fn why(id: ExportId, history: &ItemHistory) -> String {
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
    for (d, attempts) in &history.deliveries {
        out.push_str(&format!(
            "  delivery {} to {} ({}){}: {}, {} attempt{}{}\n",
            d.id,
            d.sink,
            d.event,
            d.recipient
                .as_deref()
                .map(|r| format!(" for {r}"))
                .unwrap_or_default(),
            d.status.as_str(),
            d.attempts,
            if d.attempts == 1 { "" } else { "s" },
            d.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
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
