//! The export file itself (issue #16): sinks with `attach = true` send the
//! export's file with the message. The file is downloaded once per
//! (account, item) into a spool folder (`spool`), named and typed by
//! `name`, and removed when no pending delivery needs it. Whether the file
//! could be had is decided at send time, and the message is rendered again
//! with `attachment` so it can say so.

pub mod name;
pub mod spool;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{ConfigError, RawSink};

pub use spool::{Fetched, Spool, SpoolError};

/// A sink's `attach = true` settings: the largest file it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachSettings {
    /// `attach_max` in bytes; a bigger file is not attached (the message
    /// says so).
    pub max: u64,
}

/// A downloaded export file ready to send: complete on disk (it was
/// renamed into place only once the whole body was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Where it is in the spool folder.
    pub path: PathBuf,
    /// The name recipients see (safe: see [`name::safe_name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type.
    pub content_type: String,
}

/// The `attachment` template variable at send time: what the file is and
/// whether it goes with this message, and if not, why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttachmentView {
    /// The file name, when known.
    pub name: Option<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// The size for people (`2.4 MiB`), so templates need no filter.
    pub size_text: Option<String>,
    /// Its MIME type, when known.
    pub content_type: Option<String>,
    /// True when the file goes with this message.
    pub attached: bool,
    /// Why it does not, in words for the recipient; `None` when attached.
    pub reason: Option<String>,
}

impl AttachmentView {
    /// The view of a file that goes with the message.
    pub fn attached(file: &Attachment) -> Self {
        AttachmentView {
            name: Some(file.name.clone()),
            size: Some(file.size),
            size_text: Some(human_size(file.size)),
            content_type: Some(file.content_type.clone()),
            attached: true,
            reason: None,
        }
    }

    /// The view of a file that does not, saying why.
    pub fn missing(reason: impl Into<String>) -> Self {
        AttachmentView {
            reason: Some(reason.into()),
            ..AttachmentView::default()
        }
    }

    /// What `render` and the preview show: a placeholder file that would
    /// be attached.
    pub fn placeholder(action_name: &str) -> Self {
        AttachmentView {
            name: Some(name::from_action_name(action_name, "zip")),
            size: Some(PLACEHOLDER_SIZE),
            size_text: Some(human_size(PLACEHOLDER_SIZE)),
            content_type: Some("application/zip".into()),
            attached: true,
            reason: None,
        }
    }
}

/// The size `render` shows for the placeholder file (the real one is only
/// known at send time).
pub const PLACEHOLDER_SIZE: u64 = 123_456;

/// `attach`/`attach_max` of sink `name`. `limit` is the kind's default
/// `attach_max` (`None` for kinds that cannot attach: then either key is an
/// error naming it).
pub fn check_config(
    name: &str,
    raw: &RawSink,
    limit: Option<u64>,
) -> Result<Option<AttachSettings>, ConfigError> {
    let key = |k: &str| format!("sinks.{name}.{k}");
    let Some(default_max) = limit else {
        if raw.attach.is_some() {
            return Err(refused(&key("attach"), &raw.kind));
        }
        if raw.attach_max.is_some() {
            return Err(refused(&key("attach_max"), &raw.kind));
        }
        return Ok(None);
    };
    let max = match &raw.attach_max {
        Some(text) => parse_size(&key("attach_max"), text)?,
        None => default_max,
    };
    Ok(raw
        .attach
        .unwrap_or(false)
        .then_some(AttachSettings { max }))
}

fn refused(key: &str, kind: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        format!(
            "a {kind} sink of this mode cannot send the export file; attach works on email, \
             Discord and Slack with bot_token"
        ),
    )
}

fn parse_size(key: &str, text: &str) -> Result<u64, ConfigError> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(size.as_u64()),
        _ => Err(ConfigError::invalid(
            key,
            format!("{text:?} is not a size above zero (e.g. \"10MiB\")"),
        )),
    }
}

/// A size for people: `2.4 MiB`.
pub fn human_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod config_tests;
