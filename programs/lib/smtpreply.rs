//! smtpreply: the sans-I/O reader of SMTP server replies, for qmail-remote (doc/qmail-remote.8,
//! "The SMTP dialogue").
//!
//! Bytes in, [`Reply`] out: [`ReplyReader::push`] consumes what it is given up to the end of
//! one reply and returns it when complete. A reply is one or more lines `NNN-text` ending with
//! a line `NNN text` (or just `NNN`). Lines end with LF; a CR before the LF is dropped, and so
//! is every other CR (a bare CR never reaches a report).
//!
//! Everything is bounded while streaming: the text kept for a reply is at most [`MAX_TEXT`]
//! bytes (the rest of a 10 MB line is consumed and dropped), and a reply of more than
//! [`MAX_LINES`] lines ends early as malformed. A line that does not start with three digits,
//! continuation lines whose code differs from the first line's, or a code outside 200..=599
//! make the reply [`Reply::malformed`]: its code is 0, which a client must treat as a
//! temporary failure. NUL bytes in the text become `?`.
//!
//! Security: the input is the remote server's, untrusted; no input panics the reader and
//! memory stays bounded whatever is sent (tested below with hostile input; fuzz target
//! `smtpreply`).

/// The most bytes of reply text kept (upstream keeps 5000 of "Remote host said").
pub const MAX_TEXT: usize = 5000;

/// The most lines one reply may have.
pub const MAX_LINES: usize = 1000;

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200..=599, or 0 for a malformed reply.
    pub code: u16,
    /// The lines as received (code included), CRs removed, joined by LF, no final LF; at most
    /// [`MAX_TEXT`] bytes.
    pub text: Vec<u8>,
}

impl Reply {
    /// Not a well-formed reply: treat as a temporary failure.
    pub fn malformed(&self) -> bool {
        self.code == 0
    }

    /// The class of the code: 2, 3, 4 or 5; 4 for a malformed reply.
    pub fn class(&self) -> u16 {
        if self.malformed() {
            4
        } else {
            self.code / 100
        }
    }

    /// Each line of the text (for parsing EHLO keywords), without its code and separator.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.text.split(|&b| b == b'\n').map(|l| l.get(4..).unwrap_or(b""))
    }
}

/// The reader; one per connection, reused for every reply.
#[derive(Debug, Default)]
pub struct ReplyReader {
    text: Vec<u8>,
    /// Bytes of the current line seen so far (not only those kept).
    line_len: usize,
    /// The first bytes of the current line: the code and its separator.
    head: [u8; 4],
    /// Lines completed in this reply.
    lines: usize,
    /// The first line's code, once known.
    code: Option<u16>,
    bad: bool,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume bytes of `input` up to the end of one reply. Returns how many bytes were used
    /// (all of them when the reply is not complete yet) and the reply when it is.
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Reply>) {
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' {
                if let Some(reply) = self.end_line() {
                    return (i + 1, Some(reply));
                }
                continue;
            }
            if b == b'\r' {
                continue;
            }
            if self.line_len < 4 {
                self.head[self.line_len] = b;
            }
            self.line_len = self.line_len.saturating_add(1);
            if self.text.len() < MAX_TEXT {
                self.text.push(if b == 0 { b'?' } else { b });
            }
        }
        (input.len(), None)
    }

    /// Bytes of the reply in progress are pending (the peer stopped in the middle of one).
    pub fn in_reply(&self) -> bool {
        self.line_len > 0 || self.lines > 0
    }

    /// A line ended: check it; the finished reply if it was the last line.
    fn end_line(&mut self) -> Option<Reply> {
        let n = self.line_len;
        let head = &self.head[..n.min(4)];
        let code = parse_code(head);
        let last = n <= 3 || head.get(3) != Some(&b'-');
        match (code, self.code) {
            (None, _) => self.bad = true,
            (Some(c), None) => self.code = Some(c),
            (Some(c), Some(first)) if c != first => self.bad = true,
            _ => {}
        }
        if n > 3 && !matches!(head.get(3), Some(b' ' | b'-')) {
            self.bad = true;
        }
        self.lines += 1;
        self.line_len = 0;
        if last || self.bad || self.lines >= MAX_LINES {
            let code = if self.bad || !last { 0 } else { self.code.unwrap_or(0) };
            let text = std::mem::take(&mut self.text);
            *self = Self::default();
            return Some(Reply { code, text });
        }
        if self.text.len() < MAX_TEXT {
            self.text.push(b'\n');
        }
        None
    }
}

