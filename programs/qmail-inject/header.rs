//! header: qmail-inject's header, read up to the end of the header and completed.
//!
//! [`read`] splits the input into header fields as upstream's `headerbody` does: a field is a
//! line `name: value` (name of printable ASCII, no blanks) with its continuation lines; a
//! `From ` line becomes an `MBOX-Line:` field; the header ends at an empty line, at the first
//! line that is not a field (a blank line is then put before it) or at end of input. Every
//! field is at most [`MAX_FIELD`] bytes and the header at most [`MAX_HEADER`]; longer input is
//! a permanent error, found while streaming, before anything is held.
//!
//! [`Completer`] is upstream's `doheaderfield`/`finishheader`: it qualifies the addresses of
//! the address fields, collects header recipients, takes the sender from `Return-Path:`,
//! drops `Bcc:`, `Resent-Bcc:`, `Return-Path:` and `Content-Length:`, and finally puts
//! `Date:`, `Message-ID:`, `From:` and `Cc: recipient list not shown: ;` (or their `Resent-`
//! forms) before the saved fields when they are missing.

use crate::token::{self, Qualify, Token};
use qmail::exit::Verdict;
use std::io::{self, BufRead};

/// The longest header field, continuation lines included.
pub const MAX_FIELD: usize = 64 * 1024;
/// The longest header.
pub const MAX_HEADER: usize = 1024 * 1024;
/// The most addresses taken from the header's recipient fields (a 1 MiB header of one-letter
/// addresses would otherwise make half a million).
pub const MAX_RECIPIENTS: usize = 100_000;

/// The header fields qmail-inject treats specially (upstream's `hfield.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Sender,
    From,
    ReplyTo,
    To,
    Cc,
    Bcc,
    Date,
    MessageId,
    ResentSender,
    ResentFrom,
    ResentReplyTo,
    ResentTo,
    ResentCc,
    ResentBcc,
    ResentDate,
    ResentMessageId,
    ReturnReceiptTo,
    ErrorsTo,
    ApparentlyTo,
    ReturnPath,
    ContentLength,
    Other,
}

const NAMES: &[(&str, Field)] = &[
    ("sender", Field::Sender),
    ("from", Field::From),
    ("reply-to", Field::ReplyTo),
    ("to", Field::To),
    ("cc", Field::Cc),
    ("bcc", Field::Bcc),
    ("date", Field::Date),
    ("message-id", Field::MessageId),
    ("resent-sender", Field::ResentSender),
    ("resent-from", Field::ResentFrom),
    ("resent-reply-to", Field::ResentReplyTo),
    ("resent-to", Field::ResentTo),
    ("resent-cc", Field::ResentCc),
    ("resent-bcc", Field::ResentBcc),
    ("resent-date", Field::ResentDate),
    ("resent-message-id", Field::ResentMessageId),
    ("return-receipt-to", Field::ReturnReceiptTo),
    ("errors-to", Field::ErrorsTo),
    ("apparently-to", Field::ApparentlyTo),
    ("return-path", Field::ReturnPath),
    ("content-length", Field::ContentLength),
];

/// The name of a field line: the bytes before the first `:`, trailing blanks removed; `None`
/// when that is not a valid name (empty, or a byte outside `!`..`~`).
fn name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let end = name.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    let name = &name[..end];
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// Which field a (valid) field line is.
pub fn classify(line: &[u8]) -> Field {
    let Some(name) = self::name(line) else {
        return Field::Other;
    };
    NAMES
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map_or(Field::Other, |&(_, f)| f)
}

/// How the header ended, and what of the body has been read with it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// End of input inside the header: there is no body.
    Eof,
    /// An empty line: the body follows, unread.
    Blank,
    /// A line that is not a header field starts the body: the line as read, and whether it
    /// is complete (else it is the first [`MAX_FIELD`] bytes of a longer line).
    Body { line: Vec<u8>, complete: bool },
}

