//! Routing: which sinks hear about an event (`[[routes]]`, `watch.events`,
//! `enabled`) and who the requester is in the `[recipients]` directory. Pure.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobMatcher};
use lettre::Address;

use crate::address::{domain_allowed, single_address};
use crate::config::{Config, EmailConfig, RecipientConfig, RouteConfig, SinkKind};
use crate::domain::{AccountId, EventKind, ExportItem};
use crate::render::RecipientView;
use crate::sinks::email::rcpt;
use crate::text::shorten;

/// Where a sink sends one event's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A channel sink (webhook, Slack, Teams, console): no per-person address.
    Channel,
    /// A per-person sink: this address (email) or user id (Discord DM).
    Person(String),
    /// Nothing to send it to; the delivery is recorded as `skipped` with this
    /// reason (not a failure, not an alert).
    Skip(String),
    /// An email sink: one delivery per address in `rows` (each its own
    /// `RCPT TO`, see [`crate::sinks::email::rcpt`]), so one refused address
    /// cannot hold back or lose the others. `requester` is shown in every
    /// row's `To` header; `note` says why the requester is not among the rows
    /// (they are the fixed `to`/`cc`/`bcc` only).
    Mail {
        rows: Vec<String>,
        requester: Option<String>,
        note: Option<String>,
    },
}

/// Resolves the per-person target of a sink for an item's requester.
pub fn target(kind: &SinkKind, requested_by: Option<&str>, recipient: &RecipientView) -> Target {
    let who = requested_by.unwrap_or("(no RequestedBy)");
    match kind {
        SinkKind::Email(email) => email_target(email, requested_by, recipient),
        SinkKind::Discord {
            bot_token: Some(_), ..
        } => match &recipient.discord_user_id {
            Some(id) => Target::Person(id.clone()),
            None => Target::Skip(format!("no discord_user_id in [recipients] for {who}")),
        },
        SinkKind::SlackApp(app) => slack_target(app.channel.is_some(), requested_by, recipient),
        SinkKind::Discord {
            bot_token: None, ..
        }
        | SinkKind::Console
        | SinkKind::Webhook { .. }
        | SinkKind::Slack { .. }
        | SinkKind::Teams { .. } => Target::Channel,
    }
}

/// A Slack app's target: the `[recipients]` user id, else the address the
/// sink looks up at send time (the directory's `email` redirect in DM mode;
/// RequestedBy in channel mode, where it replaces the address the message
/// shows). DM mode without an address is skipped; channel mode posts anyway.
fn slack_target(channel: bool, requested_by: Option<&str>, recipient: &RecipientView) -> Target {
    if let Some(id) = &recipient.slack_user_id {
        return Target::Person(id.clone());
    }
    let lookup = if channel {
        requested_by
    } else {
        recipient.email.as_deref()
    };
    match (lookup.map(single_address), channel) {
        (Some(Ok(address)), _) => Target::Person(address.to_string()),
        (_, true) => Target::Channel,
        (None, false) => Target::Skip("the item has no RequestedBy to find in Slack".into()),
        (Some(Err(e)), false) => Target::Skip(format!(
            "{:?} is not one email address to find in Slack: {e}",
            shorten(lookup.unwrap_or_default(), 120)
        )),
    }
}

