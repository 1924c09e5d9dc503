//! imapd's FETCH and SEARCH (RFC 3501 6.4.4, 6.4.5, 7.4.2): the items asked for, each
//! message's file opened only when an item needs it, bodies streamed to the client with
//! their literal counted after the LF to CRLF conversion ([`qmail::imap::message`]).

use crate::io::{Io, IoError};
use crate::mailbox::Mailbox;
use qmail::imap::flags::Flags;
use qmail::imap::message::{self, Section, SectionText, Structure};
use qmail::imap::search::{Candidate, Context, Search};
use qmail::imap::write::CrlfCount;
use qmail::imap::{SequenceSet, Value};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;

/// How a FETCH ended.
pub enum Outcome {
    Done,
    /// the items were not understood
    Bad(&'static str),
    /// some messages had vanished (RFC 5530 EXPUNGEISSUED)
    Expunged,
}

/// What a BODY[...]-like item is called in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Body,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    Section { section: Section, partial: Option<(u32, u32)>, peek: bool, named: Named },
}

impl Item {
    /// Whether the MIME structure is needed: not for the whole message (its size and its
    /// bytes are had without it).
    fn needs_structure(&self) -> bool {
        match self {
            Item::Envelope | Item::Body | Item::BodyStructure => true,
            Item::Section { .. } => !self.is_whole(),
            _ => false,
        }
    }

    /// `BODY[]`, `RFC822`: the whole message, no partial.
    fn is_whole(&self) -> bool {
        matches!(self, Item::Section { section, partial: None, .. }
            if section.part.is_empty() && section.text == SectionText::Full)
    }
}

fn parse_items(items: &[Value]) -> Result<Vec<Item>, &'static str> {
    // one item alone, or several in parentheses
    let list: &[Value] = match items {
        [Value::List(l)] => l,
        [_] => items,
        _ => return Err("Fetch items must be in parentheses"),
    };
    if list.is_empty() {
        return Err("No fetch items");
    }
    let mut out = Vec::new();
    for v in list {
        match v {
            Value::Atom(a) => {
                let a = a.to_ascii_uppercase();
                match &a[..] {
                    b"ALL" | b"FAST" | b"FULL" => {
                        out.extend([Item::Flags, Item::InternalDate, Item::Size]);
                        if a != b"FAST" {
                            out.push(Item::Envelope);
                        }
                        if a == b"FULL" {
                            out.push(Item::Body);
                        }
                    }
                    b"UID" => out.push(Item::Uid),
                    b"FLAGS" => out.push(Item::Flags),
                    b"INTERNALDATE" => out.push(Item::InternalDate),
                    b"RFC822.SIZE" => out.push(Item::Size),
                    b"ENVELOPE" => out.push(Item::Envelope),
                    b"BODY" => out.push(Item::Body),
                    b"BODYSTRUCTURE" => out.push(Item::BodyStructure),
                    b"RFC822" => out.push(whole(Section::RFC822, false, Named::Rfc822)),
                    b"RFC822.HEADER" => {
                        out.push(whole(Section::RFC822_HEADER, true, Named::Rfc822Header))
                    }
                    b"RFC822.TEXT" => {
                        out.push(whole(Section::RFC822_TEXT, false, Named::Rfc822Text))
                    }
                    _ => return Err("Unknown fetch item"),
                }
            }
            Value::Section { name, section, partial } => {
                let peek = match &name.to_ascii_uppercase()[..] {
                    b"BODY" => false,
                    b"BODY.PEEK" => true,
                    _ => return Err("Unknown fetch item"),
                };
                let section = Section::parse(section).map_err(|_| "Invalid section")?;
                out.push(Item::Section { section, partial: *partial, peek, named: Named::Body });
            }
            _ => return Err("Invalid fetch item"),
        }
    }
    Ok(out)
}

fn whole(section: Section, peek: bool, named: Named) -> Item {
    Item::Section { section, partial: None, peek, named }
}