enum Line {
    Eof,
    Complete,
    TooLong,
}

/// One line of at most `max` bytes into `buf`. A last line without LF gets one, as upstream.
fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    loop {
        let avail = match input.fill_buf() {
            Ok(avail) => avail,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            buf.push(b'\n');
            return Ok(Line::Complete);
        }
        let room = max - buf.len();
        let window = &avail[..avail.len().min(room)];
        if let Some(lf) = window.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&window[..=lf]);
            input.consume(lf + 1);
            return Ok(Line::Complete);
        }
        let n = window.len();
        buf.extend_from_slice(window);
        input.consume(n);
        if buf.len() == max {
            return Ok(Line::TooLong);
        }
    }
}

fn too_long() -> Verdict {
    Verdict::perm("header field too long")
}

/// Read the header from `input`, handing each complete field (LF-terminated, continuation
/// lines included) to `field`.
pub fn read<R: BufRead>(
    input: &mut R,
    mut field: impl FnMut(Vec<u8>) -> Result<(), Verdict>,
) -> Result<End, Verdict> {
    let mut current: Option<Vec<u8>> = None;
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let state = read_line(input, &mut line, MAX_FIELD)
            .map_err(|e| Verdict::temp(format!("read error: {e}")))?;
        let complete = match state {
            Line::Eof => {
                if let Some(f) = current.take() {
                    field(f)?;
                }
                return Ok(End::Eof);
            }
            Line::Complete => true,
            Line::TooLong => false,
        };
        total += line.len();
        if total > MAX_HEADER {
            return Err(Verdict::perm("header too long"));
        }
        if let Some(f) = current.as_mut() {
            if line[0] == b' ' || line[0] == b'\t' {
                if !complete || f.len() + line.len() > MAX_FIELD {
                    return Err(too_long());
                }
                f.extend_from_slice(&line);
                continue;
            }
        }
        if let Some(f) = current.take() {
            field(f)?;
        }
        if line == b"\n" {
            return Ok(End::Blank);
        }
        let is_field = line.starts_with(b"From ") || name(&line).is_some();
        if !is_field {
            return Ok(End::Body { line: std::mem::take(&mut line), complete });
        }
        if !complete {
            return Err(too_long());
        }
        current = Some(if line.starts_with(b"From ") {
            [b"MBOX-Line: ".as_slice(), &line].concat()
        } else {
            line.clone()
        });
    }
}

/// The `QMAILINJECT` letters qmail-inject honours.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// `c`: the generated From: in address-comment form, `user@host (Full Name)`
    pub name_comment: bool,
    /// `s`: ignore and delete an incoming Return-Path:
    pub delete_return_path: bool,
    /// `f`: delete incoming From: fields (a new one is generated from the environment)
    pub delete_from: bool,
    /// `i`: delete incoming Message-ID: fields (a new one is generated)
    pub delete_message_id: bool,
    /// `r`: per-recipient VERP, the sender gets `-@[]` appended
    pub verp_recipient: bool,
    /// `m`: per-message VERP, the default sender gets `-time.pid`
    pub verp_message: bool,
}

impl Flags {
    pub fn parse(letters: &[u8]) -> Self {
        let mut f = Flags::default();
        for &c in letters {
            match c {
                b'c' => f.name_comment = true,
                b's' => f.delete_return_path = true,
                b'f' => f.delete_from = true,
                b'i' => f.delete_message_id = true,
                b'r' => f.verp_recipient = true,
                b'm' => f.verp_message = true,
                _ => {}
            }
        }
        f
    }
}

/// The header being completed.
pub struct Completer<'a> {
    qualify: &'a Qualify,
    flags: Flags,
    seen: Vec<Field>,
    /// the fields kept, in order
    saved: Vec<u8>,
    /// addresses of To, Cc, Bcc, Apparently-To
    pub recipients: Vec<Vec<u8>>,
    /// addresses of Resent-To, Resent-Cc, Resent-Bcc
    pub resent_recipients: Vec<Vec<u8>>,
    /// the envelope sender: `-f`, else the first Return-Path: address
    pub sender: Option<Vec<u8>>,
}

