//! Integration tests: the real binary against fakes on loopback (wiremock as
//! the Crayon API and as webhook receivers).

mod check;
mod demo;
mod helpers;
mod operate;
mod preview;
mod reliability;
mod watcher;
