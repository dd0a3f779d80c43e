//! `[sinks.NAME]` keys of `kind = "email"` (`smtp`, `tls`, `allow_insecure`,
//! `username`, `password`, `from`, `requester`, `requester_domains`, `to`,
//! `cc`, `bcc`) and their checks: addresses are parsed, the TLS mode is
//! decided, and a sink that could never send anything is refused.

use std::path::PathBuf;

use lettre::message::Mailbox;
use url::Url;

use crate::address::{single_address, single_mailbox};
use crate::config::{is_loopback, parse_url, ConfigError, RawSink};
use crate::secret::Secret;
use crate::sinks::registry::{KindSpec, SinkKind};

/// The registry entry of `kind = "email"`.
pub const KIND: KindSpec = KindSpec {
    name: "email",
    keys: &[
        "smtp",
        "tls",
        "allow_insecure",
        "username",
        "password",
        "from",
        "requester",
        "requester_domains",
        "to",
        "cc",
        "bcc",
        "reply_to",
        "helo_name",
        "attach",
        "attach_max",
    ],
    check,
};

fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    Ok(SinkKind::Email(Box::new(check_email(name, raw)?)))
}

/// Alerts have no requester: an email sink carrying them needs fixed
/// recipients.
pub fn alert_problem(email: &EmailConfig) -> Option<&'static str> {
    (!email.has_fixed_recipients()).then_some(
        "an email sink used for alerts needs `to`, `cc` or `bcc` (alerts have no requester)",
    )
}

/// How the email sink protects its SMTP session, from `smtp`'s scheme and
/// `tls`. There is no "opportunistic" mode: `smtp://` never falls back to
/// plain text when the server does not offer STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: STARTTLS is required (port 587 unless given).
    StartTls,
    /// `smtps://`: TLS from the first byte (port 465 unless given).
    Implicit,
    /// `tls = "none"`: plain SMTP, only for loopback or `allow_insecure`.
    None,
}

/// `kind = "email"` settings, checked: addresses are parsed, the TLS mode is
/// decided, and a sink that could never send anything is refused.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp: Url,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    /// Send to the item's `RequestedBy` (or its `[recipients]` redirect).
    pub requester: bool,
    /// Lowercase domains; `None` = every requester's domain.
    pub requester_domains: Option<Vec<String>>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    /// `Reply-To`, only when configured (replies otherwise go to `from`).
    pub reply_to: Option<Mailbox>,
    /// The EHLO name; `None` = the machine's FQDN or `from`'s domain, as
    /// decided by the sink (relays with an FQDN check refuse a bare name).
    pub helo_name: Option<String>,
    /// When set, messages are written as `.eml` files into this folder
    /// instead of being sent (the demo). Not a `bot.toml` key.
    pub pickup_dir: Option<PathBuf>,
}

impl EmailConfig {
    /// True when `to`, `cc` or `bcc` names someone: the sink then has people
    /// to send to even when the requester is skipped.
    pub fn has_fixed_recipients(&self) -> bool {
        !(self.to.is_empty() && self.cc.is_empty() && self.bcc.is_empty())
    }
}

fn check_email(name: &str, raw: &RawSink) -> Result<EmailConfig, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let (smtp, security) = check_smtp(name, raw)?;
    let from = raw.from.as_deref().ok_or_else(|| {
        ConfigError::invalid(
            key("from"),
            "is required (e.g. \"Export Bot <exports@example.com>\")",
        )
    })?;
    let config = EmailConfig {
        smtp,
        security,
        username: raw.username.clone(),
        password: raw.password.clone(),
        from: mailbox(&key("from"), from)?,
        requester: raw.requester.unwrap_or(true),
        requester_domains: check_domains(&key("requester_domains"), &raw.requester_domains)?,
        to: mailboxes(&key("to"), &raw.to)?,
        cc: mailboxes(&key("cc"), &raw.cc)?,
        bcc: mailboxes(&key("bcc"), &raw.bcc)?,
        reply_to: raw
            .reply_to
            .as_deref()
            .map(|r| mailbox(&key("reply_to"), r))
            .transpose()?,
        helo_name: check_helo_name(&key("helo_name"), raw.helo_name.as_deref())?,
        pickup_dir: None,
    };
    if raw.password.is_some() && raw.username.is_none() {
        return Err(ConfigError::invalid(
            key("username"),
            "is required when password is set",
        ));
    }
    if !config.requester && !config.has_fixed_recipients() {
        return Err(ConfigError::invalid(
            key("requester"),
            "is false and to, cc and bcc are empty, so this sink would never send anything",
        ));
    }
    Ok(config)
}

