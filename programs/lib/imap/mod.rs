//! imap: the sans-I/O IMAP4rev1 command reader (RFC 3501, with RFC 9051's relaxations noted
//! below and RFC 7888's LITERAL+), for imapd.
//!
//! Bytes in, a command or "need more" out; the program owns the socket, the timeouts and the
//! replies. Three layers:
//!
//! - [`Reader`]: splits the client's byte stream into commands. A command is one or more
//!   lines joined by literals: a line ending in `{n}` (synchronizing: the reader reports
//!   [`Event::Continue`], the program answers `+ ...` and pushes on) or `{n+}`
//!   (non-synchronizing, RFC 7888: no continuation) is followed by exactly `n` bytes of
//!   literal, then the rest of the command. Everything is bounded while it streams
//!   ([`Limits`]): a line segment, a literal (refused from its announcement alone, before any
//!   of it is stored: [`ErrorKind::LiteralTooBig`]), the whole command, and the nesting of
//!   parentheses. Storage grows only as bytes arrive, so an announced `{2147483648}` followed
//!   by silence allocates nothing.
//! - [`parse()`](parse()): one assembled command to a [`Command`]: tag, name (any case; `UID` is a
//!   prefix) and the arguments as a generic tree of [`Value`]s. Nesting is handled with an
//!   explicit stack (no recursion), at most [`Limits::depth`] deep.
//! - [`command`]: the typed view ([`Request`]) of the commands the server needs first, and
//!   sequence sets ([`SequenceSet`]).
//!
//! Beside them: [`write`](mod@write) (strings as atoms, quoted strings or literals, and message data
//! converted to CRLF with its literal size counted first), [`uidlist`] (a folder's UIDs),
//! [`flags`] (system flags and Maildir info letters), [`folders`] (the Maildir++ namespace),
//! [`message`] (a message's MIME structure and FETCH sections), [`search`] (SEARCH keys) and
//! [`date`] (IMAP's date forms).
//!
//! Decisions:
//!
//! - A line ends at LF; a CR before it is removed. A CR anywhere else, a NUL, or an 8-bit
//!   byte outside a string or literal is a syntax error. Quoted strings take 8-bit bytes as
//!   they come (RFC 9051 allows UTF-8 there; RFC 3501's 7-bit rule would only turn
//!   UTF-8-sending clients away), never NUL, CR or LF. A literal is any bytes, NUL included
//!   (RFC 3501 says CHAR8; APPEND of a real message with a NUL is better stored than refused).
//! - Separators are exactly one space, as RFC 3501 writes them; a trailing space is an error.
//! - Empty lines are ignored (a person at a terminal), not answered.
//! - A refused synchronizing literal is never sent by the client (RFC 3501 7.5), so the
//!   reader starts afresh. A refused non-synchronizing literal is sent anyway (RFC 7888 4):
//!   the reader discards it and the rest of its command, with further `{m+}` literals; the
//!   program may close the connection instead (it should, when the size is `None`).
//! - The command being assembled may hold a password (LOGIN): it is zeroed at the next push,
//!   and [`Command`]'s `Debug` shows no arguments.
//! - Nothing here panics on any input (see the fuzz target `fuzz/fuzz_targets/imap.rs`).
//!
//! The program feeds the bytes after a command's final LF back into [`Reader::push`]; lines
//! that are not commands (IDLE's `DONE`, AUTHENTICATE's responses) are its to read with
//! [`crate::getln::Lines`] from the same remainder.

pub mod command;
pub mod date;
pub mod flags;
pub mod folders;
pub mod message;
pub mod parse;
pub mod search;
#[cfg(test)]
mod tests;
pub mod uidlist;
pub mod write;

pub use command::{Pattern, Request, SeqNumber, SeqRange, SequenceSet, Transfer};
pub use parse::{parse, Command, Value};

use crate::getln::wipe;

/// The longest line segment kept (a command line up to a literal, or after one), without its
/// line end. RFC 7162 asks servers to accept at least 8192 octets.
pub const MAX_LINE: usize = 64 * 1024;

/// The deepest nesting of parentheses and `[...]` sections accepted.
pub const MAX_DEPTH: usize = 64;

/// The bounds a [`Reader`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// bytes in one line segment, without its line end
    pub line: usize,
    /// bytes in one literal
    pub literal: u32,
    /// bytes in one command: its lines (without line ends) and literals
    pub command: usize,
    /// nesting of parentheses and sections
    pub depth: usize,
}

impl Limits {
    /// The defaults with literals of at most `literal` bytes (the program's APPEND limit);
    /// a command may hold one such literal and four lines' worth besides.
    pub fn new(literal: u32) -> Self {
        let literal_bytes = usize::try_from(literal).unwrap_or(usize::MAX);
        Limits {
            line: MAX_LINE,
            literal,
            command: literal_bytes.saturating_add(4 * MAX_LINE),
            depth: MAX_DEPTH,
        }
    }
}

