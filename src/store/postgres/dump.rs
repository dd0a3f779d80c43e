//! `state copy` for PostgreSQL: every table read in one REPEATABLE READ
//! transaction, or written in one transaction (under the migration lock, so
//! two copies cannot interleave) that first checks the database holds no
//! state. Rows go as column arrays (`UNNEST`), a few thousand per statement;
//! the identity counters are moved past the copied ids.

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Transaction};

use super::rows::{PgError, PgResult};
use crate::store::copy::{column_list, Cell, Dump, Kind, Table, TABLES};

/// Rows per INSERT statement.
const CHUNK: usize = 5_000;

/// See [`crate::store::Store::is_empty`].
pub(super) fn is_empty(db: &mut impl GenericClient) -> PgResult<bool> {
    let row = db.query_one(
        "SELECT NOT (EXISTS (SELECT 1 FROM poll_state) OR EXISTS (SELECT 1 FROM snapshot_items) \
         OR EXISTS (SELECT 1 FROM fired) OR EXISTS (SELECT 1 FROM alerts) \
         OR EXISTS (SELECT 1 FROM outbox))",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// See [`crate::store::Store::export`].
pub(super) fn export(client: &mut Client) -> PgResult<Dump> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let mut dump = Dump::default();
    for table in TABLES {
        let order = if table.has_id { "id" } else { "1, 2" };
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {order}",
            column_list(table),
            table.name
        );
        let rows = tx.query(&sql, &[])?;
        let rows = rows
            .iter()
            .map(|row| cells(table, row))
            .collect::<PgResult<_>>()?;
        dump.tables.push(rows);
    }
    tx.commit()?;
    Ok(dump)
}

fn cells(table: &Table, row: &Row) -> PgResult<Vec<Cell>> {
    let mut out = Vec::with_capacity(table.columns.len());
    for (i, (_, kind)) in table.columns.iter().enumerate() {
        let cell = match kind {
            Kind::Int => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Kind::Bool => row
                .try_get::<_, Option<bool>>(i)?
                .map(|b| Cell::Int(b.into())),
            Kind::Text => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
        };
        out.push(cell.unwrap_or(Cell::Null));
    }
    Ok(out)
}

/// See [`crate::store::Store::import`]; false (nothing written) when the
/// database holds state.
pub(super) fn import(tx: &mut Transaction<'_>, dump: &Dump) -> PgResult<bool> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&super::schema::MIGRATION_LOCK],
    )?;
    if !is_empty(tx)? {
        return Ok(false);
    }
    for (table, rows) in TABLES.iter().zip(&dump.tables) {
        for chunk in rows.chunks(CHUNK) {
            insert_chunk(tx, table, chunk)?;
        }
        if table.has_id {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'id'), \
                     GREATEST(COALESCE(MAX(id), 0), 1), MAX(id) IS NOT NULL) FROM {t}",
                    t = table.name
                ),
                &[],
            )?;
        }
    }
    Ok(true)
}

/// One column's values as the array its `UNNEST` parameter takes.
enum Column {
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
}

fn insert_chunk(tx: &mut Transaction<'_>, table: &Table, rows: &[Vec<Cell>]) -> PgResult<()> {
    let mut columns = Vec::with_capacity(table.columns.len());
    let mut casts = Vec::with_capacity(table.columns.len());
    for (i, (name, kind)) in table.columns.iter().enumerate() {
        let wrong = |cell: &Cell| PgError::Decode {
            column: name,
            reason: format!("{cell:?} does not fit a {kind:?} column"),
        };
        let column = match kind {
            Kind::Int => Column::Int(
                rows.iter()
                    .map(|r| int(&r[i]).ok_or_else(|| wrong(&r[i])))
                    .collect::<PgResult<_>>()?,
            ),
            Kind::Bool => Column::Bool(
                rows.iter()
                    .map(|r| {
                        int(&r[i])
                            .map(|n| n.map(|n| n != 0))
                            .ok_or_else(|| wrong(&r[i]))
                    })
                    .collect::<PgResult<_>>()?,
            ),
            Kind::Text => Column::Text(
                rows.iter()
                    .map(|r| text(&r[i]).ok_or_else(|| wrong(&r[i])))
                    .collect::<PgResult<_>>()?,
            ),
        };
        let cast = match kind {
            Kind::Int => "BIGINT[]",
            Kind::Bool => "BOOLEAN[]",
            Kind::Text => "TEXT[]",
        };
        casts.push(format!("${}::{cast}", i + 1));
        columns.push(column);
    }
    let params: Vec<&(dyn ToSql + Sync)> = columns
        .iter()
        .map(|c| match c {
            Column::Int(v) => v as &(dyn ToSql + Sync),
            Column::Bool(v) => v as &(dyn ToSql + Sync),
            Column::Text(v) => v as &(dyn ToSql + Sync),
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        table.name,
        column_list(table),
        casts.join(", ")
    );
    tx.execute(&sql, &params)?;
    Ok(())
}

/// An integer cell (`Some(None)` for NULL); `None` if it is text.
fn int(cell: &Cell) -> Option<Option<i64>> {
    match cell {
        Cell::Null => Some(None),
        Cell::Int(n) => Some(Some(*n)),
        Cell::Text(_) => None,
    }
}

/// A text cell (`Some(None)` for NULL). An integer is written as its
/// decimal text: SQLite keeps a snapshot status as the API's code (INTEGER)
/// or an unknown name (TEXT) in one column, PostgreSQL keeps both as TEXT.
fn text(cell: &Cell) -> Option<Option<String>> {
    match cell {
        Cell::Null => Some(None),
        Cell::Text(t) => Some(Some(t.clone())),
        Cell::Int(n) => Some(Some(n.to_string())),
    }
}
