//! imap::search: SEARCH and UID SEARCH (RFC 3501 6.4.4 and 7.2.5): the search keys read from
//! the command's argument tree into a [`Search`], a [`Search`] tried on one message at a time
//! through the [`Candidate`] trait, and the `* SEARCH` reply ([`write_result`]).
//!
//! Sans-I/O like the rest of [`crate::imap`]: the program walks the selected mailbox, wraps
//! each message in a [`Candidate`] that opens its file only when asked (and caches what it
//! read), and collects the numbers (sequence numbers, or UIDs for UID SEARCH) of those that
//! match. [`Search::needs_header`] and [`Search::needs_body`] tell it ahead of time whether
//! any file will be read at all.
//!
//! The keys: ALL, ANSWERED, BCC, BEFORE, BODY, CC, DELETED, DRAFT, FLAGGED, FROM, HEADER,
//! KEYWORD, LARGER, NEW, NOT, OLD, ON, OR, RECENT, SEEN, SENTBEFORE, SENTON, SENTSINCE,
//! SINCE, SMALLER, SUBJECT, TEXT, TO, UID, UNANSWERED, UNDELETED, UNDRAFT, UNFLAGGED,
//! UNKEYWORD, UNSEEN, a sequence set, and a parenthesised list of keys; also RFC 5032's
//! OLDER and YOUNGER (WITHIN), cheap to have, to be advertised only by choice. Names in any
//! case. Decisions:
//!
//! - `CHARSET` may come first: `US-ASCII` and `UTF-8` (any case) are accepted, anything else
//!   is [`SearchError::BadCharset`] (`NO [BADCHARSET (UTF-8 US-ASCII)]`). Search strings are
//!   bytes: compared with ASCII case folding, other bytes (UTF-8) as they are. No
//!   normalisation and no decoding of RFC 2047 encoded words or of base64 and
//!   quoted-printable bodies: a string matches what is stored.
//! - String keys match substrings. Header keys (BCC, CC, FROM, SUBJECT, TO, HEADER) look at
//!   every occurrence of the field in the top-level header, each unfolded (RFC 5322 2.2.3:
//!   a line end before white space removed); an empty string matches every message that has
//!   the field at all. BODY looks at the bytes after the header, streamed, so a match may
//!   straddle two chunks. TEXT is the header as stored (folded), or the body.
//! - Keywords are not supported (the flags are the system flags only): KEYWORD matches no
//!   message, UNKEYWORD every one.
//! - BEFORE, ON and SINCE compare the day of the internal date in UTC (the zone
//!   [`super::date::write_date_time`] gives FETCH INTERNALDATE). SENTBEFORE, SENTON and SENTSINCE compare the day of the first
//!   Date: header in the sender's own zone ([`super::date::parse_rfc5322`]); a message with
//!   no Date: header, or one that does not parse, matches none of them (so `NOT SENTON d`
//!   matches it).
//! - LARGER and SMALLER take numbers up to 2^63 - 1 (RFC 9051's number64), compared with
//!   RFC822.SIZE (the size with CRLF line ends).
//! - `*` in a sequence set is the number of messages, in a UID set the largest UID in the
//!   mailbox ([`Context`]); `4:*` with 3 messages is `3:4` (RFC 3501 6.4.8's reading).
//!
//! Bounds: a search has at most [`MAX_KEYS`] keys (each NOT, OR and list counted) nested at
//! most [`MAX_DEPTH`] deep (parentheses, and the operands of NOT and OR, so `NOT NOT ...` and
//! a left-nested chain `OR OR OR a b c d` count), and strings of at most [`MAX_STRING`]
//! bytes. Nothing recurses: the parser and the evaluator keep explicit stacks, so the bounds
//! cap the work per message, not the program's stack. The keys of a list (and the two of an
//! OR) are tried cheapest first (flags, numbers and dates, then the size, then the header,
//! then the body) and stop at the first that decides: `UNSEEN BODY x` reads no seen
//! message's body.

use std::io;

use super::command::SequenceSet;
use super::date::{self, Day};
use super::flags::Flags;
use super::parse::Value;

/// The most keys in one search (each NOT, OR and parenthesised list counted).
pub const MAX_KEYS: usize = 1000;

/// The deepest nesting of lists and NOT and OR operands in one search.
pub const MAX_DEPTH: usize = 250;

/// The longest search string, in bytes.
pub const MAX_STRING: usize = 64 * 1024;

/// Why a search was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchError {
    /// A charset other than US-ASCII and UTF-8: answer
    /// `<tag> NO [BADCHARSET (UTF-8 US-ASCII)] ...`.
    BadCharset,
    /// Anything else: answer `<tag> BAD <text>`.
    Syntax(&'static str),
}