/// What [`Reader::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole command.
    Command(Command),
    /// A synchronizing literal was announced and accepted: send a continuation (`+ Ready`)
    /// and push on. Reported exactly once per such literal.
    Continue,
    /// Answer `BAD` (tagged when the tag could be read: [`Error::response`]); the reader has
    /// already skipped what belongs to the bad command, or will while it streams.
    Error(Error),
}

/// A command the server refuses, with the tag to answer it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// `None`: answer `* BAD` (no valid tag was read)
    pub tag: Option<Vec<u8>>,
    pub kind: ErrorKind,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A line segment over [`Limits::line`], or the command over [`Limits::command`].
    LineTooLong,
    /// A literal announced over [`Limits::literal`] (or over what is left of
    /// [`Limits::command`]); `size` is `None` when it does not fit a u64. A refused
    /// non-synchronizing literal is being skipped ([module docs](self)).
    LiteralTooBig { size: Option<u64>, sync: bool },
    /// The line does not start with a tag and a space.
    BadTag,
    /// Parentheses or sections nested deeper than [`Limits::depth`].
    TooDeep,
    /// Anything else: what was wrong, for the `BAD` text.
    Syntax(&'static str),
}

impl ErrorKind {
    /// The text of the `BAD` reply.
    pub fn text(self) -> &'static str {
        match self {
            ErrorKind::LineTooLong => "[TOOBIG] Command line too long",
            ErrorKind::LiteralTooBig { .. } => "[TOOBIG] Literal too big",
            ErrorKind::BadTag => "Invalid tag",
            ErrorKind::TooDeep => "Too deeply nested",
            ErrorKind::Syntax(why) => why,
        }
    }
}

impl Error {
    /// The whole reply line: `<tag> BAD <text>` or `* BAD <text>`, with CRLF.
    pub fn response(&self) -> Vec<u8> {
        let mut out = self.tag.clone().unwrap_or_else(|| b"*".to_vec());
        out.extend_from_slice(b" BAD ");
        out.extend_from_slice(self.kind.text().as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Where the reader is in the stream.
#[derive(Debug)]
enum State {
    /// collecting a line segment
    Line,
    /// collecting a literal: bytes still to come
    Literal(usize),
    /// discarding a refused command's line; the tail shows a `{n+}` at its end
    SkipLine(Tail),
    /// discarding a refused non-synchronizing literal
    SkipLiteral(u64),
}

/// The last bytes of a line being discarded: enough for `{<20 digits>+}` and a CR.
#[derive(Debug, Default)]
struct Tail(Vec<u8>);

const TAIL: usize = 24;

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(TAIL)..];
        self.0.extend_from_slice(bytes);
        let excess = self.0.len().saturating_sub(TAIL);
        self.0.drain(..excess);
    }
}

/// Splits the client's bytes into commands ([module docs](self)).
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    /// the command so far: its lines without line ends, and its literals
    buf: Vec<u8>,
    /// (start, length) in `buf` of each literal
    literals: Vec<(usize, usize)>,
    /// where the current line segment starts in `buf`
    segment: usize,
    state: State,
    /// a command was handed out: wipe `buf` at the next push
    done: bool,
}

impl Reader {
    pub fn new(limits: Limits) -> Self {
        Reader {
            limits,
            buf: Vec::new(),
            literals: Vec::new(),
            segment: 0,
            state: State::Line,
            done: false,
        }
    }

