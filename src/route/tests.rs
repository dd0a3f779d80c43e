//! Routing rules: routes, recipients, per-person targets.

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
    let redirected = email_target_for(&kind, Some("ann@example.com"), Some("ann.alt@example.com"));
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
    let (rows, note) = mail_rows(email_target_for(&kind, Some("ann@example.com"), None)).unwrap();
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
