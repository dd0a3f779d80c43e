//! Internationalised domains on the wire. An address like
//! `user@bücher.example` needs SMTPUTF8 only for its local part: the domain
//! has an ASCII form (the IDNA A-label, `xn--bcher-kva.example`) that every
//! server accepts. So every address is sent with its domain as A-label, and
//! only a local part that is not ASCII still needs a server that offers
//! SMTPUTF8 — which the error then names.

use lettre::message::Mailbox;
use lettre::Address;

/// The address with its domain as IDNA A-label; unchanged when the domain is
/// ASCII already or has no valid A-label (the server then gets it as it is
/// and says why it refuses it).
pub fn ascii_address(address: &Address) -> Address {
    let domain = address.domain();
    if domain.is_ascii() {
        return address.clone();
    }
    // url's host parser is the WHATWG/UTS 46 mapping of the idna crate.
    match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => {
            Address::new(address.user(), ascii).unwrap_or_else(|_| address.clone())
        }
        _ => address.clone(),
    }
}

/// [`ascii_address`] for a mailbox; the display name is kept.
pub fn ascii_mailbox(mailbox: &Mailbox) -> Mailbox {
    Mailbox::new(mailbox.name.clone(), ascii_address(&mailbox.email))
}

/// An ASCII domain for EHLO and Message-ID (A-label when needed).
pub fn ascii_domain(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_string();
    }
    match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => ascii,
        _ => domain.to_string(),
    }
}

/// The addresses among `addresses` that still need SMTPUTF8 (a local part
/// that is not ASCII), for an error that names the real cause.
pub fn needing_smtputf8<'a>(addresses: impl IntoIterator<Item = &'a Address>) -> Vec<String> {
    addresses
        .into_iter()
        .filter(|a| !a.user().is_ascii())
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idn_domain_becomes_its_a_label_and_the_local_part_is_kept() {
        let a: Address = "user@bücher.example".parse().unwrap();
        assert_eq!(ascii_address(&a).to_string(), "user@xn--bcher-kva.example");
        let plain: Address = "ann@example.com".parse().unwrap();
        assert_eq!(ascii_address(&plain), plain);
        let local: Address = "jürgen@bücher.example".parse().unwrap();
        let converted = ascii_address(&local);
        assert_eq!(converted.to_string(), "jürgen@xn--bcher-kva.example");
        assert_eq!(
            needing_smtputf8([&converted, &plain]),
            ["jürgen@xn--bcher-kva.example"]
        );
        assert_eq!(ascii_domain("bücher.example"), "xn--bcher-kva.example");
    }
}
