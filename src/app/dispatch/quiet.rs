//! Quiet hours in the dispatcher: a delivery due while its recipient's quiet
//! time lasts is not sent; it stays `pending` with `next_attempt_at` at the
//! end of the quiet time, and no attempt is counted (nothing was tried).
//!
//! Which zone: a per-person sink (email to the requester, a Slack app in DM
//! mode, Discord in DM mode) reads the window in the recipient's
//! `[recipients]` `timezone`; otherwise, and for channel sinks, in the
//! sink's `timezone`, else `display.timezone`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Dispatcher;
use crate::config::{Config, SinkKind, SinkQuiet};
use crate::domain::{AccountId, Delivery, DeliveryId, DeliveryStatus};
use crate::quiet::QuietTime;
use crate::sinks::email::rcpt::{self, Stored};
use crate::store::{AttemptOutcome, StoreError};

/// The metric of deliveries waiting (the digest adds `reason="digest"`).
const DEFERRED: &str = "crayon_deliveries_deferred";

/// The error text a deferral hands to `run` (never written to the outbox).
pub(super) const QUIET_HOURS: &str = "quiet hours";

/// Who is quiet when: each sink's window, whether it is per-person, and the
/// zone of every address or user id the `[recipients]` directory knows.
#[derive(Debug, Clone, Default)]
pub struct QuietPlan {
    sinks: HashMap<String, (SinkQuiet, Who)>,
    /// Lowercased requester address, redirect address or user id → zone.
    people: HashMap<String, Tz>,
    display: Tz,
}

impl QuietPlan {
    /// The plan of a checked config.
    pub fn new(config: &Config) -> QuietPlan {
        let sinks = config
            .quiet
            .iter()
            .filter_map(|(name, quiet)| {
                let sink = config.sinks.get(name)?;
                Some((name.clone(), (*quiet, per_person(&sink.kind))))
            })
            .collect();
        let mut people = HashMap::new();
        for (requester, entry) in &config.recipients {
            let Some(zone) = entry.timezone else { continue };
            let ids = [&entry.email, &entry.slack_user_id, &entry.discord_user_id];
            for id in std::iter::once(requester).chain(ids.into_iter().flatten()) {
                people.insert(id.trim().to_lowercase(), zone);
            }
        }
        QuietPlan {
            sinks,
            people,
            display: config.timezone,
        }
    }

    /// A plan of one sink of `kind` quiet by `quiet` (tests that drive the
    /// dispatcher without a whole config).
    #[cfg(test)]
    pub(crate) fn one_sink(name: &str, kind: &SinkKind, quiet: SinkQuiet, display: Tz) -> Self {
        QuietPlan {
            sinks: [(name.to_string(), (quiet, per_person(kind)))].into(),
            people: HashMap::new(),
            display,
        }
    }

    /// The quiet time of `sink` for `recipient`; `None` when the sink has none.
    pub fn time_for(&self, sink: &str, recipient: Option<&str>) -> Option<QuietTime> {
        let (quiet, who) = self.sinks.get(sink)?;
        let person = match (who, recipient) {
            (Who::Channel, _) | (_, None) => None,
            (Who::User, Some(id)) => Some(id.to_string()),
            (Who::Mail, Some(row)) => match rcpt::decode(Some(row)) {
                Ok(Stored::One(rcpt)) => Some(rcpt.address.to_string()),
                Ok(Stored::Legacy(address)) => address,
                Err(_) => None,
            },
        };
        let person = person.and_then(|p| self.people.get(&p.trim().to_lowercase()));
        let zone = person.copied().or(quiet.timezone).unwrap_or(self.display);
        Some(quiet.window.in_zone(zone))
    }

    /// What `why` says of a pending delivery that quiet time holds (or will
    /// hold when the dispatcher takes it): the end, in the zone it is read in.
    pub fn waiting_note(&self, delivery: &Delivery, now: DateTime<Utc>) -> Option<String> {
        if delivery.status != DeliveryStatus::Pending {
            return None;
        }
        let quiet = self.time_for(&delivery.sink, delivery.recipient.as_deref())?;
        let until = quiet.quiet_until(now)?;
        if until <= now || delivery.next_attempt_at.is_some_and(|next| next > until) {
            return None;
        }
        let local = until.with_timezone(&quiet.zone());
        Some(format!(
            "quiet hours until {} ({})",
            local.format("%Y-%m-%d %H:%M %Z"),
            quiet.zone().name()
        ))
    }

    /// When `delivery` may go, if that is after `now` (it is in quiet time).
    pub fn held_until(&self, delivery: &Delivery, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let quiet = self.time_for(&delivery.sink, delivery.recipient.as_deref())?;
        let until = quiet.quiet_until(now)?;
        (until > now).then_some(until)
    }
}

