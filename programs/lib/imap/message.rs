//! imap::message: the FETCH side of imapd (RFC 3501 6.4.5 and 7.4.2) over Maildir message
//! files: a message's MIME structure, ENVELOPE, BODY and BODYSTRUCTURE, RFC822.SIZE,
//! INTERNALDATE, and `BODY[section]<partial>` streamed from the file.
//!
//! Messages are stored with LF line ends (some lines may already end in CR LF) and are sent
//! with CR LF, converted exactly as [`super::write::Crlf`] converts: an LF not preceded by a
//! CR gets one. Every size and literal count here is in octets after that conversion
//! ("CRLF octets").
//!
//! # How it works
//!
//! [`Structure::scan`] reads the file once, line by line, without holding a line: it keeps
//! the first bytes of the current line (enough to recognise a boundary delimiter), a bounded
//! copy of each part's header, and for every MIME part (RFC 2045, 2046) three positions:
//! where its header starts, where its body starts and where it ends, each as a file offset,
//! a CRLF offset and a count of LFs before it (for the `lines` of BODYSTRUCTURE). Every
//! [`CHECKPOINT`] bytes of file it notes the CRLF offset and whether the byte before was a
//! CR, so a partial fetch (`BODY[]<199000000.1000000>`) seeks to the checkpoint before its
//! origin and reads at most one checkpoint's worth of bytes it does not send.
//!
//! [`write_section`] finds the part a [`Section`] names, computes the size of what it will
//! send (a difference of two CRLF offsets; for `HEADER.FIELDS` one filtering pass over the
//! header), announces the literal, and streams the bytes from the file, converted.
//!
//! # Decisions
//!
//! - MIME parsing (RFC 2046 5.1): a delimiter is a line that starts with `--` and an open
//!   multipart's boundary (a prefix match, as Dovecot does; anything after it is ignored); a
//!   following `--` makes it the close delimiter. The line end before a delimiter belongs to
//!   the delimiter, so a part ends before it, also when the part itself ends in a close
//!   delimiter (Dovecot counts that line end into the part: two octets and a line more). A
//!   delimiter of an enclosing multipart ends the inner ones. A missing close delimiter
//!   ends the open parts at the end of the file. A header ends at the first empty line; a
//!   part with no empty line has an empty body.
//! - A multipart with no usable boundary (missing, empty, over [`MAX_BOUNDARY`] bytes),
//!   beyond the nesting or part limits, or without any delimiter in its body, has no parts;
//!   BODYSTRUCTURE then shows one empty `text/plain` part, as Dovecot does, so that clients
//!   see valid syntax, and `BODY[1]` of it is empty. A `message/rfc822` part is parsed as a
//!   message unless its Content-Transfer-Encoding is not 7bit, 8bit or binary, or a limit is
//!   reached: then its envelope is all NIL and its body an empty `text/plain` (Dovecot's
//!   answer for an encoded message/rfc822).
//! - Limits, so that memory stays flat whatever the file: at most [`MAX_PARTS`] parts (a
//!   message/rfc822's encapsulated message counts as one), nested at most [`MAX_DEPTH`]
//!   deep; at most [`MAX_HEADER`] bytes of each header kept, and [`MAX_HEADERS_TOTAL`] over
//!   all headers. Past the part limit, delimiters that would open a new part are ordinary
//!   body lines (the rest is opaque body of the part it falls in); close delimiters still
//!   close. Header fields past the kept bytes are not seen by BODYSTRUCTURE, ENVELOPE or
//!   [`Structure::header`] (a part whose Content-Type is lost is `text/plain`); fetching a
//!   header section always sends the whole header from the file.
//! - Part numbers (RFC 3501 6.4.5): the parts of a multipart are numbered from 1; a
//!   non-multipart has only part 1, itself (so `BODY[1]` of a single-part message is its
//!   body, and `1.1` is still part 1, as Dovecot answers); the parts of a message/rfc822
//!   part are those of the message it encapsulates. `HEADER`, `TEXT` and `HEADER.FIELDS`
//!   after a part number need a message/rfc822 part; `MIME` is the part's own header. A
//!   part that does not exist, or a section it cannot have, is sent as the empty string
//!   `""` (as are a partial fetch beyond the end and any empty section); never NIL.
//! - Header sections include the blank line that ends the header when the message has
//!   one; `HEADER.FIELDS` (and `.NOT`) always end with CRLF (RFC 3501: the blank line is
//!   included). Field names match case-insensitively; a field with continuation lines is
//!   kept or dropped whole; a line without a colon is no field (kept by `.NOT` only).
//! - BODYSTRUCTURE strings are what the header says, case kept (type, subtype, parameter
//!   names and values, encoding), as Dovecot sends them; the defaults are `"text" "plain"`
//!   with `("charset" "us-ascii")` and `"7bit"` (RFC 2045 5.2 and 6.1), and a `text/*` part
//!   without a charset gets `"charset" "us-ascii"` appended. In a multipart/digest the
//!   default type is message/rfc822 (RFC 2046 5.1.5). Parameters are RFC 2045 `attribute =
//!   value`, value a token or a quoted string; RFC 2231 continuations and RFC 2047 words
//!   are sent as they are. Extension data: Content-MD5 (or NIL), disposition with its
//!   parameters, Content-Language as a list of its comma-separated tokens, Content-Location.
//!   `lines` is the number of LFs in the body.
//! - ENVELOPE (RFC 3501 7.4.2) takes the first Date, Subject, From, Sender, Reply-To, To,
//!   Cc, Bcc, In-Reply-To and Message-ID fields, unfolded and trimmed, RFC 2047 words not
//!   decoded; Sender and Reply-To default to From when absent or empty. Addresses are parsed
//!   tolerantly (RFC 5322 3.4): a group is `(NIL NIL "name" NIL)` ... `(NIL NIL NIL NIL)`,
//!   an address without local part or domain gets `MISSING_MAILBOX` / `MISSING_DOMAIN`
//!   (Dovecot's words, so that it is never read as a group marker), a comment stands in for
//!   a missing display name. Strings go out with [`super::write::nstring`], so 8-bit bytes,
//!   CR and LF make a literal.
//! - Nothing here panics on any input (see the fuzz target `fuzz/fuzz_targets/imap_message.rs`).
//!   If the file is shorter at fetch time than when it was scanned (it should never change:
//!   Maildir messages are written once), [`write_section`] fails with `UnexpectedEof` after
//!   announcing a literal it cannot fill: the caller must drop the connection.

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::parse::{number, Value};
use super::write::{literal_header, nstring, string, Crlf};
use super::ErrorKind;

/// The most parts kept for one message (its top level and each encapsulated message count).
pub const MAX_PARTS: usize = 1000;

/// The deepest nesting of parts (each multipart or message/rfc822 adds a level).
pub const MAX_DEPTH: usize = 20;

/// The most bytes of one part's header kept for BODYSTRUCTURE, ENVELOPE and SEARCH.
pub const MAX_HEADER: usize = 64 * 1024;

/// The most header bytes kept for one message, over all its parts.
pub const MAX_HEADERS_TOTAL: usize = 2 * 1024 * 1024;

/// The longest multipart boundary recognised (RFC 2046 allows 70).
pub const MAX_BOUNDARY: usize = 200;

/// File bytes between two checkpoints of the CRLF offset.
pub const CHECKPOINT: u64 = 64 * 1024;

/// Bytes of each line kept while scanning: `--`, a boundary, `--`.
const HEAD: usize = MAX_BOUNDARY + 4;

/// The size of read buffers.
const BUF: usize = 64 * 1024;

/// A `section` of `BODY[section]` (RFC 3501 6.4.5): a part number (empty: the whole
/// message) and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `1.2.3` as `[1, 2, 3]`; no zeroes
    pub part: Vec<u32>,
    pub text: SectionText,
}

/// What of a part a [`Section`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// nothing after the part number: the whole message, or the part's body
    Full,
    /// `HEADER`
    Header,
    /// `HEADER.FIELDS (...)` (`not`: `HEADER.FIELDS.NOT`), the names as the client sent them
    HeaderFields { not: bool, fields: Vec<Vec<u8>> },
    /// `TEXT`
    Text,
    /// `MIME` (only after a part number)
    Mime,
}

impl Section {
    /// `RFC822`, the same as `BODY[]`.
    pub const RFC822: Section = Section { part: Vec::new(), text: SectionText::Full };
    /// `RFC822.HEADER`, the same as `BODY.PEEK[HEADER]`.
    pub const RFC822_HEADER: Section = Section { part: Vec::new(), text: SectionText::Header };
    /// `RFC822.TEXT`, the same as `BODY[TEXT]`.
    pub const RFC822_TEXT: Section = Section { part: Vec::new(), text: SectionText::Text };

