//! imap::write: how imapd writes strings and message data (RFC 3501 4.3 and 9051 4.3).
//!
//! - [`astring`] / [`nstring`]: a value as an atom, a quoted string or a literal, whichever
//!   its bytes allow: a quoted string cannot hold CR, LF, NUL or 8-bit bytes, an atom no
//!   special character.
//! - Message data is stored with LF line ends (qmail-local writes it so) and must go out
//!   with CRLF. A literal announces its size first, so the size after the conversion is
//!   counted before a byte is sent ([`CrlfCount`]), and the bytes are converted as they
//!   stream ([`Crlf`]), both with one byte of state, whatever the chunking: a CR already in
//!   the file before its LF is kept as it is, a bare LF becomes CR LF.

/// Bytes that end an atom or may not stand in one (RFC 3501's atom-specials, plus 8-bit).
fn atom_safe(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// Bytes a quoted string may hold (escaping `"` and `\`).
fn quotable(b: u8) -> bool {
    b.is_ascii() && !matches!(b, b'\r' | b'\n' | 0)
}

/// `value` as an astring: an atom when it is one (and not `NIL`, which would read as nil),
/// else quoted when it can be, else a literal.
pub fn astring(value: &[u8], out: &mut Vec<u8>) {
    if !value.is_empty()
        && value.iter().all(|&b| atom_safe(b))
        && !value.eq_ignore_ascii_case(b"NIL")
    {
        out.extend_from_slice(value);
    } else {
        string(value, out);
    }
}

/// `value` as an nstring: `NIL` for none, else a quoted string or a literal.
pub fn nstring(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        None => out.extend_from_slice(b"NIL"),
        Some(v) => string(v, out),
    }
}

/// A quoted string when every byte allows it, else a literal `{n}\r\n` and the bytes.
pub fn string(value: &[u8], out: &mut Vec<u8>) {
    if value.iter().all(|&b| quotable(b)) {
        out.push(b'"');
        for &b in value {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal_header(value.len() as u64, out);
        out.extend_from_slice(value);
    }
}

/// `{n}\r\n`, the start of a literal of `n` octets.
pub fn literal_header(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{{{n}}}\r\n").as_bytes());
}

/// Counts the octets of stored message bytes after the LF → CRLF conversion.
#[derive(Debug, Default, Clone, Copy)]
pub struct CrlfCount {
    total: u64,
    after_cr: bool,
}

impl CrlfCount {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else { return };
        self.total += chunk.len() as u64;
        for lf in memchr::memchr_iter(b'\n', chunk) {
            let cr = if lf == 0 { self.after_cr } else { chunk[lf - 1] == b'\r' };
            if !cr {
                self.total += 1;
            }
        }
        self.after_cr = last == b'\r';
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Converts stored message bytes to CRLF line ends as they stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Crlf {
    after_cr: bool,
}

impl Crlf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `chunk`, converted, to `out` (at most twice its length).
    pub fn convert(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else { return };
        out.reserve(chunk.len() + chunk.len() / 32);
        // runs up to each LF that lacks its CR are copied whole
        let mut from = 0;
        for lf in memchr::memchr_iter(b'\n', chunk) {
            let cr = if lf == 0 { self.after_cr } else { chunk[lf - 1] == b'\r' };
            if !cr {
                out.extend_from_slice(&chunk[from..lf]);
                out.extend_from_slice(b"\r");
                from = lf;
            }
        }
        out.extend_from_slice(&chunk[from..]);
        self.after_cr = last == b'\r';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(w(|o| astring(b"INBOX", o)), "INBOX");
        assert_eq!(w(|o| astring(b"nil", o)), "\"nil\"");
        assert_eq!(w(|o| astring(b"", o)), "\"\"");
        assert_eq!(w(|o| astring(b"a b", o)), "\"a b\"");
        assert_eq!(w(|o| astring(b"a\"b\\c", o)), "\"a\\\"b\\\\c\"");
        assert_eq!(w(|o| astring(b"x]", o)), "\"x]\"");
        assert_eq!(w(|o| astring(b"two\r\nlines", o)), "{10}\r\ntwo\r\nlines");
        assert_eq!(w(|o| astring("Grüße".as_bytes(), o)), "{7}\r\nGrüße");
        assert_eq!(w(|o| astring(b"a\0b", o)), "{3}\r\na\0b");
        assert_eq!(w(|o| nstring(None, o)), "NIL");
        assert_eq!(w(|o| nstring(Some(b"NIL"), o)), "\"NIL\"");
    }

    /// Every chunking gives the same count and the same bytes, and the count is the length
    /// of what is sent.
    #[test]
    fn crlf_in_any_chunking() {
        let stored: &[u8] = b"Subject: x\n\nline\r\nbare\rcr\n\n.\nlast";
        let mut whole = Vec::new();
        Crlf::new().convert(stored, &mut whole);
        assert_eq!(whole, b"Subject: x\r\n\r\nline\r\nbare\rcr\r\n\r\n.\r\nlast");
        for size in 1..=stored.len() {
            let mut count = CrlfCount::new();
            let mut conv = Crlf::new();
            let mut out = Vec::new();
            for chunk in stored.chunks(size) {
                count.add(chunk);
                conv.convert(chunk, &mut out);
            }
            assert_eq!(out, whole, "chunks of {size}");
            assert_eq!(count.total(), whole.len() as u64, "chunks of {size}");
        }
        // a CR LF split across chunks stays one line end
        let mut out = Vec::new();
        let mut c = Crlf::new();
        c.convert(b"a\r", &mut out);
        c.convert(b"\nb", &mut out);
        assert_eq!(out, b"a\r\nb");
    }
}
