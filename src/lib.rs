//! crayon-export-bot: polls Crayon Cloud-iQ's export queue and tells people
//! when the export they asked for is ready (or failed).
//!
//! The pipeline is `crayon` (fetch) → `diff` (events) → `route` + `render`
//! (deliveries) → `store` (one transaction) → `dispatch` (sinks). The pure
//! steps do no I/O; `poll` and `service` wire them together.

pub mod address;
pub mod alerts;
pub mod check;
pub mod cli;
pub mod cli_state_copy;
pub mod config;
pub mod crayon;
pub mod demo;
pub mod diff;
pub mod dispatch;
pub mod domain;
pub mod http_body;
pub mod leadership;
pub mod poll;
pub mod polled;
pub mod preview;
pub mod probe;
pub mod reload;
pub mod render;
pub mod report;
pub mod retention;
pub mod route;
pub mod secret;
pub mod server;
pub mod service;
pub mod sinks;
pub mod state_lock;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod text;