    /// The `section` of a [`Value::Section`]: empty, or an atom (`1.2.MIME`, `HEADER`, any
    /// case) and, after `HEADER.FIELDS` or `HEADER.FIELDS.NOT`, a non-empty list of astrings.
    pub fn parse(section: &[Value]) -> Result<Section, ErrorKind> {
        let bad = ErrorKind::Syntax("Invalid section");
        let (spec, rest) = match section {
            [] => return Ok(Section::RFC822),
            [Value::Atom(spec), rest @ ..] => (spec, rest),
            _ => return Err(bad),
        };
        let mut part = Vec::new();
        let mut words = spec.split(|&b| b == b'.').peekable();
        while let Some(word) = words.next_if(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit))
        {
            part.push(number(word).filter(|&n| n > 0).ok_or(bad)?);
        }
        let words: Vec<&[u8]> = words.collect();
        if words.iter().any(|w| w.is_empty()) {
            return Err(bad);
        }
        let keyword: Vec<u8> = words.join(&b'.');
        let keyword = keyword.to_ascii_uppercase();
        let text = match (keyword.as_slice(), rest) {
            (b"", []) if !part.is_empty() => SectionText::Full,
            (b"HEADER", []) => SectionText::Header,
            (b"TEXT", []) => SectionText::Text,
            (b"MIME", []) if !part.is_empty() => SectionText::Mime,
            (b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT", [Value::List(names)])
                if !names.is_empty() =>
            {
                let fields = names
                    .iter()
                    .map(|v| v.astring().map(<[u8]>::to_vec))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(bad)?;
                SectionText::HeaderFields { not: keyword.ends_with(b".NOT"), fields }
            }
            _ => return Err(bad),
        };
        Ok(Section { part, text })
    }

    /// The item name as the FETCH response echoes it: `BODY[1.HEADER.FIELDS (From To)]`,
    /// then `<origin>` for a partial fetch. Field names are written as the client sent them
    /// (clients such as mutt look for the exact item).
    pub fn write_name(&self, origin: Option<u32>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"BODY[");
        for (i, n) in self.part.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        let keyword: &[u8] = match &self.text {
            SectionText::Full => b"",
            SectionText::Header => b"HEADER",
            SectionText::HeaderFields { not: false, .. } => b"HEADER.FIELDS",
            SectionText::HeaderFields { not: true, .. } => b"HEADER.FIELDS.NOT",
            SectionText::Text => b"TEXT",
            SectionText::Mime => b"MIME",
        };
        if !keyword.is_empty() && !self.part.is_empty() {
            out.push(b'.');
        }
        out.extend_from_slice(keyword);
        if let SectionText::HeaderFields { fields, .. } = &self.text {
            out.extend_from_slice(b" (");
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                super::write::astring(f, out);
            }
            out.push(b')');
        }
        out.push(b']');
        if let Some(origin) = origin {
            out.extend_from_slice(format!("<{origin}>").as_bytes());
        }
    }
}

/// A position in the message file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pos {
    /// offset in the file
    file: u64,
    /// offset in the message as sent (CRLF octets)
    crlf: u64,
    /// LFs before it
    lf: u64,
}

/// One MIME part (the message itself is part 0).
#[derive(Debug, Clone)]
struct Part {
    /// where its header starts
    start: Pos,
    /// where its body starts (after the blank line)
    body: Pos,
    /// where it ends (before the line end of the delimiter that follows it)
    end: Pos,
    /// the header as stored, at most [`MAX_HEADER`] bytes, without the blank line
    header: Vec<u8>,
    /// its default type is message/rfc822 (a part of a multipart/digest)
    digest: bool,
    /// it is a multipart/digest
    digest_parts: bool,
    depth: usize,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// not (parsed as) a multipart or a message
    Leaf,
    /// a multipart: its parts, in order
    Multipart(Vec<usize>),
    /// a message/rfc822: the encapsulated message
    Message(usize),
}

/// A message's MIME structure, found by one streaming pass over the file
/// ([module docs](self)): offsets, bounded header copies and checkpoints, never the body.
#[derive(Debug, Clone)]
pub struct Structure {
    parts: Vec<Part>,
    /// at file offset `i * CHECKPOINT`: the CRLF offset, and whether the byte before is CR
    checkpoints: Vec<(u64, bool)>,
}

impl Structure {
    /// Read a message file once and find its structure.
    pub fn scan<R: Read>(mut r: R) -> io::Result<Structure> {
        let mut scan = Scan::new();
        let mut buf = vec![0u8; BUF];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => scan.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(scan.finish())
    }

    /// RFC822.SIZE: the CRLF octets of the whole message.
    pub fn size(&self) -> u64 {
        self.parts[0].end.crlf
    }

    /// The top-level header as stored (LF or CRLF line ends, folded), without the blank
    /// line; at most [`MAX_HEADER`] bytes. For SEARCH HEADER, FROM, SUBJECT, ...
    pub fn header(&self) -> &[u8] {
        &self.parts[0].header
    }

    /// ENVELOPE's value: `(date subject from sender reply-to to cc bcc in-reply-to
    /// message-id)`.
    pub fn envelope(&self, out: &mut Vec<u8>) {
        envelope(&self.parts[0].header, out);
    }

    /// BODY's value (`extensible` false) or BODYSTRUCTURE's (true).
    pub fn body_structure(&self, extensible: bool, out: &mut Vec<u8>) {
        self.write_body(0, extensible, out);
    }

    fn write_body(&self, i: usize, ext: bool, out: &mut Vec<u8>) {
        let part = &self.parts[i];
        let mime = Mime::of(&part.header, part.digest);
        match &part.kind {
            Kind::Multipart(children) => {
                out.push(b'(');
                if children.is_empty() {
                    empty_text(ext, out);
                }
                for &c in children {
                    self.write_body(c, ext, out);
                }
                out.push(b' ');
                string(&mime.subtype, out);
                if ext {
                    out.push(b' ');
                    params(&mime.params, out);
                    extension(&part.header, out);
                }
                out.push(b')');
            }
            kind => {
                out.push(b'(');
                string(&mime.ctype, out);
                out.push(b' ');
                string(&mime.subtype, out);
                out.push(b' ');
                params(&mime.params, out);
                for name in ["Content-ID", "Content-Description"] {
                    out.push(b' ');
                    nstring(field(&part.header, name).as_deref(), out);
                }
                out.push(b' ');
                let encoding = field(&part.header, "Content-Transfer-Encoding")
                    .and_then(|v| Lexer::new(&v).token());
                string(encoding.as_deref().unwrap_or(b"7bit"), out);
                out.extend_from_slice(format!(" {}", part.end.crlf - part.body.crlf).as_bytes());
                let lines = part.end.lf - part.body.lf;
                match (kind, mime.declared()) {
                    (Kind::Message(inner), _) => {
                        out.push(b' ');
                        envelope(&self.parts[*inner].header, out);
                        out.push(b' ');
                        self.write_body(*inner, ext, out);
                        out.extend_from_slice(format!(" {lines}").as_bytes());
                    }
                    (_, Declared::Message) => {
                        out.extend_from_slice(b" (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ");
                        empty_text(ext, out);
                        out.extend_from_slice(format!(" {lines}").as_bytes());
                    }
                    _ if mime.ctype.eq_ignore_ascii_case(b"text") => {
                        out.extend_from_slice(format!(" {lines}").as_bytes());
                    }
                    _ => {}
                }
                if ext {
                    out.push(b' ');
                    nstring(field(&part.header, "Content-MD5").as_deref(), out);
                    extension(&part.header, out);
                }
                out.push(b')');
            }
        }
    }

