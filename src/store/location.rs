//! Where the state lives (`watch.state`): an SQLite file path, or a
//! `postgres://` / `postgresql://` URL whose password is a secret. The URL is
//! kept whole only inside a [`Secret`]; everything that prints it (Debug,
//! Display, logs, errors) gets the masked form with the password as `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secret::{percent_decode, Secret};

/// The state a config or a `state copy` argument names.
#[derive(Debug, Clone, PartialEq)]
pub enum StateLocation {
    /// An SQLite file (the default, `state.db` beside `bot.toml`).
    File(PathBuf),
    /// A PostgreSQL database shared by several replicas.
    Postgres(PgUrl),
}

impl StateLocation {
    /// Reads `text` as a URL when it starts with `postgres://` or
    /// `postgresql://`, else as a file path joined to `base_dir` (relative
    /// paths are relative to `bot.toml`, as before).
    pub fn parse(text: &str, base_dir: &Path) -> Result<StateLocation, LocationError> {
        if PgUrl::is_url(text) {
            PgUrl::parse(text).map(StateLocation::Postgres)
        } else {
            Ok(StateLocation::File(base_dir.join(text)))
        }
    }

    /// The file, for the SQLite backend and the `<state>.lock` file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StateLocation::File(path) => Some(path),
            StateLocation::Postgres(_) => None,
        }
    }

    /// A printable form (the password masked), for log lines and messages.
    pub fn display(&self) -> impl fmt::Display + '_ {
        self
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(url) => f.write_str(url.shown()),
        }
    }
}

impl PartialEq<&Path> for StateLocation {
    fn eq(&self, other: &&Path) -> bool {
        self.file() == Some(*other)
    }
}

/// Why a `postgres://` URL was refused (the text never includes the URL).
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// Not a URL at all, or not one PostgreSQL accepts.
    #[error("is not a valid PostgreSQL URL: {0}")]
    Invalid(String),
    /// `sslmode` is not one this build knows.
    #[error("sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
}

/// How the connection is protected (`?sslmode=`, libpq's names). Every TLS
/// connection verifies the server's certificate against the system roots
/// plus `tls.ca_file`, also for `require` and `prefer`: an unverified server
/// is never trusted with the password (stricter than libpq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or no connection (`require`, `verify-ca`, `verify-full`).
    Require,
}

/// A PostgreSQL URL; the whole text is a secret (it may carry the password).
#[derive(Clone, PartialEq)]
pub struct PgUrl {
    url: Secret,
    shown: String,
    ssl: SslMode,
    ca_file: Option<PathBuf>,
}

impl PgUrl {
    /// Whether `text` names PostgreSQL rather than a file.
    pub fn is_url(text: &str) -> bool {
        let lower = text.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Checks the URL (host, sslmode) and builds its masked form.
    pub fn parse(text: &str) -> Result<PgUrl, LocationError> {
        let parsed =
            url::Url::parse(text.trim()).map_err(|err| LocationError::Invalid(err.to_string()))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(LocationError::Invalid("it names no host".into()));
        }
        let ssl = ssl_mode(&parsed)?;
        Ok(PgUrl {
            url: Secret::new(text.trim()),
            shown: masked(&parsed),
            ssl,
            ca_file: None,
        })
    }

    /// The URL with the password (and any `password=` parameter) as `***`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The full URL, for the one call that connects.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// Also trust the PEM certificates in `path` (`tls.ca_file`), beside
    /// the system roots.
    pub fn set_ca_file(&mut self, path: Option<PathBuf>) {
        self.ca_file = path;
    }

    /// The extra trusted certificates, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The requested protection.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl
    }

    /// The URL as the driver takes it: `sslmode` removed (this module has
    /// decided it, and the driver does not know `verify-full`).
    pub(crate) fn driver_url(&self) -> String {
        let mut parsed = url::Url::parse(self.expose()).expect("checked in parse");
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "sslmode" && k != "sslrootcert")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        parsed.to_string()
    }

    /// The password's pieces (raw and decoded), to mask in driver errors.
    pub(crate) fn secret_parts(&self) -> Vec<String> {
        let mut parts = vec![self.expose().to_string()];
        if let Ok(parsed) = url::Url::parse(self.expose()) {
            if let Some(raw) = parsed.password() {
                parts.push(raw.to_string());
                parts.push(percent_decode(raw));
            }
            parts.extend(
                parsed
                    .query_pairs()
                    .filter(|(k, _)| k == "password")
                    .map(|(_, v)| v.into_owned()),
            );
        }
        parts.retain(|p| p.len() >= 3);
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

fn ssl_mode(url: &url::Url) -> Result<SslMode, LocationError> {
    let Some((_, mode)) = url.query_pairs().find(|(k, _)| k == "sslmode") else {
        return Ok(SslMode::Prefer);
    };
    match mode.as_ref() {
        "disable" => Ok(SslMode::Disable),
        "allow" | "prefer" => Ok(SslMode::Prefer),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(LocationError::SslMode(other.to_string())),
    }
}

fn masked(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.set_query(None);
        shown.query_pairs_mut().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://bot:s3cr%40t-pw@db.internal:5433/bot?sslmode=verify-full";

    #[test]
    fn url_prints_only_masked() {
        let loc = StateLocation::parse(URL, Path::new("/etc")).unwrap();
        for shown in [
            format!("{loc}"),
            format!("{loc:?}"),
            loc.display().to_string(),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("bot:***@db.internal:5433/bot"), "{shown}");
        }
        let StateLocation::Postgres(url) = loc else {
            panic!()
        };
        assert_eq!(url.ssl_mode(), SslMode::Require);
        assert!(!url.driver_url().contains("sslmode"));
        assert!(url.secret_parts().iter().any(|p| p == "s3cr@t-pw"));
    }

    #[test]
    fn paths_stay_paths_and_bad_urls_are_refused_without_echo() {
        let loc = StateLocation::parse("state.db", Path::new("/etc/bot")).unwrap();
        assert_eq!(loc, Path::new("/etc/bot/state.db"));
        let err = PgUrl::parse("postgres://u:pw-xyz@/db").unwrap_err();
        assert!(!err.to_string().contains("pw-xyz"), "{err}");
        let err = PgUrl::parse("postgresql://u:pw@h/db?sslmode=maybe").unwrap_err();
        assert!(matches!(err, LocationError::SslMode(_)), "{err}");
    }
}
