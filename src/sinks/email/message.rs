//! Turns one delivery's rendered `subject`, `text` and `html` parts into an
//! RFC 5322 message: `multipart/alternative`, a Message-ID derived from the
//! delivery (a retry carries the same one, so mail clients collapse
//! duplicates), the delivery's creation time as `Date`,
//! `Auto-Submitted: auto-generated` and `X-Auto-Response-Suppress: All` so
//! auto-responders (RFC 3834 ones and Exchange) stay quiet, and `Reply-To`
//! only when configured. A per-recipient row (see [`super::rcpt`]) shows the
//! whole `To`/`Cc` but is enveloped to its one address. No item
//! text reaches a header unchecked: the subject is flattened to one line and
//! addresses were parsed strictly before they got here.

use std::time::SystemTime;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder, MultiPart};
use lettre::{Address, Message};

use super::idn::{ascii_address, ascii_domain};
use super::rcpt::{self, Rcpt, Stored, REQUESTER_PART};
use crate::address::single_address;
use crate::domain::Delivery;
use crate::sinks::SendError;

/// The longest subject we send, in characters (RFC 5322 recommends lines
/// under 78 characters; lettre folds, we only keep it readable).
pub const SUBJECT_MAX: usize = 200;

/// Who a message is from and who always gets a copy (`from`, `to`, `cc`,
/// `bcc`, `reply_to` of `[sinks.NAME]`), domains already as A-labels.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
}

/// `X-Auto-Response-Suppress: All`: Exchange and Outlook honour this rather
/// than `Auto-Submitted`, so out-of-office and read receipts stay away.
#[derive(Debug, Clone, Copy)]
pub struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_string())
    }
}

/// The `Auto-Submitted` header of RFC 3834: marks the mail as machine-made
/// so vacation responders and ticket systems do not answer it.
#[derive(Debug, Clone, Copy)]
pub struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// Builds the message for `delivery`. A per-recipient row goes to its one
/// address (the envelope) while the headers show the requester and the fixed
/// `to`/`cc`; an old-style row goes to its address plus every fixed list.
#[cfg(test)]
pub fn build(envelope: &Envelope, delivery: &Delivery) -> Result<Message, SendError> {
    build_with(envelope, delivery, None)
}