/// `smtp` and `tls`: `smtp://` = STARTTLS required, `smtps://` = implicit
/// TLS, `tls = "none"` = plain, accepted only for loopback hosts or with
/// `allow_insecure = true`.
fn check_smtp(name: &str, raw: &RawSink) -> Result<(Url, SmtpSecurity), ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let text = raw.smtp.as_deref().ok_or_else(|| {
        ConfigError::invalid(
            key("smtp"),
            "is required (e.g. \"smtp://mail.example.com:587\")",
        )
    })?;
    let smtp = parse_url(&key("smtp"), text)?;
    if smtp.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            key("smtp"),
            "needs a host (e.g. \"smtp://mail.example.com:587\")",
        ));
    }
    let security = smtp_security(name, smtp.scheme(), raw.tls.as_deref())?;
    let insecure_ok = smtp_is_loopback(&smtp) || raw.allow_insecure.unwrap_or(false);
    if security == SmtpSecurity::None && !insecure_ok {
        return Err(ConfigError::invalid(
            key("tls"),
            "\"none\" sends mail and passwords in clear: it is accepted only for a loopback host or with allow_insecure = true",
        ));
    }
    Ok((smtp, security))
}

/// The TLS mode from the scheme and `tls` (whose only value is "none").
fn smtp_security(name: &str, scheme: &str, tls: Option<&str>) -> Result<SmtpSecurity, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    match (scheme, tls) {
        ("smtp", None) => Ok(SmtpSecurity::StartTls),
        ("smtps", None) => Ok(SmtpSecurity::Implicit),
        ("smtp", Some("none")) => Ok(SmtpSecurity::None),
        ("smtps", Some("none")) => Err(ConfigError::invalid(
            key("tls"),
            "\"none\" contradicts smtps:// (implicit TLS); use smtp://host:25 for plain SMTP",
        )),
        ("smtp" | "smtps", Some(other)) => Err(ConfigError::invalid(
            key("tls"),
            format!("{other:?} is not a TLS mode: the only value is \"none\" (the scheme of smtp picks STARTTLS or implicit TLS)"),
        )),
        _ => Err(ConfigError::invalid(
            key("smtp"),
            "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)",
        )),
    }
}

/// Like [`is_loopback`] for `smtp://` URLs, whose hosts the `url` crate
/// keeps as opaque text (an IPv4 address is not parsed for unknown schemes).
fn smtp_is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d
            .parse::<std::net::IpAddr>()
            .map_or(d.eq_ignore_ascii_case("localhost"), |ip| ip.is_loopback()),
        _ => is_loopback(url),
    }
}

fn mailbox(key: &str, text: &str) -> Result<Mailbox, ConfigError> {
    single_mailbox(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not one email address ({e}); e.g. \"Export Bot <exports@example.com>\""),
        )
    })
}

fn mailboxes(key: &str, list: &Option<Vec<String>>) -> Result<Vec<Mailbox>, ConfigError> {
    list.iter()
        .flatten()
        .enumerate()
        .map(|(i, text)| mailbox(&format!("{key}[{i}]"), text))
        .collect()
}

/// Lowercased, without a leading `@`; each must look like a domain.
fn check_domains(
    key: &str,
    list: &Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = list else { return Ok(None) };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let domain = d.trim().trim_start_matches('@').to_ascii_lowercase();
            match single_address(&format!("x@{domain}")) {
                Ok(_) => Ok(domain),
                Err(_) => Err(ConfigError::invalid(
                    format!("{key}[{i}]"),
                    format!("{d:?} is not a domain (e.g. \"example.com\")"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `helo_name`: a domain name (letters, digits, `-`, `.`), the EHLO argument.
fn check_helo_name(key: &str, name: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(name) = name.map(str::trim) else {
        return Ok(None);
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(Some(name.to_ascii_lowercase()));
    }
    Err(ConfigError::invalid(
        key,
        format!("{name:?} is not a host name (e.g. \"bot.example.com\")"),
    ))
}
