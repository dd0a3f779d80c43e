//! The SMTP session settings of `[sinks.NAME]` (`smtp`, `tls`, `username`,
//! `password`) mapped explicitly onto lettre's transport builder, and SMTP
//! failures mapped onto [`SendError`]. lettre's own `from_url("smtp://…")`
//! would mean plain text, so the URL is never handed to it.

use std::path::Path;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::config::{EmailConfig, SmtpSecurity};
use crate::http_body::{load_ca_file, CaFileError};
use crate::secret::Secret;
use crate::sinks::SendError;

/// How long one SMTP command may take before the attempt is retried later.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the transport could not be set up (a config or CA file problem).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    #[error("tls.ca_file {path} holds no usable PEM certificate: {reason}")]
    CaPem { path: String, reason: String },
    #[error("cannot set up TLS for {host}: {reason}")]
    Tls { host: String, reason: String },
}

/// The builder for the sink's pooled transport. Building the transport
/// itself needs a tokio runtime (the pool spawns a task), so the sink does
/// that on first use.
pub fn builder(
    config: &EmailConfig,
    ca_file: Option<&Path>,
    pool_size: usize,
) -> Result<AsyncSmtpTransportBuilder, TransportError> {
    let host = host(config);
    let (tls, default_port) = match config.security {
        SmtpSecurity::StartTls => (Tls::Required(tls_parameters(&host, ca_file)?), 587),
        SmtpSecurity::Implicit => (Tls::Wrapper(tls_parameters(&host, ca_file)?), 465),
        SmtpSecurity::None => (Tls::None, 25),
    };
    let pool = PoolConfig::new()
        .max_size(u32::try_from(pool_size).unwrap_or(u32::MAX).max(1))
        .idle_timeout(Duration::from_secs(60));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(config.smtp.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(COMMAND_TIMEOUT))
        .hello_name(ClientId::Domain(helo_name(config, machine_name())))
        .pool_config(pool);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(builder)
}

/// The EHLO argument: `helo_name`, else the machine's name when it is fully
/// qualified (has a dot), else the domain of `from` (as A-label). A bare
/// host name (`vm`, a pod name) is refused by relays with an FQDN check.
fn helo_name(config: &EmailConfig, machine: Option<String>) -> String {
    if let Some(name) = &config.helo_name {
        return name.clone();
    }
    match machine {
        Some(name) if name.trim_end_matches('.').contains('.') => {
            name.trim_end_matches('.').to_ascii_lowercase()
        }
        _ => super::idn::ascii_domain(config.from.email.domain()),
    }
}

/// The machine's host name as lettre finds it (`gethostname`), if any.
fn machine_name() -> Option<String> {
    match ClientId::default() {
        ClientId::Domain(name) => Some(name),
        _ => None,
    }
}

/// The host as lettre wants it: IPv6 without brackets.
fn host(config: &EmailConfig) -> String {
    match config.smtp.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => String::new(),
    }
}

/// rustls with the system's roots plus every certificate in `tls.ca_file`.
fn tls_parameters(host: &str, ca_file: Option<&Path>) -> Result<TlsParameters, TransportError> {
    let mut params = TlsParameters::builder(host.to_string());
    if let Some(path) = ca_file {
        let ca = load_ca_file(path)?;
        let cert = Certificate::from_pem(&ca.pem).map_err(|e| TransportError::CaPem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        params = params.add_root_certificate(cert);
    }
    params.build_rustls().map_err(|e| TransportError::Tls {
        host: host.to_string(),
        reason: e.to_string(),
    })
}

/// Reply codes of a refused login (RFC 4954: 530 authentication required,
/// 534 mechanism too weak, 535 credentials invalid, 538 encryption needed).
const AUTH_REFUSED: [u16; 4] = [530, 534, 535, 538];

/// Maps an SMTP failure onto retry / permanent: a 4xx reply is transient, a
/// 5xx reply permanent (its text kept as the reason), except a refused login,
/// which is the sink's problem, not the message's (a password rotation), and
/// so retried with backoff until the attempts run out. Anything before a
/// reply (connection, TLS, timeout, a server without STARTTLS) is worth
/// retrying. The password never appears in the text.
pub fn classify(error: &lettre::transport::smtp::Error, password: Option<&Secret>) -> SendError {
    let detail = one_line(&innermost(error), password);
    if let Some(code) = error.status() {
        let text = format!("SMTP {code} {detail}");
        if AUTH_REFUSED.contains(&u16::from(code)) {
            return SendError::Retryable(format!(
                "the SMTP server refused the login (username/password of the sink; retried \
                 with backoff): {text}"
            ));
        }
        return if error.is_permanent() {
            SendError::Permanent(format!("the SMTP server refused the message: {text}"))
        } else {
            SendError::Retryable(format!("the SMTP server deferred the message: {text}"))
        };
    }
    if detail.contains("STARTTLS") {
        return SendError::Retryable(
            "the SMTP server does not offer STARTTLS, which smtp:// requires, so nothing was \
             sent in clear (use smtps:// for a server that speaks TLS from the start)"
                .into(),
        );
    }
    let tls = error.is_tls() || detail.contains("certificate") || detail.contains("TLS");
    let (what, hint) = if tls {
        let hint = if detail.contains("UnknownIssuer") {
            " (is the server's CA among the system roots or in tls.ca_file?)"
        } else {
            ""
        };
        ("TLS with the SMTP server failed", hint)
    } else if error.is_timeout() {
        ("the SMTP server timed out", "")
    } else {
        ("could not talk to the SMTP server", "")
    };
    SendError::Retryable(format!("{what}: {detail}{hint}"))
}

/// The most specific message in the error's chain (lettre wraps the cause in
/// one or two generic layers).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}

/// One masked line (the shared rule of [`crate::http_body::one_line`]),
/// with the password as the secret.
fn one_line(text: &str, password: Option<&Secret>) -> String {
    let secrets: Vec<String> = password
        .map(|p| p.expose().to_owned())
        .into_iter()
        .collect();
    crate::http_body::one_line(text.as_bytes(), &secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ehlo_name_is_configured_or_an_fqdn_never_a_bare_host_name() {
        let text = "[crayon]\nbase_url = \"https://api.crayon.com/\"\nclient_id = \"i\"\nclient_secret = \"s\"\nusername = \"u\"\npassword = \"p\"\n[sinks.mail]\nkind = \"email\"\nsmtp = \"smtp://mail.example.com\"\nfrom = \"bot@bücher.example\"\n";
        let config =
            crate::config::load_from_str(text, Path::new("bot.toml"), &|_| None, vec![]).unwrap();
        let crate::config::SinkKind::Email(mut email) = config.sinks["mail"].kind.clone() else {
            panic!("not email")
        };
        assert_eq!(
            helo_name(&email, Some("vm".into())),
            "xn--bcher-kva.example"
        );
        assert_eq!(helo_name(&email, None), "xn--bcher-kva.example");
        assert_eq!(
            helo_name(&email, Some("Host1.Corp.Example.".into())),
            "host1.corp.example"
        );
        email.helo_name = Some("relay-client.example.net".into());
        assert_eq!(
            helo_name(&email, Some("vm".into())),
            "relay-client.example.net"
        );
    }

    #[test]
    fn error_text_is_one_short_line_without_the_password() {
        let password = Secret::new("hunter2-Zz");
        let text = one_line("535 5.7.8\r\n  bad login hunter2-Zz", Some(&password));
        assert_eq!(text, "535 5.7.8 bad login ***");
        assert_eq!(one_line(&"x ".repeat(400), None).chars().count(), 300);
    }
}
