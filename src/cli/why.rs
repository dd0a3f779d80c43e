//! `why ITEM [--account NAME]`: an item's stored states, fired events and
//! deliveries. The same Id may exist in several accounts; `--account` is
//! needed only then.

use crate::app::dispatch::QuietPlan;
use crate::domain::{AccountId, ExportId};
use crate::report;
use crate::store::{ItemHistory, Store};

use super::{open_store, Failure};

/// Prints the item's history from the store, of `account` or of the one
/// configured account that knows the item, and what a pending delivery
/// waits for by the config (quiet hours).
pub(super) fn why(
    path: &std::path::Path,
    item_id: i64,
    account: Option<String>,
) -> Result<(), Failure> {
    let (config, store) = open_store(path)?;
    let runtime = |e: crate::store::StoreError| Failure::Runtime(e.into());
    let id = ExportId(item_id);
    // The configured accounts, and those that left the config with
    // deliveries still pending (`run` sends them).
    let known = super::outbox::accounts(&config, &*store).map_err(runtime)?;
    let accounts: Vec<AccountId> = match account {
        Some(name) => {
            let Some(known) = known.iter().find(|a| a.as_str() == name) else {
                let names: Vec<&str> = known.iter().map(|a| a.as_str()).collect();
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--account {name:?}: no such account in the config (accounts: {})",
                    names.join(", ")
                )));
            };
            vec![known.clone()]
        }
        None => known,
    };
    let (account, history) = pick(&*store, &accounts, id)?;
    if accounts.len() > 1 || account != AccountId::default_account() {
        outln!("account {account}");
    }
    let deliveries = history.deliveries.iter().map(|(d, _)| (&account, d));
    let notes = super::outbox::digest_notes(&*store, &config, deliveries).map_err(runtime)?;
    let quiet = QuietPlan::new(&config);
    let now = chrono::Utc::now();
    out!(
        "{}",
        report::why(id, &history, &notes, &|d| quiet.waiting_note(d, now))
    );
    Ok(())
}

/// The one account whose state knows item `id` (the first account when
/// none does); an error naming them when several do.
fn pick(
    store: &dyn Store,
    accounts: &[AccountId],
    id: ExportId,
) -> Result<(AccountId, ItemHistory), Failure> {
    let mut found = Vec::new();
    for account in accounts {
        let history = store
            .item_history(account, id)
            .map_err(|e| Failure::Runtime(e.into()))?;
        let known =
            history.item.is_some() || !history.fired.is_empty() || !history.deliveries.is_empty();
        if known || accounts.len() == 1 {
            found.push((account.clone(), history));
        }
    }
    match found.len() {
        0 => {
            let first = accounts[0].clone();
            let history = store
                .item_history(&first, id)
                .map_err(|e| Failure::Runtime(e.into()))?;
            Ok((first, history))
        }
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<&str> = found.iter().map(|(a, _)| a.as_str()).collect();
            Err(Failure::Usage(anyhow::anyhow!(
                "item {id} exists in several accounts ({}); say which with --account NAME",
                names.join(", ")
            )))
        }
    }
}
