//! The export file: `GET {base}/api/v1/exports/{Id}/download/` with the
//! same bearer token as the queue (reused, one fresh token and one retry on
//! a 401), redirects not followed. Only the answer's head is read here; the
//! body is streamed to disk by `crate::attach::spool`, never held whole.

use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::Response;

use super::{CrayonClient, CrayonError};
use crate::domain::ExportId;
use crate::secret::Secret;

/// Endpoint name used in errors and logs (never the URL: it names the item
/// and the host, and a proxy may put a credential in it).
pub(crate) const DOWNLOAD: &str = "download";

/// The most a whole download may take; a stall is caught sooner, by the
/// per-chunk wait of `crayon.timeout` the spool applies.
const DOWNLOAD_FOR: Duration = Duration::from_secs(3600);

impl CrayonClient {
    /// Starts the download of item `id`'s file: the 2xx answer with its
    /// body unread, or the classified failure ([`CrayonError::Status`] for
    /// 4xx/5xx, [`CrayonError::Unauthorized`] after two 401s).
    pub async fn download_export(&self, id: ExportId) -> Result<Response, CrayonError> {
        let token = self.bearer().await?;
        if let Some(response) = self.get_download(id, &token).await? {
            return Ok(response);
        }
        self.forget_token(&token).await;
        let fresh = self.bearer().await?;
        self.get_download(id, &fresh)
            .await?
            .ok_or(CrayonError::Unauthorized)
    }

    /// How long the body may stall between two chunks (`crayon.timeout`).
    pub fn stall_timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// One request; `None` means 401.
    async fn get_download(
        &self,
        id: ExportId,
        token: &Secret,
    ) -> Result<Option<Response>, CrayonError> {
        let path = format!("api/v1/exports/{}/download/", id.0);
        let url = self.endpoint(&path)?;
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .header(ACCEPT, "*/*")
            .timeout(DOWNLOAD_FOR.max(self.settings.timeout))
            .send()
            .await
            .map_err(|e| self.transport(DOWNLOAD, e))?;
        // The URL is masked with the secrets: the answer may echo it.
        let url_text = vec![url.to_string(), url.path().to_string()];
        self.answer(DOWNLOAD, response, token, url_text).await
    }
}