/// The email sink's target: one row per recipient — the requester as one
/// checked address (or its `[recipients]` redirect) when `requester = true`,
/// then the fixed `to`/`cc`/`bcc`; a requester that cannot be used only
/// skips the delivery when there is nobody else to send it to.
fn email_target(
    email: &EmailConfig,
    requested_by: Option<&str>,
    recipient: &RecipientView,
) -> Target {
    let (requester, note) = if email.requester {
        match requester_address(email, requested_by, recipient) {
            Ok(address) => (Some(address), None),
            Err(reason) if email.has_fixed_recipients() => (None, Some(reason)),
            Err(reason) => return Target::Skip(reason),
        }
    } else {
        (None, None)
    };
    let rows: Vec<String> = rcpt::fan_out(email, requester.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect();
    if rows.is_empty() {
        return Target::Skip(note.unwrap_or_else(|| "no requester and no to, cc or bcc".into()));
    }
    Target::Mail {
        rows,
        requester: requester.map(|a| a.to_string()),
        note,
    }
}

/// The requester's address, or why no mail goes to it: `RequestedBy` must be
/// exactly one address, in `requester_domains` when that is set; a directory
/// redirect must be one address too.
fn requester_address(
    email: &EmailConfig,
    requested_by: Option<&str>,
    recipient: &RecipientView,
) -> Result<Address, String> {
    let raw = requested_by.ok_or("the item has no RequestedBy to send to")?;
    let shown = || format!("{:?}", shorten(raw, 120));
    let requester = single_address(raw)
        .map_err(|e| format!("RequestedBy {} is not one email address: {e}", shown()))?;
    if let Some(domains) = &email.requester_domains {
        if !domain_allowed(&requester, domains) {
            return Err(format!(
                "RequestedBy {requester} is outside requester_domains ({})",
                domains.join(", ")
            ));
        }
    }
    match recipient.email.as_deref() {
        Some(target) if target.trim() != raw.trim() => single_address(target)
            .map_err(|e| format!("the [recipients] email for {requester} is not one address: {e}")),
        _ => Ok(requester),
    }
}

/// Compiled routes plus the enabled sinks, built once per config.
#[derive(Debug, Clone)]
pub struct Router {
    events: BTreeSet<EventKind>,
    enabled_sinks: Vec<String>,
    routes: Vec<CompiledRoute>,
    recipients: BTreeMap<String, RecipientConfig>,
    /// Whose events this router routes (`routes[i].accounts` filters on it).
    account: AccountId,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    events: Option<BTreeSet<EventKind>>,
    requested_by: Option<GlobMatcher>,
    action_name: Option<GlobMatcher>,
    sinks: Vec<String>,
    accounts: Option<BTreeSet<AccountId>>,
}

impl Router {
    /// Compiles the routes of a checked config (globs were validated there).
    pub fn new(config: &Config) -> Router {
        Router {
            events: config.watch.events.clone(),
            enabled_sinks: config
                .sinks
                .values()
                .filter(|s| s.enabled)
                .map(|s| s.name.clone())
                .collect(),
            routes: config.routes.iter().map(compile).collect(),
            recipients: config.recipients.clone(),
            account: AccountId::default_account(),
        }
    }

    /// The same routes for another account's events: a route listing
    /// `accounts` takes only theirs.
    pub fn for_account(mut self, account: &AccountId) -> Router {
        self.account = account.clone();
        self
    }

    /// Whether the event kind is watched at all (`watch.events`).
    pub fn watches(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// The sinks an event goes to: the union of every matching route's sinks,
    /// each once, in config order; with no routes, every enabled sink.
    pub fn sinks_for(&self, kind: EventKind, item: &ExportItem) -> Vec<&str> {
        if !self.watches(kind) {
            return Vec::new();
        }
        if self.routes.is_empty() {
            return self.enabled_sinks.iter().map(String::as_str).collect();
        }
        let mut out: Vec<&str> = Vec::new();
        for route in self
            .routes
            .iter()
            .filter(|r| r.matches(kind, item, &self.account))
        {
            for sink in &route.sinks {
                if self.enabled_sinks.contains(sink) && !out.contains(&sink.as_str()) {
                    out.push(sink);
                }
            }
        }
        out
    }

    /// The `[recipients]` entry for a requester (case-insensitive).
    pub fn recipient(&self, requested_by: Option<&str>) -> Option<&RecipientConfig> {
        let key = requested_by?.trim().to_lowercase();
        self.recipients.get(&key)
    }
}

impl CompiledRoute {
    fn matches(&self, kind: EventKind, item: &ExportItem, account: &AccountId) -> bool {
        if self.accounts.as_ref().is_some_and(|a| !a.contains(account)) {
            return false;
        }
        let event_ok = self.events.as_ref().is_none_or(|e| e.contains(&kind));
        let requester_ok = match (&self.requested_by, &item.requested_by) {
            (None, _) => true,
            (Some(glob), Some(who)) => glob.is_match(who.trim()),
            (Some(_), None) => false,
        };
        let name_ok = self
            .action_name
            .as_ref()
            .is_none_or(|glob| glob.is_match(&item.action_name));
        event_ok && requester_ok && name_ok
    }
}

fn compile(route: &RouteConfig) -> CompiledRoute {
    CompiledRoute {
        events: route.events.clone(),
        requested_by: route.requested_by.as_deref().map(glob),
        action_name: route.action_name.as_deref().map(glob),
        sinks: route.sinks.clone(),
        accounts: route.accounts.clone(),
    }
}

/// Case-insensitive glob where `*` also crosses `/` (names and addresses are
/// not paths). Invalid globs were rejected by config validation.
fn glob(pattern: &str) -> GlobMatcher {
    GlobBuilder::new(pattern)
        .case_insensitive(true)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .unwrap_or_else(|_| {
            globset::Glob::new("!!never-matches!!")
                .expect("literal glob")
                .compile_matcher()
        })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod slack_tests;
