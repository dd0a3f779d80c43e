//! `crayon-export-bot state copy --from A --to B`: moves an existing state
//! between an SQLite file and a PostgreSQL database (either way). `${VAR}`
//! in either argument is expanded as in `bot.toml` (so the password stays in
//! the environment); a target that already holds state is refused. The
//! work is [`crate::store::copy::copy`]; this is the command's wiring.

use std::path::{Path, PathBuf};

use crate::config::{expand_str, ConfigError};
use crate::store::{self, LocationError, StateLocation, StoreError};

/// `state …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StateAction {
    /// Copy every snapshot, fired record, delivery and alert to an empty
    /// state (a file path or a postgres:// URL).
    Copy(StateCopyArgs),
}

/// `state copy` arguments.
#[derive(Debug, clap::Args)]
pub struct StateCopyArgs {
    /// The state to read: a file path or a postgres:// URL (`${VAR}` expanded).
    #[arg(long)]
    pub from: String,
    /// The empty state to write: a file path or a postgres:// URL.
    #[arg(long)]
    pub to: String,
    /// Extra CA certificates (PEM) to trust for the database's TLS, as
    /// `tls.ca_file` does for `run`.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// Why `state copy` failed (never shows a password).
#[derive(Debug, thiserror::Error)]
pub enum StateCopyError {
    /// `${VAR}` in an argument names an unset variable.
    #[error("--{arg}: {source}")]
    Expand {
        arg: &'static str,
        source: ConfigError,
    },
    /// An argument is not a usable location.
    #[error("--{arg} {source}")]
    Location {
        arg: &'static str,
        source: LocationError,
    },
    /// The source file does not exist (it would be created empty).
    #[error("--from {}: no such state file", path.display())]
    NoSource { path: PathBuf },
    /// Both arguments name the same state.
    #[error("--from and --to name the same state ({0})")]
    Same(String),
    /// Opening, reading or writing a state failed (or the target has state).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the copy; `lookup` is the environment. Returns rows per table.
pub fn run(
    args: &StateCopyArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(&'static str, usize)>, StateCopyError> {
    let from = location("from", &args.from, args.ca_file.as_deref(), lookup)?;
    let to = location("to", &args.to, args.ca_file.as_deref(), lookup)?;
    if from == to {
        return Err(StateCopyError::Same(from.to_string()));
    }
    if let Some(path) = from.file().filter(|p| !p.exists()) {
        return Err(StateCopyError::NoSource {
            path: path.to_path_buf(),
        });
    }
    let source = store::open(&from)?;
    let target = store::open(&to)?;
    Ok(store::copy::copy(&*source, &*target)?)
}

/// One argument, expanded and parsed (paths relative to the current folder).
fn location(
    arg: &'static str,
    text: &str,
    ca_file: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<StateLocation, StateCopyError> {
    let text =
        expand_str(text, arg, lookup).map_err(|source| StateCopyError::Expand { arg, source })?;
    let mut location = StateLocation::parse(&text, Path::new(""))
        .map_err(|source| StateCopyError::Location { arg, source })?;
    if let StateLocation::Postgres(url) = &mut location {
        url.set_ca_file(ca_file.map(Path::to_path_buf));
    }
    Ok(location)
}

/// `state copy`: runs it with the process environment and prints the rows
/// copied per table. A bad argument is a usage error (exit 2), a refused or
/// failed copy a runtime one (exit 1).
pub(super) fn state(action: StateAction) -> Result<(), super::Failure> {
    let StateAction::Copy(args) = action;
    match run(&args, &|name| std::env::var(name).ok()) {
        Ok(counts) => {
            for (table, rows) in counts {
                outln!("{table}: {rows} row(s)");
            }
            Ok(())
        }
        Err(e @ (StateCopyError::Expand { .. } | StateCopyError::Location { .. })) => {
            Err(super::Failure::Usage(e.into()))
        }
        Err(e) => Err(super::Failure::Runtime(e.into())),
    }
}