/// [`build`] with the export's file after the text and HTML
/// (`multipart/mixed`, see [`super::attachment`]).
pub fn build_with(
    envelope: &Envelope,
    delivery: &Delivery,
    attachment: Option<&crate::attach::Attachment>,
) -> Result<Message, SendError> {
    let stored = rcpt::decode(delivery.recipient.as_deref())
        .map_err(|e| SendError::Permanent(e.to_string()))?;
    let builder = headers(envelope, delivery);
    let builder = match stored {
        Stored::One(row) => one_recipient(builder, envelope, delivery, &row)?,
        Stored::Legacy(address) => every_recipient(builder, envelope, address.as_deref())?,
    };
    let body = MultiPart::alternative_plain_html(
        delivery.message.part("text").to_string(),
        delivery.message.part("html").to_string(),
    );
    let body = match attachment {
        Some(file) => super::attachment::mixed(body, file)?,
        None => body,
    };
    builder
        .multipart(body)
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// The headers every row shares: From, Subject, Message-ID, Date, the
/// auto-reply guards and, when configured, Reply-To.
fn headers(envelope: &Envelope, delivery: &Delivery) -> MessageBuilder {
    let mut builder = Message::builder()
        .from(envelope.from.clone())
        .subject(clean_subject(delivery.message.part("subject")))
        .message_id(Some(message_id(delivery, &envelope.from)))
        .date(SystemTime::from(delivery.created_at))
        .header(AutoSubmitted)
        .header(AutoResponseSuppress);
    if let Some(reply_to) = &envelope.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
}

/// A per-recipient row: `To` = the requester (if any) and the fixed `to`,
/// `Cc` = the fixed `cc`, no `Bcc`; `RCPT TO` = the row's address only.
fn one_recipient(
    mut builder: MessageBuilder,
    envelope: &Envelope,
    delivery: &Delivery,
    row: &Rcpt,
) -> Result<MessageBuilder, SendError> {
    let requester = match delivery.message.parts.get(REQUESTER_PART) {
        Some(text) => Some(stored_address(text)?),
        None => None,
    };
    for to in with_first(requester, &envelope.to) {
        builder = builder.to(to);
    }
    for cc in &envelope.cc {
        builder = builder.cc(cc.clone());
    }
    let rcpt = ascii_address(&row.address);
    let smtp = lettre::address::Envelope::new(Some(envelope.from.email.clone()), vec![rcpt])
        .map_err(|e| SendError::Permanent(format!("cannot build the envelope: {e}")))?;
    Ok(builder.envelope(smtp))
}

/// An old-style row: `To` = its address and the fixed `to`, plus every
/// `cc` and `bcc`, all in one transaction.
fn every_recipient(
    mut builder: MessageBuilder,
    envelope: &Envelope,
    address: Option<&str>,
) -> Result<MessageBuilder, SendError> {
    let first = address.map(stored_address).transpose()?;
    let to = with_first(first, &envelope.to);
    if to.is_empty() && envelope.cc.is_empty() && envelope.bcc.is_empty() {
        return Err(SendError::Permanent(
            "nobody to send to: no requester and no to, cc or bcc".into(),
        ));
    }
    for to in to {
        builder = builder.to(to);
    }
    for cc in &envelope.cc {
        builder = builder.cc(cc.clone());
    }
    for bcc in &envelope.bcc {
        builder = builder.bcc(bcc.clone());
    }
    Ok(builder)
}

/// A stored address, checked again (the outbox is a file), domain as A-label.
fn stored_address(text: &str) -> Result<Address, SendError> {
    single_address(text)
        .map(|a| ascii_address(&a))
        .map_err(|e| SendError::Permanent(format!("the stored recipient is not one address: {e}")))
}

/// `first` (if any) followed by `list`, each address once.
fn with_first(first: Option<Address>, list: &[Mailbox]) -> Vec<Mailbox> {
    let mut out: Vec<Mailbox> = first.map(|a| Mailbox::new(None, a)).into_iter().collect();
    for mailbox in list {
        if !out.iter().any(|m| m.email == mailbox.email) {
            out.push(mailbox.clone());
        }
    }
    out
}

/// `<delivery-42.item-2439.downloadable@example.com>`: the same for every
/// attempt of one delivery, different for every other delivery.
pub fn message_id(delivery: &Delivery, from: &Mailbox) -> String {
    format!(
        "<delivery-{}.{}.{}@{}>",
        delivery.id,
        delivery.subject.token(),
        delivery.event.as_str(),
        ascii_domain(from.email.domain())
    )
}

/// One line, no control characters, whitespace collapsed, at most
/// [`SUBJECT_MAX`] characters; never empty.
pub fn clean_subject(rendered: &str) -> String {
    let flat: String = rendered
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "Export notification".to_string();
    }
    crate::text::shorten(&line, SUBJECT_MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{
        DeliveryId, DeliveryStatus, EventKind, ExportId, RenderedMessage, Subject,
    };

    fn delivery(recipient: Option<&str>, subject: &str) -> Delivery {
        let parts = [
            ("subject", subject),
            ("text", "plain"),
            ("html", "<p>x</p>"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
        Delivery {
            id: DeliveryId(42),
            subject: Subject::Item(ExportId(2439)),
            event: EventKind::Downloadable,
            sink: "mail".into(),
            recipient: recipient.map(str::to_string),
            message: RenderedMessage {
                parts,
                context: None,
            },
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            created_at: "2024-05-30T14:00:00Z".parse().unwrap(),
        }
    }

    fn envelope() -> Envelope {
        Envelope {
            from: "Export Bot <exports@example.com>".parse().unwrap(),
            to: vec!["ops@example.com".parse().unwrap()],
            cc: vec![],
            bcc: vec!["archive@example.com".parse().unwrap()],
            reply_to: None,
        }
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn headers_carry_the_stable_id_date_and_auto_submitted() {
        let message = build(&envelope(), &delivery(Some("ann@example.com"), "Ready")).unwrap();
        let text = formatted(&message);
        assert!(
            text.contains("Message-ID: <delivery-42.item-2439.downloadable@example.com>"),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-generated"), "{text}");
        assert!(text.contains("X-Auto-Response-Suppress: All"), "{text}");
        assert!(!text.contains("Reply-To"), "only when configured: {text}");
        assert!(
            text.contains("Date: Thu, 30 May 2024 14:00:00 +0000"),
            "{text}"
        );
        assert!(
            text.contains("To: ann@example.com, ops@example.com"),
            "{text}"
        );
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("archive@example.com"), "Bcc is not a header");
        let rcpt: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            rcpt,
            ["ann@example.com", "ops@example.com", "archive@example.com"]
        );
    }

    #[test]
    fn a_subject_cannot_inject_headers() {
        let hostile = "Ready\r\nBcc: x@evil.test\r\n\r\nbody";
        let message = build(&envelope(), &delivery(None, hostile)).unwrap();
        let text = formatted(&message);
        assert!(
            text.contains("Subject: Ready Bcc: x@evil.test body"),
            "{text}"
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(!message
            .envelope()
            .to()
            .iter()
            .any(|a| a.domain() == "evil.test"));
    }

    #[test]
    fn subjects_are_one_short_line_and_never_empty() {
        assert_eq!(clean_subject("  a\tb\n\nc  "), "a b c");
        assert_eq!(clean_subject("\r\n"), "Export notification");
        let long = clean_subject(&"é".repeat(500));
        assert_eq!(long.chars().count(), SUBJECT_MAX);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_tampered_stored_recipient_is_refused() {
        let bad = delivery(Some("ann@example.com\r\nBcc: x@evil.test"), "s");
        assert!(matches!(
            build(&envelope(), &bad),
            Err(SendError::Permanent(_))
        ));
    }

    #[test]
    fn a_per_recipient_row_shows_everyone_but_is_enveloped_to_its_address() {
        let mut envelope = envelope();
        envelope.cc = vec!["Ops <ops@example.com>".parse().unwrap()];
        envelope.reply_to = Some("help@example.com".parse().unwrap());
        let mut row = delivery(Some("cc:ops@example.com"), "Ready");
        row.message
            .parts
            .insert(REQUESTER_PART.into(), "ann@bücher.example".into());
        let message = build(&envelope, &row).unwrap();
        let text = formatted(&message);
        assert!(
            text.contains("To: ann@xn--bcher-kva.example, ops@example.com"),
            "{text}"
        );
        assert!(text.contains("Cc: Ops <ops@example.com>"), "{text}");
        assert!(text.contains("Reply-To: help@example.com"), "{text}");
        assert!(!text.contains("archive@example.com"), "{text}");
        let rcpt: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(rcpt, ["ops@example.com"]);
    }
}
