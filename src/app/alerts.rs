//! `[alerts]`: the bot tells an operator sink about its own troubles — polls
//! failing for `after`, the Crayon credentials refused, deliveries gone dead
//! — once per condition per `repeat`, and once more when the condition
//! clears. Each alert is recorded in the store's own alert table (so the
//! memory survives restarts) and delivered through the same outbox as
//! everything else (event `alert`, subject the condition, never an item).
//! Deliveries to the alert sink itself never raise an alert.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::{AlertsConfig, Config, SinkConfig};
use crate::domain::AlertCondition as Condition;
use crate::domain::{AccountId, AlertState, Disposition, RenderedMessage};
use crate::render::{AlertView, Renderer};
use crate::store::{AlertRecord, NewAlert, Store, StoreError};

/// What the poll loop saw, for the alert decision.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The last successful poll (or the start, before any).
    pub last_success: Option<DateTime<Utc>>,
    /// The last poll's error, if it failed.
    pub last_error: Option<String>,
    /// The last poll failed because the credentials were refused.
    pub credentials_refused: bool,
    /// Dead deliveries (not to the alert sink) and the newest error.
    pub dead: (u64, Option<String>),
}

/// One condition's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Firing since, as far as the last message told.
    pub firing_since: Option<DateTime<Utc>>,
    /// When the last firing message was enqueued.
    pub last_alert: Option<DateTime<Utc>>,
}

/// What to send for one condition now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Fire,
    Recover,
    Nothing,
}

/// The pure rule: fire when active and no firing message went out within
/// `repeat`; recover once when it clears after having fired (a recovery
/// message is not counted against `repeat`).
pub fn decide(
    memory: &Memory,
    active: bool,
    now: DateTime<Utc>,
    repeat: chrono::Duration,
) -> Decision {
    match (active, memory.firing_since) {
        (true, _) if memory.last_alert.is_none_or(|at| now - at >= repeat) => Decision::Fire,
        (false, Some(_)) => Decision::Recover,
        _ => Decision::Nothing,
    }
}

/// The alerting state of a running service.
pub struct Alerts {
    config: AlertsConfig,
    sink: SinkConfig,
    portal: String,
    renderer: Arc<Renderer>,
    store: Arc<dyn Store>,
    /// The account whose troubles these alerts are about.
    account: AccountId,
    memory: HashMap<Condition, Memory>,
}

impl Alerts {
    /// `None` without `[alerts]`. Remembers what was sent before a restart
    /// about `account` (each account alerts on its own).
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        renderer: Arc<Renderer>,
        account: &AccountId,
    ) -> Option<Alerts> {
        let alerts = config.alerts.clone()?;
        let sink = config.sinks.get(&alerts.sink)?.clone();
        let account = account.clone();
        let history = store.alert_history(&account).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the alert history; alerts start afresh");
            Vec::new()
        });
        Some(Alerts {
            config: alerts,
            sink,
            portal: config.portal.to_string(),
            renderer,
            store,
            account,
            memory: remember(&history),
        })
    }

    /// The sink alerts go to (its own dead deliveries are not alerted).
    pub fn sink(&self) -> &str {
        &self.sink.name
    }

    /// Decides every condition and enqueues what must be sent; returns how
    /// many alert deliveries were added.
    pub fn evaluate(
        &mut self,
        seen: &Observation,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let repeat =
            chrono::Duration::from_std(self.config.repeat).unwrap_or(chrono::Duration::MAX);
        let mut alerts = Vec::new();
        for condition in Condition::ALL {
            let active = self.active(condition, seen, now);
            let memory = self.memory.entry(condition).or_default();
            let decision = decide(memory, active, now, repeat);
            let since = memory.firing_since.unwrap_or(now);
            match decision {
                Decision::Fire => {
                    memory.firing_since = Some(since);
                    memory.last_alert = Some(now);
                }
                Decision::Recover => memory.firing_since = None,
                Decision::Nothing => continue,
            }
            alerts.push(self.alert(condition, decision, seen, since, now));
        }
        if alerts.is_empty() {
            return Ok(0);
        }
        self.store.record_alerts(&self.account, &alerts, now)
    }

    fn active(&self, condition: Condition, seen: &Observation, now: DateTime<Utc>) -> bool {
        let after = chrono::Duration::from_std(self.config.after).unwrap_or(chrono::Duration::MAX);
        match condition {
            Condition::PollsFailing => {
                seen.last_error.is_some() && seen.last_success.is_none_or(|at| now - at >= after)
            }
            Condition::CredentialsRefused => seen.credentials_refused,
            Condition::DeliveriesDead => seen.dead.0 > 0,
        }
    }

    fn alert(
        &self,
        condition: Condition,
        decision: Decision,
        seen: &Observation,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> NewAlert {
        let mut view = view(condition, decision, seen, since);
        name_account(&mut view, &self.account);
        let (message, disposition) =
            match self
                .renderer
                .render_alert(&self.sink, &view, &self.portal, now)
            {
                Ok(message) => (message, Disposition::Pending),
                Err(e) => (RenderedMessage::default(), Disposition::Dead(e.to_string())),
            };
        NewAlert {
            condition,
            state: if decision == Decision::Recover {
                AlertState::Recovered
            } else {
                AlertState::Firing
            },
            sink: self.sink.name.clone(),
            message,
            disposition,
        }
    }
}

