//! `outbox list|retry|purge`: inspect and repair the outbox.

use crate::config::Config;
use crate::domain::{AccountId, Delivery, DeliveryId};
use crate::report;
use crate::store::{Store, StoreError};

use super::{open_store, Failure, OutboxAction};

/// Runs one `outbox` action against the rows of every configured account,
/// and of every account that left the config with deliveries still pending
/// (`run` and `once` send those too, so they are listed, retried and purged
/// with the rest).
pub(super) fn outbox(path: &std::path::Path, action: OutboxAction) -> Result<(), Failure> {
    let (config, store) = open_store(path)?;
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    let accounts = accounts(&config, &*store).map_err(runtime)?;
    match action {
        OutboxAction::List { status, json } => {
            let deliveries = list(&*store, &accounts, status).map_err(runtime)?;
            let notes = digest_notes(&*store, &config, deliveries.iter().map(|(a, d)| (a, d)))
                .map_err(runtime)?;
            if json {
                outln!("{}", report::outbox_json(&deliveries, &notes));
            } else {
                out!("{}", report::outbox_table(&deliveries, &notes));
            }
        }
        OutboxAction::Retry { id, all_dead } => {
            let id = if all_dead { None } else { id.map(DeliveryId) };
            let mut n = 0;
            for account in &accounts {
                n += store
                    .retry_dead(account, id, chrono::Utc::now())
                    .map_err(runtime)?;
            }
            if n == 0 {
                let what = id.map_or("no dead deliveries".to_string(), |id| {
                    format!("delivery {id} is not dead (or does not exist)")
                });
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "nothing to retry: {what}"
                )));
            }
            outln!(
                "{n} delivery(ies) pending again; a running `run` sends them now, or run `once`"
            );
        }
        OutboxAction::Purge { sent_before } => {
            let cutoff = crate::retention::cutoff(chrono::Utc::now(), sent_before);
            let keep_fired = chrono::DateTime::<chrono::Utc>::MIN_UTC;
            let mut n = 0;
            for account in &accounts {
                let (pruned, _) = store
                    .prune(account, cutoff, keep_fired, usize::MAX)
                    .map_err(runtime)?;
                n += pruned;
            }
            outln!("{n} sent or skipped delivery(ies) deleted");
        }
    }
    Ok(())
}

/// The configured accounts in config order, then those only the outbox
/// still knows (with a pending delivery), by name.
pub(super) fn accounts(config: &Config, store: &dyn Store) -> Result<Vec<AccountId>, StoreError> {
    let mut accounts: Vec<AccountId> = config.accounts.iter().map(|a| a.id.clone()).collect();
    let mut left = store.accounts_with_pending()?;
    left.retain(|id| config.account(id).is_none());
    accounts.extend(left);
    Ok(accounts)
}

/// Every account's deliveries (or those with one status), newest first.
fn list(
    store: &dyn Store,
    accounts: &[AccountId],
    status: Option<crate::domain::DeliveryStatus>,
) -> Result<Vec<(AccountId, crate::domain::Delivery)>, StoreError> {
    let mut rows = Vec::new();
    for account in accounts {
        let deliveries = store.list_deliveries(account, status)?;
        rows.extend(deliveries.into_iter().map(|d| (account.clone(), d)));
    }
    rows.sort_by(|(_, a), (_, b)| b.created_at.cmp(&a.created_at).then(b.id.0.cmp(&a.id.0)));
    Ok(rows)
}

/// Each delivery's digest note (`crate::digest::note`), read for the
/// deliveries of sinks with a digest only.
pub(super) fn digest_notes<'a>(
    store: &dyn Store,
    config: &Config,
    deliveries: impl IntoIterator<Item = (&'a AccountId, &'a Delivery)>,
) -> Result<Vec<Option<String>>, StoreError> {
    deliveries
        .into_iter()
        .map(|(account, d)| {
            let gathering = config
                .sinks
                .get(&d.sink)
                .is_some_and(|s| s.digest.is_some());
            if !gathering {
                return Ok(None);
            }
            let membership = store.digest_of(account, d.id)?;
            Ok(crate::digest::note(d, membership.as_ref(), gathering))
        })
        .collect()
}
