//! pop3: the sans-I/O parts of POP3 (RFC 1939) for qmail-popup and qmail-pop3d
//! (doc/qmail-popup.8, doc/qmail-pop3d.8).
//!
//! Bytes in, a command or "need more" out; the programs own the sockets, the timeouts and the
//! files. Four pieces, each bounded while it streams:
//!
//! - [`LineReader`]: command lines of at most [`MAX_LINE`] bytes (the line end not counted).
//!   A longer line is reported as [`Input::TooLong`] as soon as the limit is passed, without
//!   storing it (both programs then answer `-ERR` and close). Lines end at LF; a CR before it
//!   is removed. The verb is the text before the first space, in any case; the argument the
//!   text after the first run of spaces (upstream's `commands.c`).
//! - [`Transfer`]: a message file as POP3 sends it (RETR, TOP): LF becomes CRLF, a line
//!   starting with `.` gets another `.`, the headers, the blank line and the first `l` body
//!   lines for `TOP n l`, and `\r\n.\r\n` after the last line (stock qmail's extra empty line).
//!   It keeps one bit of state per line, so a message of any size streams through a fixed
//!   buffer.
//! - [`message_number`]: the `n` of `LIST n`, `RETR n`, ... as qmail-pop3d reads it.
//! - [`auth_failure`]: the exit codes of a checkpassword sub-program (auth_pop) and the
//!   `-ERR` text qmail-popup answers for each; the table is doc/qmail-popup.8, EXIT CODES.
//!
//! Security: no input-chosen allocation; nothing here panics on any input (see the fuzz target
//! `fuzz/fuzz_targets/pop3.rs`).

use crate::getln;

/// The longest command line kept, without its line end (RFC 2449 allows 255 octets; the
/// rest is room for long passwords).
pub const MAX_LINE: usize = 1024;

/// The POP3 verbs the two programs know; anything else is [`Verb::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    User,
    Pass,
    Apop,
    Quit,
    Noop,
    Capa,
    Stls,
    Stat,
    List,
    Uidl,
    Retr,
    Top,
    Dele,
    Rset,
    Last,
    Unknown,
}

impl Verb {
    fn from_bytes(verb: &[u8]) -> Verb {
        const VERBS: &[(&[u8], Verb)] = &[
            (b"user", Verb::User),
            (b"pass", Verb::Pass),
            (b"apop", Verb::Apop),
            (b"quit", Verb::Quit),
            (b"noop", Verb::Noop),
            (b"capa", Verb::Capa),
            (b"stls", Verb::Stls),
            (b"stat", Verb::Stat),
            (b"list", Verb::List),
            (b"uidl", Verb::Uidl),
            (b"retr", Verb::Retr),
            (b"top", Verb::Top),
            (b"dele", Verb::Dele),
            (b"rset", Verb::Rset),
            (b"last", Verb::Last),
        ];
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(verb))
            .map_or(Verb::Unknown, |&(_, v)| v)
    }
}

/// One command line: the verb and the argument (possibly empty; any bytes but LF).
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    pub arg: Vec<u8>,
}

impl std::fmt::Debug for Command {
    /// The argument may be a password: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({:?}, {} bytes)", self.verb, self.arg.len())
    }
}

impl Command {
    /// Split a line (without its line end) at the first space; the argument starts after the
    /// run of spaces that follows ([`getln::split_verb`]).
    pub fn parse(line: &[u8]) -> Command {
        let (verb, arg) = getln::split_verb(line);
        Command { verb: Verb::from_bytes(verb), arg: arg.to_vec() }
    }
}

/// What [`LineReader::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    /// A line longer than [`MAX_LINE`]: reported as soon as the limit is passed.
    TooLong,
}

/// Splits the client's bytes into command lines, holding at most [`MAX_LINE`] + 1 bytes
/// ([`getln::Lines`]).
#[derive(Debug)]
pub struct LineReader {
    lines: getln::Lines,
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

impl LineReader {
    pub fn new() -> Self {
        LineReader { lines: getln::Lines::new(MAX_LINE) }
    }

