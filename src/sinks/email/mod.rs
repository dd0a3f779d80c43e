//! `kind = "email"`: sends the rendered `subject`/`text`/`html` parts over
//! SMTP (lettre, tokio, rustls) to the delivery's recipient (the requester,
//! chosen by `crate::route`) plus the sink's fixed `to`/`cc`/`bcc`. Reads
//! `[sinks.NAME]` and `tls.ca_file`. Like every sink it only classifies a
//! failure; retries are the dispatcher's.

mod message;
mod settings;
mod sink;
mod transport;

use std::path::Path;
use std::sync::OnceLock;

use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use message::{clean_subject, message_id, AutoSubmitted, Envelope, SUBJECT_MAX};
pub use settings::{alert_problem, EmailConfig, SmtpSecurity, KIND};
pub use transport::{classify, TransportError};

use super::SendError;
use crate::domain::Delivery;
use crate::secret::Secret;

/// One email sink: who mail is from and to, and a pooled SMTP transport
/// that is opened on first use (inside the runtime) and reused for bursts.
pub struct EmailSink {
    envelope: Envelope,
    outgoing: Outgoing,
}

/// Where messages go: an SMTP server, or `.eml` files in a folder (demo).
enum Outgoing {
    Smtp {
        builder: Box<AsyncSmtpTransportBuilder>,
        transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
        password: Option<Secret>,
    },
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl EmailSink {
    /// Checks the TLS setup (reads `ca_file`) without connecting; at most
    /// `pool_size` SMTP sessions are kept open.
    pub fn new(
        config: &EmailConfig,
        ca_file: Option<&Path>,
        pool_size: usize,
    ) -> Result<Self, TransportError> {
        let outgoing = match &config.pickup_dir {
            Some(dir) => Outgoing::Files(AsyncFileTransport::new(dir)),
            None => Outgoing::Smtp {
                builder: Box::new(transport::builder(config, ca_file, pool_size)?),
                transport: OnceLock::new(),
                password: config.password.clone(),
            },
        };
        Ok(EmailSink {
            envelope: Envelope {
                from: config.from.clone(),
                to: config.to.clone(),
                cc: config.cc.clone(),
                bcc: config.bcc.clone(),
            },
            outgoing,
        })
    }

    /// Opens one SMTP session (TLS and login, as configured) and closes it,
    /// sending nothing: what `check --online` reports.
    pub async fn check_connection(&self) -> Result<String, String> {
        match &self.outgoing {
            Outgoing::Smtp {
                builder, password, ..
            } => {
                let transport = builder.clone().build::<Tokio1Executor>();
                match transport.test_connection().await {
                    Ok(true) => Ok("SMTP session opened (TLS and login as configured)".into()),
                    Ok(false) => Err("the SMTP server did not answer NOOP".into()),
                    Err(e) => Err(classify(&e, password.as_ref()).to_string()),
                }
            }
            Outgoing::Files(_) => Ok("writes .eml files; nothing to connect to".into()),
        }
    }

    /// Sends one delivery as one message and classifies the outcome.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), SendError> {
        let message = message::build(&self.envelope, delivery)?;
        match &self.outgoing {
            Outgoing::Smtp {
                builder,
                transport,
                password,
            } => transport
                .get_or_init(|| builder.clone().build::<Tokio1Executor>())
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| classify(&e, password.as_ref())),
            Outgoing::Files(files) => {
                files.send(message).await.map(|_| ()).map_err(|e| {
                    SendError::Retryable(format!("cannot write the message file: {e}"))
                })
            }
        }
    }
}
