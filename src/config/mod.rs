//! Configuration: `bot.toml` (with `${VAR}` expansion) layered with
//! `BOT__SECTION__KEY` environment overrides, deserialised strictly and then
//! validated once into a [`Config`] that the rest of the bot can trust.
//!
//! Loading is the only I/O here (reading the file and the environment);
//! [`validate`] is pure.

mod accounts;
mod checked;
mod checks;
mod expand;
mod quiet;
mod raw;
mod settings;
mod source;

use std::path::{Path, PathBuf};

pub use accounts::RawAccount;
pub use checked::*;
pub use expand::expand_str;
pub use raw::{RawConfig, RawSink};

/// What can be wrong with a configuration. Every message names the key (and,
/// where it can be found, the file and line) so the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {var} is not set (used in `{key}`)")]
    UnsetVar { var: String, key: String },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("{path}{line}: `{key}`: {message}", line = line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Located {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// An error about one key, with a message saying what a valid value is.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads, expands, layers and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let env_overrides: Vec<(String, String)> = std::env::vars().collect();
    load_from_str(&text, path, &env, env_overrides)
}

/// The pure part of [`load`]: the file's text, a variable lookup for `${VAR}`
/// and the `BOT__…` overrides, all passed in.
pub fn load_from_str(
    text: &str,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    env_overrides: Vec<(String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    expand::expand_table(&mut table, lookup)?;
    let located = |(key, message): (String, String)| ConfigError::Located {
        path: path.to_path_buf(),
        line: locate_key(text, &key),
        key,
        message,
    };
    // Recipient keys are e-mail addresses: their dots would be read as path
    // separators by the layering, so the table is taken from the file as is.
    let recipients = table.remove("recipients");
    if let Some(toml::Value::Table(accounts)) = table.get("accounts") {
        if let Some(Err(e)) = accounts
            .keys()
            .map(|n| accounts::check_name(n))
            .find(Result::is_err)
        {
            return Err(e);
        }
    }
    let mut raw = layer(table, env_overrides).map_err(located)?;
    if let Some(recipients) = recipients {
        raw.recipients = serde_path_to_error::deserialize(recipients).map_err(|e| {
            located((
                format!("recipients.{}", e.path()),
                e.into_inner().to_string(),
            ))
        })?;
    }
    let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    validate(raw, &base_dir)
}

/// Layers the expanded file under the environment and deserialises strictly;
/// an error comes back as (key path, message).
fn layer(
    table: toml::Table,
    env_overrides: Vec<(String, String)>,
) -> Result<RawConfig, (String, String)> {
    let file = source::TableSource::new(table);
    let env_source = config::Environment::with_prefix("BOT")
        .prefix_separator("__")
        .separator("__")
        .source(Some(env_overrides.into_iter().collect()));
    let merged = config::Config::builder()
        .add_source(file)
        .add_source(env_source)
        .build()
        .map_err(|e| (String::new(), e.to_string()))?;
    serde_path_to_error::deserialize::<_, RawConfig>(merged).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        (key, e.into_inner().to_string())
    })
}

/// Finds the line of the last key of `path` in the file, so errors can point
/// at it. Best effort: `None` when the key is not written literally.
fn locate_key(text: &str, path: &str) -> Option<usize> {
    let last = path.rsplit('.').next()?.trim_matches('"');
    let last = last.split('[').next()?;
    if last.is_empty() {
        return None;
    }
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let key = line.split(['=', ']']).next().unwrap_or("").trim();
            key == last || key.ends_with(&format!(".{last}")) || key == format!("[{last}")
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod accounts_tests;
