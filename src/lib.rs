//! crayon-export-bot: polls Crayon Cloud-iQ's export queue and tells people
//! when the export they asked for is ready (or failed).
//!
//! The pipeline: `crayon` fetches the queue body as bytes → `domain`
//! parses it over the stored snapshot → `diff` (events) → `route` + `render`
//! (deliveries) → `store` (one transaction) → `app::dispatch` (sinks). The
//! pure steps do no I/O; `app` (`app::poll` one cycle, `app::run` the loop)
//! wires them together, and `cli` is one file per command.

pub mod address;
pub mod app;
pub mod attach;
pub mod check;
pub mod cli;
pub mod config;
pub mod crayon;
pub mod demo;
pub mod diff;
pub mod digest;
pub mod domain;
pub mod http_body;
pub mod leadership;
pub mod preview;
pub mod probe;
pub mod quiet;
pub mod render;
pub mod report;
pub mod retention;
pub mod route;
pub mod secret;
pub mod sinks;
pub mod state_lock;
pub mod status;
pub mod store;
pub mod text;
pub mod tls;
