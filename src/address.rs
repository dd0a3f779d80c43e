//! Email addresses from untrusted text: an item's `RequestedBy`, the
//! `[recipients]` directory and the email sink's `from`/`to`/`cc`/`bcc`.
//! Parsing is strict so that no string can smuggle a second recipient or a
//! header into a message: anything that is not exactly one address is refused
//! with a reason a person can act on. Pure.

use std::str::FromStr;

use lettre::message::Mailbox;
use lettre::Address;

/// Why a text is not exactly one email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("it is empty")]
    Empty,
    #[error("it contains a line break or another control character")]
    Control,
    #[error("it holds more than one address")]
    Several,
    #[error("it is not a valid email address")]
    Invalid,
}

/// Parses exactly one bare address (`ann@example.com`), as Crayon writes
/// `RequestedBy`. Surrounding whitespace is ignored; display names, lists,
/// comments and control characters are refused.
pub fn single_address(text: &str) -> Result<Address, AddressError> {
    let text = text.trim();
    precheck(text)?;
    if text.contains(char::is_whitespace) || text.contains(['<', '>', '(', ')', '"']) {
        return Err(AddressError::Invalid);
    }
    Address::from_str(text).map_err(|_| AddressError::Invalid)
}

/// Parses exactly one mailbox, with an optional display name
/// (`Export Bot <exports@example.com>`), as written in the config.
pub fn single_mailbox(text: &str) -> Result<Mailbox, AddressError> {
    let text = text.trim();
    precheck(text)?;
    Mailbox::from_str(text).map_err(|_| AddressError::Invalid)
}

/// Refusals shared by both parsers: empty, control characters, lists.
fn precheck(text: &str) -> Result<(), AddressError> {
    if text.is_empty() {
        return Err(AddressError::Empty);
    }
    if text.chars().any(char::is_control) {
        return Err(AddressError::Control);
    }
    if text.contains([',', ';']) || text.matches('@').count() > 1 {
        return Err(AddressError::Several);
    }
    Ok(())
}

/// True when the address's domain is one of `domains` (already lowercase,
/// compared exactly: `example.com` does not admit `sub.example.com`).
pub fn domain_allowed(address: &Address, domains: &[String]) -> bool {
    let domain = address.domain().to_ascii_lowercase();
    domains.contains(&domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bare_address_parses_and_is_trimmed() {
        let a = single_address("  ann@example.com ").unwrap();
        assert_eq!(a.to_string(), "ann@example.com");
    }

    #[test]
    fn anything_but_one_address_is_refused_with_a_reason() {
        let cases = [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("ann@example.com\r\nBcc: x@evil.test", AddressError::Control),
            ("ann@example.com\nx", AddressError::Control),
            ("ann@example.com, bob@example.com", AddressError::Several),
            ("ann@example.com;bob@example.com", AddressError::Several),
            ("ann@example.com bob@example.com", AddressError::Several),
            ("Ann <ann@example.com>", AddressError::Invalid),
            ("ann", AddressError::Invalid),
            ("ann@", AddressError::Invalid),
            ("@example.com", AddressError::Invalid),
        ];
        for (text, expected) in cases {
            assert_eq!(single_address(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn mailboxes_keep_their_display_name_but_not_injections() {
        let m = single_mailbox("Export Bot <exports@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Export Bot"));
        assert_eq!(m.email.to_string(), "exports@example.com");
        assert_eq!(
            single_mailbox("Bot\r\nBcc: x@evil.test <a@example.com>"),
            Err(AddressError::Control)
        );
        assert_eq!(
            single_mailbox("a@example.com, b@example.com"),
            Err(AddressError::Several)
        );
    }

    #[test]
    fn domains_compare_case_insensitively_and_exactly() {
        let a = single_address("Ann@Example.COM").unwrap();
        assert!(domain_allowed(&a, &["example.com".into()]));
        assert!(!domain_allowed(&a, &["other.com".into()]));
        let sub = single_address("ann@sub.example.com").unwrap();
        assert!(!domain_allowed(&sub, &["example.com".into()]));
    }
}