/// FETCH / UID FETCH of `set` with `items`, streamed to `io`.
pub fn fetch(
    io: &mut Io,
    mb: &mut Mailbox,
    set: &SequenceSet,
    uid: bool,
    items: &[Value],
) -> Result<Outcome, IoError> {
    let mut items = match parse_items(items) {
        Ok(items) => items,
        Err(why) => return Ok(Outcome::Bad(why)),
    };
    if uid && !items.iter().any(|i| matches!(i, Item::Uid)) {
        items.insert(0, Item::Uid);
    }
    let sets_seen =
        !mb.read_only && items.iter().any(|i| matches!(i, Item::Section { peek: false, .. }));
    let has_flags = items.iter().any(|i| matches!(i, Item::Flags));
    let needs_structure = items.iter().any(Item::needs_structure);
    let needs_file =
        needs_structure || items.iter().any(|i| matches!(i, Item::Size) || i.is_whole());
    let needs_meta = items.iter().any(|i| matches!(i, Item::InternalDate));
    let mut vanished = false;
    let mut out: Vec<u8> = Vec::with_capacity(256);
    for i in mb.select(set, uid) {
        if mb.msgs[i].gone {
            vanished = true;
            continue;
        }
        let mut file = None;
        let whole = items.iter().any(Item::is_whole);
        if needs_file && (needs_structure || whole || mb.msgs[i].size.is_none()) || needs_meta {
            match mb.open_msg(i) {
                Ok(f) => file = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = true;
                    continue;
                }
                Err(e) => {
                    qmail::log::line(format_args!("imapd: FETCH: {}: {e}", mb.msgs[i].path));
                    vanished = true;
                    continue;
                }
            }
        }
        let structure = match (&mut file, needs_structure) {
            (Some(f), true) => match Structure::scan(&mut *f) {
                Ok(s) => Some(s),
                Err(e) => {
                    qmail::log::line(format_args!("imapd: FETCH: {}: {e}", mb.msgs[i].path));
                    vanished = true;
                    continue;
                }
            },
            _ => None,
        };
        if let Some(s) = &structure {
            mb.msgs[i].size = Some(s.size());
        }
        let mut flags_changed = false;
        if sets_seen && !mb.msgs[i].flags.contains(Flags::SEEN) {
            let flags = mb.msgs[i].flags.union(Flags::SEEN);
            if let Ok(true) = mb.set_flags(i, flags) {
                flags_changed = true;
            }
        }
        out.clear();
        out.extend_from_slice(b"* ");
        number(i as u64 + 1, &mut out);
        out.extend_from_slice(b" FETCH (");
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::replace(&mut first, false) {
                out.push(b' ');
            }
        };
        for item in &items {
            sep(&mut out);
            let m = &mb.msgs[i];
            match item {
                Item::Uid => {
                    out.extend_from_slice(b"UID ");
                    number(u64::from(m.uid), &mut out);
                }
                Item::Flags => {
                    out.extend_from_slice(b"FLAGS ");
                    m.flags().write(&mut out);
                }
                Item::InternalDate => {
                    let mtime =
                        file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.mtime());
                    out.extend_from_slice(b"INTERNALDATE ");
                    qmail::imap::date::write_date_time(mtime, &mut out);
                }
                Item::Size => {
                    let size = match (m.size, &mut file) {
                        (Some(n), _) => n,
                        (None, Some(f)) => crlf_size(f).unwrap_or_default(),
                        (None, None) => 0,
                    };
                    mb.msgs[i].size = Some(size);
                    out.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes());
                }
                Item::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    structure.as_ref().expect("scanned").envelope(&mut out);
                }
                Item::Body => {
                    out.extend_from_slice(b"BODY ");
                    structure.as_ref().expect("scanned").body_structure(false, &mut out);
                }
                Item::BodyStructure => {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    structure.as_ref().expect("scanned").body_structure(true, &mut out);
                }
                Item::Section { section, partial, named, .. } => {
                    match named {
                        Named::Body => section.write_name(partial.map(|p| p.0), &mut out),
                        Named::Rfc822 => out.extend_from_slice(b"RFC822"),
                        Named::Rfc822Header => out.extend_from_slice(b"RFC822.HEADER"),
                        Named::Rfc822Text => out.extend_from_slice(b"RFC822.TEXT"),
                    }
                    out.push(b' ');
                    io.send(&out)?;
                    out.clear();
                    let f = file.as_mut().expect("opened");
                    let sent = match &structure {
                        Some(s) => message::write_section(s, f, section, *partial, &mut *io),
                        None => {
                            let size = match mb.msgs[i].size {
                                Some(n) => Ok(n),
                                None => crlf_size(f),
                            };
                            size.and_then(|n| {
                                mb.msgs[i].size = Some(n);
                                write_whole(f, n, io)
                            })
                        }
                    };
                    if let Err(e) = sent {
                        qmail::log::line(format_args!("imapd: FETCH: {e}"));
                        return Err(IoError::Broken);
                    }
                }
            }
        }
        if flags_changed && !has_flags {
            sep(&mut out);
            out.extend_from_slice(b"FLAGS ");
            mb.msgs[i].flags().write(&mut out);
        }
        out.extend_from_slice(b")\r\n");
        io.send(&out)?;
    }
    Ok(if vanished { Outcome::Expunged } else { Outcome::Done })
}

