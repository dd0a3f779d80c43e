//! Integration tests: the real binary against fakes on loopback (wiremock as
//! the Crayon API and as webhook receivers, an SMTP server for email).

mod accounts;
mod attach;
mod batched_writes;
mod chat;
mod chat_text;
mod check;
mod demo;
mod digest;
mod email;
mod email_recipients;
mod failover;
mod faults;
mod helpers;
mod once;
mod operate;
mod pg_cluster;
mod postgres;
mod preview;
mod quiet;
mod redirects;
mod reliability;
mod removed_account;
mod render_cli;
mod secrets;
mod slack_app;
mod smtp;
mod status_names;
mod status_page;
mod store;
mod teams_mention;
mod watcher;
