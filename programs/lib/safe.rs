//! safe: untrusted bytes made fit for a log line, a reply, a header or a terminal. Every
//! sanitizer of the project is here; they differ on purpose, one per destination:
//!
//! - [`log`]: qmail-send's log lines (`\n` shows as `/`, so a report stays one line).
//! - [`printable`]: printable ASCII and space, the rest replaced: SMTP replies and the log
//!   lines of qmail-smtpd and qmail-verify (`?`), qmail-qread's listing (`_`).
//! - [`received`]: the fields of qmail-smtpd's `Received:` line, a strict set of characters.
//! - [`safecats`]: tcpserver's log fields, `:`-separated and at most 100 bytes.
//! - [`controls`]: text already UTF-8 (directory values) for a terminal: only control
//!   characters go.

/// A text for qmail-send's log: `\n` becomes `/`; bytes below 33, above 126 and `%` become
/// `_`. So qmail-local's `did 1+0+0\n` logs as `did_1+0+0/`.
pub fn log(text: &[u8]) -> String {
    text.iter()
        .map(|&b| match b {
            b'\n' => '/',
            b'%' => '_',
            33..=126 => b as char,
            _ => '_',
        })
        .collect()
}

/// Bytes 32 to 126 as they are, any other byte as `replacement`.
pub fn printable(text: &[u8], replacement: char) -> String {
    text.iter().map(|&b| if (32..127).contains(&b) { b as char } else { replacement }).collect()
}

/// `Received:` line fields: letters, digits and `.@%+/=:-[]_#` pass, anything else is `?`.
pub fn received(text: &[u8]) -> String {
    text.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b".@%+/=:-[]_#".contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// tcpserver's safecats: bytes outside 33..=126, `:` and `%` become `?`; at most 100 bytes,
/// then `...`.
pub fn safecats(value: &[u8]) -> String {
    let mut out: String = value
        .iter()
        .take(100)
        .map(|&c| match c {
            b':' | b'%' => '?',
            33..=126 => c as char,
            _ => '?',
        })
        .collect();
    if value.len() >= 100 {
        out.push_str("...");
    }
    out
}

/// Control characters shown as `?`: directory values and error texts never reach a terminal
/// or a log raw.
pub fn controls(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        let rows: &[(&[u8], &str)] = &[
            (b"did 1+0+0\n", "did_1+0+0/"),
            (b"", ""),
            (b"50% off", "50__off"),
            (b"a\tb\r\0\xff\x7f", "a_b____"),
            (b"<user@example.org>", "<user@example.org>"),
        ];
        for (input, want) in rows {
            assert_eq!(log(input), *want);
        }
    }

    #[test]
    fn printable_ascii() {
        assert_eq!(printable(b"a\r\nb\x7f ~", '?'), "a??b? ~");
        assert_eq!(printable(b"\xff\x1f", '_'), "__");
        assert_eq!(printable(b"", '?'), "");
    }

    #[test]
    fn received_fields() {
        assert_eq!(received(b"a.b-c_d#e@[1.2.3.4]"), "a.b-c_d#e@[1.2.3.4]");
        assert_eq!(received(b"evil\r\nX-Injected: yes"), "evil??X-Injected:?yes");
        assert_eq!(received("caf\u{e9} (x)".as_bytes()), "caf????x?");
    }

    #[test]
    fn safecats_fields() {
        assert_eq!(safecats(b"127.0.0.1"), "127.0.0.1");
        assert_eq!(safecats(b"::1"), "??1");
        assert_eq!(safecats(b"a b%c\x7f\xff\n"), "a?b?c???");
        assert_eq!(safecats(&[b'x'; 99]), "x".repeat(99));
        assert_eq!(safecats(&[b'x'; 100]), format!("{}...", "x".repeat(100)));
        assert_eq!(safecats(&[b'x'; 5000]), format!("{}...", "x".repeat(100)));
    }

    #[test]
    fn control_characters() {
        assert_eq!(controls("a\u{1b}[2Jb\n\u{e9}"), "a?[2Jb?\u{e9}");
    }
}
