//! log: [`line`](fn@line), one whole line to stderr per write (its text made safe by
//! [`crate::safe`]).

/// Write one line to stderr with a single write, so that the lines of concurrent sessions
/// and processes sharing a log never interleave (`eprintln!` writes each piece apart).
pub fn line(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut buf = text.to_string();
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}