/// The memory after a restart, from the latest alert of each (condition,
/// state): the last firing message counts against `repeat`, and a condition
/// is still firing unless a recovery was sent after it.
fn remember(history: &[AlertRecord]) -> HashMap<Condition, Memory> {
    let mut memory: HashMap<Condition, Memory> = HashMap::new();
    let latest = |condition, state| {
        history
            .iter()
            .find(|r| r.condition == condition && r.state == state)
            .map(|r| r.at)
    };
    for condition in Condition::ALL {
        let fired = latest(condition, AlertState::Firing);
        let recovered = latest(condition, AlertState::Recovered);
        if fired.is_none() && recovered.is_none() {
            continue;
        }
        let cleared = match (fired, recovered) {
            (Some(fired), Some(recovered)) => recovered >= fired,
            (None, _) => true,
            (Some(_), None) => false,
        };
        memory.insert(
            condition,
            Memory {
                firing_since: if cleared { None } else { fired },
                last_alert: fired,
            },
        );
    }
    memory
}

/// Names the account in the alert (but not the only account of a v0.1
/// config, `default`, whose alerts read as they always did).
fn name_account(view: &mut AlertView, account: &AccountId) {
    if *account != AccountId::default_account() {
        view.summary = format!("Account {account}: {}", view.summary);
        view.details = format!(
            "Crayon account {account} ([accounts.{account}]). {}",
            view.details
        );
    }
}

/// The alert's wording: what happened and what to do.
fn view(
    condition: Condition,
    decision: Decision,
    seen: &Observation,
    since: DateTime<Utc>,
) -> AlertView {
    let recovered = decision == Decision::Recover;
    let (summary, details) = match (condition, recovered) {
        (Condition::PollsFailing, false) => (
            "Polls of the Crayon export queue are failing".to_string(),
            format!(
                "No successful poll since {}. Last error: {}",
                seen.last_success.map(time).unwrap_or_else(|| "start-up".into()),
                seen.last_error.as_deref().unwrap_or("unknown")
            ),
        ),
        (Condition::PollsFailing, true) => (
            "Polls of the Crayon export queue work again".to_string(),
            "The last poll succeeded; notifications flow again.".to_string(),
        ),
        (Condition::CredentialsRefused, false) => (
            "The Crayon API refuses the bot's credentials".to_string(),
            format!(
                "Check client_id, client_secret, username and password in [crayon], then reload. {}",
                seen.last_error.as_deref().unwrap_or("")
            ),
        ),
        (Condition::CredentialsRefused, true) => (
            "The Crayon API accepts the bot's credentials again".to_string(),
            "Polls authenticate again.".to_string(),
        ),
        (Condition::DeliveriesDead, false) => (
            format!("{} notification(s) could not be delivered", seen.dead.0),
            format!(
                "Dead deliveries are kept: see `crayon-export-bot outbox list --status dead`, fix the sink, then `outbox retry --all-dead`. Latest error: {}",
                seen.dead.1.as_deref().unwrap_or("unknown")
            ),
        ),
        (Condition::DeliveriesDead, true) => (
            "No dead deliveries are left".to_string(),
            "Every dead delivery was retried or purged.".to_string(),
        ),
    };
    AlertView {
        condition: condition.as_str().to_string(),
        state: if recovered { "recovered" } else { "firing" }.to_string(),
        summary,
        details,
        since: time(since),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        "2024-06-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn run(states: &[bool]) -> Vec<Decision> {
        let repeat = chrono::Duration::hours(4);
        let mut memory = Memory::default();
        states
            .iter()
            .enumerate()
            .map(|(i, active)| {
                let now = at(i as i64 * 60);
                let d = decide(&memory, *active, now, repeat);
                match d {
                    Decision::Fire => {
                        memory.firing_since.get_or_insert(now);
                        memory.last_alert = Some(now);
                    }
                    Decision::Recover => memory.firing_since = None,
                    Decision::Nothing => {}
                }
                d
            })
            .collect()
    }

    #[test]
    fn fires_once_per_repeat_and_recovers_once() {
        use Decision::*;
        // hourly observations: active for 6 hours, then clear for 2
        let got = run(&[true, true, true, true, true, true, false, false]);
        assert_eq!(
            got,
            [Fire, Nothing, Nothing, Nothing, Fire, Nothing, Recover, Nothing]
        );
    }

    #[test]
    fn a_restart_remembers_the_last_firing_and_whether_it_was_recovered() {
        let record = |condition, state, minutes| AlertRecord {
            condition,
            state,
            at: at(minutes),
        };
        let memory = remember(&[
            record(Condition::PollsFailing, AlertState::Firing, 0),
            record(Condition::PollsFailing, AlertState::Recovered, 10),
            record(Condition::DeliveriesDead, AlertState::Recovered, 0),
            record(Condition::DeliveriesDead, AlertState::Firing, 20),
        ]);
        let recovered = memory[&Condition::PollsFailing];
        assert_eq!(recovered.firing_since, None);
        assert_eq!(recovered.last_alert, Some(at(0)));
        let repeat = chrono::Duration::hours(4);
        assert_eq!(
            decide(&recovered, false, at(30), repeat),
            Decision::Nothing,
            "no second recovery"
        );
        assert_eq!(decide(&recovered, true, at(30), repeat), Decision::Nothing);
        let firing = memory[&Condition::DeliveriesDead];
        assert_eq!(firing.firing_since, Some(at(20)));
        assert_eq!(decide(&firing, false, at(30), repeat), Decision::Recover);
        assert!(!memory.contains_key(&Condition::CredentialsRefused));
    }

    #[test]
    fn nothing_happens_while_healthy() {
        assert!(run(&[false, false, false])
            .iter()
            .all(|d| *d == Decision::Nothing));
    }

    #[test]
    fn flapping_fires_at_most_once_per_repeat() {
        use Decision::*;
        let got = run(&[true, false, true, true, true, true]);
        assert_eq!(got, [Fire, Recover, Nothing, Nothing, Fire, Nothing]);
    }
}
