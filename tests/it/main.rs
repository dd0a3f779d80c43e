//! Integration tests: the real binary against fakes on loopback (wiremock as
//! the Crayon API and as webhook receivers).

mod chat;
mod check;
mod helpers;
mod watcher;
