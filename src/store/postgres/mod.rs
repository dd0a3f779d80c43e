//! The PostgreSQL backend (`watch.state = "postgres://…"`): the same state
//! as the SQLite file, shared by several replicas. The only module that names
//! the driver; split like the SQLite backend: [`conn`] (TLS, connecting, the
//! sync bridge), [`schema`], [`snapshot`], [`outbox`], [`alerts`], [`rows`].
//!
//! Driver: the sync `postgres` crate (tokio-postgres underneath) with
//! `tokio-postgres-rustls`: maintained, rustls 0.23 with the ring provider
//! the bot already uses (no second rustls, no OpenSSL), and its sync API
//! fits the sync [`Store`] trait with a thin bridge ([`conn`]); `sqlx` would
//! bring its own runtime glue, macros and a much larger tree.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Transaction;

use crate::domain::{
    AccountId, Delivery, DeliveryId, DeliveryStatus, EventKind, ExportId, NewDelivery, Snapshot,
};
use crate::store::location::PgUrl;
use crate::store::{
    AlertRecord, AttemptOutcome, AttemptWrite, CommitStats, DigestMembership, DigestWindow,
    Gathered, ItemHistory, NewAlert, PollCommit, Store, StoreError,
};

mod alerts;
mod conn;
mod digest;
mod dump;
mod lease;
mod outbox;
mod rows;
mod schema;
mod slack_cache;
mod snapshot;
mod status;
#[cfg(test)]
mod tests;

pub use schema::SCHEMA_VERSION;

use conn::Conn;
use rows::PgResult;

/// A PostgreSQL database holding every account's state. One connection
/// behind a mutex (every call is short, as with SQLite); `Send + Sync`,
/// shared as `Arc<dyn Store>`.
#[derive(Debug)]
pub struct PostgresStore {
    conn: Conn,
    fence: lease::Fence,
}

