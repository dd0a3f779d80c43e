//! The expanded `bot.toml` as a `config` source, converted in one pass.
//!
//! `config::Config::try_from(&table)` sets every leaf value on its own and
//! rebuilds the whole merged tree after each one, so loading grew with the
//! square of the config's size: 1,000 `[accounts.NAME]` took seconds to
//! start. This source hands the tree over as it is, with the same shape
//! `try_from` produced (empty tables and arrays left out, as it never set
//! them), so layering and every error stay as they were.

use config::{Map, Source, Value, ValueKind};

/// The file's table, ready to be layered under the environment.
#[derive(Debug, Clone)]
pub struct TableSource {
    table: Map<String, Value>,
}

impl TableSource {
    /// Converts `table` once; every later `collect` is a clone of the result.
    pub fn new(table: toml::Table) -> Self {
        TableSource {
            table: convert_table(table).unwrap_or_default(),
        }
    }
}

impl Source for TableSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        #[cfg(test)]
        counts::COLLECTED.with(|c| c.set(c.get() + 1));
        Ok(self.table.clone())
    }
}

/// One value, or `None` where `try_from` would have set nothing (an empty
/// table or array, or one holding only such).
fn convert(value: toml::Value) -> Option<Value> {
    #[cfg(test)]
    counts::CONVERTED.with(|c| c.set(c.get() + 1));
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s),
        toml::Value::Integer(i) => ValueKind::I64(i),
        toml::Value::Float(f) => ValueKind::Float(f),
        toml::Value::Boolean(b) => ValueKind::Boolean(b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => ValueKind::Array(convert_array(items)?),
        toml::Value::Table(table) => ValueKind::Table(convert_table(table)?),
    };
    Some(Value::new(None, kind))
}

fn convert_table(table: toml::Table) -> Option<Map<String, Value>> {
    let out: Map<String, Value> = table
        .into_iter()
        .filter_map(|(key, value)| Some((key, convert(value)?)))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Elements that set nothing become nil before a later one that does, and
/// are left off at the end (an array is as long as its last set index).
fn convert_array(items: Vec<toml::Value>) -> Option<Vec<Value>> {
    let mut out: Vec<Value> = items
        .into_iter()
        .map(|v| convert(v).unwrap_or_else(|| Value::new(None, ValueKind::Nil)))
        .collect();
    while out.last().is_some_and(|v| matches!(v.kind, ValueKind::Nil)) {
        out.pop();
    }
    (!out.is_empty()).then_some(out)
}

/// How much work a load did, for the tests that keep it linear.
#[cfg(test)]
pub mod counts {
    use std::cell::Cell;

    thread_local! {
        /// Values converted from the file's table (once each).
        pub static CONVERTED: Cell<usize> = const { Cell::new(0) };
        /// Times the layering read the whole converted table.
        pub static COLLECTED: Cell<usize> = const { Cell::new(0) };
    }

    /// Resets both counters on this thread.
    pub fn reset() {
        CONVERTED.with(|c| c.set(0));
        COLLECTED.with(|c| c.set(0));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::counts;
    use crate::config::{load_from_str, Config, ConfigError};

    /// `[crayon]` defaults and `n` accounts of two keys each.
    fn accounts(n: usize) -> String {
        let mut text = String::from(
            "[crayon]\nbase_url = \"https://api.crayon.com\"\nclient_id = \"id\"\n\
             client_secret = \"s\"\n\n[sinks.audit]\nkind = \"webhook\"\n\
             url = \"https://hooks.example.com/x\"\n",
        );
        for i in 0..n {
            text.push_str(&format!(
                "\n[accounts.a{i:04}]\nusername = \"u{i}@example.com\"\npassword = \"p{i}\"\n"
            ));
        }
        text
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_from_str(text, Path::new("bot.toml"), &|_| None, env)
    }

    /// (values converted, table collections) of loading `n` accounts.
    fn work(n: usize) -> (usize, usize) {
        counts::reset();
        let config = load(&accounts(n), &[]).unwrap();
        assert_eq!(config.accounts.len(), n);
        (
            counts::CONVERTED.with(|c| c.get()),
            counts::COLLECTED.with(|c| c.get()),
        )
    }

    /// The quadratic start-up (every value set on its own, the whole tree
    /// rebuilt after each) without a clock: each value of the file is
    /// converted once and the table is read once, however many accounts.
    #[test]
    fn loading_touches_each_value_once_however_many_accounts() {
        let (small, small_reads) = work(100);
        let (large, large_reads) = work(1000);
        assert_eq!((small_reads, large_reads), (1, 1), "the table is read once");
        // Each account is its table plus two values.
        assert_eq!(large - small, 900 * 3, "{small} → {large} conversions");
    }

    #[test]
    fn the_environment_still_overrides_an_account_and_errors_name_the_key() {
        let text = accounts(3);
        let config = load(
            &text,
            &[("BOT__ACCOUNTS__A0001__USERNAME", "env@example.com")],
        );
        let config = config.unwrap();
        assert_eq!(config.accounts[1].crayon.username, "env@example.com");
        let broken = text.replace("password = \"p2\"", "password = \"p2\"\ninterval = 5");
        let err = load(&broken, &[]).unwrap_err().to_string();
        assert!(err.contains("accounts.a0002.interval"), "{err}");
    }

    /// An empty table or array sets nothing, as with `try_from` before:
    /// `vars = {}` and `to = []` are as if not written.
    #[test]
    fn empty_tables_and_arrays_are_left_out_as_before() {
        let mut text = accounts(1);
        text.push_str("vars = {}\n\n[accounts.empty]\n");
        let config = load(&text, &[]).unwrap();
        let names: Vec<String> = config.accounts.iter().map(|a| a.id.to_string()).collect();
        assert_eq!(names, ["a0000"]);
        assert!(config.accounts[0].vars.is_empty());
    }
}