    /// Where a section's bytes are, if the message has it.
    fn locate<'s>(&self, section: &'s Section) -> Option<Source<'s>> {
        let fields = |p: &Part| match &section.text {
            SectionText::HeaderFields { not, fields } => {
                Source::Fields { start: p.start, end: p.body, not: *not, fields }
            }
            _ => Source::Span(p.start, p.body),
        };
        let root = &self.parts[0];
        let Some((&first, rest)) = section.part.split_first() else {
            return match section.text {
                SectionText::Full => Some(Source::Span(root.start, root.end)),
                SectionText::Text => Some(Source::Span(root.body, root.end)),
                SectionText::Mime => None,
                SectionText::Header | SectionText::HeaderFields { .. } => Some(fields(root)),
            };
        };
        let mut cur = self.child(0, first)?;
        for &n in rest {
            cur = match self.parts[cur].kind {
                Kind::Message(inner) => self.child(inner, n)?,
                _ => self.child(cur, n)?,
            };
        }
        let part = &self.parts[cur];
        match (&section.text, &part.kind) {
            (SectionText::Full, _) => Some(Source::Span(part.body, part.end)),
            (SectionText::Mime, _) => Some(Source::Span(part.start, part.body)),
            (SectionText::Text, Kind::Message(inner)) => {
                let inner = &self.parts[*inner];
                Some(Source::Span(inner.body, inner.end))
            }
            (SectionText::Header | SectionText::HeaderFields { .. }, Kind::Message(inner)) => {
                Some(fields(&self.parts[*inner]))
            }
            _ => None,
        }
    }

    /// Part `n` of part `i`: of a multipart, its `n`th part; of anything else, part 1 is
    /// itself.
    fn child(&self, i: usize, n: u32) -> Option<usize> {
        match &self.parts[i].kind {
            Kind::Multipart(children) => {
                children.get(usize::try_from(n).ok()?.checked_sub(1)?).copied()
            }
            _ => (n == 1).then_some(i),
        }
    }

    /// Stream the file bytes in `[a, b)`, converted, through `window` (which has seen
    /// nothing yet), starting near `window.lo`.
    fn copy_span<F: Read + Seek, W: Write>(
        &self,
        file: &mut F,
        a: Pos,
        b: Pos,
        window: &mut Window<'_, W>,
    ) -> io::Result<()> {
        let target = a.crlf + window.lo;
        let k = self.checkpoints.partition_point(|&(crlf, _)| crlf <= target);
        let (mut at_file, mut after_cr) = (a.file, false);
        window.at = 0;
        if let Some(k) = k.checked_sub(1) {
            let file_k = k as u64 * CHECKPOINT;
            if file_k > a.file {
                let (crlf, cr) = self.checkpoints[k];
                (at_file, after_cr, window.at) = (file_k, cr, crlf - a.crlf);
            }
        }
        file.seek(SeekFrom::Start(at_file))?;
        let mut conv = Crlf::new();
        let mut buf = vec![0u8; BUF];
        let mut converted = Vec::with_capacity(2 * BUF);
        if after_cr {
            // the converter's state after a CR, without a constructor for it
            conv.convert(b"\r", &mut converted);
            converted.clear();
        }
        while at_file < b.file && !window.full() {
            let want = usize::try_from(b.file - at_file).unwrap_or(usize::MAX).min(BUF);
            let n = read_some(file, &mut buf[..want])?;
            at_file += n as u64;
            converted.clear();
            conv.convert(&buf[..n], &mut converted);
            window.put(&converted)?;
        }
        Ok(())
    }
}

/// Where a section's bytes come from.
enum Source<'s> {
    /// the file bytes between two positions
    Span(Pos, Pos),
    /// the header between two positions, filtered
    Fields { start: Pos, end: Pos, not: bool, fields: &'s [Vec<u8>] },
}

/// Write `section` of the message `s` describes, read from `file`, as `{n}\r\n` and its `n`
/// CRLF octets; with `partial` = (origin, length), only those octets of it (RFC 3501
/// 6.4.5). An empty result, or a part that does not exist, is written `""`.
pub fn write_section<F: Read + Seek, W: Write>(
    s: &Structure,
    file: &mut F,
    section: &Section,
    partial: Option<(u32, u32)>,
    out: &mut W,
) -> io::Result<()> {
    let source = s.locate(section);
    let total = match &source {
        None => 0,
        Some(Source::Span(a, b)) => b.crlf - a.crlf,
        Some(Source::Fields { start, end, not, fields }) => {
            let mut sink = io::sink();
            let mut count = Window { out: &mut sink, at: 0, lo: 0, hi: 0 };
            header_fields(file, *start, *end, *not, fields, &mut count)?;
            count.at
        }
    };
    let (lo, hi) = match partial {
        None => (0, total),
        Some((origin, length)) => {
            let lo = u64::from(origin).min(total);
            (lo, (lo + u64::from(length)).min(total))
        }
    };
    let source = match source {
        Some(source) if lo < hi => source,
        _ => return out.write_all(b"\"\""),
    };
    let mut head = Vec::new();
    literal_header(hi - lo, &mut head);
    out.write_all(&head)?;
    let mut window = Window { out, at: 0, lo, hi };
    match source {
        Source::Span(a, b) => s.copy_span(file, a, b, &mut window)?,
        Source::Fields { start, end, not, fields } => {
            header_fields(file, start, end, not, fields, &mut window)?
        }
    }
    if window.at < hi {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "message file shrank"));
    }
    Ok(())
}

/// Converted bytes, numbered from 0, of which those in `[lo, hi)` go to `out`.
struct Window<'w, W: Write> {
    out: &'w mut W,
    /// the number of the next byte
    at: u64,
    lo: u64,
    hi: u64,
}

impl<W: Write> Window<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        let start = self.at;
        self.at += bytes.len() as u64;
        let (a, b) = (start.max(self.lo), self.at.min(self.hi));
        if a < b {
            self.out.write_all(&bytes[(a - start) as usize..(b - start) as usize])?;
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.at >= self.hi
    }
}

/// A read that retries when interrupted; 0 at the end of the file is an error here (the
/// caller asked for bytes the scan saw).
fn read_some<F: Read>(file: &mut F, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "message file shrank"))
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The header lines in `[start, end)` that are (`not`: are not) among `fields`, converted,
/// and a CRLF, through `window`.
fn header_fields<F: Read + Seek, W: Write>(
    file: &mut F,
    start: Pos,
    end: Pos,
    not: bool,
    fields: &[Vec<u8>],
    window: &mut Window<'_, W>,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(start.file))?;
    let mut filter =
        FieldFilter { fields, not, state: FState::LineStart, name: Vec::new(), keep: false };
    let mut conv = Crlf::new();
    let (mut buf, mut kept, mut converted) = (vec![0u8; BUF], Vec::new(), Vec::new());
    let mut left = end.file - start.file;
    while left > 0 && filter.state != FState::Done {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(BUF);
        let n = read_some(file, &mut buf[..want])?;
        left -= n as u64;
        kept.clear();
        filter.feed(&buf[..n], &mut kept);
        converted.clear();
        conv.convert(&kept, &mut converted);
        window.put(&converted)?;
    }
    kept.clear();
    filter.finish(&mut kept);
    converted.clear();
    conv.convert(&kept, &mut converted);
    converted.extend_from_slice(b"\r\n");
    window.put(&converted)
}

/// Selects header lines by field name, streaming, whatever the line lengths.
struct FieldFilter<'a> {
    fields: &'a [Vec<u8>],
    not: bool,
    state: FState,
    /// the start of the current line, up to its colon
    name: Vec<u8>,
    /// the current field is selected
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FState {
    LineStart,
    /// a CR at the start of a line
    Cr,
    /// reading a field name into `name`
    Name,
    /// in the rest of a line
    Line,
    /// the blank line was seen
    Done,
}

/// Names longer than this match no field.
const MAX_NAME: usize = 1024;

impl FieldFilter<'_> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            match self.state {
                FState::Done => return,
                FState::LineStart => match b {
                    b'\n' => self.state = FState::Done,
                    b'\r' => self.state = FState::Cr,
                    b' ' | b'\t' => {
                        // a continuation line: part of the field before
                        if self.keep {
                            out.push(b);
                        }
                        self.state = FState::Line;
                    }
                    _ => {
                        self.name.clear();
                        self.name.push(b);
                        self.state = FState::Name;
                    }
                },
                FState::Cr if b == b'\n' => self.state = FState::Done,
                FState::Cr => {
                    self.name.clear();
                    self.name.extend_from_slice(&[b'\r', b]);
                    self.state = FState::Name;
                    if b == b':' || self.name.len() >= MAX_NAME {
                        self.decide(out);
                    }
                }
                FState::Name => {
                    self.name.push(b);
                    if b == b'\n' {
                        // no colon: no field
                        self.keep = self.not;
                        if self.keep {
                            out.extend_from_slice(&self.name);
                        }
                        self.state = FState::LineStart;
                    } else if b == b':' || self.name.len() >= MAX_NAME {
                        self.decide(out);
                    }
                }
                FState::Line => {
                    if self.keep {
                        out.push(b);
                    }
                    if b == b'\n' {
                        self.state = FState::LineStart;
                    }
                }
            }
        }
    }

    /// The name (with its colon, or cut at [`MAX_NAME`]) is read: keep the field or not.
    fn decide(&mut self, out: &mut Vec<u8>) {
        let name = match self.name.split_last() {
            Some((b':', name)) => trim(name),
            _ => &[][..],
        };
        let matched = !name.is_empty() && self.fields.iter().any(|f| f.eq_ignore_ascii_case(name));
        self.keep = matched != self.not;
        if self.keep {
            out.extend_from_slice(&self.name);
        }
        self.state = FState::Line;
    }

    /// The header ended without a blank line: an unfinished line without a colon.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state == FState::Name && self.not {
            out.extend_from_slice(&self.name);
        }
        self.state = FState::Done;
    }
}

/// The streaming scanner behind [`Structure::scan`].
struct Scan {
    parts: Vec<Part>,
    checkpoints: Vec<(u64, bool)>,
    /// the position of the next byte
    pos: Pos,
    /// the byte before `pos` is a CR
    after_cr: bool,
    /// the open parts, outermost first, each with its boundary while it is a multipart
    /// still looking for delimiters
    stack: Vec<(usize, Option<Vec<u8>>)>,
    /// the innermost open part is reading its header
    in_header: bool,
    /// where the line end before the current line starts
    prev_break: Pos,
    /// the first [`HEAD`] bytes of the current line
    head: Vec<u8>,
    /// bytes of the current line so far
    line_len: u64,
    /// the length of the innermost header copy when the current line started
    header_mark: usize,
    /// header bytes that may still be kept
    budget: usize,
}

