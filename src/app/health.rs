//! The health state `/livez` and `/healthz` report, per account: each
//! account's last poll (the status page shows its facts), its failures and
//! its interval. `/healthz` is failing while any account's polls fail, and
//! says which.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::AccountId;
use crate::status::Role;

/// A poll's measure: how long it took and, when it succeeded, the items.
pub type Measure = (Duration, Option<usize>);

/// What the health endpoints report, updated by the poll loops.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    inner: Mutex<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    last_tick: Instant,
    stopped: bool,
    /// Leading (polls expected) or standing by (no polls, healthy anyway).
    leader: bool,
    /// When polls became expected: start, or the last takeover.
    leading_since: Instant,
    accounts: BTreeMap<AccountId, AccountHealth>,
}

/// One account's polls as far as health is concerned.
#[derive(Debug)]
struct AccountHealth {
    interval: Duration,
    /// When the account joined (start, or the reload that added it).
    since: Instant,
    last_success: Option<Instant>,
    last_error: Option<String>,
    failures: u32,
    last_poll: Option<PollFacts>,
}

impl AccountHealth {
    fn new(interval: Duration) -> Self {
        AccountHealth {
            interval,
            since: Instant::now(),
            last_success: None,
            last_error: None,
            failures: 0,
            last_poll: None,
        }
    }

    /// Healthy while the last successful poll is younger than 3 × interval;
    /// starting during the first 3 intervals (`None`); else why not.
    fn failing(&self, leading_since: Instant) -> Result<bool, String> {
        let window = self.interval * 3;
        let expected_since = self.since.max(leading_since);
        match self.last_success {
            Some(at) if at.elapsed() <= window => Ok(true),
            _ if expected_since.elapsed() <= window && self.failures == 0 => Ok(false),
            None if self.since.elapsed() <= window => Ok(false),
            last => {
                let secs = last.unwrap_or(self.since).elapsed().as_secs();
                Err(match &self.last_error {
                    Some(e) => format!("no successful poll for {secs}s; last error: {e}"),
                    None => format!("no successful poll for {secs}s"),
                })
            }
        }
    }
}

/// What the status page shows about the latest poll of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollFacts {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// `ok` or `error`.
    pub result: &'static str,
    /// The error, when it failed (as `/healthz` reports it).
    pub error: Option<String>,
    /// Items in the queue, when it succeeded.
    pub items: Option<usize>,
    /// How long it took, when measured.
    pub duration_ms: Option<u64>,
    /// When the next poll is due: one interval later, or the run loop's
    /// backoff after failures (2, 4, 8, then 10 intervals).
    pub next_at: DateTime<Utc>,
}

/// The `/healthz` verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Starting,
    /// Another replica leads; this one polls nothing and is healthy.
    Standby,
    Failing(String),
}

impl Health {
    /// Health for the single account `default` polled every `interval`.
    pub fn new(interval: Duration) -> Self {
        Health::for_accounts([(AccountId::default_account(), interval)])
    }

