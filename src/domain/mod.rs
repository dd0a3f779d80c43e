//! Domain types shared by every module: what an export queue item is, what a
//! snapshot of the queue is, which events exist and what a delivery carries.
//!
//! The wire names (`Id`, `Status`, …) are the Crayon API's own; parsing here is
//! strict about the fields the bot relies on and tolerant of everything else, so
//! a body that is not the documented shape fails instead of looking empty.

/// A real queue answer (two items), used as the sample item for `check`,
/// `render` and the built-in template tests.
pub const SAMPLE_QUEUE: &[u8] = include_bytes!("../../tests/fixtures/exports-sample.json");

mod account;
mod delivery;
mod event;
mod item;
mod snapshot;
mod subject;

pub use account::{AccountId, InvalidAccountId};
pub use delivery::{
    Delivery, DeliveryId, DeliveryStatus, Disposition, NewDelivery, RenderedMessage, StoredContext,
};
pub use event::{EventKind, RemovedReason};
pub use item::{crayon_date, ExportId, ExportItem, ExportStatus};
pub use snapshot::{sort_and_dedup, Change, MalformedQueue, Polled, QueueAnswer, Snapshot};
pub use subject::{AlertCondition, AlertState, Subject};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