impl Scan {
    fn new() -> Scan {
        let root = Part {
            start: Pos::default(),
            body: Pos::default(),
            end: Pos::default(),
            header: Vec::new(),
            digest: false,
            digest_parts: false,
            depth: 0,
            kind: Kind::Leaf,
        };
        Scan {
            parts: vec![root],
            checkpoints: Vec::new(),
            pos: Pos::default(),
            after_cr: false,
            stack: vec![(0, None)],
            in_header: true,
            prev_break: Pos::default(),
            head: Vec::with_capacity(HEAD),
            line_len: 0,
            header_mark: 0,
            budget: MAX_HEADERS_TOTAL,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (segment, lf) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            self.segment(segment, lf);
            bytes = &bytes[segment.len()..];
        }
    }

    /// A piece of a line (not empty), with its LF if `lf` (then only at its end).
    fn segment(&mut self, seg: &[u8], lf: bool) {
        let len = seg.len() as u64;
        // checkpoints at file offsets inside this segment: no LF before them in it
        loop {
            let next = self.checkpoints.len() as u64 * CHECKPOINT;
            if next >= self.pos.file + len {
                break;
            }
            let k = (next - self.pos.file) as usize;
            let cr = if k == 0 { self.after_cr } else { seg[k - 1] == b'\r' };
            self.checkpoints.push((self.pos.crlf + k as u64, cr));
        }
        let room = HEAD - self.head.len();
        self.head.extend_from_slice(&seg[..seg.len().min(room)]);
        self.line_len += len;
        if self.in_header {
            let top = self.stack.last().map_or(0, |&(p, _)| p);
            let header = &mut self.parts[top].header;
            let n = seg.len().min(MAX_HEADER - header.len()).min(self.budget);
            header.extend_from_slice(&seg[..n]);
            self.budget -= n;
        }
        if !lf {
            self.pos.file += len;
            self.pos.crlf += len;
            self.after_cr = seg.last() == Some(&b'\r');
            return;
        }
        let cr = if seg.len() >= 2 { seg[seg.len() - 2] == b'\r' } else { self.after_cr };
        // where the line end starts: before the LF, or before the CR, which may have ended
        // the previous segment (then `seg` is the LF alone)
        let brk = if len == 1 && cr {
            Pos { file: self.pos.file - 1, crlf: self.pos.crlf - 1, lf: self.pos.lf }
        } else {
            let before = len - 1 - u64::from(cr);
            Pos { file: self.pos.file + before, crlf: self.pos.crlf + before, lf: self.pos.lf }
        };
        self.pos.file += len;
        self.pos.crlf += len + u64::from(!cr);
        self.pos.lf += 1;
        self.after_cr = false;
        let content = self.line_len - 1 - u64::from(cr);
        self.end_line(content, self.pos);
        self.prev_break = brk;
        self.head.clear();
        self.line_len = 0;
        self.header_mark = self.header_len();
    }

    /// The current line (of `content` bytes without its line end) is complete; the next
    /// line starts at `next`.
    fn end_line(&mut self, content: u64, next: Pos) {
        if self.head.starts_with(b"--") && self.delimiter(next) {
            return;
        }
        if self.in_header && content == 0 {
            self.truncate_header();
            let top = self.stack.last().map_or(0, |&(p, _)| p);
            self.header_done(top, next, false);
        }
    }

    /// Is the current line a delimiter of an open multipart? Then act on it.
    fn delimiter(&mut self, next: Pos) -> bool {
        let rest = &self.head[2..];
        let Some(i) = self
            .stack
            .iter()
            .rposition(|(_, boundary)| boundary.as_deref().is_some_and(|b| rest.starts_with(b)))
        else {
            return false;
        };
        let (multipart, boundary) = &self.stack[i];
        let close = rest[boundary.as_ref().map_or(0, Vec::len)..].starts_with(b"--");
        let multipart = *multipart;
        if !close && self.parts.len() >= MAX_PARTS {
            return false;
        }
        self.truncate_header();
        let at = self.prev_break;
        while self.stack.len() > i + 1 {
            self.close_top(at);
        }
        if close {
            self.stack[i].1 = None;
            return true;
        }
        let (depth, digest) = (self.parts[multipart].depth + 1, self.parts[multipart].digest_parts);
        let child = self.new_part(next, depth, digest);
        if let Kind::Multipart(children) = &mut self.parts[multipart].kind {
            children.push(child);
        }
        true
    }

    fn new_part(&mut self, start: Pos, depth: usize, digest: bool) -> usize {
        self.parts.push(Part {
            start,
            body: start,
            end: start,
            header: Vec::new(),
            digest,
            digest_parts: false,
            depth,
            kind: Kind::Leaf,
        });
        self.stack.push((self.parts.len() - 1, None));
        self.in_header = true;
        self.header_mark = 0;
        self.parts.len() - 1
    }

    /// End the innermost open part at `at` (or where it starts, if later).
    fn close_top(&mut self, at: Pos) {
        let Some((top, _)) = self.stack.pop() else { return };
        if self.in_header {
            let body =
                if at.file < self.parts[top].start.file { self.parts[top].start } else { at };
            self.header_done(top, body, true);
        }
        let part = &mut self.parts[top];
        part.end = if at.file < part.body.file { part.body } else { at };
        self.in_header = false;
    }

    /// The header of part `i` (the innermost) ended; its body starts at `body`. Unless the
    /// part is `closing` (it ends there), a multipart starts looking for delimiters and a
    /// message/rfc822 opens its encapsulated message.
    fn header_done(&mut self, i: usize, body: Pos, closing: bool) {
        self.in_header = false;
        let full = self.parts.len() >= MAX_PARTS;
        let part = &mut self.parts[i];
        part.body = body;
        let mime = Mime::of(&part.header, part.digest);
        let room = !closing && part.depth + 1 < MAX_DEPTH && !full;
        match mime.declared() {
            Declared::Multipart => {
                part.kind = Kind::Multipart(Vec::new());
                part.digest_parts = mime.subtype.eq_ignore_ascii_case(b"digest");
                let boundary = mime
                    .param(b"boundary")
                    .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
                    .map(<[u8]>::to_vec);
                if let (true, Some(b), Some(top)) = (room, boundary, self.stack.last_mut()) {
                    top.1 = Some(b);
                }
            }
            Declared::Message if room && identity(&part.header) => {
                let depth = part.depth + 1;
                let inner = self.new_part(body, depth, false);
                self.parts[i].kind = Kind::Message(inner);
            }
            _ => {}
        }
    }

    fn header_len(&self) -> usize {
        match self.stack.last() {
            Some(&(top, _)) if self.in_header => self.parts[top].header.len(),
            _ => 0,
        }
    }

    /// Drop the current line from the innermost header copy (a blank line or a delimiter).
    fn truncate_header(&mut self) {
        if let (true, Some(&(top, _))) = (self.in_header, self.stack.last()) {
            let header = &mut self.parts[top].header;
            let mark = self.header_mark.min(header.len());
            self.budget += header.len() - mark;
            header.truncate(mark);
        }
    }

    fn finish(mut self) -> Structure {
        if self.line_len > 0 {
            self.end_line(self.line_len, self.pos);
        }
        let end = self.pos;
        while !self.stack.is_empty() {
            self.close_top(end);
        }
        Structure { parts: self.parts, checkpoints: self.checkpoints }
    }
}

/// Whether a message/rfc822 part's encoding lets it be parsed (7bit, 8bit, binary, none).
fn identity(header: &[u8]) -> bool {
    match field(header, "Content-Transfer-Encoding").and_then(|v| Lexer::new(&v).token()) {
        None => true,
        Some(e) => [&b"7bit"[..], b"8bit", b"binary"].iter().any(|i| e.eq_ignore_ascii_case(i)),
    }
}

/// What a Content-Type makes of a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Multipart,
    Message,
    Other,
}

/// A part's Content-Type, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mime {
    ctype: Vec<u8>,
    subtype: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Mime {
    fn of(header: &[u8], digest: bool) -> Mime {
        let parsed = field(header, "Content-Type").and_then(|v| {
            let mut lx = Lexer::new(&v);
            let ctype = lx.token()?;
            lx.cfws();
            lx.eat(b'/').then_some(())?;
            let subtype = lx.token()?;
            Some(Mime { ctype, subtype, params: lx.params() })
        });
        let mut mime = parsed.unwrap_or_else(|| match digest {
            true => {
                Mime { ctype: b"message".to_vec(), subtype: b"rfc822".to_vec(), params: vec![] }
            }
            false => Mime { ctype: b"text".to_vec(), subtype: b"plain".to_vec(), params: vec![] },
        });
        if mime.ctype.eq_ignore_ascii_case(b"text") && mime.param(b"charset").is_none() {
            mime.params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
        }
        mime
    }

    fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    fn declared(&self) -> Declared {
        if self.ctype.eq_ignore_ascii_case(b"multipart") {
            Declared::Multipart
        } else if self.ctype.eq_ignore_ascii_case(b"message")
            && self.subtype.eq_ignore_ascii_case(b"rfc822")
        {
            Declared::Message
        } else {
            Declared::Other
        }
    }
}