/// What [`Completer::finish`] adds: the values of the generated fields.
pub struct Generated<'a> {
    pub date: String,
    pub message_id: String,
    /// the whole `From: ...\n` field, made only when needed
    pub from: &'a dyn Fn() -> Result<Vec<u8>, Verdict>,
}

impl<'a> Completer<'a> {
    pub fn new(qualify: &'a Qualify, flags: Flags, sender: Option<Vec<u8>>) -> Self {
        Completer {
            qualify,
            flags,
            seen: Vec::new(),
            saved: Vec::new(),
            recipients: Vec::new(),
            resent_recipients: Vec::new(),
            sender,
        }
    }

    fn seen(&self, f: Field) -> bool {
        self.seen.contains(&f)
    }

    /// Whether the message is being resent (any Resent- field but Resent-Bcc... as upstream,
    /// any of them): then the Resent- fields are completed and give the recipients.
    pub fn resent(&self) -> bool {
        use Field::*;
        [
            ResentSender,
            ResentFrom,
            ResentReplyTo,
            ResentTo,
            ResentCc,
            ResentBcc,
            ResentDate,
            ResentMessageId,
        ]
        .iter()
        .any(|&f| self.seen(f))
    }

    /// One header field, LF-terminated.
    pub fn field(&mut self, mut line: Vec<u8>) -> Result<(), Verdict> {
        use Field::*;
        let kind = classify(&line);
        let deleted = match kind {
            From => self.flags.delete_from,
            MessageId => self.flags.delete_message_id,
            ReturnPath => self.flags.delete_return_path,
            _ => false,
        };
        if deleted {
            return Ok(());
        }
        if kind != Other && !self.seen(kind) {
            self.seen.push(kind);
        }
        let list = match kind {
            To | Cc | Bcc | ApparentlyTo => Some(List::Recipients),
            ResentTo | ResentCc | ResentBcc => Some(List::Resent),
            ReturnPath => Some(List::ReturnPath),
            Sender | From | ReplyTo | ReturnReceiptTo | ErrorsTo | ResentSender | ResentFrom
            | ResentReplyTo => Some(List::Rewrite),
            _ => None,
        };
        if let Some(list) = list {
            line = self.rewrite(line, list)?;
        }
        if matches!(kind, Bcc | ResentBcc | ReturnPath | ContentLength) {
            return Ok(());
        }
        self.saved.extend_from_slice(&line);
        Ok(())
    }

    /// Qualify the addresses of an address field and note them. The field is written back
    /// only when something changed, so a field that needs nothing keeps its form.
    fn rewrite(&mut self, line: Vec<u8>, list: List) -> Result<Vec<u8>, Verdict> {
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| unparsable(&line))?;
        let toks = token::tokenize(&line[colon + 1..]).map_err(|_| unparsable(&line))?;
        let qualify = self.qualify;
        let mut found = Vec::new();
        let out = token::addrlist(toks.clone(), &mut |mut addr: Vec<Token>| {
            qualify.rewrite(&mut addr);
            found.push(token::unquote(&addr));
            addr
        })
        .map_err(|_| unparsable(&line))?;
        match list {
            List::Recipients | List::Resent => {
                let n = self.recipients.len() + self.resent_recipients.len() + found.len();
                if n > MAX_RECIPIENTS {
                    return Err(Verdict::perm(format!(
                        "more than {MAX_RECIPIENTS} recipients in the header"
                    )));
                }
                match list {
                    List::Recipients => self.recipients.extend(found),
                    _ => self.resent_recipients.extend(found),
                }
            }
            List::ReturnPath => {
                if self.sender.is_none() {
                    if let Some(mut s) = found.into_iter().next() {
                        if self.flags.verp_recipient {
                            s.extend_from_slice(b"-@[]");
                        }
                        self.sender = Some(s);
                    }
                }
            }
            List::Rewrite => {}
        }
        if out == toks {
            Ok(line)
        } else {
            Ok(token::render(&line[..=colon], &out))
        }
    }

    /// The completed header: generated fields first, then the saved ones.
    pub fn finish(&self, gen: &Generated<'_>) -> Result<Vec<u8>, Verdict> {
        use Field::*;
        let mut out = Vec::new();
        let resent = self.resent();
        let prefix: &[u8] = if resent { b"Resent-" } else { b"" };
        let (date, id, from, to, cc) = if resent {
            (ResentDate, ResentMessageId, ResentFrom, ResentTo, ResentCc)
        } else {
            (Date, MessageId, From, To, Cc)
        };
        if !self.seen(date) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(format!("Date: {}\n", gen.date).as_bytes());
        }
        if !self.seen(id) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(format!("Message-ID: {}\n", gen.message_id).as_bytes());
        }
        if !self.seen(from) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(&(gen.from)()?);
        }
        if !self.seen(to) && !self.seen(cc) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(b"Cc: recipient list not shown: ;\n");
        }
        out.extend_from_slice(&self.saved);
        Ok(out)
    }
}

