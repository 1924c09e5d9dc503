//! log: qmail-send's log lines (doc/qmail-send.8, "Log"), made safe for one-line logs, and
//! [`line`](fn@line), one whole line to stderr per write.

/// Sanitise a text for a log line: `\n` becomes `/`; bytes below 33, above 126 and `%`
/// become `_`. So qmail-local's `did 1+0+0\n` logs as `did_1+0+0/`.
pub fn safe(text: &[u8]) -> String {
    text.iter()
        .map(|&b| match b {
            b'\n' => '/',
            b'%' => '_',
            33..=126 => b as char,
            _ => '_',
        })
        .collect()
}

/// Write one line to stderr with a single write, so that the lines of concurrent sessions
/// and processes sharing a log never interleave (`eprintln!` writes each piece apart).
pub fn line(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut buf = text.to_string();
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let rows: &[(&[u8], &str)] = &[
            (b"did 1+0+0\n", "did_1+0+0/"),
            (b"", ""),
            (b"50% off", "50__off"),
            (b"a\tb\r\0\xff\x7f", "a_b____"),
            (b"<user@example.org>", "<user@example.org>"),
        ];
        for (input, want) in rows {
            assert_eq!(safe(input), *want);
        }
    }
}
