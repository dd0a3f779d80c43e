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
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::domain::Polled;
use crate::domain::{ExportId, Snapshot};
use crate::http_body::{self, error_chain, BodyError, CaFileError};
use crate::secret::Secret;

const TOKEN_PATH: &str = "api/v1/connect/token/";
const EXPORTS_PATH: &str = "api/v1/exports/";
/// Endpoint names used in errors and logs.
const TOKEN: &str = "token";
const EXPORTS: &str = "exports";
const USER_AGENT: &str = concat!("crayon-export-bot/", env!("CARGO_PKG_VERSION"));
const JSON: &str = "application/json";
/// A token answer is a few hundred bytes; anything near this is not one.
const TOKEN_BODY_LIMIT: u64 = 64 * 1024;
/// How much of an error body is read to build an excerpt.
const ERROR_BODY_PREFIX: usize = 4 * 1024;
/// Lifetime assumed when the token answer has no `ExpiresIn`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Upper bound on a lifetime, so a silly `ExpiresIn` cannot overflow `Instant`.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(60);

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

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// A bearer token and when it stops being usable.
#[derive(Debug)]
struct CachedToken {
    value: Secret,
    lifetime: Duration,
    expires_at: Instant,
}

impl CachedToken {
    fn new(value: Secret, lifetime: Duration) -> Self {
        let expires_at = Instant::now() + lifetime;
        CachedToken {
            value,
            lifetime,
            expires_at,
        }
    }

    /// Usable while more than min(60 s, lifetime / 10) remains.
    fn is_usable(&self, now: Instant) -> bool {
        let margin = MAX_RENEW_MARGIN.min(self.lifetime / 10);
        self.expires_at.saturating_duration_since(now) > margin
    }
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
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(USER_AGENT)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(MAX_CONNECT_TIMEOUT));
        if let Some(path) = &settings.ca_file {
            for cert in http_body::load_ca_file(path)?.certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| CrayonError::HttpClient {
            source: e.without_url(),
        })?;
        Ok(Self::with_http_client(settings, http))
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
    /// the snapshot and the ids the answer listed more than once. A 401 gets
    /// one fresh token and one retry; a second 401 is [`CrayonError::Unauthorized`].
    pub async fn fetch_queue(&self) -> Result<(Snapshot, Vec<ExportId>), CrayonError> {
        let body = self.fetch_queue_body().await?;
        self.parse_queue(&body)
    }

    /// The HTTP half of [`fetch_queue`](Self::fetch_queue): the queue body as
    /// bytes, size-capped, not yet parsed. Split out so the poll cycle (and
    /// the benchmarks, which have no server) share one parse-onwards path.
    pub async fn fetch_queue_body(&self) -> Result<Vec<u8>, CrayonError> {
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

    /// The parse half of [`fetch_queue`](Self::fetch_queue): a body that is
    /// not the documented shape is [`CrayonError::Malformed`].
    pub fn parse_queue(&self, body: &[u8]) -> Result<(Snapshot, Vec<ExportId>), CrayonError> {
        let polled = self.parse_queue_over(body, &mut None)?;
        Ok((polled.snapshot, polled.duplicates))
    }

    /// As [`parse_queue`](Self::parse_queue), against the stored snapshot
    /// (see [`Snapshot::parse_over`]): on success `stored` is taken.
    pub fn parse_queue_over(
        &self,
        body: &[u8],
        stored: &mut Option<Snapshot>,
    ) -> Result<Polled, CrayonError> {
        Snapshot::parse_over(body, stored).map_err(|e| CrayonError::Malformed {
            endpoint: EXPORTS,
            reason: e.to_string(),
        })
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
        refuse_redirect(EXPORTS, &response)?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(None),
            status if status.is_success() => Ok(Some(response)),
            status => {
                let prefix = http_body::read_prefix(response, ERROR_BODY_PREFIX).await;
                let s = &self.settings;
                let secrets = [token, &s.client_secret, &s.password].map(|v| v.expose().to_owned());
                Err(CrayonError::Status {
                    endpoint: EXPORTS,
                    status: status.as_u16(),
                    body: http_body::one_line(&prefix, &secrets),
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

/// Reads either spelling of the token answer. No error built here quotes the
/// body: it holds the token.
fn parse_token(body: &[u8], status: u16) -> Result<CachedToken, CrayonError> {
    let malformed = |reason: String| CrayonError::Malformed {
        endpoint: TOKEN,
        reason,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(malformed("the answer is not a JSON object".to_owned()));
    };
    let field = |name: &str, alias: &str| map.get(name).or_else(|| map.get(alias));
    if field("Error", "error").is_some_and(is_set) {
        return Err(CrayonError::CredentialsRefused { status });
    }
    let token = match field("AccessToken", "access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err(malformed(
                "it has no AccessToken (or access_token)".to_owned(),
            ))
        }
    };
    let lifetime = parse_lifetime(field("ExpiresIn", "expires_in")).ok_or_else(|| {
        malformed("ExpiresIn (or expires_in) is not a number of seconds".to_owned())
    })?;
    Ok(CachedToken::new(Secret::new(token.as_str()), lifetime))
}

/// An `Error` field counts when it says something (not null, "" or false).
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(set) => *set,
        Value::String(text) => !text.trim().is_empty(),
        _ => true,
    }
}