/// `n` in decimal, without the formatting machinery (FETCH writes one line per message).
fn number(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The whole message in `f` as a literal of `size` octets (its size after the conversion,
/// found before): streamed, converted to CRLF. A file that changed size since is an error
/// (the literal's count has gone out: the caller drops the connection).
fn write_whole(f: &mut File, size: u64, io: &mut Io) -> io::Result<()> {
    let mut head = Vec::new();
    qmail::imap::write::literal_header(size, &mut head);
    let broken = |_| io::Error::from(io::ErrorKind::BrokenPipe);
    io.send(&head).map_err(broken)?;
    f.rewind()?;
    let mut crlf = qmail::imap::write::Crlf::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(80 * 1024);
    let mut sent = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.clear();
        crlf.convert(&buf[..n], &mut out);
        sent += out.len() as u64;
        if sent > size {
            return Err(io::Error::other("message file grew"));
        }
        io.send(&out).map_err(broken)?;
    }
    if sent != size {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "message file shrank"));
    }
    Ok(())
}

/// RFC822.SIZE of a file not scanned: its octets after the LF to CRLF conversion.
fn crlf_size(f: &mut File) -> io::Result<u64> {
    f.rewind()?;
    let mut count = CrlfCount::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        count.add(&buf[..n]);
    }
    f.rewind()?;
    Ok(count.total())
}

/// One message as SEARCH sees it.
struct Cand<'m> {
    mb: &'m mut Mailbox,
    i: usize,
    file: Option<File>,
    /// the header as stored, and where the body starts
    header: Option<(Vec<u8>, u64)>,
}

impl Cand<'_> {
    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            self.file = Some(self.mb.open_msg(self.i)?);
        }
        Ok(self.file.as_mut().expect("opened"))
    }
}

impl Candidate for Cand<'_> {
    fn seq(&self) -> u32 {
        self.i as u32 + 1
    }

    fn uid(&self) -> u32 {
        self.mb.msgs[self.i].uid
    }

    fn flags(&self) -> Flags {
        self.mb.msgs[self.i].flags()
    }

    fn internal_date(&self) -> i64 {
        std::fs::metadata(self.mb.dir.join(&self.mb.msgs[self.i].path)).map_or(0, |m| m.mtime())
    }

    fn size(&mut self) -> io::Result<u64> {
        if let Some(n) = self.mb.msgs[self.i].size {
            return Ok(n);
        }
        let n = crlf_size(self.file()?)?;
        self.mb.msgs[self.i].size = Some(n);
        Ok(n)
    }

    fn header(&mut self) -> io::Result<&[u8]> {
        if self.header.is_none() {
            let f = self.file()?;
            self.header = Some(read_header(f)?);
        }
        Ok(self.header.as_ref().map_or(&[][..], |(h, _)| h))
    }

    fn text(&mut self, each: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        self.header()?;
        let body = self.header.as_ref().map_or(0, |(_, at)| *at);
        let f = self.file()?;
        f.seek(io::SeekFrom::Start(body))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 || !each(&buf[..n]) {
                return Ok(());
            }
        }
    }
}

/// The most header bytes SEARCH looks at.
const HEADER_MAX: usize = 256 * 1024;

/// The header of the message in `f` (up to the empty line, at most [`HEADER_MAX`] bytes),
/// and where its body starts.
fn read_header(f: &mut File) -> io::Result<(Vec<u8>, u64)> {
    f.rewind()?;
    let mut header = Vec::new();
    let mut buf = [0u8; 8192];
    let mut at_line_start = true;
    let mut offset = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((header, offset));
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            offset += 1;
            if b == b'\n' && at_line_start {
                return Ok((header, offset));
            }
            if b == b'\r' && at_line_start {
                offset -= 1;
                let _ = k;
                offset += 1;
                continue;
            }
            at_line_start = b == b'\n';
            if header.len() < HEADER_MAX {
                header.push(b);
            }
        }
    }
}

/// SEARCH / UID SEARCH: the sequence numbers or UIDs that match.
pub fn search(mb: &mut Mailbox, search: &Search, uid: bool) -> io::Result<Vec<u32>> {
    let ctx = Context {
        last_seq: mb.msgs.len() as u32,
        last_uid: mb.msgs.last().map_or(0, |m| m.uid),
        now: qmail::date822::unix_now(),
    };
    let mut found = Vec::new();
    for i in 0..mb.msgs.len() {
        if mb.msgs[i].gone {
            continue;
        }
        let number = if uid { mb.msgs[i].uid } else { i as u32 + 1 };
        let mut cand = Cand { mb, i, file: None, header: None };
        match search.matches(&mut cand, &ctx) {
            Ok(true) => found.push(number),
            Ok(false) => {}
            // a message that vanished matches nothing
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}
