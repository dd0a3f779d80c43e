//! Routing for the Slack app: user ids, lookups, DM vs channel mode.

use super::*;
use crate::config::RecipientConfig;
use crate::secret::Secret;
use crate::sinks::slack::AppSettings;

fn app(channel: Option<&str>) -> SinkKind {
    SinkKind::SlackApp(Box::new(AppSettings {
        bot_token: Secret::new("xoxb-1"),
        channel: channel.map(str::to_string),
        api_base: url::Url::parse("https://slack.com/api/").unwrap(),
    }))
}

fn slack(kind: &SinkKind, who: Option<&str>, entry: Option<RecipientConfig>) -> Target {
    target(kind, who, &RecipientView::new(who, entry.as_ref()))
}

#[test]
fn a_slack_app_sends_to_the_mapped_id_else_the_address_it_looks_up() {
    let mapped = RecipientConfig {
        slack_user_id: Some("U0ANN".into()),
        ..RecipientConfig::default()
    };
    let redirect = RecipientConfig {
        email: Some("ann.alt@example.com".into()),
        ..RecipientConfig::default()
    };
    let (dm, channel) = (app(None), app(Some("C0123ABCD")));
    let ann = Some(" ann@example.com ");
    assert_eq!(
        slack(&dm, ann, Some(mapped)),
        Target::Person("U0ANN".into())
    );
    assert_eq!(
        slack(&dm, ann, None),
        Target::Person("ann@example.com".into())
    );
    let alt = Target::Person("ann.alt@example.com".into());
    assert_eq!(slack(&dm, ann, Some(redirect.clone())), alt);
    let shown = Target::Person("ann@example.com".into());
    assert_eq!(slack(&channel, ann, Some(redirect)), shown);
}

#[test]
fn without_an_address_dms_are_skipped_and_channels_post_anyway() {
    let (dm, channel) = (app(None), app(Some("C0123ABCD")));
    for who in [None, Some("Ann Smith"), Some("a@x.test, b@x.test")] {
        assert!(matches!(slack(&dm, who, None), Target::Skip(_)), "{who:?}");
        assert_eq!(slack(&channel, who, None), Target::Channel, "{who:?}");
    }
}
