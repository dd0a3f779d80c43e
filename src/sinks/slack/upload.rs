//! A Slack app message with the export's file (#16), the Web API's
//! three steps: `files.getUploadURLExternal` (filename, length) → POST the
//! bytes to the `upload_url` → `files.completeUploadExternal` sharing the
//! file into the message's DM or channel with the message's `text` as
//! `initial_comment` (Slack ignores `blocks` next to an `initial_comment`,
//! and does not take every block kind there). Each step's `ok: false` is
//! classified like any Web API call (see `api::ApiError`).

use serde_json::{json, Value};

use super::api::ApiError;
use super::app::SlackAppSink;
use crate::attach::Attachment;
use crate::domain::Delivery;
use crate::sinks::SendError;

impl SlackAppSink {
    /// Sends the delivery with `attachment` shared into its channel (the
    /// message alone when there is none).
    pub async fn send_with(
        &self,
        delivery: &Delivery,
        attachment: Option<&Attachment>,
    ) -> Result<(), SendError> {
        let Some(file) = attachment else {
            return self.send(delivery).await;
        };
        let (body, channel) = self.addressed(delivery).await?;
        let size = file.size.to_string();
        let args = [("filename", file.name.as_str()), ("length", size.as_str())];
        let got = self.api.form("files.getUploadURLExternal", &args).await;
        let got = got.map_err(ApiError::into_send_error)?;
        let (Some(upload_url), Some(file_id)) = (text(&got, "upload_url"), text(&got, "file_id"))
        else {
            return Err(SendError::Retryable(
                "Slack files.getUploadURLExternal: the answer has no upload_url or file_id".into(),
            ));
        };
        self.api.upload(upload_url, file).await?;
        let complete = json!({
            "files": [{ "id": file_id, "title": file.name }],
            "channel_id": channel,
            "initial_comment": body.get("text").cloned().unwrap_or(Value::Null),
        });
        let done = self
            .api
            .json("files.completeUploadExternal", &complete)
            .await;
        done.map(drop).map_err(ApiError::into_send_error)
    }
}

fn text<'a>(answer: &'a Value, key: &str) -> Option<&'a str> {
    answer[key].as_str().filter(|s| !s.is_empty())
}
