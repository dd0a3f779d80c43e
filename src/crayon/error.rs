//! What can go wrong talking to Crayon, each naming the endpoint and what
//! to check; never a secret, token or request URL.

use std::time::Duration;

use crate::http_body::{error_chain, CaFileError};

/// Why a call to Crayon failed. Messages say what to check; none contains a
/// secret, a token, a request URL or any text of a token answer.
#[derive(Debug, thiserror::Error)]
pub enum CrayonError {
    #[error(
        "the Crayon API refused the credentials (HTTP {status} from the token endpoint): \
         check client_id, client_secret, username and password"
    )]
    CredentialsRefused { status: u16 },
    #[error(
        "the export queue answered 401 even with a fresh token: \
         the credentials are not allowed to read exports"
    )]
    Unauthorized,
    #[error("the Crayon {endpoint} endpoint answered HTTP {status}{}", body_suffix(.body))]
    Status {
        endpoint: &'static str,
        status: u16,
        /// Start of the answer, one line, secrets masked; empty for the token endpoint.
        body: String,
    },
    /// A 3xx: redirects are never followed (they would carry the password or
    /// token elsewhere, or stand another host's answer in for the queue).
    #[error(
        "the Crayon {endpoint} endpoint answered HTTP {status}, a redirect to {location}; \
         redirects are not followed: set base_url to the final API address"
    )]
    Redirected {
        endpoint: &'static str,
        status: u16,
        /// The `Location`'s host only (never its path or query).
        location: String,
    },
    #[error("the Crayon {endpoint} endpoint did not answer within {after:?}")]
    Timeout {
        endpoint: &'static str,
        after: Duration,
    },
    /// Connection, TLS, proxy or mid-body transport failure. The message
    /// already includes the cause chain.
    #[error(
        "the request to the Crayon {endpoint} endpoint failed: {} \
         (check base_url, DNS, proxy settings and tls.ca_file)",
        error_chain(.source)
    )]
    Connect {
        endpoint: &'static str,
        source: reqwest::Error,
    },
    #[error("the Crayon {endpoint} endpoint answered with a body that is not the documented shape: {reason}")]
    Malformed {
        endpoint: &'static str,
        reason: String,
    },
    #[error("the Crayon {endpoint} answer is larger than the {limit}-byte limit (max_body)")]
    TooLarge { endpoint: &'static str, limit: u64 },
    #[error(transparent)]
    CaFile {
        #[from]
        source: CaFileError,
    },
    #[error("could not set up the HTTP client: {}", error_chain(.source))]
    HttpClient { source: reqwest::Error },
    #[error(
        "base_url cannot be the base of the API paths ({reason}); use e.g. https://api.crayon.com/"
    )]
    BaseUrl { reason: String },
}

impl CrayonError {
    /// True when retrying will not help until someone fixes the credentials
    /// (the poller should say so loudly rather than back off quietly).
    pub fn is_credentials(&self) -> bool {
        matches!(self, Self::CredentialsRefused { .. } | Self::Unauthorized)
    }
}

/// `: body` when there is one, for the status errors.
fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}
