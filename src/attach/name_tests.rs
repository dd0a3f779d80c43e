use proptest::prelude::*;

use super::*;

#[test]
fn the_first_bytes_decide_the_type() {
    assert_eq!(sniff(b"PK\x03\x04rest", Some("text/plain")).0, "zip");
    assert_eq!(sniff(b"%PDF-1.7", None), ("pdf", "application/pdf".into()));
    assert_eq!(sniff(b"a,b\n", Some("text/csv; charset=utf-8")).0, "csv");
    assert_eq!(
        sniff(b"??", None),
        ("bin", "application/octet-stream".into())
    );
}

#[test]
fn content_disposition_prefers_the_rfc5987_name() {
    let value = "attachment; filename=\"fallback.zip\"; filename*=UTF-8''R%C3%A9sum%C3%A9+1.zip";
    assert_eq!(from_disposition(value).as_deref(), Some("Résumé+1.zip"));
    let quoted = "attachment; filename=\"a \\\"b\\\"; c.zip\"";
    assert_eq!(from_disposition(quoted).as_deref(), Some("a \"b\"; c.zip"));
    assert_eq!(
        from_disposition("attachment; filename=plain.pdf").as_deref(),
        Some("plain.pdf")
    );
    assert_eq!(
        from_disposition("attachment; filename*=iso-8859-1'en'%E6rt.csv").as_deref(),
        Some("ært.csv")
    );
    assert_eq!(from_disposition("attachment"), None);
    assert_eq!(from_disposition("attachment; filename=\"\""), None);
}

#[test]
fn hostile_names_are_made_safe() {
    assert_eq!(safe_name("../../etc/passwd"), "____etc_passwd");
    assert_eq!(safe_name("..\\..\\win.ini"), "____win.ini");
    assert_eq!(safe_name("a\r\nBcc: x@y.z.zip"), "a__Bcc_ x@y.z.zip");
    assert_eq!(safe_name(".."), "export");
    assert_eq!(safe_name(""), "export");
    let long = format!("{}.zip", "é".repeat(100));
    let cut = safe_name(&long);
    assert!(
        cut.len() <= MAX_NAME_BYTES && cut.ends_with(".zip"),
        "{cut}"
    );
}

#[test]
fn action_names_get_the_sniffed_extension() {
    let name = from_action_name(
        "New Commerce License-based Report@2015.01.01 - 2024.05.22",
        "zip",
    );
    assert_eq!(
        name,
        "New Commerce License-based Report@2015.01.01 - 2024.05.22.zip"
    );
    assert_eq!(from_action_name("", "pdf"), "export.pdf");
    assert_eq!(from_action_name("a/b", "bin"), "a_b.bin");
}

proptest! {
    #[test]
    fn every_name_is_safe(raw in any::<String>(), ext in "[a-z]{1,4}") {
        for name in [safe_name(&raw), from_action_name(&raw, &ext)] {
            prop_assert!(!name.is_empty());
            prop_assert!(name.len() <= MAX_NAME_BYTES, "{} bytes", name.len());
            prop_assert!(!name.contains('/') && !name.contains('\\'));
            prop_assert!(!name.contains(".."));
            prop_assert!(!name.chars().any(char::is_control));
            prop_assert!(!name.starts_with('.'));
        }
    }
}
