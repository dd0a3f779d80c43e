//! The Crayon Cloud-iQ client: gets and caches the OAuth2 token and reads the
//! export queue (`GET /api/v1/exports/`). It is built from [`CrayonSettings`]
//! (the `[crayon]` section plus `tls.ca_file`).
//!
//! The client only *classifies* failures into [`CrayonError`]; the one retry it
//! does itself is the re-authentication the API asks for on a 401. Backoff
//! between polls is the poller's job. Errors never carry a secret, a token or a
//! request URL.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::{Response, StatusCode};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::http_body::{self, BodyError};
use crate::secret::Secret;

mod download;
mod error;
#[cfg(test)]
mod tests;
mod token;

pub use error::CrayonError;
use token::{parse_token, CachedToken};

const TOKEN_PATH: &str = "api/v1/connect/token/";
const EXPORTS_PATH: &str = "api/v1/exports/";
/// Endpoint names used in errors and logs.
pub(super) const TOKEN: &str = "token";
const EXPORTS: &str = "exports";
const USER_AGENT: &str = concat!("crayon-export-bot/", env!("CARGO_PKG_VERSION"));
const JSON: &str = "application/json";
/// A token answer is a few hundred bytes; anything near this is not one.
const TOKEN_BODY_LIMIT: u64 = 64 * 1024;
/// How much of an error body is read to build an excerpt.
const ERROR_BODY_PREFIX: usize = 4 * 1024;
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client needs to talk to Crayon; validated config, not raw input.
#[derive(Debug, Clone)]
pub struct CrayonSettings {
    /// API root, e.g. `https://api.crayon.com/`; a missing trailing slash is added.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub username: String,
    pub password: Secret,
    /// OAuth2 scope; the caller supplies the default `CustomerApi`.
    pub scope: String,
    /// Whole-request timeout (connect, headers and body). The connect timeout
    /// is the smaller of this and 10 s.
    pub timeout: Duration,
    /// Largest queue body accepted, in bytes; a bigger one fails the poll
    /// rather than eating memory. (Token answers are capped at 64 KiB.)
    pub max_body: u64,
    /// Extra PEM root certificate(s), trusted in addition to the system roots
    /// (for TLS-intercepting proxies).
    pub ca_file: Option<PathBuf>,
}

/// Client for the Crayon Cloud-iQ API. Cheap to share (`Send + Sync`); one
/// instance keeps one connection pool and one cached token.
#[derive(Debug)]
pub struct CrayonClient {
    http: reqwest::Client,
    settings: CrayonSettings,
    token: Mutex<Option<CachedToken>>,
}

impl CrayonClient {
    /// Builds the HTTP client (rustls, system roots plus `ca_file`, timeouts,
    /// user agent, proxies from `HTTPS_PROXY`/`NO_PROXY`). Redirects are not
    /// followed and no `Referer` is sent: a followed 307/308 would re-POST
    /// the password to another host, and a redirected queue answer from
    /// another host is not the queue.
    pub fn new(settings: CrayonSettings) -> Result<Self, CrayonError> {
        let http = Self::http_client(&settings)?;
        Ok(Self::with_http_client(settings, http))
    }

    /// The HTTP client [`CrayonClient::new`] builds for `settings` (only
    /// its `timeout` and `ca_file` matter). Public so that several accounts
    /// share one (one connection pool, one TLS root store: a thousand
    /// accounts must not hold a thousand), each keeping its own token.
    pub fn http_client(settings: &CrayonSettings) -> Result<reqwest::Client, CrayonError> {
        let extra = match &settings.ca_file {
            Some(path) => http_body::load_ca_file(path)?.certs,
            None => Vec::new(),
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(crate::tls::http_client_config(&extra))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(USER_AGENT)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(MAX_CONNECT_TIMEOUT))
            .build()
            .map_err(|e| CrayonError::HttpClient {
                source: e.without_url(),
            })
    }

    /// Uses a ready HTTP client (tests pass one built with `.no_proxy()`).
    /// `settings.timeout` is still applied to every request.
    pub fn with_http_client(mut settings: CrayonSettings, http: reqwest::Client) -> Self {
        settings.base_url = normalise_base(settings.base_url);
        CrayonClient {
            http,
            settings,
            token: Mutex::new(None),
        }
    }

    /// One poll: `GET {base}/api/v1/exports/` with the bearer token. Returns
    /// the body as bytes, size-capped and unparsed: what the queue means is
    /// the domain's to read ([`crate::domain::Snapshot::parse_over`]). A 401
    /// gets one fresh token and one retry; a second 401 is
    /// [`CrayonError::Unauthorized`].
    pub async fn fetch_queue(&self) -> Result<Vec<u8>, CrayonError> {
        let token = self.bearer().await?;
        let response = match self.get_exports(&token).await? {
            Some(response) => response,
            None => {
                self.forget_token(&token).await;
                let fresh = self.bearer().await?;
                self.get_exports(&fresh)
                    .await?
                    .ok_or(CrayonError::Unauthorized)?
            }
        };
        read_capped(response, self.settings.max_body, EXPORTS, self).await
    }

