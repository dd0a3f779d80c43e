//! `[accounts.NAME]`: several Crayon logins in one process. Each account
//! takes `[crayon]`'s keys as defaults and may set any of them, plus its own
//! `interval` and `vars`. `[crayon]` alone (no `[accounts]`) is the single
//! account `default`, exactly as in version 0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::checks::{nonzero, parse_url, require_https_unless_loopback};
use super::raw::RawCrayon;
use super::settings::{AccountConfig, CrayonConfig};
use super::ConfigError;
use crate::domain::AccountId;
use crate::secret::Secret;

/// `[accounts.NAME]` as written: every `[crayon]` key (each optional, the
/// `[crayon]` value being the default), plus the account's own schedule and
/// template variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    /// The API root (default `crayon.base_url`).
    pub base_url: Option<String>,
    /// OAuth2 client id (default `crayon.client_id`).
    pub client_id: Option<String>,
    /// OAuth2 client secret (default `crayon.client_secret`).
    pub client_secret: Option<Secret>,
    /// The Crayon user this account signs in as.
    pub username: Option<String>,
    /// That user's password; usually `${VAR}`.
    pub password: Option<Secret>,
    /// OAuth2 scope (default `crayon.scope`, else `CustomerApi`).
    pub scope: Option<String>,
    /// Per-request timeout (default `crayon.timeout`, else `30s`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest queue answer read (default `crayon.max_body`, else `64MiB`).
    pub max_body: Option<String>,
    /// Time between this account's polls (default `watch.interval`).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Free-form values templates see as `account.vars`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// Checks an `[accounts]` table name as written in the file (before the
/// layering, which would lowercase it silently).
pub fn check_name(name: &str) -> Result<AccountId, ConfigError> {
    AccountId::new(name)
        .map_err(|e| ConfigError::invalid(format!("accounts.{name}"), e.to_string()))
}

/// The checked accounts, sorted by name: every `[accounts.NAME]` over the
/// `[crayon]` defaults, and the account `default` when there is no
/// `[accounts]` table or `[crayon]` names a `username` of its own.
pub fn check_accounts(
    crayon: RawCrayon,
    accounts: BTreeMap<String, RawAccount>,
    interval: Duration,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let mut out = Vec::new();
    // Looked up per account: a set, so 10,000 accounts check as fast as 1,000.
    let mut taken = BTreeSet::new();
    if accounts.is_empty() || crayon.username.is_some() {
        taken.insert(AccountId::default_account());
        let own = RawAccount::default();
        out.push(merge(
            "crayon",
            AccountId::default_account(),
            &crayon,
            own,
            interval,
        )?);
    }
    for (name, raw) in accounts {
        let id = check_name(&name)?;
        if !taken.insert(id.clone()) {
            return Err(ConfigError::invalid(
                format!("accounts.{name}"),
                "the account `default` is already [crayon] itself (it sets username); \
                 remove username from [crayon] or rename this account",
            ));
        }
        let prefix = format!("accounts.{name}");
        out.push(merge(&prefix, id, &crayon, raw, interval)?);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The names a route may list, for `routes[i].accounts`.
pub fn names(accounts: &[AccountConfig]) -> BTreeSet<AccountId> {
    accounts.iter().map(|a| a.id.clone()).collect()
}

/// One account: its own keys over `[crayon]`'s, then checked. Errors name
/// the key where the value is missing or wrong (`prefix.key`).
fn merge(
    prefix: &str,
    id: AccountId,
    crayon: &RawCrayon,
    own: RawAccount,
    interval: Duration,
) -> Result<AccountConfig, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let required = |k: &str| {
        ConfigError::invalid(
            key(k),
            "is required (set it here or in [crayon], the defaults of every account)",
        )
    };
    let base_url = own
        .base_url
        .or(crayon.base_url.clone())
        .ok_or_else(|| required("base_url"))?;
    let client_id = own
        .client_id
        .or(crayon.client_id.clone())
        .ok_or_else(|| required("client_id"))?;
    let client_secret = own
        .client_secret
        .or(crayon.client_secret.clone())
        .ok_or_else(|| required("client_secret"))?;
    let username = own
        .username
        .or(crayon.username.clone())
        .ok_or_else(|| required("username"))?;
    let password = own
        .password
        .or(crayon.password.clone())
        .ok_or_else(|| required("password"))?;
    let max_body = own
        .max_body
        .or(crayon.max_body.clone())
        .unwrap_or_else(|| "64MiB".into());
    let crayon = CrayonConfig {
        base_url: check_base_url(&key("base_url"), &base_url)?,
        client_id: not_empty(&key("client_id"), client_id)?,
        client_secret,
        username: not_empty(&key("username"), username)?,
        password,
        scope: own
            .scope
            .or(crayon.scope.clone())
            .unwrap_or_else(|| "CustomerApi".into()),
        timeout: nonzero(
            &key("timeout"),
            own.timeout
                .or(crayon.timeout)
                .unwrap_or(Duration::from_secs(30)),
        )?,
        max_body: check_size(&key("max_body"), &max_body)?,
    };
    Ok(AccountConfig {
        id,
        crayon,
        interval: nonzero(&key("interval"), own.interval.unwrap_or(interval))?,
        vars: own.vars,
    })
}

fn check_base_url(key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let mut base_url = parse_url(key, text)?;
    if !base_url.path().ends_with('/') {
        base_url.set_path(&format!("{}/", base_url.path()));
    }
    require_https_unless_loopback(key, &base_url)?;
    Ok(base_url)
}

fn not_empty(key: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(value)
}

fn check_size(key: &str, text: &str) -> Result<u64, ConfigError> {
    text.parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|_| ConfigError::invalid(key, format!("{text:?} is not a size (e.g. \"64MiB\")")))
}