impl PostgresStore {
    /// Connects (TLS per `sslmode`, trusting the system roots plus
    /// `tls.ca_file`), then creates or migrates the schema. A database from
    /// a newer build, or with foreign tables of our names, is refused.
    pub fn open(url: &PgUrl) -> Result<PostgresStore, StoreError> {
        let conn = Conn::open(url)?;
        schema::migrate(&conn)?;
        Ok(PostgresStore {
            conn,
            fence: lease::Fence::default(),
        })
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    fn in_tx<T: Send>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> PgResult<T> + Send,
    ) -> Result<T, StoreError> {
        self.conn.with(|client| {
            let mut tx = client.transaction()?;
            let value = f(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

impl PostgresStore {
    /// Like [`Self::in_tx`] for the writes only the leader may make: the
    /// lease generation is checked (and share-locked) in the same
    /// transaction; a stale one is [`StoreError::Fenced`].
    fn fenced_tx<T: Send>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> PgResult<T> + Send,
    ) -> Result<T, StoreError> {
        let outcome = self.in_tx(|tx| match self.fence.check(tx)? {
            Ok(()) => f(tx).map(Ok),
            Err(generations) => Ok(Err(generations)),
        })?;
        outcome.map_err(|generations| lease::fenced(self.location(), generations))
    }
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.conn.location()
    }

    fn load_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError> {
        self.in_tx(|tx| snapshot::load(tx, account))
    }

    fn last_success_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.conn.with(|c| snapshot::last_success_at(c, account))
    }

    fn already_fired(
        &self,
        account: &AccountId,
        pairs: &[(ExportId, EventKind)],
    ) -> Result<HashSet<(ExportId, EventKind)>, StoreError> {
        self.conn
            .with(|c| snapshot::already_fired(c, account, pairs))
    }

    fn commit_poll(&self, commit: &PollCommit<'_>) -> Result<CommitStats, StoreError> {
        self.fenced_tx(|tx| snapshot::commit_poll(tx, commit))
    }

    fn enqueue(
        &self,
        account: &AccountId,
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.fenced_tx(|tx| outbox::insert_deliveries(tx, account, deliveries, now))
    }

    fn due_deliveries(
        &self,
        account: &AccountId,
        now: DateTime<Utc>,
        limit: usize,
        exclude: &HashSet<DeliveryId>,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.conn
            .with(|c| outbox::due(c, account, now, limit, exclude))
    }

    fn accounts_with_pending(&self) -> Result<Vec<AccountId>, StoreError> {
        self.conn.with(outbox::accounts_with_pending)
    }

    fn pending_sinks_of_items(
        &self,
        account: &AccountId,
        items: &[ExportId],
    ) -> Result<Vec<(ExportId, String)>, StoreError> {
        self.conn
            .with(|c| outbox::pending_sinks_of_items(c, account, items))
    }

    fn next_due_at(&self, account: &AccountId) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.conn.with(|c| outbox::next_due_at(c, account))
    }

    fn record_attempt(
        &self,
        account: &AccountId,
        id: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<(), StoreError> {
        let write = AttemptWrite {
            id,
            outcome: outcome.clone(),
            at,
            latency,
        };
        let mut results = self.record_attempts(account, std::slice::from_ref(&write))?;
        results.pop().unwrap_or(Ok(()))
    }

    fn record_attempts(
        &self,
        account: &AccountId,
        attempts: &[AttemptWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let found = self.fenced_tx(|tx| outbox::record_attempts(tx, account, attempts))?;
        let result = |(a, found): (&AttemptWrite, bool)| match found {
            true => Ok(()),
            false => Err(StoreError::UnknownDelivery {
                path: self.location().into(),
                id: a.id,
            }),
        };
        Ok(attempts.iter().zip(found).map(result).collect())
    }

    fn gather_digest(
        &self,
        account: &AccountId,
        member: DeliveryId,
        window: &DigestWindow<'_>,
        now: DateTime<Utc>,
    ) -> Result<Gathered, StoreError> {
        self.fenced_tx(|tx| digest::gather(tx, account, member, window, now))
    }

    fn record_digest(
        &self,
        account: &AccountId,
        digest: DeliveryId,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
        latency: Duration,
    ) -> Result<usize, StoreError> {
        match self.fenced_tx(|tx| digest::record(tx, account, digest, outcome, at, latency))? {
            0 => Err(StoreError::UnknownDelivery {
                path: self.location().into(),
                id: digest,
            }),
            members => Ok(members),
        }
    }

    fn digest_of(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<DigestMembership>, StoreError> {
        self.conn.with(|c| digest::membership(c, account, id))
    }

    fn digests_waiting(
        &self,
        account: &AccountId,
        sinks: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.conn.with(|c| digest::waiting(c, account, sinks, now))
    }

    fn defer(
        &self,
        account: &AccountId,
        id: DeliveryId,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.fenced_tx(|tx| outbox::defer(tx, account, id, until))
    }

    fn get_delivery(
        &self,
        account: &AccountId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        self.conn.with(|c| outbox::get(c, account, id))
    }

    fn get_deliveries(
        &self,
        account: &AccountId,
        ids: &[DeliveryId],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.conn.with(|c| outbox::get_many(c, account, ids))
    }

    fn list_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.conn.with(|c| outbox::list(c, account, status))
    }

    fn recent_deliveries(
        &self,
        account: &AccountId,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.conn
            .with(|c| status::recent(c, account, status, limit))
    }

    fn item_names(
        &self,
        account: &AccountId,
        ids: &[ExportId],
    ) -> Result<std::collections::BTreeMap<ExportId, String>, StoreError> {
        self.conn.with(|c| status::item_names(c, account, ids))
    }

    fn sink_activity(
        &self,
        account: &AccountId,
        window: usize,
    ) -> Result<Vec<crate::store::SinkActivity>, StoreError> {
        self.conn
            .with(|c| status::sink_activity(c, account, window))
    }

    fn slack_lookup(
        &self,
        sink: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::store::SlackLookup>, StoreError> {
        self.conn.with(|c| slack_cache::get(c, sink, address, now))
    }

    fn remember_slack_lookup(
        &self,
        sink: &str,
        address: &str,
        lookup: &crate::store::SlackLookup,
    ) -> Result<(), StoreError> {
        self.conn
            .with(|c| slack_cache::put(c, sink, address, lookup))
    }

    fn retry_dead(
        &self,
        account: &AccountId,
        id: Option<DeliveryId>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.conn.with(|c| outbox::retry_dead(c, account, id, now))
    }

    fn prune(
        &self,
        account: &AccountId,
        sent_before: DateTime<Utc>,
        fired_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<(usize, usize), StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.in_tx(|tx| {
            let deliveries = outbox::prune_done(tx, account, sent_before, limit)?;
            let fired = snapshot::prune_fired(tx, account, fired_before, limit)?;
            alerts::prune(tx, account, sent_before)?;
            Ok((deliveries, fired))
        })
    }

    fn item_history(&self, account: &AccountId, id: ExportId) -> Result<ItemHistory, StoreError> {
        self.in_tx(|tx| {
            let item = snapshot::stored_item(tx, account, id)?;
            let fired = snapshot::fired_for_item(tx, account, id)?;
            let deliveries = outbox::for_item(tx, account, id)?
                .into_iter()
                .map(|delivery| {
                    let attempts = outbox::attempts_for(tx, delivery.id)?;
                    Ok((delivery, attempts))
                })
                .collect::<PgResult<_>>()?;
            Ok(ItemHistory {
                item,
                fired,
                deliveries,
            })
        })
    }

    fn outbox_counts(
        &self,
        account: &AccountId,
    ) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError> {
        self.conn.with(|c| outbox::counts(c, account))
    }

    fn record_alerts(
        &self,
        account: &AccountId,
        new: &[NewAlert],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.fenced_tx(|tx| alerts::record(tx, account, new, now))
    }

    fn alert_history(&self, account: &AccountId) -> Result<Vec<AlertRecord>, StoreError> {
        self.conn.with(|c| alerts::history(c, account))
    }

    fn dead_count(
        &self,
        account: &AccountId,
        except_sink: &str,
    ) -> Result<(u64, Option<String>), StoreError> {
        self.conn
            .with(|c| outbox::dead_count(c, account, except_sink))
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        self.conn.with(dump::is_empty)
    }

    fn export(&self) -> Result<crate::store::copy::Dump, StoreError> {
        self.conn.with(dump::export)
    }

    fn import(&self, dump: &crate::store::copy::Dump) -> Result<(), StoreError> {
        if self.in_tx(|tx| dump::import(tx, dump))? {
            Ok(())
        } else {
            Err(StoreError::TargetNotEmpty {
                location: self.location(),
            })
        }
    }

    fn try_lead(&self, holder: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let held = self.fence.held();
        let won = self
            .conn
            .with(|c| lease::acquire_or_renew(c, holder, held, ttl))?;
        self.fence.set(won);
        Ok(won)
    }

    fn step_down(&self, holder: &str) -> Result<(), StoreError> {
        let Some(generation) = self.fence.held() else {
            return Ok(());
        };
        self.fence.set(None);
        self.conn.with(|c| lease::release(c, holder, generation))
    }
}
