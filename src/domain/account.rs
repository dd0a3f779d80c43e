//! Which Crayon account a row of state belongs to. Every query of the store
//! is keyed on it, so the same item id in two accounts is two items and one
//! account's outbox never leaks into another's (SPEC: several accounts).

use std::fmt;
use std::str::FromStr;

/// A Crayon account's name: lowercase snake_case (`[a-z][a-z0-9_]*`), as the
/// `[accounts.NAME]` tables spell it. A config without `[accounts]` has the
/// single account [`AccountId::default_account`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// Why a name is not an account name; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an account name (lowercase snake_case: a-z first, then a-z, 0-9 or _)")]
pub struct InvalidAccountId {
    /// The refused name.
    pub name: String,
}

impl AccountId {
    /// The account of a config with `[crayon]` alone: `default`. State files
    /// written before accounts existed hold only this one.
    pub fn default_account() -> AccountId {
        AccountId("default".to_owned())
    }

    /// Checks and wraps a name (see the type's rules).
    pub fn new(name: &str) -> Result<AccountId, InvalidAccountId> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok {
            Ok(AccountId(name.to_owned()))
        } else {
            Err(InvalidAccountId {
                name: name.to_owned(),
            })
        }
    }

    /// The name, as stored in the state file's `account` columns.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AccountId {
    fn default() -> Self {
        AccountId::default_account()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_named_default() {
        assert_eq!(AccountId::default_account().as_str(), "default");
        assert_eq!(AccountId::default(), AccountId::default_account());
    }

    #[test]
    fn only_lowercase_snake_case_names_are_accounts() {
        for good in ["default", "contoso", "eu_west_2", "a"] {
            assert_eq!(AccountId::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "Contoso", "2nd", "_x", "a-b", "a b", "é"] {
            let err = AccountId::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
