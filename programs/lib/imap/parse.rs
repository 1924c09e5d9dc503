//! imap::parse: one assembled IMAP command (RFC 3501 section 9, `command`) to a tag, a name
//! and a generic tree of arguments.
//!
//! The tree is lexical: atoms stay bytes (`007` may be a mailbox name, `1:*` a sequence set,
//! `NIL` a user name), and the typed layer ([`super::command`]) reads numbers, sets and
//! strings out of them, refusing what does not fit. The atom lexer is a little wider than
//! RFC 3501's ATOM-CHAR so that one token kind carries LIST wildcards (`%`, `*`), sequence
//! sets (`*`), flags (`\Seen`) and, outside a section, ASTRING-CHAR's `]`; and a little
//! narrower in one place: `[` after an atom opens a section, so FETCH's
//! `BODY.PEEK[HEADER.FIELDS (From)]<0.100>` is one [`Value::Section`] (a mailbox name with
//! a `[` must be quoted, as clients do).

use super::{Error, ErrorKind};

/// One argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom as sent (including `NIL`, numbers, `\Flags`, sequence sets, wildcards).
    Atom(Vec<u8>),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
    /// A literal's bytes (`{n}` or `{n+}`).
    Literal(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Value>),
    /// `name[section]<partial>`, as in FETCH's `BODY[1.2]` or `BODY.PEEK[HEADER]<0.512>`.
    Section { name: Vec<u8>, section: Vec<Value>, partial: Option<(u32, u32)> },
}

impl Value {
    /// An atom that is `NIL` (any case).
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case(b"NIL"))
    }

    /// An atom that is a `number` (RFC 3501: digits, at most 2^32 - 1).
    pub fn number(&self) -> Result<u32, ErrorKind> {
        match self {
            Value::Atom(a) => number(a).ok_or(ErrorKind::Syntax("Invalid number")),
            _ => Err(ErrorKind::Syntax("Number expected")),
        }
    }

    /// A `string` (quoted or literal).
    pub fn string(&self) -> Option<&[u8]> {
        match self {
            Value::Quoted(s) | Value::Literal(s) => Some(s),
            _ => None,
        }
    }

    /// An `astring`: a string, or an atom of ASTRING-CHARs (no wildcards, no `\`).
    pub fn astring(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) if a.iter().all(|&b| astring_char(b)) => Some(a),
            _ => self.string(),
        }
    }

    /// A LIST pattern (`list-mailbox`): a string, or an atom that may hold `%` and `*`.
    pub fn list_mailbox(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) if a.iter().all(|&b| astring_char(b) || b == b'%' || b == b'*') => {
                Some(a)
            }
            _ => self.string(),
        }
    }
}

/// One command: the tag, the name in upper case (after `UID`, which sets `uid`), the
/// arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: Vec<u8>,
    pub uid: bool,
    pub name: Vec<u8>,
    pub args: Vec<Value>,
}

impl std::fmt::Debug for Command {
    /// The arguments may be a password: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (tag, name) = (String::from_utf8_lossy(&self.tag), String::from_utf8_lossy(&self.name));
        let uid = if self.uid { "UID " } else { "" };
        write!(f, "Command({tag} {uid}{name}, {} arguments)", self.args.len())
    }
}

/// Parse one command: `buf` holds its lines without line ends and its literals, each
/// literal at the (start, length) `literals` gives, in order (as [`super::Reader`] collects
/// them). Errors carry the tag once it was read.
pub fn parse(buf: &[u8], literals: &[(usize, usize)], depth: usize) -> Result<Command, Error> {
    let tag = tag_of(buf).ok_or(Error { tag: None, kind: ErrorKind::BadTag })?;
    let bad = |kind| Error { tag: Some(tag.to_vec()), kind };
    let mut lx = Lexer { buf, pos: tag.len() + 1, literals, next: 0 };
    let mut name = lx.name().map_err(bad)?;
    let uid = name == b"UID";
    if uid {
        lx.space().map_err(bad)?;
        name = lx.name().map_err(bad)?;
    }
    let args = if lx.at_end() {
        Vec::new()
    } else {
        lx.space().map_err(bad)?;
        lx.values(depth).map_err(bad)?
    };
    Ok(Command { tag: tag.to_vec(), uid, name, args })
}

