//! `kind = "slack"`: either a Block Kit message POSTed to an incoming webhook
//! (`url`; the plain JSON POST of [`super::HttpSink`], Slack answers 200
//! `ok`, 429 with `Retry-After`, 400 `invalid_payload`), or the same message
//! posted by an app through the Web API (`bot_token`, [`app`]), which can
//! reach the requester in person. This folder holds both modes' settings,
//! the app's Web API client and lookups, and the size limits.

mod api;
mod app;
mod fit;
mod lookup;
#[cfg(test)]
mod lookup_tests;
mod settings;
mod upload;

pub use app::SlackAppSink;
pub use fit::fit;
pub use settings::{alert_problem, AppSettings};

use super::registry::KindSpec;

/// The registry entry of `kind = "slack"`.
pub const KIND: KindSpec = KindSpec {
    name: "slack",
    keys: &[
        "url",
        "bot_token",
        "channel",
        "api_base",
        "attach",
        "attach_max",
    ],
    check: settings::check,
};
