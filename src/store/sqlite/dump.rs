//! `state copy` for the SQLite file: every table read in one read
//! transaction, or written in one IMMEDIATE transaction that first checks the
//! file holds no state.

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use crate::store::copy::{column_list, Cell, Dump, Kind, TABLES};

/// The tables whose rows mean "this file holds state".
const STATE_TABLES: [&str; 5] = ["poll_state", "snapshot_items", "fired", "alerts", "outbox"];

/// See [`crate::store::Store::is_empty`].
pub(super) fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    let any: Vec<String> = STATE_TABLES
        .iter()
        .map(|t| format!("EXISTS (SELECT 1 FROM {t})"))
        .collect();
    let sql = format!("SELECT NOT ({})", any.join(" OR "));
    conn.query_row(&sql, [], |row| row.get(0))
}

/// See [`crate::store::Store::export`].
pub(super) fn export(conn: &mut Connection) -> rusqlite::Result<Dump> {
    let tx = conn.transaction()?;
    let mut dump = Dump::default();
    for table in TABLES {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY rowid",
            column_list(table),
            table.name
        );
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map([], |row| {
            (0..table.columns.len())
                .map(|i| cell(row.get::<_, Value>(i)?, i, table.columns[i].1))
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?;
        dump.tables.push(rows.collect::<rusqlite::Result<_>>()?);
    }
    Ok(dump)
}

/// One value as a [`Cell`] of the column's kind: SQLite keeps a snapshot
/// status as INTEGER (a code) or TEXT (an unknown name) in one column, and a
/// TEXT-kind column always dumps as text, as PostgreSQL's does.
fn cell(value: Value, idx: usize, kind: Kind) -> rusqlite::Result<Cell> {
    match value {
        Value::Null => Ok(Cell::Null),
        Value::Integer(n) if kind == Kind::Text => Ok(Cell::Text(n.to_string())),
        Value::Integer(n) => Ok(Cell::Int(n)),
        Value::Text(text) => Ok(Cell::Text(text)),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            idx,
            other.data_type(),
            "not an integer or text".into(),
        )),
    }
}

/// See [`crate::store::Store::import`]; false (nothing written) when the
/// file holds state.
pub(super) fn import(conn: &mut Connection, dump: &Dump) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_empty(&tx)? {
        return Ok(false);
    }
    for (table, rows) in TABLES.iter().zip(&dump.tables) {
        let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            column_list(table),
            marks.join(", ")
        );
        let mut stmt = tx.prepare(&sql)?;
        for row in rows {
            let values = row.iter().map(|c| match c {
                Cell::Null => Value::Null,
                Cell::Int(n) => Value::Integer(*n),
                Cell::Text(t) => Value::Text(t.clone()),
            });
            stmt.execute(rusqlite::params_from_iter(values))?;
        }
    }
    tx.commit()?;
    Ok(true)
}
