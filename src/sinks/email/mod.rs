//! `kind = "email"`: sends the rendered `subject`/`text`/`html` parts over
//! SMTP (lettre, tokio, rustls). Each delivery is one recipient (the
//! requester or one fixed `to`/`cc`/`bcc`, see [`rcpt`]), so one refused
//! address never holds back the others. Reads `[sinks.NAME]` and
//! `tls.ca_file`. Like every sink it only classifies a failure; retries are
//! the dispatcher's.

mod attachment;
mod idn;
mod message;
pub mod rcpt;
mod settings;
mod sink;
mod transport;

use std::path::Path;
use std::sync::OnceLock;

use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use message::{
    clean_subject, message_id, AutoResponseSuppress, AutoSubmitted, Envelope, SUBJECT_MAX,
};
pub use settings::{alert_problem, EmailConfig, SmtpSecurity, KIND};
pub use transport::{classify, TransportError};

use super::SendError;
use crate::domain::Delivery;
use crate::secret::Secret;

/// How long [`EmailSink::close`] lets lettre's spawned tasks hand used
/// connections back to the pool (no I/O: microseconds, unless the machine is
/// very busy) before it ends the pooled sessions.
const RECYCLE_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

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
        let ascii =
            |list: &[lettre::message::Mailbox]| list.iter().map(idn::ascii_mailbox).collect();
        Ok(EmailSink {
            envelope: Envelope {
                from: idn::ascii_mailbox(&config.from),
                to: ascii(&config.to),
                cc: ascii(&config.cc),
                bcc: ascii(&config.bcc),
                reply_to: config.reply_to.as_ref().map(idn::ascii_mailbox),
            },
            outgoing,
        })
    }

    /// Ends the pooled SMTP sessions with QUIT and waits for it. Left to
    /// lettre, a session ends in a detached task (the pool's drop, or the
    /// recycling of a just-used connection) that a one-shot `once` or
    /// `send-test` exits before, so the server saw the connection just drop.
    /// lettre hands a used connection back to the pool in a spawned task, so
    /// that gets [`RECYCLE_GRACE`] first; then every parked session is sent
    /// QUIT, awaited.
    pub async fn close(&self) {
        if let Outgoing::Smtp { transport, .. } = &self.outgoing {
            if let Some(transport) = transport.get() {
                tokio::time::sleep(RECYCLE_GRACE).await;
                transport.shutdown().await;
            }
        }
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
        self.send_with(delivery, None).await
    }

    /// [`EmailSink::send`] with the export's file attached (#16).
    pub async fn send_with(
        &self,
        delivery: &Delivery,
        attachment: Option<&crate::attach::Attachment>,
    ) -> Result<(), SendError> {
        let message = message::build_with(&self.envelope, delivery, attachment)?;
        let envelope = message.envelope().clone();
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
                .map_err(|e| match smtputf8_needed(&e, &envelope) {
                    Some(refusal) => refusal,
                    None => classify(&e, password.as_ref()),
                }),
            Outgoing::Files(files) => {
                files.send(message).await.map(|_| ()).map_err(|e| {
                    SendError::Retryable(format!("cannot write the message file: {e}"))
                })
            }
        }
    }
}

/// The real cause when lettre refuses to send because an address needs
/// SMTPUTF8 (a local part that is not ASCII; domains were sent as A-labels)
/// and the server does not offer it: permanent for this recipient, and
/// named, rather than "could not talk to the SMTP server".
fn smtputf8_needed(
    error: &lettre::transport::smtp::Error,
    envelope: &lettre::address::Envelope,
) -> Option<SendError> {
    if error.status().is_some() || !error.to_string().contains("SMTPUTF8") {
        return None;
    }
    let addresses = idn::needing_smtputf8(envelope.from().into_iter().chain(envelope.to()));
    Some(SendError::Permanent(format!(
        "the SMTP server does not offer SMTPUTF8, which the address {} needs (its local part \
         is not ASCII)",
        addresses.join(", ")
    )))
}
