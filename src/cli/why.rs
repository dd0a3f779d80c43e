//! `why ITEM`: an item's stored states, fired events and deliveries.

use crate::domain::{AccountId, ExportId};
use crate::report;

use super::{open_store, Failure};

/// Prints the item's history from the store.
pub(super) fn why(path: &std::path::Path, item_id: i64) -> Result<(), Failure> {
    let store = open_store(path)?;
    let id = ExportId(item_id);
    let history = store
        .item_history(&AccountId::default_account(), id)
        .map_err(|e| Failure::Runtime(e.into()))?;
    out!("{}", report::why(id, &history));
    Ok(())
}
