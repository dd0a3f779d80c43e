//! `kind = "slack"` (reads `url`): a Block Kit message POSTed to an incoming
//! webhook. The send is the plain JSON POST of [`super::HttpSink`] (Slack
//! answers 200 `ok`, 429 with `Retry-After`, 400 `invalid_payload`); this
//! folder holds the kind's settings and its size limits.

mod fit;

pub use fit::fit;

use super::registry::{KindSpec, SinkKind};
use super::webhook::required_url;
use crate::config::{ConfigError, RawSink};

/// The registry entry of `kind = "slack"`.
pub const KIND: KindSpec = KindSpec {
    name: "slack",
    keys: &["url"],
    check,
};

fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    Ok(SinkKind::Slack {
        url: required_url(name, "url", &raw.url)?,
    })
}
