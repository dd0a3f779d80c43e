//! `state copy --from A --to B`: moves every row of every table (snapshots,
//! poll bookkeeping, fired records, alerts, the outbox and its attempt log)
//! from one backend to another, ids kept, in one transaction on the target,
//! refusing a target that already holds state. Backend-neutral: rows travel
//! as [`Cell`]s in the column order of [`TABLES`]; both backends store the
//! same forms (unix milliseconds, RFC 3339 text), so the copy is lossless.

use super::{Store, StoreError};

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer (also booleans, as 0/1).
    Int(i64),
    /// Text.
    Text(String),
}

/// How a column is stored (PostgreSQL is typed; SQLite takes anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// BIGINT / INTEGER.
    Int,
    /// BOOLEAN in PostgreSQL, 0/1 in SQLite.
    Bool,
    /// TEXT.
    Text,
}

/// One table and its columns, parents before children.
#[derive(Debug)]
pub struct Table {
    /// The table's name (the same in both backends).
    pub name: &'static str,
    /// Its columns, in the order rows carry them.
    pub columns: &'static [(&'static str, Kind)],
    /// Whether `id` is an identity column whose counter follows the copy.
    pub has_id: bool,
}

use Kind::{Bool, Int, Text};

/// Every table, in an order that satisfies the foreign keys.
pub const TABLES: &[Table] = &[
    Table {
        name: "poll_state",
        columns: &[
            ("account", Text),
            ("nr_of_days", Int),
            ("last_success_at", Int),
        ],
        has_id: false,
    },
    Table {
        name: "snapshot_items",
        columns: &[
            ("account", Text),
            ("item_id", Int),
            // The API's code, or an unknown status name (see ExportStatus::raw).
            ("status", Text),
            ("downloadable", Bool),
            ("attempts", Int),
            ("action_name", Text),
            ("action_url", Text),
            ("requested_by", Text),
            ("created_date", Text),
        ],
        has_id: false,
    },
    Table {
        name: "fired",
        columns: &[
            ("account", Text),
            ("item_id", Int),
            ("event", Text),
            ("fired_at", Int),
        ],
        has_id: false,
    },
    Table {
        name: "alerts",
        columns: &[
            ("id", Int),
            ("account", Text),
            ("condition", Text),
            ("state", Text),
            ("at", Int),
        ],
        has_id: true,
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("account", Text),
            ("item_id", Int),
            ("alert_id", Int),
            ("event", Text),
            ("sink", Text),
            ("recipient", Text),
            ("message", Text),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("digest_id", Int),
        ],
        has_id: true,
    },
    Table {
        name: "attempts_log",
        columns: &[
            ("id", Int),
            ("delivery_id", Int),
            ("at", Int),
            ("outcome", Text),
            ("error", Text),
            ("latency_ms", Int),
        ],
        has_id: true,
    },
];

/// Every row of every table, parallel to [`TABLES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// `tables[i]` holds the rows of `TABLES[i]`.
    pub tables: Vec<Vec<Vec<Cell>>>,
}

impl Dump {
    /// Rows per table name, for the command's summary line.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        TABLES
            .iter()
            .zip(&self.tables)
            .map(|(table, rows)| (table.name, rows.len()))
            .collect()
    }
}

/// The column list of `table`, comma-separated, for SELECT and INSERT.
pub fn column_list(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Copies everything in `from` into the empty `to`; returns the rows per
/// table. A `to` that holds any state is refused untouched
/// ([`StoreError::TargetNotEmpty`]; the target checks again inside its
/// transaction).
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<Vec<(&'static str, usize)>, StoreError> {
    if !to.is_empty()? {
        return Err(StoreError::TargetNotEmpty {
            location: to.location(),
        });
    }
    let dump = from.export()?;
    to.import(&dump)?;
    tracing::info!(from = %from.location(), to = %to.location(), rows = ?dump.counts(), "state copied");
    Ok(dump.counts())
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