impl SearchError {
    /// The whole tagged reply, with CRLF.
    pub fn response(&self, tag: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        match self {
            SearchError::BadCharset => {
                out.extend_from_slice(b" NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
            }
            SearchError::Syntax(why) => {
                out.extend_from_slice(b" BAD ");
                out.extend_from_slice(why.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// The mailbox a search runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// the number of messages (`*` in a sequence set)
    pub last_seq: u32,
    /// the largest UID in the mailbox, 0 when it is empty (`*` in a UID set)
    pub last_uid: u32,
    /// seconds since the epoch now (OLDER, YOUNGER)
    pub now: i64,
}

/// One message as a search sees it. The I/O methods are called only for the keys that need
/// them, possibly more than once per message: an implementation reads lazily and caches.
pub trait Candidate {
    /// its sequence number
    fn seq(&self) -> u32;
    fn uid(&self) -> u32;
    /// its flags, `\Recent` included when it is recent in this session
    fn flags(&self) -> Flags;
    /// its internal date, seconds since the epoch
    fn internal_date(&self) -> i64;
    /// RFC822.SIZE: its size in octets with CRLF line ends
    fn size(&mut self) -> io::Result<u64>;
    /// the top-level header as stored (LF or CRLF line ends; the empty line that ends it
    /// may be left on or off); the program bounds it (a longer header may be cut)
    fn header(&mut self) -> io::Result<&[u8]>;
    /// Streams the body (the bytes after the header's empty line) to `f` in chunks of any
    /// size, until the end or until `f` returns `false` (it has seen enough).
    fn text(&mut self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()>;
}

/// A parsed search: a tree of keys, stored flat (children before their parents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    nodes: Vec<Node>,
    root: usize,
    header: bool,
    body: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Key(Key),
    Not(usize),
    Or(usize, usize),
    /// at least two
    And(Vec<usize>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// ALL, KEYWORD (false), UNKEYWORD (true)
    Const(bool),
    /// the flags in `set` are all set and those in `clear` all clear
    Flags {
        set: Flags,
        clear: Flags,
    },
    Seq(SequenceSet),
    Uid(SequenceSet),
    Larger(u64),
    Smaller(u64),
    Internal(Cmp, Day),
    Sent(Cmp, Day),
    /// internal date more than this many seconds ago
    Older(u64),
    /// internal date at most this many seconds ago
    Younger(u64),
    Header {
        field: Vec<u8>,
        needle: Needle,
    },
    Body(Needle),
    Text(Needle),
}

/// BEFORE, ON, SINCE: the message's day against the key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Before,
    On,
    Since,
}

impl Search {
    /// The keys of a SEARCH command (`CHARSET x` first, optionally).
    pub fn parse(keys: &[Value]) -> Result<Search, SearchError> {
        let keys = without_charset(keys)?;
        if keys.is_empty() {
            return Err(SearchError::Syntax("Search key expected"));
        }
        let mut builder = Builder::default();
        let root = builder.build(keys)?;
        let Builder { nodes, header, body, .. } = builder;
        Ok(Search { nodes, root, header, body })
    }

    /// Whether a key needs the message's header (header keys, SENT*, TEXT).
    pub fn needs_header(&self) -> bool {
        self.header
    }

    /// Whether a key needs the message's body (BODY, TEXT).
    pub fn needs_body(&self) -> bool {
        self.body
    }

    /// Whether message `m` matches. An I/O error is the program's to handle (a message
    /// deleted under us, say).
    pub fn matches(&self, m: &mut dyn Candidate, ctx: &Context) -> io::Result<bool> {
        // (node, how many of its children have been tried); `last` is the value of the node
        // finished last
        let mut stack: Vec<(usize, usize)> = vec![(self.root, 0)];
        let mut last = false;
        while let Some((node, step)) = stack.last_mut() {
            let node = *node;
            let next = match &self.nodes[node] {
                Node::Key(key) => {
                    last = key.matches(m, ctx)?;
                    None
                }
                Node::Not(child) => match *step {
                    0 => Some(*child),
                    _ => {
                        last = !last;
                        None
                    }
                },
                Node::Or(a, b) => match *step {
                    0 => Some(*a),
                    1 if !last => Some(*b),
                    _ => None,
                },
                Node::And(children) => match children.get(*step) {
                    Some(&child) if *step == 0 || last => Some(child),
                    _ => None,
                },
            };
            match next {
                Some(child) => {
                    *step += 1;
                    stack.push((child, 0));
                }
                None => {
                    stack.pop();
                }
            }
        }
        Ok(last)
    }
}

/// `* SEARCH 2 5 7` with CRLF (`* SEARCH` alone when nothing matched).
pub fn write_result(numbers: &[u32], out: &mut Vec<u8>) {
    out.extend_from_slice(b"* SEARCH");
    for &n in numbers {
        out.push(b' ');
        write_number(n, out);
    }
    out.extend_from_slice(b"\r\n");
}

fn write_number(n: u32, out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The keys after `CHARSET x`, if they start with it.
fn without_charset(keys: &[Value]) -> Result<&[Value], SearchError> {
    match keys {
        [Value::Atom(word), rest @ ..] if word.eq_ignore_ascii_case(b"CHARSET") => {
            let [charset, rest @ ..] = rest else {
                return Err(SearchError::Syntax("Charset expected"));
            };
            let name = charset.astring().ok_or(SearchError::Syntax("Charset expected"))?;
            if name.eq_ignore_ascii_case(b"UTF-8") || name.eq_ignore_ascii_case(b"US-ASCII") {
                Ok(rest)
            } else {
                Err(SearchError::BadCharset)
            }
        }
        _ => Ok(keys),
    }
}

/// What a key costs to try, cheapest first: flags, numbers, dates; the size; the header;
/// the body.
type Cost = u8;

/// A search being read, with an explicit stack.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    costs: Vec<Cost>,
    header: bool,
    body: bool,
}

/// A list or operator still open while reading.
enum Frame<'a> {
    /// a parenthesised list or the top level: the values not yet read, the keys read
    List { rest: &'a [Value], keys: Vec<usize> },
    /// NOT (`or` false, one operand) or OR (two) and the operands read
    Op { or: bool, keys: Vec<usize> },
}

impl<'a> Builder {
    /// The root of the search `values` hold (not empty).
    fn build(&mut self, values: &'a [Value]) -> Result<usize, SearchError> {
        let mut stack = vec![Frame::List { rest: values, keys: Vec::new() }];
        loop {
            let complete = match stack.last() {
                Some(Frame::List { rest, .. }) => rest.is_empty(),
                Some(Frame::Op { or, keys }) => keys.len() == if *or { 2 } else { 1 },
                None => return Err(SearchError::Syntax("Search key expected")),
            };
            if complete {
                let node = match stack.pop() {
                    Some(Frame::List { keys, .. }) => self.and(keys)?,
                    Some(Frame::Op { or: true, keys }) => self.or(keys[0], keys[1])?,
                    Some(Frame::Op { or: false, keys }) => {
                        let cost = self.costs[keys[0]];
                        self.push(Node::Not(keys[0]), cost)?
                    }
                    None => return Err(SearchError::Syntax("Search key expected")),
                };
                match stack.last_mut() {
                    None => return Ok(node),
                    Some(Frame::List { keys, .. } | Frame::Op { keys, .. }) => keys.push(node),
                }
                continue;
            }
            // the next key comes from the innermost list
            let Some(rest) = stack.iter_mut().rev().find_map(|frame| match frame {
                Frame::List { rest, .. } => Some(rest),
                Frame::Op { .. } => None,
            }) else {
                return Err(SearchError::Syntax("Search key expected"));
            };
            let values: &'a [Value] = rest;
            let Some((value, tail)) = values.split_first() else {
                return Err(SearchError::Syntax("Missing operand of NOT or OR"));
            };
            *rest = tail;
            let frame = match value {
                Value::List(items) => Some(Frame::List { rest: items, keys: Vec::new() }),
                Value::Atom(word) if word.eq_ignore_ascii_case(b"NOT") => {
                    Some(Frame::Op { or: false, keys: Vec::new() })
                }
                Value::Atom(word) if word.eq_ignore_ascii_case(b"OR") => {
                    Some(Frame::Op { or: true, keys: Vec::new() })
                }
                Value::Atom(word) => {
                    let key = read_key(word, rest)?;
                    let node = self.key(key)?;
                    match stack.last_mut() {
                        Some(Frame::List { keys, .. } | Frame::Op { keys, .. }) => keys.push(node),
                        None => return Err(SearchError::Syntax("Search key expected")),
                    }
                    None
                }
                _ => return Err(SearchError::Syntax("Search key expected")),
            };
            if let Some(frame) = frame {
                if stack.len() >= MAX_DEPTH {
                    return Err(SearchError::Syntax("Search keys nested too deeply"));
                }
                stack.push(frame);
            }
        }
    }

    fn push(&mut self, node: Node, cost: Cost) -> Result<usize, SearchError> {
        if self.nodes.len() >= MAX_KEYS {
            return Err(SearchError::Syntax("Too many search keys"));
        }
        self.nodes.push(node);
        self.costs.push(cost);
        Ok(self.nodes.len() - 1)
    }

    fn key(&mut self, key: Key) -> Result<usize, SearchError> {
        let cost = match &key {
            Key::Larger(_) | Key::Smaller(_) => 1,
            Key::Header { .. } | Key::Sent(..) => 2,
            Key::Body(_) | Key::Text(_) => 3,
            _ => 0,
        };
        self.header |= matches!(key, Key::Header { .. } | Key::Sent(..) | Key::Text(_));
        self.body |= matches!(key, Key::Body(_) | Key::Text(_));
        self.push(Node::Key(key), cost)
    }

    /// The keys of a list, cheapest first; one alone stands for itself.
    fn and(&mut self, mut keys: Vec<usize>) -> Result<usize, SearchError> {
        match keys.len() {
            0 => Err(SearchError::Syntax("Empty list of search keys")),
            1 => Ok(keys[0]),
            _ => {
                keys.sort_by_key(|&k| self.costs[k]);
                let cost = keys.iter().map(|&k| self.costs[k]).max().unwrap_or(0);
                self.push(Node::And(keys), cost)
            }
        }
    }

    /// OR, the cheaper operand first.
    fn or(&mut self, a: usize, b: usize) -> Result<usize, SearchError> {
        let (a, b) = if self.costs[b] < self.costs[a] { (b, a) } else { (a, b) };
        let cost = self.costs[a].max(self.costs[b]);
        self.push(Node::Or(a, b), cost)
    }
}

/// The key named `word` (not NOT or OR), taking its arguments from `rest`.
fn read_key(word: &[u8], rest: &mut &[Value]) -> Result<Key, SearchError> {
    let flag = |set: Flags| Ok(Key::Flags { set, clear: Flags::empty() });
    let unflag = |clear: Flags| Ok(Key::Flags { set: Flags::empty(), clear });
    let name = word.to_ascii_uppercase();
    match &name[..] {
        b"ALL" => Ok(Key::Const(true)),
        b"ANSWERED" => flag(Flags::ANSWERED),
        b"DELETED" => flag(Flags::DELETED),
        b"DRAFT" => flag(Flags::DRAFT),
        b"FLAGGED" => flag(Flags::FLAGGED),
        b"RECENT" => flag(Flags::RECENT),
        b"SEEN" => flag(Flags::SEEN),
        b"UNANSWERED" => unflag(Flags::ANSWERED),
        b"UNDELETED" => unflag(Flags::DELETED),
        b"UNDRAFT" => unflag(Flags::DRAFT),
        b"UNFLAGGED" => unflag(Flags::FLAGGED),
        b"UNSEEN" => unflag(Flags::SEEN),
        b"OLD" => unflag(Flags::RECENT),
        b"NEW" => Ok(Key::Flags { set: Flags::RECENT, clear: Flags::SEEN }),
        b"KEYWORD" | b"UNKEYWORD" => {
            astring(take(rest)?)?;
            Ok(Key::Const(name == b"UNKEYWORD"))
        }
        b"BCC" | b"CC" | b"FROM" | b"SUBJECT" | b"TO" => {
            let field = word.to_vec();
            Ok(Key::Header { field, needle: Needle::new(astring(take(rest)?)?)? })
        }
        b"HEADER" => {
            let field = astring(take(rest)?)?.to_vec();
            Ok(Key::Header { field, needle: Needle::new(astring(take(rest)?)?)? })
        }
        b"BODY" => Ok(Key::Body(Needle::new(astring(take(rest)?)?)?)),
        b"TEXT" => Ok(Key::Text(Needle::new(astring(take(rest)?)?)?)),
        b"BEFORE" => Ok(Key::Internal(Cmp::Before, search_date(take(rest)?)?)),
        b"ON" => Ok(Key::Internal(Cmp::On, search_date(take(rest)?)?)),
        b"SINCE" => Ok(Key::Internal(Cmp::Since, search_date(take(rest)?)?)),
        b"SENTBEFORE" => Ok(Key::Sent(Cmp::Before, search_date(take(rest)?)?)),
        b"SENTON" => Ok(Key::Sent(Cmp::On, search_date(take(rest)?)?)),
        b"SENTSINCE" => Ok(Key::Sent(Cmp::Since, search_date(take(rest)?)?)),
        b"LARGER" => Ok(Key::Larger(number64(take(rest)?)?)),
        b"SMALLER" => Ok(Key::Smaller(number64(take(rest)?)?)),
        b"OLDER" => Ok(Key::Older(interval(take(rest)?)?)),
        b"YOUNGER" => Ok(Key::Younger(interval(take(rest)?)?)),
        b"UID" => match take(rest)? {
            Value::Atom(set) => SequenceSet::parse(set)
                .map(Key::Uid)
                .map_err(|_| SearchError::Syntax("Invalid UID set")),
            _ => Err(SearchError::Syntax("UID set expected")),
        },
        _ => match SequenceSet::parse(word) {
            Ok(set) => Ok(Key::Seq(set)),
            Err(_) if word.first().is_some_and(|b| b.is_ascii_digit() || *b == b'*') => {
                Err(SearchError::Syntax("Invalid sequence set"))
            }
            Err(_) => Err(SearchError::Syntax("Unknown search key")),
        },
    }
}

fn take<'a>(rest: &mut &'a [Value]) -> Result<&'a Value, SearchError> {
    let (first, tail) = rest.split_first().ok_or(SearchError::Syntax("Missing argument"))?;
    *rest = tail;
    Ok(first)
}

fn astring(value: &Value) -> Result<&[u8], SearchError> {
    value.astring().ok_or(SearchError::Syntax("String expected"))
}

/// A `date`: an atom or a quoted string.
fn search_date(value: &Value) -> Result<Day, SearchError> {
    match value {
        Value::Atom(text) | Value::Quoted(text) => date::parse_search_date(text),
        _ => None,
    }
    .ok_or(SearchError::Syntax("Invalid date"))
}

/// A `number64` (RFC 9051): digits, at most 2^63 - 1.
fn number64(value: &Value) -> Result<u64, SearchError> {
    let invalid = SearchError::Syntax("Invalid number");
    let Value::Atom(digits) = value else { return Err(invalid) };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or(invalid)
}

/// RFC 5032's interval: a number of seconds, not zero.
fn interval(value: &Value) -> Result<u64, SearchError> {
    match number64(value)? {
        0 => Err(SearchError::Syntax("Invalid interval")),
        n => Ok(n),
    }
}

impl Key {
    fn matches(&self, m: &mut dyn Candidate, ctx: &Context) -> io::Result<bool> {
        Ok(match self {
            Key::Const(yes) => *yes,
            Key::Flags { set, clear } => {
                let flags = m.flags();
                flags.contains(*set) && clear.minus(flags) == *clear
            }
            Key::Seq(set) => set.contains(m.seq(), ctx.last_seq),
            Key::Uid(set) => set.contains(m.uid(), ctx.last_uid),
            Key::Larger(n) => m.size()? > *n,
            Key::Smaller(n) => m.size()? < *n,
            Key::Internal(cmp, day) => cmp.holds(Day::of_unix(m.internal_date()), *day),
            Key::Sent(cmp, day) => sent_day(m.header()?).is_some_and(|d| cmp.holds(d, *day)),
            Key::Older(secs) => age(m, ctx) > i128::from(*secs),
            Key::Younger(secs) => age(m, ctx) <= i128::from(*secs),
            Key::Header { field, needle } => header_contains(m.header()?, field, needle),
            Key::Body(needle) => body_contains(m, needle)?,
            Key::Text(needle) => needle.feed(&mut 0, m.header()?) || body_contains(m, needle)?,
        })
    }
}

impl Cmp {
    fn holds(self, day: Day, key: Day) -> bool {
        match self {
            Cmp::Before => day < key,
            Cmp::On => day == key,
            Cmp::Since => day >= key,
        }
    }
}

/// Seconds since the message's internal date (negative if it is in the future).
fn age(m: &dyn Candidate, ctx: &Context) -> i128 {
    i128::from(ctx.now) - i128::from(m.internal_date())
}

/// The day of the first Date: field, in its own zone.
fn sent_day(header: &[u8]) -> Option<Day> {
    let mut value = Vec::new();
    let mut seen = false;
    each_field(header, b"Date", |start, piece| {
        if start && seen {
            return true;
        }
        seen = true;
        let room = (date::MAX_DATE + 1).saturating_sub(value.len());
        value.extend_from_slice(&piece[..piece.len().min(room)]);
        false
    });
    let (epoch, offset) = date::parse_rfc5322(&value)?;
    Some(Day::of_unix(epoch + i64::from(offset) * 60))
}

/// Whether a field named `field` holds `needle` in its unfolded value (any field of that
/// name, for an empty needle).
fn header_contains(header: &[u8], field: &[u8], needle: &Needle) -> bool {
    let mut state = 0;
    each_field(header, field, |start, piece| {
        if start {
            state = 0;
        }
        needle.feed(&mut state, piece)
    })
}

/// Whether the body holds `needle`, read only as far as the first match.
fn body_contains(m: &mut dyn Candidate, needle: &Needle) -> io::Result<bool> {
    if needle.is_empty() {
        return Ok(true);
    }
    let mut state = 0;
    let mut found = false;
    m.text(&mut |chunk| {
        found = needle.feed(&mut state, chunk);
        !found
    })?;
    Ok(found)
}

/// Calls `f(start, piece)` with the pieces of each field of `header` named `name` (any
/// case): the text after the colon (`start` true), then each continuation line whole, its
/// leading white space kept and its line end gone, so that a field's pieces joined are its
/// unfolded value. Stops when `f` returns true, and returns whether it did. The header ends
/// at its end or at an empty line.
fn each_field(header: &[u8], name: &[u8], mut f: impl FnMut(bool, &[u8]) -> bool) -> bool {
    let mut inside = false;
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            None => break,
            Some(b' ' | b'\t') => {
                if inside && f(false, line) {
                    return true;
                }
            }
            Some(_) => {
                inside = false;
                let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
                let field = &line[..colon];
                let field = field.trim_ascii_end();
                if field.eq_ignore_ascii_case(name) {
                    inside = true;
                    if f(true, &line[colon + 1..]) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// A search string, folded to lower case, with its Knuth-Morris-Pratt failure table so that
/// it is found in streamed bytes in linear time, whatever the chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needle {
    bytes: Vec<u8>,
    /// `fail[i]`: the longest proper prefix of `bytes[..=i]` that is also its suffix
    fail: Vec<u32>,
}

impl Needle {
    fn new(text: &[u8]) -> Result<Needle, SearchError> {
        if text.len() > MAX_STRING {
            return Err(SearchError::Syntax("Search string too long"));
        }
        let bytes = text.to_ascii_lowercase();
        let mut fail = vec![0u32; bytes.len()];
        let mut k = 0usize;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1] as usize;
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k as u32; // k < MAX_STRING
        }
        Ok(Needle { bytes, fail })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Feed `bytes` on from `state` (the length of the needle's prefix matched so far, 0 at
    /// the start); true once the whole needle has matched (at once, for an empty one).
    fn feed(&self, state: &mut usize, bytes: &[u8]) -> bool {
        let n = self.bytes.len();
        if *state >= n {
            return true;
        }
        let mut k = *state;
        for &b in bytes {
            let b = b.to_ascii_lowercase();
            while k > 0 && self.bytes[k] != b {
                k = self.fail[k - 1] as usize;
            }
            if self.bytes[k] == b {
                k += 1;
                if k == n {
                    *state = k;
                    return true;
                }
            }
        }
        *state = k;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse::parse;

    /// A message in memory; counts what was read.
    struct Msg {
        seq: u32,
        uid: u32,
        flags: Flags,
        date: i64,
        size: u64,
        header: Vec<u8>,
        body: Vec<u8>,
        /// body chunk size
        chunk: usize,
        header_reads: usize,
        size_reads: usize,
        /// body chunks handed out
        chunks: usize,
    }

    impl Candidate for Msg {
        fn seq(&self) -> u32 {
            self.seq
        }
        fn uid(&self) -> u32 {
            self.uid
        }
        fn flags(&self) -> Flags {
            self.flags
        }
        fn internal_date(&self) -> i64 {
            self.date
        }
        fn size(&mut self) -> io::Result<u64> {
            self.size_reads += 1;
            Ok(self.size)
        }
        fn header(&mut self) -> io::Result<&[u8]> {
            self.header_reads += 1;
            Ok(&self.header)
        }
        fn text(&mut self, f: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
            for chunk in self.body.chunks(self.chunk) {
                self.chunks += 1;
                if !f(chunk) {
                    break;
                }
            }
            Ok(())
        }
    }

    fn msg(seq: u32, flags: Flags, date: i64, size: u64, header: &str, body: &[u8]) -> Msg {
        Msg {
            seq,
            uid: seq * 10,
            flags,
            date,
            size,
            header: header.as_bytes().to_vec(),
            body: body.to_vec(),
            chunk: 3,
            header_reads: 0,
            size_reads: 0,
            chunks: 0,
        }
    }

    fn mailbox() -> Vec<Msg> {
        let mut big = vec![b'x'; 10_000];
        big.extend_from_slice(b"needle\n");
        vec![
            msg(
                1,
                Flags::SEEN.union(Flags::ANSWERED),
                1_709_249_400, // 29 Feb 2024 23:30 UTC
                100,
                "From: Alice <alice@example.org>\nTo: bob@example.com\nCc: carol@example.net\n\
                 Subject: Quarterly\n report\nDate: Fri, 1 Mar 2024 01:00:00 +0200\n\
                 X-TUID: abc123\n",
                b"Hello Bob,\nthe numbers are in.\n",
            ),
            msg(
                2,
                Flags::FLAGGED.union(Flags::RECENT),
                1_709_294_400, // 1 Mar 2024 12:00 UTC
                2000,
                "From: bob@example.com\r\nTo: alice@example.org\r\nBcc: dave@example.com\r\n\
                 Subject: Re: Quarterly report\r\nDate: Fri, 1 Mar 2024 12:00:00 +0000\r\n",
                b"Thanks!\n",
            ),
            msg(
                3,
                Flags::DELETED.union(Flags::DRAFT),
                1_704_067_199, // 31 Dec 2023 23:59:59 UTC
                50,
                "From: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= <x@example.org>\nSubject: Gr\u{fc}\u{df}e aus K\u{f6}ln\n",
                "Stra\u{df}e\n".as_bytes(),
            ),
            msg(
                4,
                Flags::RECENT.union(Flags::SEEN),
                1_709_337_600, // 2 Mar 2024 00:00 UTC
                10_000,
                "From: eve@example.org\nDate: garbage\nSubject : big\n\nSubject: not a header\n",
                &big,
            ),
        ]
    }

    const CTX: Context = Context { last_seq: 4, last_uid: 40, now: 1_709_337_600 + 3600 };

    fn keys(text: &str) -> Vec<Value> {
        parse(format!("t SEARCH {text}").as_bytes(), &[], 64).unwrap().args
    }

    fn search(text: &str) -> Result<Search, SearchError> {
        Search::parse(&keys(text))
    }

    fn run(search: &Search, messages: &mut [Msg]) -> Vec<u32> {
        let mut found = Vec::new();
        for m in messages.iter_mut() {
            if search.matches(m, &CTX).unwrap() {
                found.push(m.seq);
            }
        }
        found
    }

    fn found(text: &str) -> Vec<u32> {
        run(&search(text).unwrap_or_else(|e| panic!("{text}: {e:?}")), &mut mailbox())
    }

    #[test]
    fn every_key() {
        let rows: &[(&str, &[u32])] = &[
            ("ALL", &[1, 2, 3, 4]),
            ("ANSWERED", &[1]),
            ("UNANSWERED", &[2, 3, 4]),
            ("DELETED", &[3]),
            ("UNDELETED", &[1, 2, 4]),
            ("DRAFT", &[3]),
            ("UNDRAFT", &[1, 2, 4]),
            ("FLAGGED", &[2]),
            ("UNFLAGGED", &[1, 3, 4]),
            ("SEEN", &[1, 4]),
            ("UNSEEN", &[2, 3]),
            ("RECENT", &[2, 4]),
            ("OLD", &[1, 3]),
            ("NEW", &[2]),
            ("KEYWORD $Forwarded", &[]),
            ("UNKEYWORD $Forwarded", &[1, 2, 3, 4]),
            ("FROM alice", &[1]),
            ("FROM EXAMPLE.COM", &[2]),
            ("TO bob", &[1]),
            ("CC carol", &[1]),
            ("BCC dave", &[2]),
            ("SUBJECT \"quarterly report\"", &[1, 2]),
            ("SUBJECT \"Gr\u{fc}\u{df}e\"", &[3]),
            ("SUBJECT \"gr\u{fc}\u{df}e\"", &[3]),
            ("SUBJECT \"GR\u{dc}\u{df}E\"", &[]),
            ("SUBJECT big", &[4]),
            ("SUBJECT \"not a header\"", &[]),
            ("FROM \"Gr\u{fc}\u{df}e\"", &[]),
            ("HEADER X-TUID abc123", &[1]),
            ("HEADER x-tuid \"\"", &[1]),
            ("HEADER Bcc \"\"", &[2]),
            ("HEADER DATE \"\"", &[1, 2, 4]),
            ("HEADER Subject \"\"", &[1, 2, 3, 4]),
            ("HEADER X-Missing \"\"", &[]),
            ("SUBJECT \"\"", &[1, 2, 3, 4]),
            ("CC \"\"", &[1]),
            ("BODY numbers", &[1]),
            ("BODY NEEDLE", &[4]),
            ("BODY \"Stra\u{df}e\"", &[3]),
            ("BODY strasse", &[]),
            ("BODY \"\"", &[1, 2, 3, 4]),
            ("BODY alice", &[]),
            ("TEXT bob", &[1, 2]),
            ("TEXT thanks", &[2]),
            ("TEXT x-tuid", &[1]),
            ("LARGER 100", &[2, 4]),
            ("LARGER 99", &[1, 2, 4]),
            ("SMALLER 100", &[3]),
            ("SMALLER 0", &[]),
            ("BEFORE 1-Mar-2024", &[1, 3]),
            ("ON 1-Mar-2024", &[2]),
            ("ON 29-feb-2024", &[1]),
            ("SINCE 1-Mar-2024", &[2, 4]),
            ("SINCE \"31-Dec-2023\"", &[1, 2, 3, 4]),
            ("BEFORE 31-Dec-2023", &[]),
            ("SENTON 1-Mar-2024", &[1, 2]),
            ("SENTON 29-Feb-2024", &[]),
            ("SENTBEFORE 1-Mar-2024", &[]),
            ("SENTBEFORE 2-Mar-2024", &[1, 2]),
            ("SENTSINCE 1-Mar-2024", &[1, 2]),
            ("SENTSINCE 2-Mar-2024", &[]),
            ("NOT SENTBEFORE 1-Mar-2024", &[1, 2, 3, 4]),
            ("UID 20:30", &[2, 3]),
            ("UID *", &[4]),
            ("UID 35:*", &[4]),
            ("UID 50:*", &[4]),
            ("UID 1:5", &[]),
            ("UID 10,40", &[1, 4]),
            ("2:3", &[2, 3]),
            ("*", &[4]),
            ("3,1", &[1, 3]),
            ("5:*", &[4]),
            ("*:3", &[3, 4]),
            ("OLDER 3600", &[1, 2, 3]),
            ("YOUNGER 3600", &[4]),
            ("all", &[1, 2, 3, 4]),
            ("uid 20", &[2]),
            ("Subject BIG", &[4]),
        ];
        for &(text, want) in rows {
            assert_eq!(found(text), want, "{text}");
        }
    }

    #[test]
    fn and_or_not() {
        let rows: &[(&str, &[u32])] = &[
            ("SEEN RECENT", &[4]),
            ("(SEEN RECENT)", &[4]),
            ("((SEEN) (RECENT))", &[4]),
            ("OR SEEN FLAGGED", &[1, 2, 4]),
            ("or seen flagged", &[1, 2, 4]),
            ("OR OR DELETED DRAFT ANSWERED", &[1, 3]),
            ("OR DELETED OR DRAFT ANSWERED", &[1, 3]),
            ("NOT SEEN", &[2, 3]),
            ("NOT NOT SEEN", &[1, 4]),
            ("NOT (SEEN RECENT)", &[1, 2, 3]),
            ("NOT SEEN RECENT", &[2]),
            ("OR (FROM alice) (NOT SMALLER 1000)", &[1, 2, 4]),
            ("OR BODY numbers SUBJECT big", &[1, 4]),
            ("NOT OR SEEN FLAGGED", &[3]),
            ("OR NOT SEEN NOT RECENT", &[1, 2, 3]),
            ("UNDELETED OR (UID 10:20 TEXT bob) LARGER 5000", &[1, 2, 4]),
            ("1:3 NOT 2", &[1, 3]),
            ("CHARSET UTF-8 SUBJECT \"Gr\u{fc}\u{df}e\"", &[3]),
            ("charset us-ascii ALL", &[1, 2, 3, 4]),
            ("CHARSET \"utf-8\" SEEN", &[1, 4]),
        ];
        for &(text, want) in rows {
            assert_eq!(found(text), want, "{text}");
        }
    }

    #[test]
    fn refused() {
        let syntax = |text: &str| match search(text) {
            Err(SearchError::Syntax(why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(search("CHARSET ISO-8859-1 ALL"), Err(SearchError::BadCharset));
        assert_eq!(search("CHARSET \"KOI8-R\" SUBJECT x"), Err(SearchError::BadCharset));
        assert_eq!(Search::parse(&[]), Err(SearchError::Syntax("Search key expected")));
        assert_eq!(syntax("CHARSET UTF-8"), "Search key expected");
        assert_eq!(syntax("CHARSET"), "Charset expected");
        assert_eq!(syntax("CHARSET (UTF-8) ALL"), "Charset expected");
        assert_eq!(syntax("SEEN CHARSET UTF-8"), "Unknown search key");
        assert_eq!(syntax("FOO"), "Unknown search key");
        assert_eq!(syntax("\\Seen"), "Unknown search key");
        assert_eq!(syntax("0"), "Invalid sequence set");
        assert_eq!(syntax("1:0"), "Invalid sequence set");
        assert_eq!(syntax("4294967296"), "Invalid sequence set");
        assert_eq!(syntax("1,,2"), "Invalid sequence set");
        assert_eq!(syntax("NOT"), "Missing operand of NOT or OR");
        assert_eq!(syntax("OR SEEN"), "Missing operand of NOT or OR");
        assert_eq!(syntax("(NOT) SEEN"), "Missing operand of NOT or OR");
        assert_eq!(syntax("()"), "Empty list of search keys");
        assert_eq!(syntax("SEEN ()"), "Empty list of search keys");
        assert_eq!(syntax("LARGER 99999999999999999999999"), "Invalid number");
        assert_eq!(syntax("LARGER 9223372036854775808"), "Invalid number");
        assert!(search("LARGER 9223372036854775807").is_ok());
        assert_eq!(syntax("LARGER -1"), "Invalid number");
        assert_eq!(syntax("LARGER x"), "Invalid number");
        assert_eq!(syntax("LARGER \"1\""), "Invalid number");
        assert_eq!(syntax("SMALLER"), "Missing argument");
        assert_eq!(syntax("UID"), "Missing argument");
        assert_eq!(syntax("UID x"), "Invalid UID set");
        assert_eq!(syntax("UID (1)"), "UID set expected");
        assert_eq!(syntax("BEFORE 30-Feb-2024"), "Invalid date");
        assert_eq!(syntax("BEFORE (1-Jan-2024)"), "Invalid date");
        assert_eq!(syntax("SENTON 2024-01-01"), "Invalid date");
        assert_eq!(syntax("HEADER Subject"), "Missing argument");
        assert_eq!(syntax("FROM (a)"), "String expected");
        assert_eq!(syntax("KEYWORD"), "Missing argument");
        assert_eq!(syntax("OLDER 0"), "Invalid interval");
        assert_eq!(syntax("\"ALL\""), "Search key expected");
        assert_eq!(syntax("BODY[TEXT] x"), "Search key expected");
        let literal = [Value::Literal(b"ALL".to_vec())];
        assert_eq!(Search::parse(&literal), Err(SearchError::Syntax("Search key expected")));
        let long = format!("BODY \"{}\"", "a".repeat(MAX_STRING + 1));
        assert_eq!(syntax(&long), "Search string too long");
        assert!(search(&format!("BODY \"{}\"", "a".repeat(MAX_STRING))).is_ok());
    }

    #[test]
    fn responses() {
        assert_eq!(
            SearchError::BadCharset.response(b"a1"),
            b"a1 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
        );
        assert_eq!(
            SearchError::Syntax("Unknown search key").response(b"a2"),
            b"a2 BAD Unknown search key\r\n"
        );
        let mut out = Vec::new();
        write_result(&[2, 5, 7], &mut out);
        assert_eq!(out, b"* SEARCH 2 5 7\r\n");
        out.clear();
        write_result(&[], &mut out);
        assert_eq!(out, b"* SEARCH\r\n");
        out.clear();
        write_result(&[0, 10, u32::MAX], &mut out);
        assert_eq!(out, b"* SEARCH 0 10 4294967295\r\n");
    }

    #[test]
    fn needs_and_laziness() {
        let s = search("ALL").unwrap();
        assert!(!s.needs_header() && !s.needs_body());
        let s = search("BODY x").unwrap();
        assert!(!s.needs_header() && s.needs_body());
        let s = search("TEXT x").unwrap();
        assert!(s.needs_header() && s.needs_body());
        let s = search("NOT SENTON 1-Jan-2024").unwrap();
        assert!(s.needs_header() && !s.needs_body());
        let s = search("OR SEEN (HEADER X-A b)").unwrap();
        assert!(s.needs_header() && !s.needs_body());
        let s = search("LARGER 1").unwrap();
        assert!(!s.needs_header() && !s.needs_body());

        // cheap keys first, whatever the order written: the seen messages' bodies unread
        let mut messages = mailbox();
        let s = search("BODY numbers UNSEEN").unwrap();
        assert_eq!(run(&s, &mut messages), Vec::<u32>::new());
        assert_eq!(
            messages.iter().map(|m| m.chunks > 0).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        let mut messages = mailbox();
        let s = search("OR BODY numbers SEEN").unwrap();
        assert_eq!(run(&s, &mut messages), [1, 4]);
        assert_eq!(
            messages.iter().map(|m| m.chunks > 0).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        let mut messages = mailbox();
        let s = search("SUBJECT x LARGER 100 FLAGGED").unwrap();
        run(&s, &mut messages);
        assert_eq!(messages.iter().map(|m| m.size_reads).collect::<Vec<_>>(), [0, 1, 0, 0]);
        assert_eq!(messages.iter().map(|m| m.header_reads).collect::<Vec<_>>(), [0, 1, 0, 0]);
        // the body is read only up to the first match
        let mut messages = mailbox();
        messages[3].chunk = 1000;
        let s = search("BODY xxxx").unwrap();
        assert_eq!(run(&s, &mut messages), [4]);
        assert_eq!(messages[3].chunks, 1);
        let mut messages = mailbox();
        messages[3].chunk = 1000;
        let s = search("BODY needle").unwrap();
        assert_eq!(run(&s, &mut messages), [4]);
        assert_eq!(messages[3].chunks, 11);
    }

    #[test]
    fn substrings_across_chunks_and_folds() {
        let naive = |hay: &[u8], needle: &[u8]| {
            needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
        };
        // every needle and haystack over a small alphabet, every chunking
        let mut seed = 12345u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as usize
        };
        for _ in 0..3000 {
            let alphabet = b"aAbB";
            let needle: Vec<u8> = (0..1 + next() % 6).map(|_| alphabet[next() % 4]).collect();
            let hay: Vec<u8> = (0..next() % 40).map(|_| alphabet[next() % 4]).collect();
            let n = Needle::new(&needle).unwrap();
            for chunk in 1..8 {
                let mut state = 0;
                let mut hit = false;
                for piece in hay.chunks(chunk) {
                    if n.feed(&mut state, piece) {
                        hit = true;
                        break;
                    }
                }
                assert_eq!(hit, naive(&hay, &needle), "{needle:?} in {hay:?} by {chunk}");
            }
        }
        // a folded header matches across its fold, not across two fields or occurrences
        let header = b"Subject: one\n two\nSubject: three\nX: y\n\tfour\n";
        let has = |field: &str, text: &str| {
            header_contains(header, field.as_bytes(), &Needle::new(text.as_bytes()).unwrap())
        };
        assert!(has("subject", "ONE TWO"));
        assert!(has("subject", "three"));
        assert!(!has("subject", "two three"));
        assert!(!has("subject", "twothree"));
        assert!(has("x", "y\tfour"));
        assert!(!has("x", "y four"));
        assert!(!has("subject", "four"));
        // the body in one-byte chunks
        let mut messages = mailbox();
        for m in &mut messages {
            m.chunk = 1;
        }
        let s = search("BODY \"the numbers ARE\"").unwrap();
        assert_eq!(run(&s, &mut messages), [1]);
    }

    #[test]
    fn dates_of_messages_without_or_with_odd_date_headers() {
        let mut m = msg(1, Flags::empty(), 0, 1, "Date: Wed, 31 Dec 1969 23:30:00 -0100\n", b"");
        let on = |m: &mut Msg, text: &str| search(text).unwrap().matches(m, &CTX).unwrap();
        assert!(on(&mut m, "SENTON 31-Dec-1969"));
        assert!(!on(&mut m, "SENTON 1-Jan-1970"));
        assert!(on(&mut m, "ON 1-Jan-1970"));
        assert!(on(&mut m, "BEFORE 2-Jan-1970 SINCE 1-Jan-1970"));
        // a second Date: field is not read
        m.header = b"Date: 1 Jan 2000 00:00 +0000\nDate: 2 Jan 2000 00:00 +0000\n".to_vec();
        assert!(on(&mut m, "SENTON 1-Jan-2000"));
        assert!(!on(&mut m, "SENTON 2-Jan-2000"));
        // folded
        m.header = b"Date: Sat,\n 1 Jan 2000\n 00:00 +0000\n".to_vec();
        assert!(on(&mut m, "SENTON 1-Jan-2000"));
        // none, empty, garbage, huge
        for header in [&b""[..], b"Date:\n", b"Date: soon\n", b"Date:1 Jan 2000 00:00\n (x"] {
            m.header = header.to_vec();
            for key in ["SENTON 1-Jan-2000", "SENTBEFORE 1-Jan-3000", "SENTSINCE 1-Jan-1900"] {
                assert!(!on(&mut m, key), "{key} {header:?}");
                assert!(on(&mut m, &format!("NOT {key}")), "{key} {header:?}");
            }
        }
        let mut huge = b"Date: 1 Jan 2000 00:00 +0000".to_vec();
        huge.extend(std::iter::repeat(b' ').take(100_000));
        m.header = huge;
        assert!(!on(&mut m, "SENTON 1-Jan-2000"));
        // internal dates far from now
        m.date = i64::MIN;
        assert!(on(&mut m, "BEFORE 1-Jan-0001 OLDER 1"));
        m.date = i64::MAX;
        assert!(on(&mut m, "SINCE 31-Dec-9999 YOUNGER 1"));
    }

    /// Drop a deep tree without recursing.
    fn drop_deep(mut value: Value) {
        while let Value::List(mut items) = value {
            value = items.pop().unwrap_or(Value::Atom(Vec::new()));
        }
    }

    #[test]
    fn hostile() {
        let all = || Value::Atom(b"ALL".to_vec());
        // 10,000 nested parentheses
        let mut deep = all();
        for _ in 0..10_000 {
            deep = Value::List(vec![deep]);
        }
        let keys = vec![deep];
        assert_eq!(Search::parse(&keys), Err(SearchError::Syntax("Search keys nested too deeply")));
        drop_deep(keys.into_iter().next().unwrap());
        // as deep as allowed, and evaluated
        let mut deep = all();
        for _ in 1..MAX_DEPTH {
            deep = Value::List(vec![Value::Atom(b"SEEN".to_vec()), deep]);
        }
        let keys = vec![deep];
        let s = Search::parse(&keys).unwrap();
        assert_eq!(run(&s, &mut mailbox()), [1, 4]);
        drop_deep(keys.into_iter().next().unwrap());

        // 10,000 NOTs; as many as allowed
        let not = Value::Atom(b"NOT".to_vec());
        let mut nots = vec![not.clone(); 10_000];
        nots.push(all());
        assert_eq!(Search::parse(&nots), Err(SearchError::Syntax("Search keys nested too deeply")));
        let mut nots = vec![not; MAX_DEPTH - 1];
        nots.push(all());
        let s = Search::parse(&nots).unwrap();
        let want: &[u32] = if (MAX_DEPTH - 1) % 2 == 0 { &[1, 2, 3, 4] } else { &[] };
        assert_eq!(run(&s, &mut mailbox()), want);

        // a left-nested OR chain
        let mut chain = vec![Value::Atom(b"OR".to_vec()); 200];
        for uid in 0..=200 {
            chain.push(Value::Atom(b"UID".to_vec()));
            chain.push(Value::Atom(format!("{}", 1000 + uid).into_bytes()));
        }
        *chain.last_mut().unwrap() = Value::Atom(b"30".to_vec());
        let s = Search::parse(&chain).unwrap();
        assert_eq!(run(&s, &mut mailbox()), [3]);

        // too many keys
        let many = vec![all(); MAX_KEYS - 1];
        assert!(Search::parse(&many).is_ok());
        let many = vec![all(); MAX_KEYS];
        assert_eq!(Search::parse(&many), Err(SearchError::Syntax("Too many search keys")));
        let many = vec![Value::Atom(b"SEEN".to_vec()); 100_000];
        assert!(Search::parse(&many).is_err());

        // garbage: random words and lists through the real parser, then every message
        let words = [
            "ALL",
            "NOT",
            "OR",
            "(",
            ")",
            "SEEN",
            "UID",
            "1:*",
            "*",
            "0",
            "HEADER",
            "\"\"",
            "\"x\"",
            "BODY",
            "TEXT",
            "LARGER",
            "99999999999999999999",
            "BEFORE",
            "1-Jan-2024",
            "SENTON",
            "CHARSET",
            "UTF-8",
            "KEYWORD",
            "FROM",
            "\"Date\"",
            "x",
            "NEW",
        ];
        let mut seed = 99u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as usize
        };
        let mut parsed = 0;
        for _ in 0..5000 {
            let text: Vec<&str> =
                (0..1 + next() % 12).map(|_| words[next() % words.len()]).collect();
            let text = text.join(" ").replace("( ", "(").replace(" )", ")");
            let Ok(command) = parse(format!("t SEARCH {text}").as_bytes(), &[], 64) else {
                continue;
            };
            if let Ok(s) = Search::parse(&command.args) {
                parsed += 1;
                for m in &mut mailbox() {
                    s.matches(m, &CTX).unwrap();
                }
            }
        }
        assert!(parsed > 100, "{parsed}");
    }

    #[test]
    fn io_errors_pass_through() {
        struct Gone;
        impl Candidate for Gone {
            fn seq(&self) -> u32 {
                1
            }
            fn uid(&self) -> u32 {
                1
            }
            fn flags(&self) -> Flags {
                Flags::empty()
            }
            fn internal_date(&self) -> i64 {
                0
            }
            fn size(&mut self) -> io::Result<u64> {
                Err(io::ErrorKind::NotFound.into())
            }
            fn header(&mut self) -> io::Result<&[u8]> {
                Err(io::ErrorKind::NotFound.into())
            }
            fn text(&mut self, _: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
                Err(io::ErrorKind::NotFound.into())
            }
        }
        for text in ["LARGER 1", "SUBJECT x", "BODY x", "TEXT x", "SENTON 1-Jan-2000"] {
            let err = search(text).unwrap().matches(&mut Gone, &CTX).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{text}");
        }
        // keys that need no file never ask
        assert!(search("ALL UID 1 1 UNSEEN").unwrap().matches(&mut Gone, &CTX).unwrap());
        assert!(search("OR ALL BODY x").unwrap().matches(&mut Gone, &CTX).unwrap());
    }
}
