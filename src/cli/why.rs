//! `why ITEM`: an item's stored states, fired events and deliveries.

use crate::app::dispatch::QuietPlan;
use crate::domain::{AccountId, ExportId};
use crate::report;

use super::{load, Failure};

/// Prints the item's history from the store, and what a pending delivery
/// waits for by the config (quiet hours).
pub(super) fn why(path: &std::path::Path, item_id: i64) -> Result<(), Failure> {
    let config = load(path)?;
    let store = crate::store::open(&config.watch.state).map_err(|e| Failure::Runtime(e.into()))?;
    let id = ExportId(item_id);
    let history = store
        .item_history(&AccountId::default_account(), id)
        .map_err(|e| Failure::Runtime(e.into()))?;
    let quiet = QuietPlan::new(&config);
    let now = chrono::Utc::now();
    out!(
        "{}",
        report::why(id, &history, &|d| quiet.waiting_note(d, now))
    );
    Ok(())
}
