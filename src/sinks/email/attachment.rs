//! The export file in an email (#16): `multipart/mixed` holding the
//! `multipart/alternative` text + HTML first, then the file as base64 with
//! its Content-Type and filename (lettre writes RFC 2231 `filename*` for a
//! name that is not ASCII).
//!
//! Memory: lettre builds the whole message in memory, so the file is read
//! from the spool into memory here (and base64-encoded, about 4/3 of it
//! again, plus the formatted copy sent). `attach_max` (10 MiB by default)
//! bounds that; the download itself never holds the file (it streams to
//! the spool).

use lettre::message::header::ContentType;
use lettre::message::{Attachment as MailAttachment, MultiPart};

use crate::attach::Attachment;
use crate::sinks::SendError;

/// `alternative` followed by `file`, as one `multipart/mixed`. A file that
/// vanished from the spool is retryable (the next attempt downloads again).
pub fn mixed(alternative: MultiPart, file: &Attachment) -> Result<MultiPart, SendError> {
    let bytes = std::fs::read(&file.path).map_err(|e| {
        SendError::Retryable(format!(
            "cannot read the export file {} from the spool: {e}",
            file.name
        ))
    })?;
    let content_type = ContentType::parse(&file.content_type)
        .unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("valid"));
    let part = MailAttachment::new(file.name.clone()).body(bytes, content_type);
    Ok(MultiPart::mixed().multipart(alternative).singlepart(part))
}
