//! imap::command: the typed view of the commands imapd serves first (RFC 3501 section 6,
//! with UNSELECT RFC 3691, IDLE RFC 2177, NAMESPACE RFC 2342, ID RFC 2971, ENABLE RFC 5161,
//! MOVE RFC 6851 and UID EXPUNGE RFC 4315), and sequence sets.
//!
//! [`Request::of`] reads a [`Command`]'s generic arguments into the shapes the server acts
//! on, borrowing from the command; the arguments it does not interpret yet (FETCH items,
//! STORE's action and flags, SEARCH keys, STATUS items, ID, ENABLE and AUTHENTICATE) are
//! handed on as values.

use super::parse::{number, Command, Value};
use super::ErrorKind;

/// One end of a sequence range: a number (never 0) or `*`, the largest in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Number(u32),
    Last,
}

impl SeqNumber {
    fn parse(bytes: &[u8]) -> Option<SeqNumber> {
        match bytes {
            b"*" => Some(SeqNumber::Last),
            _ => number(bytes).filter(|&n| n > 0).map(SeqNumber::Number),
        }
    }

    /// The number, with `*` as `last`.
    pub fn resolve(self, last: u32) -> u32 {
        match self {
            SeqNumber::Number(n) => n,
            SeqNumber::Last => last,
        }
    }
}

/// `a`, or `a:b` in either order (RFC 3501 `seq-range`: `4:2` is `2:4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub first: SeqNumber,
    pub last: SeqNumber,
}

/// A `sequence-set`: `1:5,7,*,3:*`. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(Vec<SeqRange>);

impl SequenceSet {
    /// Parse the whole of `bytes`; a 0, an overflowing number, an empty element or any other
    /// byte is refused.
    pub fn parse(bytes: &[u8]) -> Result<SequenceSet, ErrorKind> {
        let invalid = ErrorKind::Syntax("Invalid sequence set");
        let mut ranges = Vec::new();
        for element in bytes.split(|&b| b == b',') {
            let mut ends = element.splitn(2, |&b| b == b':');
            let first = ends.next().and_then(SeqNumber::parse).ok_or(invalid)?;
            let last = match ends.next() {
                Some(end) => SeqNumber::parse(end).ok_or(invalid)?,
                None => first,
            };
            ranges.push(SeqRange { first, last });
        }
        Ok(SequenceSet(ranges))
    }

    pub fn ranges(&self) -> &[SeqRange] {
        &self.0
    }

    /// Whether `n` is in the set when the largest number in use (`*`) is `last`.
    pub fn contains(&self, n: u32, last: u32) -> bool {
        self.0.iter().any(|r| {
            let (a, b) = (r.first.resolve(last), r.last.resolve(last));
            a.min(b) <= n && n <= a.max(b)
        })
    }
}