/// The tag a line starts with (RFC 3501 `tag`: ASTRING-CHARs but `+`), if a space follows it.
pub fn tag_of(line: &[u8]) -> Option<&[u8]> {
    let end = line.iter().position(|&b| b == b' ')?;
    let tag = &line[..end];
    (!tag.is_empty() && tag.iter().all(|&b| astring_char(b) && b != b'+')).then_some(tag)
}

/// RFC 3501 ATOM-CHAR: CHAR but atom-specials.
fn atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

/// RFC 3501 ASTRING-CHAR: ATOM-CHAR and `]`.
fn astring_char(b: u8) -> bool {
    atom_char(b) || b == b']'
}

/// Digits as a u32; `None` if empty, not all digits, or over 2^32 - 1.
pub(crate) fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// A bracket or parenthesis not yet closed.
enum Open {
    List(Vec<Value>),
    Section(Vec<u8>, Vec<Value>),
}

/// A cursor over an assembled command.
struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
    literals: &'a [(usize, usize)],
    /// the next literal not yet taken
    next: usize,
}

impl Lexer<'_> {
    /// Where the line text ends: at the next literal's bytes, else at the end.
    fn limit(&self) -> usize {
        self.literals.get(self.next).map_or(self.buf.len(), |&(start, _)| start)
    }

    fn peek(&self) -> Option<u8> {
        (self.pos < self.limit()).then(|| self.buf[self.pos])
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn space(&mut self) -> Result<(), ErrorKind> {
        if self.peek() != Some(b' ') {
            return Err(ErrorKind::Syntax("Space expected"));
        }
        self.pos += 1;
        Ok(())
    }

    /// A command name: an atom, upper-cased.
    fn name(&mut self) -> Result<Vec<u8>, ErrorKind> {
        let mut name = self.atom(false)?;
        if name.first() == Some(&b'\\') {
            return Err(ErrorKind::Syntax("Command name expected"));
        }
        name.make_ascii_uppercase();
        Ok(name)
    }

    /// Values separated by single spaces up to the end of the command, parentheses and
    /// sections nested at most `depth` deep, on an explicit stack.
    fn values(&mut self, depth: usize) -> Result<Vec<Value>, ErrorKind> {
        let mut top = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut sections = 0usize;
        loop {
            // a value, or an opening (possibly closed at once, as `()` or `BODY[]`)
            let mut value = match self.peek() {
                Some(b'(') if stack.len() >= depth => return Err(ErrorKind::TooDeep),
                Some(b'(') => {
                    self.pos += 1;
                    stack.push(Open::List(Vec::new()));
                    if self.peek() != Some(b')') {
                        continue;
                    }
                    None
                }
                Some(b'"') => Some(Value::Quoted(self.quoted()?)),
                Some(b'{') => Some(Value::Literal(self.literal()?)),
                Some(_) => {
                    let atom = self.atom(sections > 0)?;
                    if self.peek() == Some(b'[') && atom.first() != Some(&b'\\') {
                        if stack.len() >= depth {
                            return Err(ErrorKind::TooDeep);
                        }
                        self.pos += 1;
                        stack.push(Open::Section(atom, Vec::new()));
                        sections += 1;
                        if self.peek() != Some(b']') {
                            continue;
                        }
                        None
                    } else {
                        Some(Value::Atom(atom))
                    }
                }
                None => return Err(ErrorKind::Syntax("Argument expected")),
            };
            // closings
            loop {
                if let Some(v) = value.take() {
                    match stack.last_mut() {
                        Some(Open::List(items)) | Some(Open::Section(_, items)) => items.push(v),
                        None => top.push(v),
                    }
                }
                match (self.peek(), stack.last()) {
                    (Some(b')'), Some(Open::List(_))) => {
                        self.pos += 1;
                        if let Some(Open::List(items)) = stack.pop() {
                            value = Some(Value::List(items));
                        }
                    }
                    (Some(b']'), Some(Open::Section(..))) => {
                        self.pos += 1;
                        sections -= 1;
                        if let Some(Open::Section(name, section)) = stack.pop() {
                            let partial = self.partial()?;
                            value = Some(Value::Section { name, section, partial });
                        }
                    }
                    _ => break,
                }
            }
            // a separator, or the end
            if self.at_end() {
                return match stack.last() {
                    None => Ok(top),
                    Some(Open::List(_)) => Err(ErrorKind::Syntax("Missing )")),
                    Some(Open::Section(..)) => Err(ErrorKind::Syntax("Missing ]")),
                };
            }
            self.space()?;
        }
    }

    /// An atom (see the module docs), or `\` and an atom (a flag), or `\*`.
    fn atom(&mut self, in_section: bool) -> Result<Vec<u8>, ErrorKind> {
        let start = self.pos;
        if self.peek() == Some(b'\\') {
            self.pos += 1;
            if self.peek() == Some(b'*') {
                self.pos += 1;
                return Ok(self.buf[start..self.pos].to_vec());
            }
        }
        let limit = self.limit();
        let ok = |b: u8| {
            (atom_char(b) && b != b'[') || b == b'%' || b == b'*' || (b == b']' && !in_section)
        };
        let len = self.buf[self.pos..limit].iter().take_while(|&&b| ok(b)).count();
        self.pos += len;
        if len == 0 {
            return Err(match self.peek() {
                Some(0) => ErrorKind::Syntax("NUL byte"),
                Some(b'\r') => ErrorKind::Syntax("CR without LF"),
                Some(0x80..) => ErrorKind::Syntax("8-bit byte outside a string"),
                _ => ErrorKind::Syntax("Atom expected"),
            });
        }
        Ok(self.buf[start..self.pos].to_vec())
    }

    /// A quoted string, unescaped: `\"` and `\\` only; no NUL, CR or LF; 8-bit as is.
    fn quoted(&mut self) -> Result<Vec<u8>, ErrorKind> {
        let limit = self.limit();
        let mut out = Vec::new();
        self.pos += 1;
        while self.pos < limit {
            let b = self.buf[self.pos];
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => match self.buf.get(self.pos).filter(|_| self.pos < limit) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        self.pos += 1;
                    }
                    _ => return Err(ErrorKind::Syntax("Invalid escape in quoted string")),
                },
                0 => return Err(ErrorKind::Syntax("NUL byte")),
                b'\r' | b'\n' => return Err(ErrorKind::Syntax("CR without LF")),
                _ => out.push(b),
            }
        }
        Err(ErrorKind::Syntax("Unterminated quoted string"))
    }

    /// `{n}` or `{n+}` at the end of a line, and the `n` bytes the reader put after it.
    fn literal(&mut self) -> Result<Vec<u8>, ErrorKind> {
        self.pos += 1;
        let limit = self.limit();
        let digits = self.buf[self.pos..limit].iter().take_while(|b| b.is_ascii_digit()).count();
        let n = number(&self.buf[self.pos..self.pos + digits])
            .ok_or(ErrorKind::Syntax("Invalid literal"))?;
        self.pos += digits;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        if self.peek() != Some(b'}') {
            return Err(ErrorKind::Syntax("Invalid literal"));
        }
        self.pos += 1;
        match self.literals.get(self.next) {
            Some(&(start, len)) if start == self.pos && u32::try_from(len) == Ok(n) => {
                self.next += 1;
                self.pos = start + len;
                Ok(self.buf[start..start + len].to_vec())
            }
            _ => Err(ErrorKind::Syntax("A literal must end its line")),
        }
    }

    /// `<offset.length>` after a section, if present (length not zero).
    fn partial(&mut self) -> Result<Option<(u32, u32)>, ErrorKind> {
        if self.peek() != Some(b'<') {
            return Ok(None);
        }
        let limit = self.limit();
        let rest = &self.buf[self.pos + 1..limit];
        let invalid = ErrorKind::Syntax("Invalid partial");
        let close = rest.iter().position(|&b| b == b'>').ok_or(invalid)?;
        let inner = &rest[..close];
        let dot = inner.iter().position(|&b| b == b'.').ok_or(invalid)?;
        let offset = number(&inner[..dot]).ok_or(invalid)?;
        let length = number(&inner[dot + 1..]).filter(|&n| n > 0).ok_or(invalid)?;
        self.pos += close + 2;
        Ok(Some((offset, length)))
    }
}
