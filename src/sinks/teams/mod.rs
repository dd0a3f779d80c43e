//! `kind = "teams"` (reads `url`): an Adaptive Card in a `message` envelope
//! POSTed to a Teams Workflows webhook. The send is the plain JSON POST of
//! [`super::HttpSink`]; Workflows answers 202 Accepted, which counts as
//! delivered like any 2xx. This folder holds the settings and size budget.

mod fit;

pub use fit::fit;

use super::registry::{KindSpec, SinkKind};
use super::webhook::required_url;
use crate::config::{ConfigError, RawSink};

/// The registry entry of `kind = "teams"`.
pub const KIND: KindSpec = KindSpec {
    name: "teams",
    keys: &["url"],
    check,
};

fn check(name: &str, raw: &RawSink) -> Result<SinkKind, ConfigError> {
    Ok(SinkKind::Teams {
        url: required_url(name, "url", &raw.url)?,
    })
}
