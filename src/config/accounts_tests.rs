use std::path::Path;

use super::*;
use crate::domain::AccountId;

const DEFAULTS: &str = r#"
[crayon]
base_url = "https://api.crayon.com"
client_id = "shared-client"
client_secret = "${SECRET}"
timeout = "10s"

[watch]
interval = "60s"

[accounts.contoso]
username = "bot@contoso.example"
password = "${CONTOSO_PASSWORD}"
interval = "2m"
vars = { customer = "Contoso Ltd" }

[accounts.fabrikam]
base_url = "https://eu.api.crayon.com/"
client_id = "fabrikam-client"
username = "bot@fabrikam.example"
password = "${FABRIKAM_PASSWORD}"

[sinks.audit]
kind = "webhook"
url = "https://hooks.example.com/x"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("shared-secret".into()),
        "CONTOSO_PASSWORD" => Some("contoso-pw".into()),
        "FABRIKAM_PASSWORD" => Some("fabrikam-pw".into()),
        "PASSWORD" => Some("pw".into()),
        _ => None,
    }
}

fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_from_str(text, Path::new("/etc/bot/bot.toml"), &env, overrides)
}

fn account<'a>(config: &'a Config, name: &str) -> &'a AccountConfig {
    config
        .account(&AccountId::new(name).unwrap())
        .unwrap_or_else(|| panic!("no account {name}"))
}

#[test]
fn accounts_inherit_crayon_keys_and_may_override_any() {
    let config = load(DEFAULTS, &[]).unwrap();
    let names: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        names,
        ["contoso", "fabrikam"],
        "[crayon] without username is no account"
    );
    let contoso = account(&config, "contoso");
    assert_eq!(contoso.crayon.base_url.as_str(), "https://api.crayon.com/");
    assert_eq!(contoso.crayon.client_id, "shared-client");
    assert_eq!(contoso.crayon.client_secret.expose(), "shared-secret");
    assert_eq!(contoso.crayon.password.expose(), "contoso-pw");
    assert_eq!(contoso.crayon.timeout.as_secs(), 10);
    assert_eq!(contoso.interval.as_secs(), 120);
    assert_eq!(contoso.vars["customer"], "Contoso Ltd");
    let fabrikam = account(&config, "fabrikam");
    assert_eq!(
        fabrikam.crayon.base_url.as_str(),
        "https://eu.api.crayon.com/"
    );
    assert_eq!(fabrikam.crayon.client_id, "fabrikam-client");
    assert_eq!(fabrikam.crayon.scope, "CustomerApi");
    assert_eq!(fabrikam.interval.as_secs(), 60, "watch.interval by default");
}

#[test]
fn crayon_alone_is_the_account_default() {
    let text = "[crayon]\nbase_url = \"https://api.crayon.com\"\nclient_id = \"c\"\n\
                client_secret = \"${SECRET}\"\nusername = \"u\"\npassword = \"${PASSWORD}\"\n";
    let config = load(text, &[]).unwrap();
    assert_eq!(config.accounts.len(), 1);
    assert_eq!(config.accounts[0].id, AccountId::default_account());
    assert_eq!(config.accounts[0].crayon.username, "u");
    assert_eq!(config.accounts[0].interval.as_secs(), 60);
    let err = load(&text.replace("username = \"u\"\n", ""), &[]).unwrap_err();
    assert!(err.to_string().contains("crayon.username"), "{err}");
}

#[test]
fn crayon_with_a_username_is_default_besides_the_accounts() {
    let text = DEFAULTS.replace(
        "timeout = \"10s\"",
        "timeout = \"10s\"\nusername = \"main@example.com\"\npassword = \"${PASSWORD}\"",
    );
    let config = load(&text, &[]).unwrap();
    let names: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(names, ["contoso", "default", "fabrikam"]);
}

#[test]
fn environment_overrides_an_accounts_key() {
    let config = load(
        DEFAULTS,
        &[
            ("BOT__ACCOUNTS__CONTOSO__PASSWORD", "from-env"),
            ("BOT__ACCOUNTS__FABRIKAM__INTERVAL", "5m"),
        ],
    )
    .unwrap();
    assert_eq!(
        account(&config, "contoso").crayon.password.expose(),
        "from-env"
    );
    assert_eq!(account(&config, "fabrikam").interval.as_secs(), 300);
}

#[test]
fn a_missing_key_names_the_account() {
    let text = DEFAULTS.replace("password = \"${FABRIKAM_PASSWORD}\"\n", "");
    let err = load(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("accounts.fabrikam.password"), "{err}");
}

#[test]
fn account_names_must_be_lowercase_snake_case() {
    for bad in ["Contoso", "2nd", "con-toso"] {
        let text = DEFAULTS.replace("[accounts.contoso]", &format!("[accounts.{bad}]"));
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(err.contains(&format!("accounts.{bad}")), "{err}");
        assert!(err.contains("snake_case"), "{err}");
    }
}

#[test]
fn an_unknown_account_key_is_named() {
    let text = DEFAULTS.replace("interval = \"2m\"", "interval = \"2m\"\nusrname = \"x\"");
    let err = load(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("usrname"), "{err}");
}

#[test]
fn routes_filter_on_configured_accounts_only() {
    let ok = DEFAULTS.to_string() + "\n[[routes]]\naccounts = [\"contoso\"]\nsinks = [\"audit\"]\n";
    let config = load(&ok, &[]).unwrap();
    let listed = config.routes[0].accounts.as_ref().unwrap();
    assert!(listed.contains(&AccountId::new("contoso").unwrap()));
    let bad = ok.replace(
        "accounts = [\"contoso\"]",
        "accounts = [\"contoso\", \"northwind\"]",
    );
    let err = load(&bad, &[]).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].accounts") && err.contains("northwind"),
        "{err}"
    );
}
