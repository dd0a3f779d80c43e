//! `${VAR}` expansion inside `bot.toml` string values, so secrets stay in the
//! environment. An unset variable is an error naming both the variable and the
//! key it was used in; `$${` writes a literal `${`.

use super::ConfigError;

/// Expands every string in a parsed TOML document in place. `lookup` is the
/// environment (injected so the logic stays pure and testable).
pub fn expand_table(
    table: &mut toml::Table,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        expand_value(value, key, lookup)?;
    }
    Ok(())
}

fn expand_value(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => *text = expand_str(text, path, lookup)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                expand_value(item, &format!("{path}.{}", quote_key(key)), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn quote_key(key: &str) -> String {
    let bare = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// Expands one string; `path` names the key for the error.
pub fn expand_str(
    text: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| ConfigError::Invalid {
                key: path.to_string(),
                message: "`${` without a closing `}` (write `$${` for a literal `${`)".into(),
            })?;
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(ConfigError::Invalid {
                    key: path.to_string(),
                    message: format!("`${{{name}}}` is not a valid variable name"),
                });
            }
            let value = lookup(name).ok_or_else(|| ConfigError::UnsetVar {
                var: name.to_string(),
                key: path.to_string(),
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr&t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_variables_anywhere_in_the_string() {
        let got = expand_str("Bearer ${SECRET}!", "k", &env).unwrap();
        assert_eq!(got, "Bearer s3cr&t!");
        assert_eq!(expand_str("${EMPTY}", "k", &env).unwrap(), "");
        assert_eq!(expand_str("cost $5", "k", &env).unwrap(), "cost $5");
        assert_eq!(expand_str("$${SECRET}", "k", &env).unwrap(), "${SECRET}");
    }

    #[test]
    fn unset_variable_names_variable_and_key() {
        let mut table: toml::Table =
            toml::from_str("[sinks.team_slack]\nurl = \"${SLACK_URL}\"").unwrap();
        let err = expand_table(&mut table, &env).unwrap_err().to_string();
        assert!(err.contains("SLACK_URL"), "{err}");
        assert!(err.contains("sinks.team_slack.url"), "{err}");
    }

    #[test]
    fn unclosed_or_bad_names_are_errors() {
        assert!(expand_str("${OPEN", "k", &env).is_err());
        assert!(expand_str("${1X}", "k", &env).is_err());
    }

    #[test]
    fn expands_inside_arrays_and_nested_tables() {
        let mut table: toml::Table =
            toml::from_str("a = [\"${SECRET}\"]\n[b.\"x@y\"]\nc = \"${SECRET}\"").unwrap();
        expand_table(&mut table, &env).unwrap();
        assert_eq!(table["a"][0].as_str(), Some("s3cr&t"));
        assert_eq!(table["b"]["x@y"]["c"].as_str(), Some("s3cr&t"));
    }
}