    /// Consume bytes of `input` until an event or the end of `input`. Returns how many bytes
    /// were consumed and the event; `None` means all of `input` was consumed and more is
    /// needed. After an event the bytes not consumed belong to what follows.
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        if std::mem::take(&mut self.done) {
            self.reset();
        }
        let mut used = 0;
        while used < input.len() {
            let (n, event) = self.step(&input[used..]);
            used += n;
            if event.is_some() {
                return (used, event);
            }
        }
        (used, None)
    }

    /// Bytes of an unfinished command held (for tests and the fuzz target).
    pub fn pending(&self) -> usize {
        if self.done {
            0
        } else {
            self.buf.len()
        }
    }

    /// One state's worth of `input` (not empty).
    fn step(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        match &mut self.state {
            State::Line => self.line(input),
            State::Literal(left) => {
                let n = (*left).min(input.len());
                *left -= n;
                if *left == 0 {
                    self.state = State::Line;
                }
                self.buf.extend_from_slice(&input[..n]);
                self.segment = self.buf.len();
                (n, None)
            }
            State::SkipLiteral(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(input.len());
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::SkipLine(Tail::default());
                }
                (n, None)
            }
            State::SkipLine(tail) => match input.iter().position(|&b| b == b'\n') {
                None => {
                    tail.push(input);
                    (input.len(), None)
                }
                Some(i) => {
                    tail.push(&input[..i]);
                    let tail = std::mem::take(tail);
                    self.state = after_skipped(&tail.0);
                    (i + 1, None)
                }
            },
        }
    }

    /// Collect a line segment; at its end, start a literal or finish the command.
    fn line(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        let (chunk, used, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..i], i + 1, true),
            None => (input, input.len(), false),
        };
        // one byte of slack for the CR before the LF, checked again once it is removed
        let segment = self.buf.len() - self.segment;
        if segment + chunk.len() > self.limits.line.saturating_add(1)
            || self.buf.len() + chunk.len() > self.limits.command.saturating_add(1)
        {
            return (used, Some(self.too_long(chunk, complete)));
        }
        self.buf.extend_from_slice(chunk);
        if !complete {
            return (used, None);
        }
        if self.buf.len() > self.segment && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.len() - self.segment > self.limits.line || self.buf.len() > self.limits.command
        {
            return (used, Some(self.too_long(b"", true)));
        }
        if let Some((size, sync)) = announcement(&self.buf[self.segment..]) {
            return (used, self.literal(size, sync));
        }
        if self.buf.is_empty() {
            return (used, None);
        }
        let event = match parse(&self.buf, &self.literals, self.limits.depth) {
            Ok(command) => Event::Command(command),
            Err(error) => Event::Error(error),
        };
        self.done = true;
        (used, Some(event))
    }

    /// The current line segment, continued by `chunk`, is over a limit: refuse the command
    /// and discard the rest of it.
    fn too_long(&mut self, chunk: &[u8], complete: bool) -> Event {
        let tag = self.head_tag(chunk);
        let mut tail = Tail::default();
        tail.push(&self.buf[self.segment..]);
        tail.push(chunk);
        self.reset();
        self.state = if complete { after_skipped(&tail.0) } else { State::SkipLine(tail) };
        Event::Error(Error { tag, kind: ErrorKind::LineTooLong })
    }

    /// A line segment ended in a literal announcement.
    /// A line segment ended in a literal announcement. It is refused when it is too big, or
    /// when the command has no tag (so no `+` is sent for junk).
    fn literal(&mut self, size: Option<u64>, sync: bool) -> Option<Event> {
        let room = self.limits.command.saturating_sub(self.buf.len());
        let accepted = size
            .filter(|&n| n <= u64::from(self.limits.literal))
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= room);
        let tag = parse::tag_of(&self.buf).map(<[u8]>::to_vec);
        let kind = match accepted {
            Some(n) if tag.is_some() => {
                self.literals.push((self.buf.len(), n));
                self.segment = self.buf.len();
                self.state = if n == 0 { State::Line } else { State::Literal(n) };
                return sync.then_some(Event::Continue);
            }
            Some(_) => ErrorKind::BadTag,
            None => ErrorKind::LiteralTooBig { size, sync },
        };
        self.reset();
        self.state = match size {
            Some(n) if !sync && n > 0 => State::SkipLiteral(n),
            Some(0) if !sync => State::SkipLine(Tail::default()),
            _ => State::Line,
        };
        Some(Event::Error(Error { tag, kind }))
    }

    /// The tag of a line that is too long to keep: from its first bytes.
    fn head_tag(&self, chunk: &[u8]) -> Option<Vec<u8>> {
        const HEAD: usize = 256;
        let mut head = self.buf[..self.buf.len().min(HEAD)].to_vec();
        head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
        parse::tag_of(&head).map(<[u8]>::to_vec)
    }

    /// Forget (and zero) the command being assembled.
    fn reset(&mut self) {
        wipe(&mut self.buf);
        self.buf.clear();
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        }
        self.literals.clear();
        self.segment = 0;
        self.state = State::Line;
    }
}

/// What follows a discarded line: its `{n+}` literal, if it announced one.
fn after_skipped(line: &[u8]) -> State {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match announcement(line) {
        Some((Some(n), false)) if n > 0 => State::SkipLiteral(n),
        Some((Some(_), false)) => State::SkipLine(Tail::default()),
        _ => State::Line,
    }
}

/// A literal announcement at the end of a line: `{n}` (synchronizing) or `{n+}`; the size is
/// `None` when it does not fit a u64.
fn announcement(line: &[u8]) -> Option<(Option<u64>, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let (inner, sync) = match inner.strip_suffix(b"+") {
        Some(inner) => (inner, false),
        None => (inner, true),
    };
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size =
        digits.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    Some((size, sync))
}