    /// Consume bytes of `input` up to and including the first LF. Returns how many bytes were
    /// consumed and, if a line ended (or grew too long), what it was; `None` means "need
    /// more". The line's own bytes are zeroed once parsed (it may be PASS).
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Input>) {
        let (n, got) = self.lines.push(input);
        let input = match got {
            None => None,
            Some(getln::Got::TooLong) => Some(Input::TooLong),
            Some(getln::Got::Line) => {
                let cmd = Command::parse(self.lines.line());
                // an empty push wipes the line now rather than at the next command
                let _ = self.lines.push(b"");
                Some(Input::Command(cmd))
            }
        };
        (n, input)
    }

    /// Bytes of an unfinished line held (for tests and the fuzz target).
    pub fn pending(&self) -> usize {
        self.lines.pending()
    }
}

pub use getln::wipe;

/// Why a message number was refused: the `-ERR` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// no digits
    Syntax,
    Zero,
    TooBig,
}

impl NumberError {
    pub fn text(self) -> &'static str {
        match self {
            NumberError::Syntax => "syntax error",
            NumberError::Zero => "messages are counted from 1",
            NumberError::TooBig => "not that many messages",
        }
    }
}

/// The message number at the start of `arg` (leading decimal digits, as upstream's
/// `scan_ulong`), checked against `count` messages: the index from 0. Digits beyond what
/// fits are "not that many messages", never an overflow. The rest of `arg` is returned.
pub fn message_number(arg: &[u8], count: usize) -> Result<(usize, &[u8]), NumberError> {
    let (n, rest) = leading_number(arg).ok_or(NumberError::Syntax)?;
    match n {
        Some(0) => Err(NumberError::Zero),
        Some(n) if n <= count as u64 => Ok(((n - 1) as usize, rest)),
        _ => Err(NumberError::TooBig),
    }
}

/// Leading decimal digits of `arg`: `None` without any; `Some(None)` when they overflow a
/// u64; and the bytes after them.
pub fn leading_number(arg: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let digits = arg.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n = arg[..digits]
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
    Some((n, &arg[digits..]))
}

/// The line count of `TOP n l` from the text after `n`: `None` (the whole message) when no
/// digits follow the spaces; a count too big for a u64 is as good as the whole message.
pub fn top_lines(rest: &[u8]) -> Option<u64> {
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let (n, _) = leading_number(&rest[start..])?;
    n
}

/// The unique id of a Maildir message for UIDL: the file name without the directory and
/// without anything from the first `:` (the flags), so that it survives the move from `new/`
/// to `cur/`.
pub fn uid(name: &[u8]) -> &[u8] {
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    base.split(|&b| b == b':').next().unwrap_or(base)
}

/// A message file as POP3 sends it ([module docs](self)).
#[derive(Debug)]
pub struct Transfer {
    /// the next byte starts a line
    at_start: bool,
    /// still in the header (before the first empty line)
    in_header: bool,
    /// `TOP n l`: the body lines still to send; `None`: all of them
    body_lines: Option<u64>,
    /// `TOP`'s limit is reached: nothing more is sent
    done: bool,
}

impl Transfer {
    /// RETR (`lines` = `None`) or `TOP n lines`.
    pub fn new(lines: Option<u64>) -> Self {
        Transfer { at_start: true, in_header: true, body_lines: lines, done: false }
    }

    /// Convert `input` (any slice of the file, in order) and append the result to `out`;
    /// returns false once nothing more of the file will be sent (TOP's limit reached), so the
    /// caller can stop reading. At most `2 * input.len()` bytes are appended.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let mut rest = input;
        while !rest.is_empty() && !self.done {
            if self.at_start {
                self.start_line(rest[0] == b'\n');
                if self.done {
                    break;
                }
                if rest[0] == b'.' {
                    out.push(b'.');
                }
                self.at_start = false;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&rest[..i]);
                    out.extend_from_slice(b"\r\n");
                    self.at_start = true;
                    rest = &rest[i + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        !self.done
    }

    /// A line begins (`empty`: it is empty): decide whether it is sent.
    fn start_line(&mut self, empty: bool) {
        if !self.in_header {
            if let Some(left) = self.body_lines.as_mut() {
                if *left == 0 {
                    self.done = true;
                    return;
                }
                *left -= 1;
            }
        }
        if empty {
            self.in_header = false;
        }
    }

    /// The end of the file: close an unfinished last line, then the terminator with the
    /// extra empty line before it (`\r\n.\r\n`).
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n.\r\n");
    }
}