/// Three digits making a code in 200..=599.
fn parse_code(head: &[u8]) -> Option<u16> {
    let digits = head.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    (200..=599).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply in `input`, fed in chunks of `chunk` bytes, and the bytes left over.
    fn all(input: &[u8], chunk: usize) -> (Vec<Reply>, bool) {
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, got) = r.push(rest);
                assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
                out.extend(got);
            }
        }
        (out, r.in_reply())
    }

    fn one(input: &[u8]) -> Reply {
        for chunk in [1, 2, 3, 7, 4096] {
            let (got, pending) = all(input, chunk);
            assert_eq!(got.len(), 1, "chunk {chunk}: {got:?}");
            assert!(!pending);
            if chunk == 4096 {
                return got.into_iter().next().unwrap();
            }
        }
        unreachable!()
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            one(b"220 mx.example ESMTP\r\n"),
            Reply { code: 220, text: b"220 mx.example ESMTP".to_vec() }
        );
        let r = one(b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.text, b"250-mx.example\n250-PIPELINING\n250-SIZE 1000\n250 8BITMIME");
        let lines: Vec<&[u8]> = r.lines().collect();
        assert_eq!(lines, [&b"mx.example"[..], b"PIPELINING", b"SIZE 1000", b"8BITMIME"]);
        assert_eq!(one(b"354\r\n").code, 354);
        assert_eq!(one(b"550 no\n").code, 550, "bare LF ends a line too");
        assert_eq!(one(b"451 a\rb\r\n").text, b"451 ab", "bare CR dropped");
        assert_eq!(one(b"250 a\0b\r\n").text, b"250 a?b");
    }

    #[test]
    fn several_replies_in_one_read() {
        let (got, pending) = all(b"250 ok\r\n250 ok2\r\n354 go\r\n221", 4096);
        let codes: Vec<u16> = got.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 250, 354]);
        assert!(pending, "a reply without its line end is pending");
    }

    #[test]
    fn malformed_replies() {
        for bad in [
            &b"hello\r\n"[..],
            b"\r\n",
            b"22\r\n",
            b"2x0 hi\r\n",
            b"199 low\r\n",
            b"600 high\r\n",
            b"220hi\r\n",
            b"250-a\r\n251 b\r\n",
            b"250-a\r\nxyz\r\n",
        ] {
            let r = one(bad);
            assert!(r.malformed(), "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(r.class(), 4);
        }
    }

    #[test]
    fn huge_line_is_bounded() {
        let mut r = ReplyReader::new();
        let chunk = vec![b'x'; 1 << 16];
        let (n, got) = r.push(b"550 ");
        assert_eq!((n, got), (4, None));
        for _ in 0..160 {
            // 10 MB in all
            let (n, got) = r.push(&chunk);
            assert_eq!((n, got.is_none()), (chunk.len(), true));
            assert!(r.text.capacity() <= 2 * MAX_TEXT);
        }
        let (_, got) = r.push(b"\r\n");
        let got = got.unwrap();
        assert_eq!((got.code, got.text.len()), (550, MAX_TEXT));
    }

    #[test]
    fn endless_continuations_end_as_malformed() {
        let many = b"250-x\r\n".repeat(MAX_LINES + 10);
        let (got, _) = all(&many, 4096);
        assert!(got[0].malformed());
        assert!(got[0].text.len() <= MAX_TEXT);
    }

    #[test]
    fn the_reader_starts_afresh_after_each_reply() {
        let (got, _) = all(b"bad\r\n220 good\r\n", 5);
        assert!(got[0].malformed());
        assert_eq!(got[1].code, 220);
    }
}
