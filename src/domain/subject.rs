//! What a delivery is about: a queue item, or one of the bot's own alerts.
//! Alerts used to ride the outbox as fake item ids ±1..3; a typed subject
//! keeps them out of `why ITEM_ID` and lets `outbox list` mark them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::ExportId;

/// The conditions the bot alerts about (`[alerts]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCondition {
    /// Polls have failed for at least `alerts.after`.
    PollsFailing,
    /// The Crayon API refused the credentials.
    CredentialsRefused,
    /// Some deliveries (not to the alert sink) are dead.
    DeliveriesDead,
}

impl AlertCondition {
    /// Every condition, in the order alerts are evaluated.
    pub const ALL: [AlertCondition; 3] = [
        AlertCondition::PollsFailing,
        AlertCondition::CredentialsRefused,
        AlertCondition::DeliveriesDead,
    ];

    /// The name templates, the state file and `outbox list` use.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertCondition::PollsFailing => "polls_failing",
            AlertCondition::CredentialsRefused => "credentials_refused",
            AlertCondition::DeliveriesDead => "deliveries_dead",
        }
    }
}

impl FromStr for AlertCondition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertCondition::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown alert condition {s:?}"))
    }
}

/// Whether an alert message says the condition started or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds (sent at most once per `alerts.repeat`).
    Firing,
    /// The condition cleared after having fired (sent once).
    Recovered,
}

impl AlertState {
    /// The name templates and the state file use.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Recovered => "recovered",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [AlertState::Firing, AlertState::Recovered]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown alert state {s:?}"))
    }
}

/// What one delivery is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// An export queue item's event.
    Item(ExportId),
    /// One of the bot's own alert messages.
    Alert {
        /// What the alert is about.
        condition: AlertCondition,
        /// Whether it says the condition started or cleared.
        state: AlertState,
    },
}

impl Subject {
    /// The queue item, when the delivery is about one.
    pub fn item(self) -> Option<ExportId> {
        match self {
            Subject::Item(id) => Some(id),
            Subject::Alert { .. } => None,
        }
    }

    /// A token for identifiers built from the subject (e.g. an email's
    /// Message-ID): `item-2439`, `alert-polls_failing`.
    pub fn token(self) -> String {
        match self {
            Subject::Item(id) => format!("item-{id}"),
            Subject::Alert { condition, .. } => format!("alert-{}", condition.as_str()),
        }
    }

    /// The alert condition, when the delivery is an alert.
    pub fn alert(self) -> Option<AlertCondition> {
        match self {
            Subject::Item(_) => None,
            Subject::Alert { condition, .. } => Some(condition),
        }
    }
}

/// `2439` for an item, `alert:polls_failing` for an alert: the item column of
/// `outbox list` and the `item` field of log lines.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Item(id) => id.fmt(f),
            Subject::Alert { condition, .. } => write!(f, "alert:{}", condition.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_display_marks_alerts() {
        for condition in AlertCondition::ALL {
            assert_eq!(condition.as_str().parse(), Ok(condition));
        }
        for state in [AlertState::Firing, AlertState::Recovered] {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert!("nope".parse::<AlertCondition>().is_err());
        assert_eq!(Subject::Item(ExportId(2439)).to_string(), "2439");
        assert_eq!(Subject::Item(ExportId(2439)).token(), "item-2439");
        let alert = Subject::Alert {
            condition: AlertCondition::DeliveriesDead,
            state: AlertState::Recovered,
        };
        assert_eq!(alert.to_string(), "alert:deliveries_dead");
        assert_eq!(alert.token(), "alert-deliveries_dead");
        assert_eq!(alert.item(), None);
        assert_eq!(alert.alert(), Some(AlertCondition::DeliveriesDead));
    }
}