/// The exit codes of a checkpassword sub-program (auth_pop's table) that qmail-popup turns
/// into `-ERR <text>`; 0 (the session was served) has no text. Any other code, and death by
/// a signal, is "temporary error".
pub const AUTH_FAILURES: &[(i32, &str)] = &[
    (1, "error in server configuration"),
    (2, "unable to contact authorization server"),
    (3, "authorization failed"),
    (4, "account disabled"),
    (5, "mailhost is unreachable"),
    (6, "mailbox is corrupted"),
    (7, "unable to start subprogram"),
    (8, "out of memory"),
    (25, "user record incorrect"),
    (61, "mailbox could not be created"),
    (62, "the users mailbox does not exist"),
];

/// The `-ERR` text for a sub-program's exit code (`None`: killed by a signal).
pub fn auth_failure(code: Option<i32>) -> &'static str {
    code.and_then(|c| AUTH_FAILURES.iter().find(|(n, _)| *n == c))
        .map_or("temporary error", |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], chunk: usize) -> Vec<Input> {
        let mut r = LineReader::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, got) = r.push(rest);
                assert!(n > 0 && n <= rest.len());
                assert!(r.pending() <= MAX_LINE + 1);
                rest = &rest[n..];
                out.extend(got);
            }
        }
        out
    }

    fn cmd(verb: Verb, arg: &str) -> Input {
        Input::Command(Command { verb, arg: arg.as_bytes().to_vec() })
    }

    #[test]
    fn commands() {
        let input = b"USER joe\r\npass  two  words \r\nApOp a b\nquit\r\nstat\r\nlist 2\r\n\
                      top 1 10\r\nuidl\r\nretr\r\ndele 3\r\nrset\r\nlast\r\nnoop\r\ncapa\r\nstls\r\n\
                      xyzzy 1\r\n\r\n   \r\nuser\x00x y\r\n";
        let want = vec![
            cmd(Verb::User, "joe"),
            cmd(Verb::Pass, "two  words "),
            cmd(Verb::Apop, "a b"),
            cmd(Verb::Quit, ""),
            cmd(Verb::Stat, ""),
            cmd(Verb::List, "2"),
            cmd(Verb::Top, "1 10"),
            cmd(Verb::Uidl, ""),
            cmd(Verb::Retr, ""),
            cmd(Verb::Dele, "3"),
            cmd(Verb::Rset, ""),
            cmd(Verb::Last, ""),
            cmd(Verb::Noop, ""),
            cmd(Verb::Capa, ""),
            cmd(Verb::Stls, ""),
            cmd(Verb::Unknown, "1"),
            cmd(Verb::Unknown, ""),
            cmd(Verb::Unknown, ""),
            cmd(Verb::Unknown, "y"),
        ];
        for chunk in [1, 2, 7, 1000] {
            assert_eq!(lines(input, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn hostile_lines() {
        // exactly the limit, with and without CR
        let max = [vec![b'a'; MAX_LINE], b"\r\n".to_vec()].concat();
        assert!(matches!(lines(&max, 100)[0], Input::Command(_)));
        let max = [vec![b'a'; MAX_LINE], b"\n".to_vec()].concat();
        assert!(matches!(lines(&max, 100)[0], Input::Command(_)));
        // one more: too long, even before its LF arrives
        let over = [vec![b'a'; MAX_LINE + 1], b"\r\n".to_vec()].concat();
        assert_eq!(lines(&over, 3)[0], Input::TooLong);
        let mut r = LineReader::new();
        let (_, got) = r.push(&vec![b'x'; 10 * MAX_LINE]);
        assert_eq!(got, Some(Input::TooLong));
        assert_eq!(r.pending(), 0);
        // a megabyte without a line end never holds more than the limit
        let mut r = LineReader::new();
        let mut seen = 0;
        for _ in 0..1024 {
            let (_, got) = r.push(&[0u8; 1024]);
            assert!(r.pending() <= MAX_LINE + 1);
            seen += usize::from(got.is_some());
        }
        assert!(seen > 0);
        // NULs and high bytes are argument bytes
        assert_eq!(lines(b"user \x00\xff\r\n", 1), vec![cmd_bytes(Verb::User, b"\x00\xff")]);
    }

    fn cmd_bytes(verb: Verb, arg: &[u8]) -> Input {
        Input::Command(Command { verb, arg: arg.to_vec() })
    }

    #[test]
    fn passwords_are_not_shown() {
        let c = Command::parse(b"PASS secret");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn message_numbers() {
        let rows: &[(&[u8], usize, Result<usize, NumberError>)] = &[
            (b"1", 3, Ok(0)),
            (b"3", 3, Ok(2)),
            (b"4", 3, Err(NumberError::TooBig)),
            (b"0", 3, Err(NumberError::Zero)),
            (b"", 3, Err(NumberError::Syntax)),
            (b"x", 3, Err(NumberError::Syntax)),
            (b"-1", 3, Err(NumberError::Syntax)),
            (b"2abc", 3, Ok(1)),
            (b"99999999999999999999999999", 3, Err(NumberError::TooBig)),
            (b"18446744073709551615", 3, Err(NumberError::TooBig)),
            (b"1", 0, Err(NumberError::TooBig)),
        ];
        for &(arg, count, want) in rows {
            assert_eq!(message_number(arg, count).map(|(i, _)| i), want, "{arg:?}");
        }
        assert_eq!(message_number(b"2 10", 5).unwrap(), (1, &b" 10"[..]));
        assert_eq!(top_lines(b" 10"), Some(10));
        assert_eq!(top_lines(b"   0"), Some(0));
        assert_eq!(top_lines(b""), None);
        assert_eq!(top_lines(b" x"), None);
        assert_eq!(top_lines(b" 99999999999999999999999"), None);
        assert_eq!(NumberError::Zero.text(), "messages are counted from 1");
    }

    #[test]
    fn uids() {
        assert_eq!(uid(b"new/123.M1P2.host,S=5"), b"123.M1P2.host,S=5");
        assert_eq!(uid(b"cur/123.M1P2.host,S=5:2,S"), b"123.M1P2.host,S=5");
        assert_eq!(uid(b"123:2,"), b"123");
        assert_eq!(uid(b""), b"");
    }

    fn transfer(file: &[u8], lines: Option<u64>, chunk: usize) -> Vec<u8> {
        let mut t = Transfer::new(lines);
        let mut out = Vec::new();
        for piece in file.chunks(chunk.max(1)) {
            if !t.push(piece, &mut out) {
                break;
            }
        }
        t.finish(&mut out);
        out
    }

    #[test]
    fn transfers() {
        let msg = b"Subject: x\n.hidden: y\n\nline 1\n.\n..two\nline 3\n";
        let rows: &[(&[u8], Option<u64>, &[u8])] = &[
            (
                msg,
                None,
                b"Subject: x\r\n..hidden: y\r\n\r\nline 1\r\n..\r\n...two\r\nline 3\r\n\r\n.\r\n",
            ),
            (msg, Some(0), b"Subject: x\r\n..hidden: y\r\n\r\n\r\n.\r\n"),
            (msg, Some(2), b"Subject: x\r\n..hidden: y\r\n\r\nline 1\r\n..\r\n\r\n.\r\n"),
            (msg, Some(100), &transfer(msg, None, 1000)),
            // no final LF: the line is closed
            (b"a\nb", None, b"a\r\nb\r\n\r\n.\r\n"),
            (b"", None, b"\r\n.\r\n"),
            // CRLF in the file stays CR then CRLF (upstream)
            (b"a\r\n", None, b"a\r\r\n\r\n.\r\n"),
            // no header/body separator: TOP sends it all
            (b"a\nb\n", Some(0), b"a\r\nb\r\n\r\n.\r\n"),
            // a body line that is just a dot
            (b"\n.\n", None, b"\r\n..\r\n\r\n.\r\n"),
        ];
        for &(file, lines, want) in rows {
            for chunk in [1, 2, 3, 5, 1000] {
                let got = transfer(file, lines, chunk);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "{file:?} {lines:?} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn transfer_output_is_bounded_per_input() {
        let mut t = Transfer::new(None);
        let mut out = Vec::new();
        let input = b"\n.\n.\n.\n".repeat(100);
        t.push(&input, &mut out);
        assert!(out.len() <= 2 * input.len());
    }

    #[test]
    fn auth_failure_texts() {
        assert_eq!(auth_failure(Some(3)), "authorization failed");
        assert_eq!(auth_failure(Some(62)), "the users mailbox does not exist");
        assert_eq!(auth_failure(Some(111)), "temporary error");
        assert_eq!(auth_failure(Some(99)), "temporary error");
        assert_eq!(auth_failure(None), "temporary error");
    }
}
