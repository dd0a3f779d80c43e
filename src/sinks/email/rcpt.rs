//! One outbox row per email recipient. A refused or deferred address must
//! not hold back or lose the message for the others, and a retry must never
//! re-mail someone who already has it, so routing writes one delivery per
//! address (the requester plus each fixed `to`/`cc`/`bcc`), each with its own
//! status, attempts and `why`. The row's `recipient` column says which
//! address is the SMTP envelope (`RCPT TO`) and in which role it was listed:
//! `to:ann@example.com`, `cc:ops@example.com`, `bcc:archive@example.com`.
//! Rows without a role prefix (written before per-recipient rows, or alerts,
//! which have no requester) keep the old meaning: one message to the row's
//! address, if any, plus every fixed recipient.

use std::fmt;

use lettre::message::Mailbox;
use lettre::Address;

use crate::address::single_address;
use crate::config::EmailConfig;

/// The message part that carries the requester's address for the `To`
/// header of every row of one fan-out (a `cc` row must still show who else
/// got it). Not a template part; routing adds it after rendering.
pub const REQUESTER_PART: &str = "requester";

/// How an address was listed, and so which header (if any) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The requester or a fixed `to`: named in the `To` header.
    To,
    /// A fixed `cc`: named in the `Cc` header.
    Cc,
    /// Never in a header: only the envelope names it.
    Bcc,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::To => "to",
            Role::Cc => "cc",
            Role::Bcc => "bcc",
        }
    }
}

/// One row's recipient: the single `RCPT TO` of its SMTP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    /// How the address was listed (which header shows it).
    pub role: Role,
    /// The envelope recipient, as configured or routed (IDN as written).
    pub address: Address,
}

impl fmt::Display for Rcpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role.as_str(), self.address)
    }
}

/// What the `recipient` column of an email row means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A per-recipient row.
    One(Rcpt),
    /// An old-style row: this address (if any) plus every fixed recipient.
    Legacy(Option<String>),
}

/// Why a stored recipient cannot be used (the outbox is a file anyone with
/// access could edit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored recipient {role}:… is not one address: {reason}")]
pub struct StoredError {
    role: &'static str,
    reason: crate::address::AddressError,
}

/// Reads the `recipient` column of an email row.
pub fn decode(recipient: Option<&str>) -> Result<Stored, StoredError> {
    let Some(text) = recipient else {
        return Ok(Stored::Legacy(None));
    };
    let roles = [Role::To, Role::Cc, Role::Bcc];
    let Some((role, rest)) = roles.iter().find_map(|role| {
        let rest = text.strip_prefix(role.as_str())?.strip_prefix(':')?;
        Some((*role, rest))
    }) else {
        return Ok(Stored::Legacy(Some(text.to_string())));
    };
    let address = single_address(rest).map_err(|reason| StoredError {
        role: role.as_str(),
        reason,
    })?;
    Ok(Stored::One(Rcpt { role, address }))
}

/// The rows one event fans out to: the requester (if usable) as `to`, then
/// the fixed `to`, `cc` and `bcc`, each address once (first listing wins,
/// compared case-insensitively).
pub fn fan_out(config: &EmailConfig, requester: Option<&Address>) -> Vec<Rcpt> {
    let mut rows: Vec<Rcpt> = Vec::new();
    let fixed = |list: &[Mailbox], role: Role| {
        list.iter()
            .map(|m| Rcpt {
                role,
                address: m.email.clone(),
            })
            .collect::<Vec<_>>()
    };
    let requester = requester.map(|a| Rcpt {
        role: Role::To,
        address: a.clone(),
    });
    let all = requester
        .into_iter()
        .chain(fixed(&config.to, Role::To))
        .chain(fixed(&config.cc, Role::Cc))
        .chain(fixed(&config.bcc, Role::Bcc));
    for row in all {
        let same = |r: &Rcpt| {
            r.address
                .to_string()
                .eq_ignore_ascii_case(row.address.as_ref())
        };
        if !rows.iter().any(same) {
            rows.push(row);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_old_rows_stay_legacy() {
        let row = Rcpt {
            role: Role::Bcc,
            address: "archive@example.com".parse().unwrap(),
        };
        assert_eq!(row.to_string(), "bcc:archive@example.com");
        assert_eq!(decode(Some(&row.to_string())), Ok(Stored::One(row)));
        assert_eq!(
            decode(Some("ann@example.com")),
            Ok(Stored::Legacy(Some("ann@example.com".into())))
        );
        assert_eq!(decode(None), Ok(Stored::Legacy(None)));
        let err = decode(Some("cc:a@x.test\r\nBcc: y@evil.test")).unwrap_err();
        assert!(err.to_string().contains("cc:"), "{err}");
        assert!(!err.to_string().contains("evil"), "{err}");
    }
}