/// The empty `text/plain` part written where a body is missing.
fn empty_text(ext: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
    if ext {
        out.extend_from_slice(b" NIL NIL NIL NIL");
    }
    out.push(b')');
}

/// `("name" "value" ...)` or NIL.
fn params(params: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<u8>) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(name, out);
        out.push(b' ');
        string(value, out);
    }
    out.push(b')');
}

/// ` disposition language location`, BODYSTRUCTURE's extension data after the MD5 (of a
/// single part) or the parameters (of a multipart).
fn extension(header: &[u8], out: &mut Vec<u8>) {
    out.push(b' ');
    let disposition = field(header, "Content-Disposition").and_then(|v| {
        let mut lx = Lexer::new(&v);
        Some((lx.token()?, lx.params()))
    });
    match disposition {
        Some((kind, p)) => {
            out.push(b'(');
            string(&kind, out);
            out.push(b' ');
            params(&p, out);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let languages: Vec<Vec<u8>> = field(header, "Content-Language")
        .map(|v| {
            let mut lx = Lexer::new(&v);
            let mut tags = Vec::new();
            while !lx.at_end() {
                match lx.token() {
                    Some(t) => tags.push(t),
                    None => lx.skip(),
                }
            }
            tags
        })
        .unwrap_or_default();
    if languages.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, tag) in languages.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(tag, out);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(field(header, "Content-Location").as_deref(), out);
}

/// Spaces and tabs off both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// The value of the first header field called `name` (any case), unfolded (the line ends
/// before continuation lines removed) and trimmed.
pub fn field(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut lines = header.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t')
            || !trim(&line[..colon]).eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let mut value = strip_eol(&line[colon + 1..]).to_vec();
        while let Some(next) =
            lines.next_if(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        {
            value.extend_from_slice(strip_eol(next));
        }
        return Some(trim(&value).to_vec());
    }
    None
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A cursor over a structured header value (RFC 2045 tokens, RFC 5322 CFWS).
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer { s, i: 0 }
    }

    fn at_end(&mut self) -> bool {
        self.cfws();
        self.i >= self.s.len()
    }

    fn skip(&mut self) {
        self.i += 1;
    }

    fn eat(&mut self, b: u8) -> bool {
        self.cfws();
        let hit = self.s.get(self.i) == Some(&b);
        self.i += usize::from(hit);
        hit
    }

    /// White space and comments (nested, with quoted pairs; an unclosed one runs to the end).
    fn cfws(&mut self) {
        let mut depth = 0usize;
        while let Some(&b) = self.s.get(self.i) {
            match b {
                b'(' => depth += 1,
                b')' if depth > 0 => depth -= 1,
                b'\\' if depth > 0 => self.i += 1,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if depth > 0 => {}
                _ => return,
            }
            self.i += 1;
        }
    }

    /// An RFC 2045 token (8-bit bytes allowed), if one is next.
    fn token(&mut self) -> Option<Vec<u8>> {
        self.cfws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|&b| b > b' ' && b != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b))
        {
            self.i += 1;
        }
        (self.i > start).then(|| self.s[start..self.i].to_vec())
    }

    /// A quoted string's content (an unclosed one runs to the end), if one is next.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.cfws();
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(&c) = self.s.get(self.i) {
                        out.push(c);
                        self.i += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        Some(out)
    }

    /// `; name=value` pairs to the end; anything unreadable is skipped to the next `;`.
    fn params(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while !self.at_end() {
            if !self.eat(b';') {
                self.skip_past(b';');
                continue;
            }
            let Some(name) = self.token() else { continue };
            if !self.eat(b'=') {
                continue;
            }
            if let Some(value) = self.quoted().or_else(|| self.token()) {
                out.push((name, value));
            }
        }
        out
    }

    fn skip_past(&mut self, b: u8) {
        while self.s.get(self.i).is_some_and(|&c| c != b) {
            if self.s[self.i] == b'"' {
                self.quoted();
            } else {
                self.i += 1;
            }
        }
    }
}

/// One ENVELOPE address: `(name adl mailbox host)`; a group start has only `mailbox`, a
/// group end nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Address {
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
}

/// A lexical unit of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// an atom, a quoted string's content, or a domain literal with its brackets
    Word(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn tokens(v: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let (mut depth, mut text) = (0usize, Vec::new());
                while let Some(&c) = v.get(i) {
                    i += 1;
                    match c {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        b'\\' => {
                            text.extend(v.get(i));
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    if !(c == b'(' && depth == 1) {
                        text.push(c);
                    }
                }
                out.push(Tok::Comment(trim(&text).to_vec()));
            }
            b'"' => {
                let mut lx = Lexer { s: v, i };
                out.push(Tok::Word(lx.quoted().unwrap_or_default()));
                i = lx.i;
            }
            b'[' => {
                let end = v[i..].iter().position(|&c| c == b']').map_or(v.len(), |e| i + e + 1);
                out.push(Tok::Word(v[i..end].to_vec()));
                i = end;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                out.push(Tok::Special(b));
                i += 1;
            }
            b'\\' | b']' | b')' => i += 1,
            _ => {
                let start = i;
                while v.get(i).is_some_and(|&c| !b" \t\r\n()\"[]<>@,;:.\\".contains(&c)) {
                    i += 1;
                }
                out.push(Tok::Word(v[start..i].to_vec()));
            }
        }
    }
    out
}

/// An address list (RFC 5322 3.4), tolerantly: whatever cannot be read is skipped.
fn addresses(v: &[u8]) -> Vec<Address> {
    let toks: Vec<Tok> = tokens(v);
    let mut out = Vec::new();
    let mut group = false;
    let mut i = 0;
    let is_word = |t: &Tok| matches!(t, Tok::Word(_) | Tok::Special(b'.'));
    while i < toks.len() {
        match &toks[i] {
            Tok::Special(b',') | Tok::Comment(_) => {
                i += 1;
                continue;
            }
            Tok::Special(b';') => {
                if std::mem::take(&mut group) {
                    out.push(Address::default());
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let phrase: Vec<&Tok> =
            toks[i..].iter().take_while(|t| is_word(t) || matches!(t, Tok::Comment(_))).collect();
        i += phrase.len();
        let comment = phrase.iter().find_map(|t| match t {
            Tok::Comment(c) if !c.is_empty() => Some(c.clone()),
            _ => None,
        });
        let phrase: Vec<&Tok> = phrase.into_iter().filter(|t| is_word(t)).collect();
        let mut address = match toks.get(i) {
            Some(Tok::Special(b':')) => {
                i += 1;
                if std::mem::replace(&mut group, true) {
                    out.push(Address::default());
                }
                out.push(Address { mailbox: Some(display(&phrase)), ..Address::default() });
                continue;
            }
            Some(Tok::Special(b'<')) => {
                i += 1;
                let mut adl = Vec::new();
                while let Some(t @ (Tok::Special(b'@' | b',' | b'.') | Tok::Word(_))) = toks.get(i)
                {
                    if adl.is_empty() && !matches!(t, Tok::Special(b'@')) {
                        break;
                    }
                    push_tok(t, &mut adl);
                    i += 1;
                }
                if !adl.is_empty() {
                    // a route ends in a colon
                    i += usize::from(toks.get(i) == Some(&Tok::Special(b':')));
                }
                let (mailbox, host) = addr_spec(&toks, &mut i);
                let name = (!phrase.is_empty()).then(|| display(&phrase));
                Address { name, adl: (!adl.is_empty()).then_some(adl), mailbox, host }
            }
            Some(Tok::Special(b'@')) => {
                let mut local = Vec::new();
                phrase.iter().for_each(|t| push_tok(t, &mut local));
                i += 1;
                let host = domain(&toks, &mut i);
                Address { mailbox: Some(local), host, ..Address::default() }
            }
            _ if !phrase.is_empty() => {
                let mut local = Vec::new();
                phrase.iter().for_each(|t| push_tok(t, &mut local));
                Address { mailbox: Some(local), ..Address::default() }
            }
            _ => {
                i += 1; // a stray special
                continue;
            }
        };
        // the rest of this address, to the next `,` or `;` (a comment may name it)
        let mut name = comment;
        while let Some(t) = toks.get(i) {
            match t {
                Tok::Special(b',' | b';') => break,
                Tok::Comment(c) if name.is_none() && !c.is_empty() => name = Some(c.clone()),
                _ => {}
            }
            i += 1;
        }
        if address.name.is_none() {
            address.name = name;
        }
        if address.mailbox.as_ref().map_or(true, Vec::is_empty) {
            address.mailbox = Some(b"MISSING_MAILBOX".to_vec());
        }
        if address.host.as_ref().map_or(true, Vec::is_empty) {
            address.host = Some(b"MISSING_DOMAIN".to_vec());
        }
        out.push(address);
    }
    if group {
        out.push(Address::default());
    }
    out
}

/// `local@domain` up to `>` (consumed) or the end of the address.
fn addr_spec(toks: &[Tok], i: &mut usize) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut local = Vec::new();
    while let Some(t @ (Tok::Word(_) | Tok::Special(b'.') | Tok::Comment(_))) = toks.get(*i) {
        push_tok(t, &mut local);
        *i += 1;
    }
    let host = match toks.get(*i) {
        Some(Tok::Special(b'@')) => {
            *i += 1;
            domain(toks, i)
        }
        _ => None,
    };
    while let Some(t) = toks.get(*i) {
        match t {
            Tok::Special(b'>') => {
                *i += 1;
                break;
            }
            Tok::Special(b',' | b';') => break,
            _ => *i += 1,
        }
    }
    (Some(local), host)
}

/// A domain: words and dots (a comment after it may name the address).
fn domain(toks: &[Tok], i: &mut usize) -> Option<Vec<u8>> {
    let mut host = Vec::new();
    while let Some(t @ (Tok::Word(_) | Tok::Special(b'.'))) = toks.get(*i) {
        push_tok(t, &mut host);
        *i += 1;
    }
    (!host.is_empty()).then_some(host)
}

/// Append a word or a dot as it reads in a local part, domain or route (comments dropped).
fn push_tok(t: &Tok, out: &mut Vec<u8>) {
    match t {
        Tok::Word(w) => out.extend_from_slice(w),
        Tok::Special(b) => out.push(*b),
        Tok::Comment(_) => {}
    }
}

/// A display name: words separated by one space, dots kept after their word.
fn display(phrase: &[&Tok]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in phrase {
        match t {
            Tok::Word(w) => {
                if !out.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(w);
            }
            Tok::Special(b) => out.push(*b),
            Tok::Comment(_) => {}
        }
    }
    out
}

/// `((name adl mailbox host)...)` or NIL.
fn write_addresses(list: &[Address], out: &mut Vec<u8>) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        for (i, f) in [&a.name, &a.adl, &a.mailbox, &a.host].into_iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            nstring(f.as_deref(), out);
        }
        out.push(b')');
    }
    out.push(b')');
}