    /// Health for these accounts, each polled at its own interval.
    pub fn for_accounts(accounts: impl IntoIterator<Item = (AccountId, Duration)>) -> Self {
        let now = Instant::now();
        let accounts = accounts
            .into_iter()
            .map(|(id, interval)| (id, AccountHealth::new(interval)))
            .collect();
        Health {
            started: now,
            inner: Mutex::new(HealthInner {
                last_tick: now,
                stopped: false,
                leader: true,
                leading_since: now,
                accounts,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HealthInner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A reload's accounts: the kept ones keep their history (with the new
    /// interval), added ones start afresh, removed ones are forgotten.
    pub fn set_accounts(&self, accounts: impl IntoIterator<Item = (AccountId, Duration)>) {
        let wanted: BTreeMap<AccountId, Duration> = accounts.into_iter().collect();
        self.with(|h| {
            h.accounts.retain(|id, _| wanted.contains_key(id));
            for (id, interval) in wanted {
                h.accounts
                    .entry(id)
                    .or_insert_with(|| AccountHealth::new(interval))
                    .interval = interval;
            }
        });
    }

    /// The accounts health follows, sorted by name.
    pub fn accounts(&self) -> Vec<AccountId> {
        self.with(|h| h.accounts.keys().cloned().collect())
    }

    /// The `default` account finished a poll, measured by the poll itself
    /// (through [`super::telemetry::poll_succeeded`]/`poll_failed`).
    pub fn polled(&self, result: Result<(), String>) {
        let measure = super::telemetry::take_measure();
        self.polled_account(&AccountId::default_account(), result, measure);
    }

    /// `account` finished a poll that took `measure`.
    pub fn polled_account(
        &self,
        account: &AccountId,
        result: Result<(), String>,
        measure: Option<Measure>,
    ) {
        self.with(|h| {
            h.last_tick = Instant::now();
            let a = h
                .accounts
                .entry(account.clone())
                .or_insert_with(|| AccountHealth::new(Duration::from_secs(60)));
            match &result {
                Ok(()) => {
                    a.last_success = Some(h.last_tick);
                    a.last_error = None;
                    a.failures = 0;
                }
                Err(e) => {
                    a.last_error = Some(e.clone());
                    a.failures = a.failures.saturating_add(1);
                }
            }
            a.last_poll = Some(facts(result, measure, a.failures, a.interval));
        });
    }

    /// The latest poll's facts of the first account; `None` before its
    /// first poll ended.
    pub fn last_poll(&self) -> Option<PollFacts> {
        self.with(|h| h.accounts.values().next().and_then(|a| a.last_poll.clone()))
    }

    /// The latest poll's facts of `account`.
    pub fn last_poll_of(&self, account: &AccountId) -> Option<PollFacts> {
        self.with(|h| h.accounts.get(account).and_then(|a| a.last_poll.clone()))
    }

    /// The lease task's verdict: leading or standing by. A takeover starts
    /// a fresh `Starting` window, so the first polls have time to succeed.
    pub fn set_role(&self, leader: bool) {
        self.with(|h| {
            if leader && !h.leader {
                h.leading_since = Instant::now();
                h.last_tick = h.leading_since;
            }
            h.leader = leader;
        });
    }

    /// This replica's role, for `/healthz` and the status page.
    pub fn role(&self) -> Role {
        if self.with(|h| h.leader) {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// The poll loops ended (shutdown).
    pub fn stopped(&self) {
        self.with(|h| h.stopped = true);
    }

    /// Alive: the loops run and one has ticked recently (failed polls back
    /// off up to 10 × interval, so that is allowed, plus a margin).
    pub fn alive(&self) -> bool {
        self.with(|h| {
            let longest = h.accounts.values().map(|a| a.interval).max();
            let limit = longest.unwrap_or(Duration::from_secs(60)) * 11 + Duration::from_secs(60);
            !h.stopped && (!h.leader || h.last_tick.elapsed() <= limit)
        })
    }

    /// The accounts whose polls are failing, with why (empty on a standby).
    pub fn failing(&self) -> Vec<(AccountId, String)> {
        self.with(|h| {
            if !h.leader {
                return Vec::new();
            }
            h.accounts
                .iter()
                .filter_map(|(id, a)| a.failing(h.leading_since).err().map(|e| (id.clone(), e)))
                .collect()
        })
    }

    /// Healthy while every account's last successful poll is younger than
    /// 3 × its interval; `Starting` while one is in its first 3 intervals.
    /// A failing reason names the account unless it is the only, `default`.
    pub fn verdict(&self) -> Verdict {
        if !self.with(|h| h.leader) {
            return Verdict::Standby;
        }
        let failing = self.failing();
        if !failing.is_empty() {
            let only_default = self.with(|h| {
                h.accounts.len() == 1 && h.accounts.contains_key(&AccountId::default_account())
            });
            let reasons: Vec<String> = failing
                .into_iter()
                .map(|(id, why)| {
                    if only_default {
                        why
                    } else {
                        format!("account {id}: {why}")
                    }
                })
                .collect();
            return Verdict::Failing(reasons.join("; "));
        }
        let starting = self.with(|h| {
            h.accounts.is_empty() && self.started.elapsed() <= Duration::from_secs(180)
                || h.accounts
                    .values()
                    .any(|a| a.failing(h.leading_since) == Ok(false))
        });
        if starting {
            Verdict::Starting
        } else {
            Verdict::Ok
        }
    }
}

/// One poll's facts. The next poll's time mirrors the run loop's schedule:
/// one interval after a success, `min(2^min(failures, 4), 10)` intervals
/// after failures.
pub(super) fn facts(
    result: Result<(), String>,
    measure: Option<Measure>,
    failures: u32,
    interval: Duration,
) -> PollFacts {
    let at = Utc::now();
    let factor = match failures {
        0 => 1,
        n => 2u32.saturating_pow(n.min(4)).min(10),
    };
    let wait = chrono::Duration::from_std(interval.saturating_mul(factor))
        .unwrap_or(chrono::Duration::MAX);
    PollFacts {
        at,
        result: if result.is_ok() { "ok" } else { "error" },
        items: measure
            .and_then(|(_, items)| items)
            .filter(|_| result.is_ok()),
        duration_ms: measure.map(|(d, _)| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        error: result.err(),
        next_at: at.checked_add_signed(wait).unwrap_or(at),
    }
}
