//! What every client of a remote server needs once: reading an answer's body
//! without letting the server fill memory, turning a server's text into one
//! masked line for logs and the outbox, an error's cause chain, and loading
//! the extra root CA of `[tls] ca_file`. Used by the Crayon client, the HTTP
//! sinks and the email sink, so each rule lives in one place.

use std::path::{Path, PathBuf};

/// Longest text kept from a server's answer (outbox `last_error`, logs).
pub const LINE_CHARS: usize = 300;

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit, by `Content-Length` or while streaming.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The connection failed mid-body (the URL is already stripped).
    #[error("reading the answer failed: {}", error_chain(.0))]
    Read(reqwest::Error),
}

/// A whole body, refused once it passes `limit` bytes whatever
/// `Content-Length` claims (checked up front, then while streaming), so a
/// misbehaving server or proxy cannot exhaust memory.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    let too_large = || BodyError::TooLarge { limit };
    let declared = response.content_length();
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    // Sized up front when the length is known: growing by doubling held up
    // to 1.5x the body at once.
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(e.without_url()))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `limit` bytes of an (error) answer; a read error just ends
/// it. An error answer is never read whole.
pub async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(limit);
    bytes
}

/// A server's text as one line of at most [`LINE_CHARS`] characters, with
/// control characters blanked and `secrets` masked before and after
/// whitespace is collapsed (a secret may hold a run of spaces) and before
/// the cut (a cut through a token would otherwise keep its first half).
pub fn one_line(bytes: &[u8], secrets: &[String]) -> String {
    let text = crate::secret::mask(&String::from_utf8_lossy(bytes), secrets);
    let blanked: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = blanked.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::shorten(&crate::secret::mask(&line, secrets), LINE_CHARS)
}

/// The error and its causes on one line, each text once: reqwest's own
/// message alone ("error sending request", "client error (Connect)") hides
/// what went wrong, e.g. a certificate nobody trusts; hyper and rustls wrap
/// the same failure several times.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut texts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !texts.iter().any(|t| t.contains(&text)) {
            texts.push(text);
        }
        next = e.source();
    }
    texts.join(": ")
}

/// The host (and port) a redirect points at, for error texts.
pub fn location_host(headers: &reqwest::header::HeaderMap) -> String {
    let Some(location) = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "nowhere (no Location)".into();
    };
    match url::Url::parse(location.trim()) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => "a URL without a host".into(),
        },
        Err(_) => "another path on the same host".into(),
    }
}

/// Why `tls.ca_file` cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// Missing or unreadable (a wrong path relative to `bot.toml`?).
    #[error("cannot read tls.ca_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not PEM at all (a DER file, say).
    #[error("tls.ca_file {} is not PEM: {reason}", path.display())]
    NotPem { path: PathBuf, reason: String },
    /// PEM without a certificate (only a key, or plain text): trusting
    /// nothing extra would fail later and less clearly.
    #[error("tls.ca_file {} holds no PEM certificate", path.display())]
    Empty { path: PathBuf },
    /// PEM, but a certificate TLS cannot trust as a root (not X.509).
    #[error("tls.ca_file {} holds a certificate that cannot be a trust root: {reason}", path.display())]
    NotARoot { path: PathBuf, reason: String },
}

/// The extra root CA(s) of `tls.ca_file`, trusted on top of the system
/// roots (for TLS-intercepting proxies and private CAs).
pub struct ExtraCa {
    /// The file as read, for TLS stacks that parse PEM themselves (lettre).
    pub pem: Vec<u8>,
    /// Every certificate in it (each checked to be usable as a root), for
    /// the HTTP clients' rustls set-up (`crate::tls`).
    pub certs: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// Reads and checks `tls.ca_file` once for every client: a missing file, a
/// file that is not PEM or one without a certificate is an error naming it.
pub fn load_ca_file(path: &Path) -> Result<ExtraCa, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::NotPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty {
            path: path.to_owned(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| CaFileError::NotARoot {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(ExtraCa { pem, certs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_masks_blanks_and_cuts() {
        let secrets = vec!["tok-SECRET".to_string()];
        let body = format!("oops\n\tbearer tok-SECRET\r\n\x07{}", "x".repeat(1000));
        let line = one_line(body.as_bytes(), &secrets);
        assert!(line.starts_with("oops bearer *** xxx"), "{line}");
        assert_eq!(line.chars().count(), LINE_CHARS);
        assert!(line.ends_with('…'));
    }

    /// A secret holding a run of spaces is masked before the collapse.
    #[test]
    fn a_secret_with_spaces_is_masked_before_whitespace_collapses() {
        let secrets = vec!["pass  word".to_string()];
        assert_eq!(one_line(b"bad pass  word", &secrets), "bad ***");
    }

    #[test]
    fn ca_file_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [missing, empty] {
            let error = load_ca_file(&path).err().unwrap().to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
        }
    }
}
