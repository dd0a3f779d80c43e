//! Integration tests: the real binary against fakes on loopback (wiremock as
//! the Crayon API and as webhook receivers, an SMTP server for email).

mod check;
mod email;
mod helpers;
mod smtp;
mod watcher;