/// ENVELOPE of a header (RFC 3501 7.4.2).
fn envelope(header: &[u8], out: &mut Vec<u8>) {
    let list = |name| field(header, name).map(|v| addresses(&v)).unwrap_or_default();
    let from = list("From");
    let or_from = |l: Vec<Address>| if l.is_empty() { from.clone() } else { l };
    let sender = or_from(list("Sender"));
    let reply_to = or_from(list("Reply-To"));
    out.push(b'(');
    nstring(field(header, "Date").as_deref(), out);
    out.push(b' ');
    nstring(field(header, "Subject").as_deref(), out);
    for l in [&from, &sender, &reply_to, &list("To"), &list("Cc"), &list("Bcc")] {
        out.push(b' ');
        write_addresses(l, out);
    }
    out.push(b' ');
    nstring(field(header, "In-Reply-To").as_deref(), out);
    out.push(b' ');
    nstring(field(header, "Message-ID").as_deref(), out);
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const PLAIN: &str = "\
Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n\
From: Fred Foobar <foobar@Blurdybloop.example>\n\
Subject: afternoon meeting\n\
To: mooch@owatagu.siam.edu.example\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\n\
MIME-Version: 1.0\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\
\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\n\
";

    /// stored with CRLF line ends, as some files are
    const ALT: &str = "From: \"Ann Example\" <ann@example.org>\r\nReply-To: list@example.org\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\ntext\r\n--b1\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<p>html</p>\r\n--b1--\r\n";

    const MIXED: &str = "\
From: a@example.org\n\
To: b@example.org, Group: c@example.org, \"D d\" <d@example.org>;\n\
Cc: Undisclosed:;\n\
Subject: mixed\n\
Message-ID: <mixed@example.org>\n\
In-Reply-To: <parent@example.org>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\
\n\
This is the preamble.\n\
--outer\n\
Content-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: 8bit\n\
\n\
Grüße\n\
second line\n\
--outer\n\
Content-Type: multipart/parallel; boundary=inner\n\
\n\
--inner\n\
Content-Type: message/rfc822\n\
Content-Description: forwarded\n\
\n\
From: x@example.org\n\
Subject: inner\n\
Date: Tue, 1 Jan 2030 00:00:00 +0000\n\
Content-Type: multipart/alternative; boundary=\"alt\"\n\
\n\
--alt\n\
Content-Type: text/plain\n\
\n\
plain inner\n\
--alt\n\
Content-Type: text/html\n\
\n\
<p>html inner</p>\n\
--alt--\n\
--inner--\n\
--outer\n\
Content-Type: application/pdf; name=\"a.pdf\"\n\
Content-Transfer-Encoding: base64\n\
Content-Disposition: attachment; filename=\"a.pdf\"\n\
Content-ID: <pdf@example.org>\n\
Content-Language: en\n\
Content-Location: a.pdf\n\
\n\
JVBERi0xLjQK\n\
JVBERi0xLjQK\n\
--outer--\n\
epilogue\n\
";

    fn show(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn items(m: &[u8]) -> String {
        let s = Structure::scan(m).unwrap();
        let mut out = format!("RFC822.SIZE {} ENVELOPE ", s.size()).into_bytes();
        s.envelope(&mut out);
        out.extend_from_slice(b" BODY ");
        s.body_structure(false, &mut out);
        out.extend_from_slice(b" BODYSTRUCTURE ");
        s.body_structure(true, &mut out);
        show(&out)
    }

    /// A FETCH item such as `BODY.PEEK[1.MIME]<0.10>`, read by the command parser.
    fn item(text: &str) -> (Section, Option<(u32, u32)>) {
        let cmd = crate::imap::parse(format!("a FETCH 1 {text}").as_bytes(), &[], 64).unwrap();
        match &cmd.args[1] {
            Value::Section { section, partial, .. } => (Section::parse(section).unwrap(), *partial),
            other => panic!("{other:?}"),
        }
    }

    /// What `write_section` writes for `text` of message `m`.
    fn fetch(m: &[u8], text: &str) -> String {
        let s = Structure::scan(m).unwrap();
        let (section, partial) = item(text);
        let mut out = Vec::new();
        write_section(&s, &mut Cursor::new(m), &section, partial, &mut out).unwrap();
        show(&out)
    }

    /// The bytes of a written literal (checking its count), or of `""`.
    fn literal(written: &[u8]) -> Vec<u8> {
        if written == b"\"\"" {
            return Vec::new();
        }
        let close = written.iter().position(|&b| b == b'}').unwrap();
        let n: usize = show(&written[1..close]).parse().unwrap();
        assert_eq!(&written[close..close + 3], b"}\r\n");
        let bytes = &written[close + 3..];
        assert_eq!(bytes.len(), n, "literal count of {}", show(written));
        bytes.to_vec()
    }

    fn crlf(m: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Crlf::new().convert(m, &mut out);
        out
    }

    /// Expected answers checked against Dovecot 2.3 (`imap` with a Maildir), which differs
    /// only where the module docs say: it lowercases a `TEXT/PLAIN; CHARSET=US-ASCII`, and
    /// counts the line end after the inner `--alt--` into part 2.1 (240 octets, 14 lines).
    #[test]
    fn envelope_and_body_structure() {
        assert_eq!(
            items(PLAIN.as_bytes()),
            "RFC822.SIZE 326 ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \
             \"afternoon meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
             ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
             ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
             ((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
             \"<B27397-0100000@Blurdybloop.example>\") \
             BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 55 1) \
             BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 55 1 \
             NIL NIL NIL NIL)"
        );
        assert_eq!(
            items(ALT.as_bytes()),
            "RFC822.SIZE 331 ENVELOPE (NIL \"=?utf-8?q?caf=C3=A9?=\" \
             ((\"Ann Example\" NIL \"ann\" \"example.org\")) \
             ((\"Ann Example\" NIL \"ann\" \"example.org\")) \
             ((NIL NIL \"list\" \"example.org\")) NIL NIL NIL NIL NIL) \
             BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 1)\
             (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 11 0) \
             \"alternative\") \
             BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 1 \
             NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \
             \"quoted-printable\" 11 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b1\") \
             NIL NIL NIL)"
        );
        let inner_env = "(\"Tue, 1 Jan 2030 00:00:00 +0000\" \"inner\" \
             ((NIL NIL \"x\" \"example.org\")) ((NIL NIL \"x\" \"example.org\")) \
             ((NIL NIL \"x\" \"example.org\")) NIL NIL NIL NIL NIL)";
        assert_eq!(
            items(MIXED.as_bytes()),
            format!(
                "RFC822.SIZE 1043 ENVELOPE (NIL \"mixed\" ((NIL NIL \"a\" \"example.org\")) \
                 ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) \
                 ((NIL NIL \"b\" \"example.org\")(NIL NIL \"Group\" NIL)\
                 (NIL NIL \"c\" \"example.org\")(\"D d\" NIL \"d\" \"example.org\")\
                 (NIL NIL NIL NIL)) ((NIL NIL \"Undisclosed\" NIL)(NIL NIL NIL NIL)) NIL \
                 \"<parent@example.org>\" \"<mixed@example.org>\") \
                 BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 20 1)\
                 ((\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 238 {inner_env} \
                 ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0)\
                 (\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 0) \
                 \"alternative\") 13) \"parallel\")\
                 (\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<pdf@example.org>\" NIL \
                 \"base64\" 26) \"mixed\") \
                 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 20 1 \
                 NIL NIL NIL NIL)((\"message\" \"rfc822\" NIL NIL \"forwarded\" \"7bit\" 238 \
                 {inner_env} ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" \
                 11 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \
                 \"7bit\" 17 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"alt\") NIL NIL \
                 NIL) 13 NIL NIL NIL NIL) \"parallel\" (\"boundary\" \"inner\") NIL NIL NIL)\
                 (\"application\" \"pdf\" (\"name\" \"a.pdf\") \"<pdf@example.org>\" NIL \
                 \"base64\" 26 NIL (\"attachment\" (\"filename\" \"a.pdf\")) (\"en\") \"a.pdf\") \
                 \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn sections() {
        let m = MIXED.as_bytes();
        let rows: &[(&str, &str)] = &[
            (
                "BODY[1.MIME]",
                "{76}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\n",
            ),
            ("BODY[1]", "{20}\r\nGrüße\r\nsecond line"),
            ("BODY[1.1]", "{20}\r\nGrüße\r\nsecond line"),
            (
                "BODY[2.1.TEXT]",
                "{108}\r\n--alt\r\nContent-Type: text/plain\r\n\r\nplain inner\r\n--alt\r\n\
                 Content-Type: text/html\r\n\r\n<p>html inner</p>\r\n--alt--",
            ),
            (
                "BODY[2.1.HEADER]",
                "{130}\r\nFrom: x@example.org\r\nSubject: inner\r\n\
                 Date: Tue, 1 Jan 2030 00:00:00 +0000\r\n\
                 Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n",
            ),
            ("BODY[2.1.HEADER.FIELDS (subject)]", "{18}\r\nSubject: inner\r\n\r\n"),
            ("BODY[2.1.1]", "{11}\r\nplain inner"),
            ("BODY[2.1.2.MIME]", "{27}\r\nContent-Type: text/html\r\n\r\n"),
            ("BODY[2.MIME]", "{52}\r\nContent-Type: multipart/parallel; boundary=inner\r\n\r\n"),
            ("BODY[3]", "{26}\r\nJVBERi0xLjQK\r\nJVBERi0xLjQK"),
            (
                "BODY[HEADER.FIELDS (to CC)]",
                "{86}\r\nTo: b@example.org, Group: c@example.org, \"D d\" <d@example.org>;\r\n\
                 Cc: Undisclosed:;\r\n\r\n",
            ),
            (
                "BODY[HEADER.FIELDS.NOT (To Cc MESSAGE-ID In-Reply-To MIME-Version Content-Type)]",
                "{39}\r\nFrom: a@example.org\r\nSubject: mixed\r\n\r\n",
            ),
            ("BODY[TEXT]<0.30>", "{30}\r\nThis is the preamble.\r\n--outer"),
            // what does not exist
            ("BODY[4]", "\"\""),
            ("BODY[2.2]", "\"\""),
            ("BODY[1.HEADER]", "\"\""),
            ("BODY[1.TEXT]", "\"\""),
            ("BODY[3.1.1.1.1]", "{26}\r\nJVBERi0xLjQK\r\nJVBERi0xLjQK"),
            ("BODY[3.2]", "\"\""),
            ("BODY[]<2000.10>", "\"\""),
        ];
        for &(text, want) in rows {
            assert_eq!(fetch(m, text), want, "{text}");
        }
        let full = crlf(m);
        assert_eq!(literal(fetch(m, "BODY[]").as_bytes()), full);
        assert_eq!(literal(fetch(m, "BODY[]<1000.100>").as_bytes()), &full[1000..]);
        let header_end = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(literal(fetch(m, "BODY[HEADER]").as_bytes()), &full[..header_end]);
        assert_eq!(literal(fetch(m, "BODY[TEXT]").as_bytes()), &full[header_end..]);
        // a single-part message: part 1 is its body, 1.MIME its header
        let p = PLAIN.as_bytes();
        assert_eq!(
            fetch(p, "BODY[1]"),
            "{55}\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
        );
        assert_eq!(fetch(p, "BODY[1.MIME]"), fetch(p, "BODY[HEADER]"));
        assert_eq!(fetch(p, "BODY[2]"), "\"\"");
        // CRLF already in the file is kept, not doubled
        let a = ALT.as_bytes();
        assert_eq!(literal(fetch(a, "BODY[]").as_bytes()), a);
        assert_eq!(fetch(a, "BODY[1]"), "{11}\r\nplain\r\ntext");
        assert_eq!(
            fetch(a, "BODY[HEADER.FIELDS (Content-Type)]"),
            "{56}\r\nContent-Type: multipart/alternative;\r\n boundary=\"b1\"\r\n\r\n"
        );
    }

    /// Every partial of every section is the slice of the whole section, and sizes are the
    /// lengths of what is sent.
    #[test]
    fn partial_at_every_offset() {
        let texts = [
            "BODY[]",
            "BODY[HEADER]",
            "BODY[TEXT]",
            "BODY[1]",
            "BODY[1.MIME]",
            "BODY[2]",
            "BODY[2.1.TEXT]",
            "BODY[HEADER.FIELDS (From Subject)]",
            "BODY[HEADER.FIELDS.NOT (From)]",
        ];
        for m in [PLAIN.as_bytes(), ALT.as_bytes(), MIXED.as_bytes(), b"a\r\r\nb\n\rc\n\n\r\n"] {
            let s = Structure::scan(m).unwrap();
            assert_eq!(s.size(), crlf(m).len() as u64);
            for text in texts {
                let (section, _) = item(text);
                let whole = literal(fetch(m, text).as_bytes());
                let n = whole.len() as u32;
                for origin in 0..=n + 1 {
                    for length in [1, 2, 3, 7, n.saturating_sub(origin).max(1), u32::MAX] {
                        let mut out = Vec::new();
                        let mut file = Cursor::new(m);
                        write_section(&s, &mut file, &section, Some((origin, length)), &mut out)
                            .unwrap();
                        let lo = (origin as usize).min(whole.len());
                        let hi = (lo + length as usize).min(whole.len());
                        assert_eq!(literal(&out), &whole[lo..hi], "{text}<{origin}.{length}>");
                    }
                }
            }
        }
        // BODYSTRUCTURE sizes (20, 238, 26 in MIXED) are what BODY[part] sends
        for (text, n) in [("BODY[1]", 20), ("BODY[2.1]", 238), ("BODY[3]", 26), ("BODY[2.1.1]", 11)]
        {
            assert_eq!(literal(fetch(MIXED.as_bytes(), text).as_bytes()).len(), n, "{text}");
        }
    }

    #[test]
    fn section_names() {
        let name = |text: &str, origin| {
            let (section, _) = item(text);
            let mut out = Vec::new();
            section.write_name(origin, &mut out);
            show(&out)
        };
        assert_eq!(name("BODY[]", None), "BODY[]");
        assert_eq!(
            name("BODY.PEEK[header.fields (From \"To\" x-Y)]", None),
            "BODY[HEADER.FIELDS (From To x-Y)]"
        );
        assert_eq!(
            name("BODY[1.2.header.FIELDS.not (a)]", Some(0)),
            "BODY[1.2.HEADER.FIELDS.NOT (a)]<0>"
        );
        assert_eq!(name("BODY[3.mime]<5.6>", Some(5)), "BODY[3.MIME]<5>");
        assert_eq!(name("BODY[2.1.TEXT]", None), "BODY[2.1.TEXT]");
        assert_eq!(item("BODY[Text]").0, Section::RFC822_TEXT);
        assert_eq!(item("BODY[HEADER]").0, Section::RFC822_HEADER);
        assert_eq!(item("BODY[]").0, Section::RFC822);
        let bad = |text: &str| {
            let cmd = crate::imap::parse(format!("a FETCH 1 {text}").as_bytes(), &[], 64).unwrap();
            let Value::Section { section, .. } = &cmd.args[1] else { panic!() };
            Section::parse(section).is_err()
        };
        for text in [
            "BODY[MIME]",
            "BODY[0]",
            "BODY[1.0]",
            "BODY[1.]",
            "BODY[.1]",
            "BODY[1..2]",
            "BODY[4294967296]",
            "BODY[HEADER.FIELDS]",
            "BODY[HEADER.FIELDS ()]",
            "BODY[HEADER.FIELDS (a (b))]",
            "BODY[HEADER x]",
            "BODY[TEXT.1]",
            "BODY[1.TEXTX]",
            "BODY[\"1\"]",
            "BODY[HEADER.FIELDS.NOTX (a)]",
            "BODY[1 2]",
        ] {
            assert!(bad(text), "{text}");
        }
    }

    #[test]
    fn addresses_tolerantly() {
        let env = |header: &str| {
            let mut out = Vec::new();
            envelope(header.as_bytes(), &mut out);
            show(&out)
        };
        // checked against Dovecot
        assert_eq!(
            env("To: undisclosed\nCc: <>, \"x y\" <@r1,@r2:a.b@[1.2.3.4]>, c@\nSubject:\n\
                 Bcc: g: ;, h: x@y\n"),
            "(NIL \"\" NIL NIL NIL ((NIL NIL \"undisclosed\" \"MISSING_DOMAIN\")) \
             ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"x y\" \"@r1,@r2\" \"a.b\" \
             \"[1.2.3.4]\")(NIL NIL \"c\" \"MISSING_DOMAIN\")) ((NIL NIL \"g\" NIL)\
             (NIL NIL NIL NIL)(NIL NIL \"h\" NIL)(NIL NIL \"x\" \"y\")(NIL NIL NIL NIL)) NIL NIL)"
        );
        assert_eq!(
            env("From: Joe Q. Public <joe@x>, \"a\\\"b\" <c@d>, e@f (Comment)\n"),
            "(NIL NIL ((\"Joe Q. Public\" NIL \"joe\" \"x\")(\"a\\\"b\" NIL \"c\" \"d\")\
             (\"Comment\" NIL \"e\" \"f\")) ((\"Joe Q. Public\" NIL \"joe\" \"x\")\
             (\"a\\\"b\" NIL \"c\" \"d\")(\"Comment\" NIL \"e\" \"f\")) ((\"Joe Q. Public\" \
             NIL \"joe\" \"x\")(\"a\\\"b\" NIL \"c\" \"d\")(\"Comment\" NIL \"e\" \"f\")) \
             NIL NIL NIL NIL NIL)"
        );
        // folded, 8-bit, broken: never a panic, 8-bit and CR go out as literals
        assert_eq!(
            env("Subject: a\n\tb\nFrom: Gr\u{fc}\u{df}e <g@x>\nTo: ((((<<>>@@,,;;::\"\nDate: \r\n"),
            "(\"\" \"a\tb\" (({7}\r\nGr\u{fc}\u{df}e NIL \"g\" \"x\")) (({7}\r\nGr\u{fc}\u{df}e NIL \
             \"g\" \"x\")) (({7}\r\nGr\u{fc}\u{df}e NIL \"g\" \"x\")) NIL NIL NIL NIL NIL)"
        );
        let _ = env("To: a:b:c:;;;<@,@:>,\"\\");
        let _ = env("To: (unclosed comment");
        let _ = env("To: [unclosed literal");
    }

    /// The same structure whatever the read sizes (line ends split across reads).
    #[test]
    fn any_chunking() {
        struct Drip<'a>(&'a [u8], usize);
        impl Read for Drip<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for m in [MIXED.as_bytes(), ALT.as_bytes(), b"a\r\r\n--x\r\n\r\r\n"] {
            let whole = format!("{:?}", Structure::scan(m).unwrap());
            for size in 1..8 {
                assert_eq!(format!("{:?}", Structure::scan(Drip(m, size)).unwrap()), whole);
            }
        }
    }

    /// Counts the bytes read through it.
    struct Counting<R> {
        inner: R,
        read: u64,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    /// 20 MB with a big attachment: memory stays small, and a partial fetch deep inside
    /// reads little more than it sends.
    #[test]
    fn big_message() {
        let mut m =
            b"Subject: big\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhello\n--b\n\
                      Content-Type: application/octet-stream\n\n"
                .to_vec();
        let line =
            b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n";
        while m.len() < 20_000_000 {
            m.extend_from_slice(line);
        }
        m.extend_from_slice(b"--b--\n");
        let s = Structure::scan(&m[..]).unwrap();
        let full = crlf(&m);
        assert_eq!(s.size(), full.len() as u64);
        assert!(s.checkpoints.len() < 400);
        assert_eq!(s.parts.len(), 3);
        let mut bs = Vec::new();
        s.body_structure(true, &mut bs);
        assert!(
            show(&bs).contains("\"application\" \"octet-stream\" NIL NIL NIL \"7bit\" 20"),
            "{}",
            show(&bs)
        );
        for (origin, length) in [(19_000_000u32, 1_000_000u32), (10_000_001, 100), (0, 10)] {
            let mut file = Counting { inner: Cursor::new(&m[..]), read: 0 };
            let mut out = Vec::new();
            let (section, _) = item("BODY[]");
            write_section(&s, &mut file, &section, Some((origin, length)), &mut out).unwrap();
            let lo = origin as usize;
            let hi = (lo + length as usize).min(full.len());
            assert_eq!(literal(&out), &full[lo..hi]);
            assert!(file.read <= length as u64 + 2 * CHECKPOINT, "read {} for {length}", file.read);
        }
        // the same inside part 2
        let mut file = Counting { inner: Cursor::new(&m[..]), read: 0 };
        let mut out = Vec::new();
        let (section, _) = item("BODY[2]");
        write_section(&s, &mut file, &section, Some((15_000_000, 1000)), &mut out).unwrap();
        assert_eq!(literal(&out).len(), 1000);
        assert!(file.read <= 1000 + 2 * CHECKPOINT);
    }

    /// Hostile shapes: bounded, no panic, answers consistent with the bytes.
    #[test]
    fn hostile() {
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n".to_vec(),
            b"\r".to_vec(),
            b"no header separator at all".to_vec(),
            b"Content-Type: multipart/mixed; boundary=x\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=x\n\n--x\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=x\n\n--x".to_vec(),
            b"Content-Type: multipart/mixed; boundary=x\n\n--x--".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n".to_vec(),
            b"Content-Type: message/rfc822\n\n".to_vec(),
            b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nxx\n".to_vec(),
            b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: s\n\nx\n--d--\n"
                .to_vec(),
            b"Content-Type: ;;;===\"\n\n".to_vec(),
            b"Content-Type: text/plain; a=\"unclosed\n\n".to_vec(),
            b"\0\0\0: \0\n\n\0".to_vec(),
        ];
        let mut long = b"Subject: ".to_vec();
        long.resize(3_000_000, b'a');
        long.extend_from_slice(b"\n\nbody");
        cases.push(long);
        let mut boundary = b"Content-Type: multipart/mixed; boundary=".to_vec();
        boundary.resize(20_000, b'b');
        boundary.extend_from_slice(b"\n\n--bbbb\n\nx\n");
        cases.push(boundary);
        let mut deep = Vec::new();
        for i in 0..100 {
            deep.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").as_bytes(),
            );
        }
        deep.extend_from_slice(b"\nleaf\n");
        cases.push(deep);
        let mut messages = Vec::new();
        for _ in 0..100 {
            messages.extend_from_slice(b"Content-Type: message/rfc822\n\n");
        }
        cases.push(messages);
        let mut many = b"Content-Type: multipart/mixed; boundary=p\n\n".to_vec();
        for i in 0..10_000 {
            many.extend_from_slice(format!("--p\n\npart {i}\n").as_bytes());
        }
        many.extend_from_slice(b"--p--\n");
        cases.push(many);
        for m in &cases {
            let s = Structure::scan(&m[..]).unwrap();
            assert!(s.parts.len() <= MAX_PARTS);
            assert!(s.parts.iter().all(|p| p.depth <= MAX_DEPTH && p.header.len() <= MAX_HEADER));
            assert!(s.parts.iter().map(|p| p.header.len()).sum::<usize>() <= MAX_HEADERS_TOTAL);
            assert_eq!(s.size(), crlf(m).len() as u64);
            let mut out = Vec::new();
            s.body_structure(true, &mut out);
            s.envelope(&mut out);
            let depth = out.iter().try_fold(0i64, |d, &b| {
                let d = d + i64::from(b == b'(') - i64::from(b == b')');
                (d >= 0).then_some(d)
            });
            if !out.contains(&b'"') {
                assert_eq!(depth, Some(0));
            }
            for text in [
                "BODY[]",
                "BODY[HEADER]",
                "BODY[TEXT]",
                "BODY[1]",
                "BODY[1.1.1]",
                "BODY[1.MIME]",
                "BODY[1.HEADER.FIELDS (Subject)]",
                "BODY[HEADER.FIELDS.NOT (Content-Type)]",
                "BODY[2.TEXT]",
            ] {
                let _ = literal(fetch(m, text).as_bytes());
            }
        }
        // 10,000 parts: the first MAX_PARTS - 1 kept, the rest is the last one's body
        let s = Structure::scan(&cases.last().unwrap()[..]).unwrap();
        assert_eq!(s.parts.len(), MAX_PARTS);
        assert_eq!(fetch(cases.last().unwrap(), "BODY[5]"), "{6}\r\npart 4");
        assert!(
            literal(fetch(cases.last().unwrap(), "BODY[999]").as_bytes()).ends_with(b"part 9999")
        );
        assert_eq!(fetch(cases.last().unwrap(), "BODY[1000]"), "\"\"");
    }
}
