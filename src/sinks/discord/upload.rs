//! A Discord message with the export's file (#16): `multipart/form-data`
//! with the rendered payload as `payload_json` (plus its `attachments`
//! entry) and the file as `files[0]`, for the webhook and for DMs. The file
//! is streamed from the spool, not read into memory.

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use serenity::http::{LightMethod, Request, Route};

use super::{parse_user, DiscordSink, Mode};
use crate::attach::Attachment;
use crate::domain::Delivery;
use crate::sinks::SendError;

impl DiscordSink {
    /// Sends the delivery with `attachment` as `files[0]` (the message
    /// alone when there is none).
    pub async fn send_with(
        &self,
        delivery: &Delivery,
        attachment: Option<&Attachment>,
    ) -> Result<(), SendError> {
        let Some(file) = attachment else {
            return self.send(delivery).await;
        };
        let payload = payload_with(delivery.message.part("json"), &file.name)?;
        match &self.mode {
            Mode::Webhook { id, token } => {
                let route = Route::WebhookWithToken {
                    webhook_id: *id,
                    token: token.expose(),
                };
                let request = Request::new(route, LightMethod::Post)
                    .params(Some(vec![("wait", "true".to_string())]));
                let form = form(payload, file).await?;
                self.execute_with(request, false, Some(form))
                    .await
                    .map(drop)
            }
            Mode::Bot => {
                let user = parse_user(delivery.recipient.as_deref())?;
                let channel_id = self.dm_channel(user).await?;
                let request =
                    Request::new(Route::ChannelMessages { channel_id }, LightMethod::Post);
                let form = form(payload, file).await?;
                self.execute_with(request, true, Some(form)).await.map(drop)
            }
        }
    }
}

/// The rendered payload with `attachments: [{id: 0, filename}]`, which
/// ties `files[0]` to the message.
fn payload_with(rendered: &str, name: &str) -> Result<String, SendError> {
    let mut payload: Value = serde_json::from_str(rendered)
        .map_err(|e| SendError::Permanent(format!("the rendered message is not JSON: {e}")))?;
    payload["attachments"] = json!([{ "id": 0, "filename": name }]);
    Ok(payload.to_string())
}

/// `payload_json` and `files[0]`, the file streamed from the spool.
async fn form(payload: String, file: &Attachment) -> Result<Form, SendError> {
    let opened = tokio::fs::File::open(&file.path).await.map_err(|e| {
        SendError::Retryable(format!(
            "cannot read the export file {} from the spool: {e}",
            file.name
        ))
    })?;
    let json = Part::text(payload)
        .mime_str("application/json")
        .map_err(|e| SendError::Permanent(e.without_url().to_string()))?;
    let part = Part::stream_with_length(reqwest::Body::from(opened), file.size)
        .file_name(file.name.clone())
        .mime_str(&file.content_type)
        .map_err(|e| SendError::Permanent(e.without_url().to_string()))?;
    Ok(Form::new()
        .part("payload_json", json)
        .part("files[0]", part))
}

/// `built` (serenity's request, no body) with `form` as its body: the
/// `Content-Length: 0` serenity set goes, reqwest sets type and length.
pub(super) fn with_form(
    client: &reqwest::Client,
    mut built: reqwest::Request,
    form: Form,
) -> Result<reqwest::Request, reqwest::Error> {
    built.headers_mut().remove(CONTENT_LENGTH);
    built.headers_mut().remove(CONTENT_TYPE);
    reqwest::RequestBuilder::from_parts(client.clone(), built)
        .multipart(form)
        .build()
}
