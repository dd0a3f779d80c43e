//! Integration tests: the real binary against fakes on loopback (wiremock as
//! the Crayon API and as webhook receivers, an SMTP server for email).

mod chat;
mod check;
mod demo;
mod email;
mod faults;
mod helpers;
mod operate;
mod preview;
mod reliability;
mod secrets;
mod smtp;
mod watcher;