    /// Gets a fresh token whatever is cached (for `check --online`), keeps it
    /// for later polls and returns its lifetime.
    pub async fn check_credentials(&self) -> Result<Duration, CrayonError> {
        let mut cached = self.token.lock().await;
        let fresh = self.request_token().await?;
        let lifetime = fresh.lifetime;
        *cached = Some(fresh);
        Ok(lifetime)
    }

    /// The cached token, or a new one when it is missing or about to expire.
    /// The lock is held while fetching so concurrent callers fetch once.
    async fn bearer(&self) -> Result<Secret, CrayonError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_usable(Instant::now())) {
            return Ok(token.value.clone());
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Drops the cached token if it is still the one the API refused.
    async fn forget_token(&self, refused: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == refused) {
            *cached = None;
        }
    }

    async fn request_token(&self) -> Result<CachedToken, CrayonError> {
        let s = &self.settings;
        let form = [
            ("grant_type", "password"),
            ("username", s.username.as_str()),
            ("password", s.password.expose()),
            ("scope", s.scope.as_str()),
        ];
        let response = self
            .http
            .post(self.endpoint(TOKEN_PATH)?)
            .basic_auth(&s.client_id, Some(s.client_secret.expose()))
            .header(ACCEPT, JSON)
            .timeout(s.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport(TOKEN, e))?;
        refuse_redirect(TOKEN, &response)?;
        let status = response.status();
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            return Err(CrayonError::CredentialsRefused {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            // The token endpoint may echo the form: its body is never shown.
            return Err(CrayonError::Status {
                endpoint: TOKEN,
                status: status.as_u16(),
                body: String::new(),
            });
        }
        let body = read_capped(response, TOKEN_BODY_LIMIT, TOKEN, self).await?;
        parse_token(&body, status.as_u16())
    }

    /// Sends the queue request; `None` means 401.
    async fn get_exports(&self, token: &Secret) -> Result<Option<Response>, CrayonError> {
        let response = self
            .http
            .get(self.endpoint(EXPORTS_PATH)?)
            .bearer_auth(token.expose())
            .header(ACCEPT, JSON)
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| self.transport(EXPORTS, e))?;
        self.answer(EXPORTS, response, token, Vec::new()).await
    }

    /// Classifies an answer of `endpoint` (a redirect is refused): `None`
    /// for 401 (the token is renewed once), the 2xx answer with its body
    /// unread, else the status with the body's first bytes on one line, the
    /// token, the client secret, the password and `also` masked (the answer
    /// may echo the request).
    async fn answer(
        &self,
        endpoint: &'static str,
        response: Response,
        token: &Secret,
        mut also: Vec<String>,
    ) -> Result<Option<Response>, CrayonError> {
        refuse_redirect(endpoint, &response)?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(None),
            status if status.is_success() => Ok(Some(response)),
            status => {
                let prefix = http_body::read_prefix(response, ERROR_BODY_PREFIX).await;
                let s = &self.settings;
                also.extend([token, &s.client_secret, &s.password].map(|v| v.expose().to_owned()));
                Err(CrayonError::Status {
                    endpoint,
                    status: status.as_u16(),
                    body: http_body::one_line(&prefix, &also),
                })
            }
        }
    }

    fn endpoint(&self, path: &str) -> Result<Url, CrayonError> {
        self.settings
            .base_url
            .join(path)
            .map_err(|e| CrayonError::BaseUrl {
                reason: e.to_string(),
            })
    }

    /// Classifies a reqwest error, dropping its URL.
    fn transport(&self, endpoint: &'static str, error: reqwest::Error) -> CrayonError {
        if error.is_timeout() {
            CrayonError::Timeout {
                endpoint,
                after: self.settings.timeout,
            }
        } else {
            CrayonError::Connect {
                endpoint,
                source: error.without_url(),
            }
        }
    }
}

/// A 3xx answer as [`CrayonError::Redirected`], naming only the host.
fn refuse_redirect(endpoint: &'static str, response: &Response) -> Result<(), CrayonError> {
    let status = response.status();
    if !status.is_redirection() {
        return Ok(());
    }
    Err(CrayonError::Redirected {
        endpoint,
        status: status.as_u16(),
        location: http_body::location_host(response.headers()),
    })
}

/// Adds the trailing slash `Url::join` needs to keep the last path segment,
/// and drops query and fragment.
fn normalise_base(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Reads a body through the shared capped reader, as this endpoint's errors.
async fn read_capped(
    response: Response,
    limit: u64,
    endpoint: &'static str,
    client: &CrayonClient,
) -> Result<Vec<u8>, CrayonError> {
    http_body::read_capped(response, limit)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => CrayonError::TooLarge { endpoint, limit },
            BodyError::Read(e) => client.transport(endpoint, e),
        })
}