/// `ExpiresIn` as a number or numeric string; absent or null means one hour.
fn parse_lifetime(value: Option<&Value>) -> Option<Duration> {
    let seconds = match value {
        None | Some(Value::Null) => return Some(DEFAULT_LIFETIME),
        Some(Value::Number(n)) => n.as_f64()?,
        Some(Value::String(text)) => text.trim().parse::<f64>().ok()?,
        Some(_) => return None,
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        seconds.min(MAX_LIFETIME.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{
        basic_auth, bearer_token, body_string_contains, header, method, path,
    };
    use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

    const CLIENT_SECRET: &str = "client-s3cret-XYZ";
    const PASSWORD: &str = "pa&ss+wo=rd-SECRET";
    const TOKEN_VALUE: &str = "tok-1-SECRET";
    const QUEUE: &str = r#"{"Items":[
        {"Id":7,"Status":2,"ActionUrl":"x","Downloadable":true,"Attempts":1,
         "ActionName":"Report","RequestedBy":"a@example.com","CreatedDate":"2024-05-30T13:39:59.387"},
        {"Id":7,"Status":1,"ActionUrl":"x","Downloadable":false,"Attempts":0,
         "ActionName":"Report","RequestedBy":null,"CreatedDate":"2024-05-30T13:39:59.387"}
        ],"NrOfDays":7}"#;

    fn settings(base: &str) -> CrayonSettings {
        CrayonSettings {
            base_url: base.parse().unwrap(),
            client_id: "bot-client".to_owned(),
            client_secret: Secret::new(CLIENT_SECRET),
            username: "bot@example.com".to_owned(),
            password: Secret::new(PASSWORD),
            scope: "CustomerApi".to_owned(),
            timeout: Duration::from_millis(300),
            max_body: 1 << 20,
            ca_file: None,
        }
    }

    fn client_with(settings: CrayonSettings) -> CrayonClient {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        CrayonClient::with_http_client(settings, http)
    }

    fn client(server: &MockServer) -> CrayonClient {
        client_with(settings(&server.uri()))
    }

    fn token_answer(token: &str, expires_in: u64) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "AccessToken": token, "ExpiresIn": expires_in, "TokenType": "Bearer"
        }))
    }

    fn token_route() -> MockBuilder {
        Mock::given(method("POST")).and(path("/api/v1/connect/token/"))
    }

    fn exports_route() -> MockBuilder {
        Mock::given(method("GET")).and(path("/api/v1/exports/"))
    }

    fn token_mock(answer: ResponseTemplate) -> Mock {
        token_route().respond_with(answer)
    }

    fn exports_mock(answer: ResponseTemplate) -> Mock {
        exports_route().respond_with(answer)
    }

    fn queue_answer() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(QUEUE, "application/json")
    }

    /// A server with a working token endpoint and `exports` as the queue answer.
    async fn server_with(exports: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        token_mock(token_answer(TOKEN_VALUE, 3600))
            .mount(&server)
            .await;
        exports_mock(exports).mount(&server).await;
        server
    }

    fn assert_no_secrets(error: &CrayonError) {
        let shown = format!("{error} {error:?} {error:#?}");
        for secret in [CLIENT_SECRET, PASSWORD, TOKEN_VALUE] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CrayonClient>();
    }

    #[test]
    fn base_url_keeps_its_path_and_gains_a_trailing_slash() {
        let base = normalise_base("https://proxy.example/crayon?x=1".parse().unwrap());
        assert_eq!(
            base.join(EXPORTS_PATH).unwrap().as_str(),
            "https://proxy.example/crayon/api/v1/exports/"
        );
        let root = normalise_base("https://api.crayon.com".parse().unwrap());
        assert_eq!(
            root.join(TOKEN_PATH).unwrap().as_str(),
            "https://api.crayon.com/api/v1/connect/token/"
        );
    }

    #[test]
    fn expires_in_may_be_a_number_a_numeric_string_or_missing() {
        let json = |v: Value| parse_lifetime(Some(&v));
        assert_eq!(json(serde_json::json!(120)), Some(Duration::from_secs(120)));
        assert_eq!(
            json(serde_json::json!(" 90 ")),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_lifetime(None), Some(DEFAULT_LIFETIME));
        assert_eq!(json(Value::Null), Some(DEFAULT_LIFETIME));
        assert_eq!(json(serde_json::json!("soon")), None);
        assert_eq!(json(serde_json::json!(-5)), None);
        assert_eq!(json(serde_json::json!(1e300)), Some(MAX_LIFETIME));
    }

    #[test]
    fn token_is_renewed_when_less_than_a_tenth_or_a_minute_remains() {
        let token = CachedToken::new(Secret::new("t"), Duration::from_secs(3600));
        let now = token.expires_at - Duration::from_secs(3600);
        assert!(token.is_usable(now));
        assert!(token.is_usable(token.expires_at - Duration::from_secs(61)));
        assert!(!token.is_usable(token.expires_at - Duration::from_secs(59)));
        let short = CachedToken::new(Secret::new("t"), Duration::from_secs(100));
        assert!(short.is_usable(short.expires_at - Duration::from_secs(11)));
        assert!(!short.is_usable(short.expires_at - Duration::from_secs(9)));
    }

    #[test]
    fn excerpt_is_one_masked_line_of_limited_length() {
        let body = format!("oops\n\tbearer {TOKEN_VALUE}\r\n{}", "x".repeat(1000));
        let text = http_body::one_line(body.as_bytes(), &[TOKEN_VALUE.into(), "".into()]);
        assert!(text.starts_with("oops bearer *** xxx"), "{text}");
        assert_eq!(text.chars().count(), http_body::LINE_CHARS);
        assert!(text.ends_with('…'));
    }

    #[tokio::test]
    async fn token_is_fetched_once_and_reused_across_polls() {
        let server = MockServer::start().await;
        token_mock(token_answer(TOKEN_VALUE, 3600))
            .expect(1)
            .mount(&server)
            .await;
        exports_route()
            .and(bearer_token(TOKEN_VALUE))
            .and(header("accept", "application/json"))
            .respond_with(queue_answer())
            .expect(2)
            .mount(&server)
            .await;
        let client = client(&server);
        for _ in 0..2 {
            let (snapshot, duplicates) = client.fetch_queue().await.unwrap();
            assert_eq!(snapshot.items.len(), 1);
            assert_eq!(snapshot.nr_of_days, 7);
            assert_eq!(duplicates, vec![ExportId(7)]);
        }
    }

    #[tokio::test]
    async fn token_request_sends_basic_auth_and_a_form_encoded_password() {
        let server = MockServer::start().await;
        token_route()
            .and(basic_auth("bot-client", CLIENT_SECRET))
            .and(header(
                "authorization",
                "Basic Ym90LWNsaWVudDpjbGllbnQtczNjcmV0LVhZWg==",
            ))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string_contains("grant_type=password"))
            .and(body_string_contains("username=bot%40example.com"))
            .and(body_string_contains("password=pa%26ss%2Bwo%3Drd-SECRET"))
            .and(body_string_contains("scope=CustomerApi"))
            .respond_with(token_answer(TOKEN_VALUE, 3600))
            .expect(1)
            .mount(&server)
            .await;
        let lifetime = client(&server).check_credentials().await.unwrap();
        assert_eq!(lifetime, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn oauth2_spelling_with_string_expires_in_is_accepted() {
        let server = MockServer::start().await;
        let answer = ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "lower-tok", "expires_in": "1800", "token_type": "bearer"
        }));
        token_mock(answer).expect(1).mount(&server).await;
        exports_route()
            .and(bearer_token("lower-tok"))
            .respond_with(queue_answer())
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server);
        assert_eq!(
            client.check_credentials().await.unwrap(),
            Duration::from_secs(1800)
        );
        client.fetch_queue().await.unwrap();
    }

    #[tokio::test]
    async fn missing_expires_in_means_one_hour() {
        let server = MockServer::start().await;
        let answer = ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"AccessToken": "t", "Error": null}));
        token_mock(answer).mount(&server).await;
        let lifetime = client(&server).check_credentials().await.unwrap();
        assert_eq!(lifetime, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn token_is_renewed_after_it_expires() {
        let server = MockServer::start().await;
        token_mock(token_answer(TOKEN_VALUE, 1))
            .expect(2)
            .mount(&server)
            .await;
        exports_mock(queue_answer()).expect(2).mount(&server).await;
        let client = client(&server);
        client.fetch_queue().await.unwrap();
        tokio::time::sleep(Duration::from_millis(950)).await;
        client.fetch_queue().await.unwrap();
    }

    #[tokio::test]
    async fn a_401_gets_one_fresh_token_and_one_retry() {
        let server = MockServer::start().await;
        token_mock(token_answer("old-tok", 3600))
            .up_to_n_times(1)
            .with_priority(1)
            .expect(1)
            .mount(&server)
            .await;
        token_mock(token_answer("new-tok", 3600))
            .expect(1)
            .mount(&server)
            .await;
        exports_route()
            .and(bearer_token("old-tok"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;
        exports_route()
            .and(bearer_token("new-tok"))
            .respond_with(queue_answer())
            .expect(1)
            .mount(&server)
            .await;
        let (snapshot, _) = client(&server).fetch_queue().await.unwrap();
        assert_eq!(snapshot.items.len(), 1);
    }

    #[tokio::test]
    async fn a_second_401_is_unauthorized_and_a_credentials_error() {
        let server = MockServer::start().await;
        token_mock(token_answer(TOKEN_VALUE, 3600))
            .expect(2)
            .mount(&server)
            .await;
        exports_mock(ResponseTemplate::new(401))
            .expect(2)
            .mount(&server)
            .await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        assert!(matches!(error, CrayonError::Unauthorized), "{error:?}");
        assert!(error.is_credentials());
    }

    #[tokio::test]
    async fn refused_credentials_are_a_credentials_error() {
        let server = MockServer::start().await;
        let refusal = ResponseTemplate::new(400).set_body_string(format!(
            r#"{{"error":"invalid_grant","password":"{PASSWORD}"}}"#
        ));
        token_mock(refusal).mount(&server).await;
        exports_mock(queue_answer()).expect(0).mount(&server).await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        assert!(
            matches!(error, CrayonError::CredentialsRefused { status: 400 }),
            "{error:?}"
        );
        assert!(error.is_credentials());
        assert!(error.to_string().contains("check client_id, client_secret"));
        assert_no_secrets(&error);
    }

    #[tokio::test]
    async fn a_200_token_answer_with_error_set_is_refused_credentials() {
        let server = MockServer::start().await;
        let answer = ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"Error": "invalid_grant", "AccessToken": null}));
        token_mock(answer).mount(&server).await;
        let error = client(&server).check_credentials().await.unwrap_err();
        assert!(
            matches!(error, CrayonError::CredentialsRefused { status: 200 }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn token_answers_of_the_wrong_shape_are_malformed_without_quoting_them() {
        let bodies = [
            format!(r#"{{"TokenType":"Bearer","RefreshToken":"{TOKEN_VALUE}"}}"#),
            format!(r#"{{"AccessToken":"{TOKEN_VALUE}","ExpiresIn":"{PASSWORD}"}}"#),
            format!(r#"["{TOKEN_VALUE}"]"#),
            format!("<html>{TOKEN_VALUE}"),
        ];
        for body in bodies {
            let server = MockServer::start().await;
            token_mock(ResponseTemplate::new(200).set_body_string(body))
                .mount(&server)
                .await;
            let error = client(&server).check_credentials().await.unwrap_err();
            assert!(
                matches!(
                    error,
                    CrayonError::Malformed {
                        endpoint: "token",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert_no_secrets(&error);
        }
    }

    #[tokio::test]
    async fn a_server_error_is_a_transient_status_error_with_a_masked_excerpt() {
        let body = format!("Internal error\nwhile checking Bearer {TOKEN_VALUE}");
        let server = server_with(ResponseTemplate::new(500).set_body_string(body)).await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        let CrayonError::Status {
            endpoint,
            status,
            body,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!((*endpoint, *status), ("exports", 500));
        assert_eq!(body, "Internal error while checking Bearer ***");
        assert_no_secrets(&error);
    }

    #[tokio::test]
    async fn a_token_endpoint_error_never_shows_its_body() {
        let server = MockServer::start().await;
        token_mock(ResponseTemplate::new(503).set_body_string(format!("echo {PASSWORD}")))
            .mount(&server)
            .await;
        let error = client(&server).check_credentials().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the Crayon token endpoint answered HTTP 503"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_malformed() {
        let server = server_with(ResponseTemplate::new(200).set_body_string("{\"Items\": [")).await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::Malformed {
                    endpoint: "exports",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_object_is_malformed_not_an_empty_queue() {
        let server = server_with(ResponseTemplate::new(200).set_body_string("{}")).await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        let CrayonError::Malformed { reason, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(reason.contains("Items"), "{reason}");
    }

    #[tokio::test]
    async fn a_slow_answer_times_out() {
        let slow = queue_answer().set_delay(Duration::from_secs(2));
        let server = server_with(slow).await;
        let error = client(&server).fetch_queue().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::Timeout {
                    endpoint: "exports",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_body_over_max_body_is_too_large() {
        let server = server_with(queue_answer()).await;
        let mut settings = settings(&server.uri());
        settings.max_body = 100;
        let error = client_with(settings).fetch_queue().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::TooLarge {
                    endpoint: "exports",
                    limit: 100
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_token_body_over_64_kib_is_too_large() {
        let server = MockServer::start().await;
        let padding = "x".repeat(70 * 1024);
        let answer = ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"AccessToken": TOKEN_VALUE, "ExpiresIn": 3600, "Pad": padding}),
        );
        token_mock(answer).mount(&server).await;
        let error = client(&server).check_credentials().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::TooLarge {
                    endpoint: "token",
                    limit: 65536
                }
            ),
            "{error:?}"
        );
        assert_no_secrets(&error);
    }

    /// Serves a token, then a chunked queue body with no Content-Length, so
    /// only the streaming cap can stop it.
    fn chunked_server() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut request = [0u8; 8192];
                let n = stream.read(&mut request).unwrap_or(0);
                let answer = if request[..n].starts_with(b"POST") {
                    let token = r#"{"AccessToken":"t","ExpiresIn":3600}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{token}",
                        token.len()
                    )
                } else {
                    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
                        chunk.repeat(8)
                    )
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_streamed_body_over_max_body_is_too_large() {
        let mut settings = settings(&chunked_server());
        settings.max_body = 3000;
        let error = client_with(settings).fetch_queue().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::TooLarge {
                    endpoint: "exports",
                    limit: 3000
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transient_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = client_with(settings(&format!("http://127.0.0.1:{port}/")));
        let error = client.fetch_queue().await.unwrap_err();
        assert!(
            matches!(
                error,
                CrayonError::Connect {
                    endpoint: "token",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains("127.0.0.1"), "{error}");
        assert_no_secrets(&error);
    }

    #[test]
    fn ca_file_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [missing, empty] {
            let mut settings = settings("https://api.crayon.com/");
            settings.ca_file = Some(path.clone());
            let error = CrayonClient::new(settings).unwrap_err();
            assert!(matches!(error, CrayonError::CaFile { .. }), "{error:?}");
            assert!(error.to_string().contains(&path.display().to_string()));
        }
    }

    #[test]
    fn new_builds_a_client_and_debug_hides_secrets() {
        let client = CrayonClient::new(settings("https://api.crayon.com")).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains(CLIENT_SECRET) && !shown.contains(PASSWORD));
        assert!(shown.contains("api.crayon.com"));
    }
}
