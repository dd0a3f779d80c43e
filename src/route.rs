//! Routing: which sinks hear about an event (`[[routes]]`, `watch.events`,
//! `enabled`) and who the requester is in the `[recipients]` directory. Pure.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobMatcher};
use lettre::Address;

use crate::address::{domain_allowed, single_address};
use crate::config::{Config, EmailConfig, RecipientConfig, RouteConfig, SinkKind};
use crate::domain::{EventKind, ExportItem};
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
        SinkKind::Discord {
            bot_token: None, ..
        }
        | SinkKind::Console
        | SinkKind::Webhook { .. }
        | SinkKind::Slack { .. }
        | SinkKind::Teams { .. } => Target::Channel,
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
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    events: Option<BTreeSet<EventKind>>,
    requested_by: Option<GlobMatcher>,
    action_name: Option<GlobMatcher>,
    sinks: Vec<String>,
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
        }
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
        for route in self.routes.iter().filter(|r| r.matches(kind, item)) {
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
    fn matches(&self, kind: EventKind, item: &ExportItem) -> bool {
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
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_from_str;
    use crate::domain::{ExportId, ExportStatus};

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[crayon]
base_url = "https://api.crayon.com/"
client_id = "id"
client_secret = "s"
username = "u"
password = "p"
[sinks.mail]
kind = "console"
[sinks.team_slack]
kind = "console"
[sinks.audit]
kind = "console"
{extra}
"#
        );
        load_from_str(&text, Path::new("bot.toml"), &|_| None, vec![]).unwrap()
    }

    fn item(name: &str, who: Option<&str>) -> ExportItem {
        ExportItem {
            id: ExportId(1),
            status: ExportStatus::Processed,
            action_url: String::new(),
            downloadable: true,
            attempts: 1,
            action_name: name.into(),
            requested_by: who.map(str::to_string),
            created_date: chrono::Utc::now(),
        }
    }

    #[test]
    fn no_routes_means_every_enabled_sink() {
        let mut config = config("");
        config.sinks.get_mut("audit").unwrap().enabled = false;
        let router = Router::new(&config);
        let sinks = router.sinks_for(EventKind::Downloadable, &item("x", None));
        assert_eq!(sinks, ["mail", "team_slack"]);
    }

    #[test]
    fn unwatched_events_go_nowhere() {
        let router = Router::new(&config(""));
        assert!(router
            .sinks_for(EventKind::Queued, &item("x", None))
            .is_empty());
    }

    #[test]
    fn matching_routes_union_their_sinks_once() {
        let router = Router::new(&config(
            r#"
[[routes]]
requested_by = "*@EXAMPLE.com"
action_name = "*License*"
sinks = ["mail", "team_slack"]
[[routes]]
events = ["downloadable"]
sinks = ["team_slack", "audit"]
[[routes]]
events = ["failed"]
sinks = ["mail"]
"#,
        ));
        let licence = item("New Commerce License-based Report", Some("Ann@Example.com"));
        assert_eq!(
            router.sinks_for(EventKind::Downloadable, &licence),
            ["mail", "team_slack", "audit"]
        );
        let other = item("Invoice export", Some("ann@example.com"));
        assert_eq!(
            router.sinks_for(EventKind::Downloadable, &other),
            ["team_slack", "audit"]
        );
        assert_eq!(router.sinks_for(EventKind::Failed, &other), ["mail"]);
        let nobody = item("New Commerce License-based Report", None);
        assert_eq!(router.sinks_for(EventKind::Failed, &nobody), ["mail"]);
    }

    #[test]
    fn recipients_are_found_case_insensitively() {
        let router = Router::new(&config(
            "[recipients.\"Lukasz@Example.com\"]\nslack_user_id = \"U1\"\n",
        ));
        let entry = router.recipient(Some(" lukasz@EXAMPLE.com")).unwrap();
        assert_eq!(entry.slack_user_id.as_deref(), Some("U1"));
        assert!(router.recipient(None).is_none());
        assert!(router.recipient(Some("x@example.com")).is_none());
    }

    fn email_kind(extra: &str) -> SinkKind {
        let config = config(&format!(
            "[sinks.email]\nkind = \"email\"\nsmtp = \"smtp://mail.example.com\"\nfrom = \"bot@example.com\"\n{extra}\n"
        ));
        config.sinks["email"].kind.clone()
    }

    fn email_target_for(kind: &SinkKind, who: Option<&str>, redirect: Option<&str>) -> Target {
        let entry = RecipientConfig {
            email: redirect.map(str::to_string),
            ..RecipientConfig::default()
        };
        let view = RecipientView::new(who, redirect.map(|_| &entry));
        target(kind, who, &view)
    }

    /// The rows of an email target, or why it was skipped.
    fn mail_rows(target: Target) -> Result<(Vec<String>, Option<String>), String> {
        match target {
            Target::Mail { rows, note, .. } => Ok((rows, note)),
            Target::Skip(reason) => Err(reason),
            other => panic!("not an email target: {other:?}"),
        }
    }

    #[test]
    fn email_goes_to_the_requester_or_its_redirect() {
        let kind = email_kind("");
        assert_eq!(
            email_target_for(&kind, Some(" Ann@Example.com "), None),
            Target::Mail {
                rows: vec!["to:Ann@Example.com".into()],
                requester: Some("Ann@Example.com".into()),
                note: None
            }
        );
        let redirected =
            email_target_for(&kind, Some("ann@example.com"), Some("ann.alt@example.com"));
        assert_eq!(
            mail_rows(redirected),
            Ok((vec!["to:ann.alt@example.com".into()], None))
        );
    }

    #[test]
    fn a_requested_by_that_is_not_one_address_is_skipped_with_the_reason() {
        let kind = email_kind("");
        for (who, why) in [
            (Some("ann@example.com\r\nBcc: x@evil.test"), "line break"),
            (Some("ann@example.com, bob@example.com"), "more than one"),
            (Some(""), "empty"),
            (Some("Ann Smith"), "not a valid"),
            (None, "no RequestedBy"),
        ] {
            match mail_rows(email_target_for(&kind, who, None)) {
                Err(reason) => {
                    assert!(reason.contains(why), "{who:?}: {reason}");
                    assert!(!reason.contains('\n'), "one line: {reason:?}");
                }
                other => panic!("{who:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn requester_domains_limit_who_gets_mail() {
        let kind = email_kind("requester_domains = [\"example.com\"]");
        assert_eq!(
            mail_rows(email_target_for(&kind, Some("ann@example.com"), None)),
            Ok((vec!["to:ann@example.com".into()], None))
        );
        match mail_rows(email_target_for(
            &kind,
            Some("eve@evil.test"),
            Some("ann@example.com"),
        )) {
            Err(reason) => assert!(reason.contains("requester_domains"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fixed_recipients_still_get_mail_when_the_requester_is_skipped() {
        let kind = email_kind("cc = [\"ops@example.com\"]");
        match mail_rows(email_target_for(
            &kind,
            Some("a@x.test\nBcc: y@evil.test"),
            None,
        )) {
            Ok((rows, Some(reason))) => {
                assert_eq!(rows, ["cc:ops@example.com"]);
                assert!(reason.contains("line break"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let fixed_only = email_kind("requester = false\nto = [\"ops@example.com\"]");
        assert_eq!(
            mail_rows(email_target_for(&fixed_only, Some("ann@example.com"), None)),
            Ok((vec!["to:ops@example.com".into()], None))
        );
    }

    #[test]
    fn every_recipient_is_its_own_row_and_nobody_is_listed_twice() {
        let kind = email_kind(
            "to = [\"Boss <boss@example.com>\", \"ANN@example.com\"]\ncc = [\"ops@example.com\", \"boss@example.com\"]\nbcc = [\"archive@example.com\"]",
        );
        let (rows, note) =
            mail_rows(email_target_for(&kind, Some("ann@example.com"), None)).unwrap();
        assert_eq!(
            rows,
            [
                "to:ann@example.com",
                "to:boss@example.com",
                "cc:ops@example.com",
                "bcc:archive@example.com"
            ]
        );
        assert_eq!(note, None);
    }
}
