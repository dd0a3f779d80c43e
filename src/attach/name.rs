//! What an export file is called and what type it is (SPEC "The export file
//! itself"): the download's `Content-Disposition` (RFC 6266, with RFC 5987
//! `filename*`), else the ActionName made safe plus an extension from the
//! first bytes, else from `Content-Type`, else `.bin`. Every name is made
//! safe here: it becomes a file in the spool folder and a header value.

/// Longest file name kept, in bytes (cut on a character boundary).
pub const MAX_NAME_BYTES: usize = 120;

/// The name used when nothing usable is left after cleaning.
const FALLBACK_STEM: &str = "export";

/// The file type: `(extension, MIME type)` from the first bytes, else the
/// `Content-Type` the server sent, else `.bin` / `application/octet-stream`.
pub fn sniff(first: &[u8], content_type: Option<&str>) -> (&'static str, String) {
    if first.starts_with(b"PK\x03\x04") {
        return ("zip", "application/zip".into());
    }
    if first.starts_with(b"%PDF") {
        return ("pdf", "application/pdf".into());
    }
    let declared = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let ext = match declared.as_str() {
        "application/zip" | "application/x-zip-compressed" => "zip",
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.ms-excel" => "xls",
        "application/json" => "json",
        "text/plain" => "txt",
        _ => return ("bin", "application/octet-stream".into()),
    };
    (ext, declared)
}

/// The MIME type a file name's extension implies, for a name taken from
/// `Content-Disposition` (the bytes decide when they are a zip or a PDF).
pub fn type_for_name(name: &str, first: &[u8], content_type: Option<&str>) -> String {
    let (ext, sniffed) = sniff(first, content_type);
    if ext != "bin" {
        return sniffed;
    }
    let lower = name.to_ascii_lowercase();
    let by_ext = [
        (".zip", "application/zip"),
        (".pdf", "application/pdf"),
        (".csv", "text/csv"),
        (
            ".xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    ];
    by_ext
        .iter()
        .find(|(e, _)| lower.ends_with(e))
        .map_or(sniffed, |(_, t)| (*t).to_string())
}

/// The file name a `Content-Disposition` value gives, preferring the
/// RFC 5987 `filename*` (UTF-8 or ISO-8859-1) over `filename`; unsafe
/// characters are cleaned later by [`safe_name`].
pub fn from_disposition(value: &str) -> Option<String> {
    let params = parameters(value);
    let extended = params
        .iter()
        .find(|(k, _)| k == "filename*")
        .and_then(|(_, v)| decode_ext_value(v));
    let plain = || {
        params
            .iter()
            .find(|(k, _)| k == "filename")
            .map(|(_, v)| v.clone())
    };
    extended
        .or_else(plain)
        .filter(|name| !name.trim().is_empty())
}

/// `name` safe as a file in the spool folder and in a header: no path
/// separators, no `..`, no control characters, no leading dots or spaces,
/// at most [`MAX_NAME_BYTES`] bytes with the extension kept when it fits.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let mut cleaned = cleaned.replace("..", "_");
    cleaned = cleaned
        .trim_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '_') {
        cleaned = FALLBACK_STEM.to_string();
    }
    cut_keeping_extension(&cleaned, MAX_NAME_BYTES)
}

/// The ActionName made a file name with `ext`: `New Commerce … 2024.05.22.zip`.
pub fn from_action_name(action_name: &str, ext: &str) -> String {
    let stem = safe_name(action_name);
    let stem = cut(&stem, MAX_NAME_BYTES - ext.len() - 1).trim_end_matches('.');
    safe_name(&format!("{stem}.{ext}"))
}

/// `name` cut to `max` bytes; a short extension (≤ 10 bytes) is kept.
pub fn cut_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if name.len() - dot <= 10 && dot > 0 => {
            let ext = &name[dot..];
            let stem = cut(&name[..dot], max - ext.len()).trim_end_matches('.');
            format!("{stem}{ext}")
        }
        _ => cut(name, max).to_string(),
    }
}

/// The longest prefix of `text` of at most `max` bytes, on a char boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `type; key=value; key="quoted; value"` as lowercased keys and values.
fn parameters(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    // Skip the disposition type.
    match rest.find(';') {
        Some(at) => rest = &rest[at + 1..],
        None => return out,
    }
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let (val, after) = if let Some(quoted) = rest.strip_prefix('"') {
            unquote(quoted)
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            (rest[..end].trim().to_string(), &rest[end..])
        };
        out.push((key, val));
        match after.find(';') {
            Some(at) => rest = &after[at + 1..],
            None => break,
        }
    }
    out
}

/// A quoted-string's value (backslash escapes undone) and what follows it.
fn unquote(text: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '"' => return (out, &text[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

/// RFC 5987 `charset'lang'pct-encoded` as text (UTF-8 or ISO-8859-1).
fn decode_ext_value(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?.to_ascii_lowercase();
    let _language = pieces.next()?;
    let bytes = percent_decode(pieces.next()?)?;
    match charset.as_str() {
        "utf-8" => String::from_utf8(bytes).ok(),
        "iso-8859-1" => Some(bytes.iter().map(|b| char::from(*b)).collect()),
        _ => None,
    }
}

/// `%XX` escapes decoded (`+` stays `+`, unlike form encoding).
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "name_tests.rs"]
mod tests;
