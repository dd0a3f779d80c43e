//! `why ITEM`: an item's stored states, fired events and deliveries.

use crate::domain::{AccountId, ExportId};
use crate::report;

use super::{load, open_store, Failure};

/// Prints the item's history from the store.
pub(super) fn why(path: &std::path::Path, item_id: i64) -> Result<(), Failure> {
    let store = open_store(path)?;
    let runtime = |e: crate::store::StoreError| Failure::Runtime(e.into());
    let id = ExportId(item_id);
    let history = store
        .item_history(&AccountId::default_account(), id)
        .map_err(runtime)?;
    let deliveries = history.deliveries.iter().map(|(d, _)| d);
    let notes = super::outbox::digest_notes(&*store, &load(path)?, deliveries).map_err(runtime)?;
    out!("{}", report::why(id, &history, &notes));
    Ok(())
}