/// A command, typed. Mailbox names are as sent (modified UTF-7; `INBOX` in any case).
#[derive(Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Capability,
    Noop,
    Logout,
    Starttls,
    /// the SASL mechanism and optional initial response, as values
    Authenticate(&'a [Value]),
    Login {
        user: &'a [u8],
        password: &'a [u8],
    },
    Select(&'a [u8]),
    Examine(&'a [u8]),
    Create(&'a [u8]),
    Delete(&'a [u8]),
    Subscribe(&'a [u8]),
    Unsubscribe(&'a [u8]),
    Rename {
        from: &'a [u8],
        to: &'a [u8],
    },
    List(Pattern<'a>),
    Lsub(Pattern<'a>),
    /// the mailbox and the parenthesised items
    Status {
        mailbox: &'a [u8],
        items: &'a [Value],
    },
    Append {
        mailbox: &'a [u8],
        flags: Option<&'a [Value]>,
        date: Option<&'a [u8]>,
        message: &'a [u8],
    },
    Check,
    Close,
    /// `UID EXPUNGE set` carries the set
    Expunge(Option<SequenceSet>),
    Unselect,
    Idle,
    Namespace,
    Id(&'a [Value]),
    Enable(&'a [Value]),
    /// the search keys (with an optional `CHARSET x` first)
    Search {
        uid: bool,
        keys: &'a [Value],
    },
    /// the items: one atom, a section, or a list
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: &'a [Value],
    },
    /// the action (`+FLAGS.SILENT`, ...) and the flags
    Store {
        uid: bool,
        set: SequenceSet,
        action: &'a Value,
        flags: &'a [Value],
    },
    Copy(Transfer<'a>),
    Move(Transfer<'a>),
    /// GETQUOTAROOT mailbox (RFC 9208)
    GetQuotaRoot(&'a [u8]),
    /// GETQUOTA root (RFC 9208)
    GetQuota(&'a [u8]),
    /// SETQUOTA root (resources): the root and the list, as values
    SetQuota(&'a [Value]),
}

/// LIST's and LSUB's arguments: the reference name and the pattern (with `%` and `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern<'a> {
    pub reference: &'a [u8],
    pub pattern: &'a [u8],
}

/// COPY's and MOVE's arguments: which messages, by number or (`UID COPY`) UID, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer<'a> {
    pub uid: bool,
    pub set: SequenceSet,
    pub mailbox: &'a [u8],
}

impl std::fmt::Debug for Request<'_> {
    /// A password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Login { user, .. } => {
                write!(f, "Login {{ user: {:?}, .. }}", String::from_utf8_lossy(user))
            }
            Request::Authenticate(_) => write!(f, "Authenticate(..)"),
            other => write!(f, "{}", other.name()),
        }
    }
}

impl<'a> Request<'a> {
    /// The typed form of `cmd`, or why it is refused (answer `<tag> BAD <text>`).
    pub fn of(cmd: &'a Command) -> Result<Request<'a>, ErrorKind> {
        let args = cmd.args.as_slice();
        let uid = cmd.uid;
        if uid
            && !matches!(
                &cmd.name[..],
                b"FETCH" | b"STORE" | b"COPY" | b"MOVE" | b"SEARCH" | b"EXPUNGE"
            )
        {
            return Err(ErrorKind::Syntax("Invalid UID command"));
        }
        let request = match &cmd.name[..] {
            b"CAPABILITY" => none(args, Request::Capability)?,
            b"NOOP" => none(args, Request::Noop)?,
            b"LOGOUT" => none(args, Request::Logout)?,
            b"STARTTLS" => none(args, Request::Starttls)?,
            b"CHECK" => none(args, Request::Check)?,
            b"CLOSE" => none(args, Request::Close)?,
            b"UNSELECT" => none(args, Request::Unselect)?,
            b"IDLE" => none(args, Request::Idle)?,
            b"NAMESPACE" => none(args, Request::Namespace)?,
            b"EXPUNGE" if uid => match args {
                [set] => Request::Expunge(Some(set_of(set)?)),
                _ => return Err(arity()),
            },
            b"EXPUNGE" => none(args, Request::Expunge(None))?,
            b"AUTHENTICATE" if !args.is_empty() => Request::Authenticate(args),
            b"ID" => Request::Id(args),
            b"ENABLE" if !args.is_empty() => Request::Enable(args),
            b"LOGIN" => match args {
                [user, password] => {
                    Request::Login { user: astring(user)?, password: astring(password)? }
                }
                _ => return Err(arity()),
            },
            b"SELECT" => Request::Select(one_mailbox(args)?),
            b"EXAMINE" => Request::Examine(one_mailbox(args)?),
            b"CREATE" => Request::Create(one_mailbox(args)?),
            b"DELETE" => Request::Delete(one_mailbox(args)?),
            b"SUBSCRIBE" => Request::Subscribe(one_mailbox(args)?),
            b"UNSUBSCRIBE" => Request::Unsubscribe(one_mailbox(args)?),
            b"RENAME" => match args {
                [from, to] => Request::Rename { from: astring(from)?, to: astring(to)? },
                _ => return Err(arity()),
            },
            b"LIST" | b"LSUB" => {
                let [reference, pattern] = args else { return Err(arity()) };
                let reference = astring(reference)?;
                let pattern = pattern.list_mailbox().ok_or(ErrorKind::Syntax("Invalid pattern"))?;
                match &cmd.name[..] {
                    b"LIST" => Request::List(Pattern { reference, pattern }),
                    _ => Request::Lsub(Pattern { reference, pattern }),
                }
            }
            b"STATUS" => match args {
                [mailbox, Value::List(items)] if !items.is_empty() => {
                    Request::Status { mailbox: astring(mailbox)?, items }
                }
                _ => return Err(arity()),
            },
            b"APPEND" => append(args)?,
            b"SEARCH" if !args.is_empty() => Request::Search { uid, keys: args },
            b"FETCH" => match args {
                [set, items @ ..] if !items.is_empty() => {
                    Request::Fetch { uid, set: set_of(set)?, items }
                }
                _ => return Err(arity()),
            },
            b"STORE" => match args {
                [set, action @ Value::Atom(_), flags @ ..] if !flags.is_empty() => {
                    Request::Store { uid, set: set_of(set)?, action, flags }
                }
                _ => return Err(arity()),
            },
            b"COPY" | b"MOVE" => {
                let [set, mailbox] = args else { return Err(arity()) };
                let transfer = Transfer { uid, set: set_of(set)?, mailbox: astring(mailbox)? };
                match &cmd.name[..] {
                    b"COPY" => Request::Copy(transfer),
                    _ => Request::Move(transfer),
                }
            }
            b"GETQUOTAROOT" => Request::GetQuotaRoot(one_mailbox(args)?),
            b"GETQUOTA" => Request::GetQuota(one_mailbox(args)?),
            b"SETQUOTA" if args.len() == 2 => Request::SetQuota(args),
            b"AUTHENTICATE" | b"ENABLE" | b"SEARCH" | b"SETQUOTA" => return Err(arity()),
            _ => return Err(ErrorKind::Syntax("Unknown command")),
        };
        Ok(request)
    }

    /// The command's name, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Capability => "CAPABILITY",
            Request::Noop => "NOOP",
            Request::Logout => "LOGOUT",
            Request::Starttls => "STARTTLS",
            Request::Authenticate(_) => "AUTHENTICATE",
            Request::Login { .. } => "LOGIN",
            Request::Select(_) => "SELECT",
            Request::Examine(_) => "EXAMINE",
            Request::Create(_) => "CREATE",
            Request::Delete(_) => "DELETE",
            Request::Rename { .. } => "RENAME",
            Request::Subscribe(_) => "SUBSCRIBE",
            Request::Unsubscribe(_) => "UNSUBSCRIBE",
            Request::List(_) => "LIST",
            Request::Lsub(_) => "LSUB",
            Request::Status { .. } => "STATUS",
            Request::Append { .. } => "APPEND",
            Request::Check => "CHECK",
            Request::Close => "CLOSE",
            Request::Expunge(_) => "EXPUNGE",
            Request::Unselect => "UNSELECT",
            Request::Idle => "IDLE",
            Request::Namespace => "NAMESPACE",
            Request::Id(_) => "ID",
            Request::Enable(_) => "ENABLE",
            Request::Search { .. } => "SEARCH",
            Request::Fetch { .. } => "FETCH",
            Request::Store { .. } => "STORE",
            Request::Copy(_) => "COPY",
            Request::Move(_) => "MOVE",
            Request::GetQuotaRoot(_) => "GETQUOTAROOT",
            Request::GetQuota(_) => "GETQUOTA",
            Request::SetQuota(_) => "SETQUOTA",
        }
    }
}

fn arity() -> ErrorKind {
    ErrorKind::Syntax("Wrong number or kind of arguments")
}

fn none<'a>(args: &[Value], request: Request<'a>) -> Result<Request<'a>, ErrorKind> {
    if args.is_empty() {
        Ok(request)
    } else {
        Err(ErrorKind::Syntax("Unexpected arguments"))
    }
}

fn astring(value: &Value) -> Result<&[u8], ErrorKind> {
    value.astring().ok_or(ErrorKind::Syntax("String expected"))
}

fn one_mailbox(args: &[Value]) -> Result<&[u8], ErrorKind> {
    match args {
        [mailbox] => astring(mailbox),
        _ => Err(arity()),
    }
}

fn set_of(value: &Value) -> Result<SequenceSet, ErrorKind> {
    match value {
        Value::Atom(set) => SequenceSet::parse(set),
        _ => Err(ErrorKind::Syntax("Invalid sequence set")),
    }
}

/// `APPEND mailbox [(flags)] ["date-time"] literal`.
fn append(args: &[Value]) -> Result<Request<'_>, ErrorKind> {
    let [mailbox, middle @ .., Value::Literal(message)] = args else { return Err(arity()) };
    let (flags, date) = match middle {
        [] => (None, None),
        [Value::List(flags)] => (Some(flags.as_slice()), None),
        [Value::Quoted(date)] => (None, Some(date.as_slice())),
        [Value::List(flags), Value::Quoted(date)] => {
            (Some(flags.as_slice()), Some(date.as_slice()))
        }
        _ => return Err(arity()),
    };
    if flags.is_some_and(|f| !f.iter().all(|v| matches!(v, Value::Atom(_)))) {
        return Err(ErrorKind::Syntax("Invalid flag"));
    }
    Ok(Request::Append { mailbox: astring(mailbox)?, flags, date, message })
}
