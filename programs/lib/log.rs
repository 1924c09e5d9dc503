//! log: qmail-send's log lines (spec pipeline §2.11), made safe for one-line logs.

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