/// Whom a sink's deliveries are for, as far as zones go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A channel: the sink's zone.
    Channel,
    /// Email to the requester: the row's address (`to:ann@…`) is the person.
    Mail,
    /// A DM: the row's user id (or looked-up address) is the person.
    User,
}

/// Whether a sink sends to one person (the recipient's zone applies).
fn per_person(kind: &SinkKind) -> Who {
    let dm = match kind {
        SinkKind::Email(email) if email.requester => return Who::Mail,
        SinkKind::Email(_) => false,
        SinkKind::Discord { bot_token, .. } => bot_token.is_some(),
        SinkKind::SlackApp(app) => app.channel.is_none(),
        SinkKind::Console
        | SinkKind::Webhook { .. }
        | SinkKind::Slack { .. }
        | SinkKind::Teams { .. } => false,
    };
    if dm {
        Who::User
    } else {
        Who::Channel
    }
}

/// The deliveries this process holds for quiet hours, per account, with
/// their ends: behind the gauge (shared by every account's dispatcher).
#[derive(Debug, Clone, Default)]
pub(super) struct Held(Arc<Mutex<HeldMap>>);

type HeldMap = HashMap<AccountId, HashMap<DeliveryId, DateTime<Utc>>>;

impl Held {
    fn update(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut HashMap<DeliveryId, DateTime<Utc>>),
    ) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = all.entry(account.clone()).or_default();
        change(held);
        held.retain(|_, until| *until > now);
        metrics::gauge!(DEFERRED, "account" => account.to_string(), "reason" => "quiet_hours")
            .set(held.len() as f64);
    }
}

impl Dispatcher {
    /// The hook before a send: a delivery in quiet time is moved to its end
    /// (`Some(end)`), and is not sent now.
    pub(super) fn hold_if_quiet(
        &self,
        delivery: &Delivery,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.clock.now();
        let Some(until) = self.quiet.held_until(delivery, now) else {
            self.held.update(&self.account, now, |held| {
                held.remove(&delivery.id);
            });
            return Ok(None);
        };
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&delivery.id);
        self.store.defer(&self.account, delivery.id, until)?;
        self.held.update(&self.account, now, |held| {
            held.insert(delivery.id, until);
        });
        tracing::info!(
            delivery = delivery.id.0,
            sink = %delivery.sink,
            item = %delivery.subject,
            until = %until.to_rfc3339(),
            "quiet hours: the delivery waits"
        );
        Ok(Some(until))
    }

    /// `run`'s send: held in quiet time (handed back as a retry at its end,
    /// so `run` looks again then), else one attempt.
    pub(super) async fn deliver_unless_quiet(
        &self,
        delivery: Delivery,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<AttemptOutcome, StoreError> {
        if let Some(until) = self.hold_if_quiet(&delivery)? {
            return Ok(AttemptOutcome::Retry {
                error: QUIET_HOURS.into(),
                next_attempt_at: until,
            });
        }
        self.deliver_until(delivery, stop).await
    }

    /// A retry whose time falls in quiet time waits for its end instead, so
    /// the dispatcher does not wake only to hold it.
    pub(super) fn retry_after_quiet(
        &self,
        delivery: &Delivery,
        outcome: AttemptOutcome,
    ) -> AttemptOutcome {
        let AttemptOutcome::Retry {
            error,
            next_attempt_at,
        } = outcome
        else {
            return outcome;
        };
        let quiet = self
            .quiet
            .time_for(&delivery.sink, delivery.recipient.as_deref());
        let next_attempt_at = quiet
            .and_then(|q| q.quiet_until(next_attempt_at))
            .unwrap_or(next_attempt_at);
        AttemptOutcome::Retry {
            error,
            next_attempt_at,
        }
    }

    /// At start: the pending deliveries already held by an earlier process
    /// count in the gauge until their quiet time ends.
    pub(super) fn count_held(&self) {
        if self.quiet.sinks.is_empty() {
            return;
        }
        let now = self.clock.now();
        let pending = match self
            .store
            .list_deliveries(&self.account, Some(DeliveryStatus::Pending))
        {
            Ok(pending) => pending,
            Err(e) => {
                return tracing::warn!(error = %e, "cannot count deliveries held for quiet hours")
            }
        };
        self.held.update(&self.account, now, |held| {
            for d in pending {
                if let (Some(until), Some(next)) =
                    (self.quiet.held_until(&d, now), d.next_attempt_at)
                {
                    if next > now {
                        held.insert(d.id, until.min(next));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