#[derive(Clone, Copy)]
enum List {
    Recipients,
    Resent,
    ReturnPath,
    Rewrite,
}

fn unparsable(line: &[u8]) -> Verdict {
    let shown = &line[..line.len().min(200)];
    let shown = String::from_utf8_lossy(shown);
    Verdict::perm(format!("unable to parse this header field: {}", shown.trim_end().escape_debug()))
}

/// The generated `From:` field: `Full Name <user@host>` (or `user@host (Full Name)` with
/// `name_comment`), qualified like any other address.
pub fn default_from(
    user: &[u8],
    host: Option<&[u8]>,
    full_name: Option<&[u8]>,
    name_comment: bool,
    qualify: &Qualify,
) -> Result<Vec<u8>, Verdict> {
    let bad = |_| Verdict::perm("unable to parse the From: address made from the environment");
    let mut toks = Vec::new();
    let angle = full_name.filter(|_| !name_comment);
    if let Some(name) = angle {
        toks.push(Token::Quote(name.to_vec()));
        toks.push(Token::Special(b'<'));
    }
    toks.push(if token::needs_quotes(user) {
        Token::Quote(user.to_vec())
    } else {
        Token::Atom(user.to_vec())
    });
    if let Some(host) = host {
        toks.push(Token::Special(b'@'));
        toks.extend(token::tokenize(host).map_err(bad)?);
    }
    if angle.is_some() {
        toks.push(Token::Special(b'>'));
    } else if let Some(name) = full_name {
        toks.push(Token::Comment(name.to_vec()));
    }
    let out = token::addrlist(toks, &mut |mut a| {
        qualify.rewrite(&mut a);
        a
    })
    .map_err(bad)?;
    Ok(token::render(b"From:", &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8]) -> Result<(Vec<String>, End, Vec<u8>), Verdict> {
        let mut r = io::BufReader::with_capacity(16, input);
        let mut fields = Vec::new();
        let end = read(&mut r, |f| {
            fields.push(String::from_utf8_lossy(&f).into_owned());
            Ok(())
        })?;
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut r, &mut rest).unwrap();
        Ok((fields, end, rest))
    }

    #[test]
    fn header_splitting() {
        let body = |s: &str| End::Body { line: s.as_bytes().to_vec(), complete: true };
        let rows: &[(&str, &[&str], End, &str)] = &[
            ("", &[], End::Eof, ""),
            ("\n", &[], End::Blank, ""),
            ("\nbody\n", &[], End::Blank, "body\n"),
            ("To: a\n\nbody", &["To: a\n"], End::Blank, "body"),
            ("To: a", &["To: a\n"], End::Eof, ""),
            (
                "To: a,\n b\n\tc\nSubject: x\n\n",
                &["To: a,\n b\n\tc\n", "Subject: x\n"],
                End::Blank,
                "",
            ),
            ("hello world\nmore\n", &[], body("hello world\n"), "more\n"),
            ("To: a\nnot a field\n", &["To: a\n"], body("not a field\n"), ""),
            (" leading: blank\n", &[], body(" leading: blank\n"), ""),
            (
                "From joe Mon Jan 1\nTo: a\n\n",
                &["MBOX-Line: From joe Mon Jan 1\n", "To: a\n"],
                End::Blank,
                "",
            ),
            ("X-A : b\n", &["X-A : b\n"], End::Eof, ""),
            (": empty name\n", &[], body(": empty name\n"), ""),
            ("Bad Name: x\n", &[], body("Bad Name: x\n"), ""),
            ("A\0B: x\n", &[], body("A\0B: x\n"), ""),
            ("X: \0\u{1}\n\n", &["X: \0\u{1}\n"], End::Blank, ""),
        ];
        for (input, fields, end, rest) in rows {
            let got = split(input.as_bytes()).unwrap();
            assert_eq!(got.0, *fields, "{input:?}");
            assert_eq!(got.1, *end, "{input:?}");
            assert_eq!(got.2, rest.as_bytes(), "{input:?}");
        }
    }

    #[test]
    fn bounds() {
        // a field that fits exactly, and one byte more
        let fits = format!("X: {}\n", "a".repeat(MAX_FIELD - 4));
        assert_eq!(split(fits.as_bytes()).unwrap().0.len(), 1);
        let over = format!("X: {}\n", "a".repeat(MAX_FIELD - 3));
        assert!(split(over.as_bytes()).unwrap_err().is_perm());
        // continuation lines count
        let folded = format!("X: a\n{}", format!(" {}\n", "b".repeat(1000)).repeat(70));
        assert!(split(folded.as_bytes()).unwrap_err().is_perm());
        // a huge line that is no field starts the body and is not held
        let long = "z".repeat(3 * MAX_FIELD);
        let (fields, end, rest) = split(long.as_bytes()).unwrap();
        assert!(fields.is_empty());
        assert_eq!(end, End::Body { line: vec![b'z'; MAX_FIELD], complete: false });
        assert_eq!(rest.len(), 2 * MAX_FIELD);
        // many small fields: the whole header is bounded
        let many = "X: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
            .repeat(MAX_HEADER / 60);
        assert_eq!(split(many.as_bytes()).unwrap_err(), Verdict::perm("header too long"));
    }

    #[test]
    fn recipients_are_bounded() {
        let field = format!("To: {}\n", vec!["a"; 30_000].join(","));
        let (_, c) = complete(&field.repeat(3), Flags::default()).unwrap();
        assert_eq!(c.recipients.len(), 90_000);
        let err = complete(&field.repeat(4), Flags::default()).err().expect("too many");
        assert!(err.is_perm() && err.text().contains("recipients"), "{err}");
    }

    fn complete(input: &str, flags: Flags) -> Result<(String, Completer<'static>), Verdict> {
        let q: &'static Qualify = Box::leak(Box::new(
            Qualify::new(b"mx.example.org", b"example.org", b"example.org").unwrap(),
        ));
        let mut c = Completer::new(q, flags, None);
        let mut r = input.as_bytes();
        read(&mut r, |f| c.field(f))?;
        let from = || Ok(b"From: joe@mx.example.org\n".to_vec());
        let gen = Generated {
            date: "1 Jan 1970 00:00:00 -0000".into(),
            message_id: "<19700101000000.1.qmail@mx.example.org>".into(),
            from: &from,
        };
        let text = String::from_utf8_lossy(&c.finish(&gen)?).into_owned();
        Ok((text, c))
    }

    #[test]
    fn completion() {
        let (text, c) = complete("", Flags::default()).unwrap();
        assert_eq!(
            text,
            "Date: 1 Jan 1970 00:00:00 -0000\n\
             Message-ID: <19700101000000.1.qmail@mx.example.org>\n\
             From: joe@mx.example.org\n\
             Cc: recipient list not shown: ;\n"
        );
        assert!(c.recipients.is_empty());

        let input = "From: Me <me>\nTo: a, b@c.d\nBcc: hidden\nReturn-Path: <rp@x.y>\n\
                     Content-Length: 5\nDate: today\nMessage-ID: <x@y>\nSubject: s\n\n";
        let (text, c) = complete(input, Flags::default()).unwrap();
        assert_eq!(
            text,
            "From: Me <me@mx.example.org>\nTo: a@mx.example.org, b@c.d\nDate: today\n\
             Message-ID: <x@y>\nSubject: s\n"
        );
        assert_eq!(
            c.recipients,
            vec![
                b"a@mx.example.org".to_vec(),
                b"b@c.d".to_vec(),
                b"hidden@mx.example.org".to_vec()
            ]
        );
        assert_eq!(c.sender.as_deref(), Some(&b"rp@x.y"[..]));

        // resent: the Resent- fields are completed and give the recipients
        let (text, c) = complete("To: a@b.c\nResent-To: r@s.t\n", Flags::default()).unwrap();
        assert!(text.starts_with("Resent-Date: "), "{text}");
        assert!(text.contains("Resent-From: joe@mx.example.org\n"), "{text}");
        assert!(!text.contains("recipient list not shown"), "{text}");
        assert!(c.resent());
        assert_eq!(c.resent_recipients, vec![b"r@s.t".to_vec()]);
    }

    #[test]
    fn flags() {
        let input = "From: x@y.z\nMessage-ID: <old@x>\nReturn-Path: <rp@x.y>\nTo: a@b.c\n";
        let flags = Flags::parse(b"fisr");
        let (text, c) = complete(input, flags).unwrap();
        assert!(!text.contains("x@y.z"), "{text}");
        assert!(!text.contains("old@x"), "{text}");
        assert!(text.contains("From: joe@mx.example.org\n"), "{text}");
        assert_eq!(c.sender, None);
        let (_, c) = complete(input, Flags::parse(b"r")).unwrap();
        assert_eq!(c.sender.as_deref(), Some(&b"rp@x.y-@[]"[..]));
    }

    #[test]
    fn bad_address_fields_are_permanent() {
        for input in ["To: \"open\n", "Cc: a@b>\n", "From: (x\n", "Resent-To: <a\n"] {
            let err = complete(input, Flags::default()).err().expect(input);
            assert!(err.is_perm(), "{input}");
            assert!(err.text().contains("unable to parse"), "{input}: {err}");
        }
        // unparsable text in other fields is nobody's business
        assert!(complete("Subject: \"open (\n", Flags::default()).is_ok());
    }

    #[test]
    fn default_from_forms() {
        let q = Qualify::new(b"mx.example.org", b"example.org", b"example.org").unwrap();
        // user, host, full name, comment form, the field
        type Row<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>, bool, &'a str);
        let rows: &[Row] = &[
            (b"joe", None, None, false, "From: joe@mx.example.org\n"),
            (b"joe", Some(b"h"), None, false, "From: joe@h.example.org\n"),
            (
                b"joe",
                Some(b"x.y"),
                Some(b"Joe Q. Public"),
                false,
                "From: \"Joe Q. Public\" <joe@x.y>\n",
            ),
            (b"joe", Some(b"x.y"), Some(b"Joe"), true, "From: joe@x.y (Joe)\n"),
            (b"a b", Some(b"x.y"), None, false, "From: \"a b\"@x.y\n"),
        ];
        for &(user, host, name, comment, want) in rows {
            let got = default_from(user, host, name, comment, &q).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
        assert!(default_from(b"joe", Some(b"(bad"), None, false, &q).is_err());
    }
}
