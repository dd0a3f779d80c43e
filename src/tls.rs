//! One TLS set-up for the HTTP clients (the sinks' client, which serenity
//! shares, and the Crayon API's): rustls with the ring provider, trusting
//! the system's root certificates plus `tls.ca_file`. The system roots are
//! read once per process: reading and parsing them costs ≈ 3.5 ms of CPU
//! (BENCHMARKS.md, "Session 6"), and each reqwest client used to do it
//! again, twice in every `once` and `run`.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

/// The system's trust roots, read on first use and kept for the process
/// (one copy, shared by every client that trusts nothing more).
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if added == 0 || !native.errors.is_empty() {
            tracing::debug!(
                added,
                ignored,
                errors = native.errors.len(),
                "system root certificates read; TLS trusts these (and tls.ca_file)"
            );
        }
        Arc::new(roots)
    });
    Arc::clone(roots)
}

/// The system roots plus `extra` (the certificates of `tls.ca_file`,
/// already checked by [`crate::http_body::load_ca_file`]); without extras,
/// the shared store itself.
pub fn roots_with(extra: &[CertificateDer<'static>]) -> Arc<RootCertStore> {
    let roots = system_roots();
    if extra.is_empty() {
        return roots;
    }
    let mut more = RootCertStore::clone(&roots);
    more.add_parsable_certificates(extra.iter().cloned());
    Arc::new(more)
}

/// rustls with the ring provider, trusting `roots`; the server's name is
/// always verified.
pub fn client_config(roots: Arc<RootCertStore>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The client config for an HTTP client: [`roots_with`] `extra`, HTTP/1.1
/// announced by ALPN as reqwest's own set-up does.
pub fn http_client_config(extra: &[CertificateDer<'static>]) -> ClientConfig {
    let mut config = client_config(roots_with(extra));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}
