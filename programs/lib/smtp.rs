//! smtp: the server side of SMTP, sans-I/O (doc/qmail-smtpd.8, "Addresses", "DATA").
//!
//! Bytes in, a parsed command or "need more" out; the program owns the socket, the timeouts
//! and the replies. Three parsers, each bounded while it streams:
//!
//! - [`CommandReader`]: command lines, at most [`MAX_LINE`] bytes. A longer line is consumed
//!   to its LF without being stored and reported as [`Input::TooLong`] (the program answers
//!   `500`). Lines end at LF; a CR before it is removed.
//! - [`parse_path`]: the MAIL/RCPT address (`<...>`, source route stripped, quotes and
//!   backslash escapes removed), at most [`MAX_ADDRESS`] bytes, with what it had to strip
//!   recorded so that the relay check can refuse ambiguous routing ([`Path::ambiguous`]).
//! - [`DataDecoder`]: the DATA stream. Only `CRLF.CRLF` ends it. **Bare LF and bare CR policy:
//!   an LF not preceded by CR, or a CR not followed by LF, anywhere in DATA, is fatal**
//!   ([`DataError::BareLf`], [`DataError::BareCr`]): the program answers `451`, queues
//!   nothing and closes the connection, so no "SMTP smuggling" sequence (`\n.\n`, `\r.\r`,
//!   `\r.\n`, `\n.\r`, `\r\n.\n`, `\r.\r\n`, `\r\n.\r`, ...) can end a message or start a
//!   second one: the only way out of DATA is `CRLF.CRLF` or the end of the session. NUL bytes
//!   are data. Leading dots are removed, CRLF becomes LF, `Received`/`Delivered` header lines
//!   are counted ([`MAX_HOPS`]), a header line longer than [`MAX_HEADER_LINE`] is fatal, and
//!   `databytes` is enforced on the decoded bytes: past it nothing more is emitted, the
//!   decoder reads on to the end of DATA and then reports [`Refusal::TooBig`].
//!
//! Security: no input-chosen allocation; every counter uses checked or saturating arithmetic;
//! nothing here panics on any input (see the fuzz target `fuzz/fuzz_targets/smtp.rs`).

use std::net::IpAddr;

/// The longest command line kept (RFC 5321 allows 512; extensions and long addresses need
/// more). The CR LF is not counted.
pub const MAX_LINE: usize = 1024;
/// The longest MAIL/RCPT address (upstream: more than 899 bytes is `555`).
pub const MAX_ADDRESS: usize = 899;
/// The longest header line of a message, in decoded bytes without the LF.
pub const MAX_HEADER_LINE: usize = 10_000;
/// A message with this many `Received`/`Delivered` header lines is looping.
pub const MAX_HOPS: u32 = 100;

/// The verbs qmail-smtpd knows; anything else is [`Verb::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    Auth,
    Starttls,
    Unknown,
}

impl Verb {
    fn from_bytes(verb: &[u8]) -> Verb {
        const VERBS: &[(&[u8], Verb)] = &[
            (b"helo", Verb::Helo),
            (b"ehlo", Verb::Ehlo),
            (b"mail", Verb::Mail),
            (b"rcpt", Verb::Rcpt),
            (b"data", Verb::Data),
            (b"rset", Verb::Rset),
            (b"noop", Verb::Noop),
            (b"vrfy", Verb::Vrfy),
            (b"help", Verb::Help),
            (b"quit", Verb::Quit),
            (b"auth", Verb::Auth),
            (b"starttls", Verb::Starttls),
        ];
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(verb))
            .map_or(Verb::Unknown, |&(_, v)| v)
    }
}

/// One command line: the verb (up to the first space, case-insensitive) and the argument (the
/// rest after the spaces that follow the verb).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: Verb,
    pub arg: Vec<u8>,
}

impl Command {
    /// Split a line (without its line end) into verb and argument.
    pub fn parse(line: &[u8]) -> Command {
        let (verb, rest) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, &line[line.len()..]),
        };
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        Command { verb: Verb::from_bytes(verb), arg: rest[start..].to_vec() }
    }
}

/// What [`CommandReader::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    /// A line longer than [`MAX_LINE`]; its bytes were dropped.
    TooLong,
}

/// Splits the client's bytes into command lines, holding at most [`MAX_LINE`] bytes; a longer
/// line is read to its end and reported there ([`crate::getln::Lines::skipping`]).
#[derive(Debug)]
pub struct CommandReader {
    lines: crate::getln::Lines,
}

impl Default for CommandReader {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandReader {
    pub fn new() -> Self {
        CommandReader { lines: crate::getln::Lines::skipping(MAX_LINE) }
    }

    /// Consume bytes of `input` up to and including the first LF. Returns how many bytes were
    /// consumed and, if a line ended, what it was; `None` means "need more".
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Input>) {
        let (used, got) = self.lines.push(input);
        let input = match got {
            None => None,
            Some(crate::getln::Got::TooLong) => Some(Input::TooLong),
            Some(crate::getln::Got::Line) => {
                Some(Input::Command(Command::parse(self.lines.line())))
            }
        };
        (used, input)
    }

    /// Bytes of an unfinished line are held (for tests and the fuzz target).
    pub fn pending(&self) -> usize {
        self.lines.pending()
    }
}

/// A MAIL or RCPT address as received, after the rules of doc/qmail-smtpd.8, "Addresses".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    /// The address: no NUL, no control characters, at most [`MAX_ADDRESS`] bytes.
    pub addr: Vec<u8>,
    /// ESMTP parameters after the address (`SIZE=123 BODY=8BITMIME`).
    pub params: Vec<u8>,
    /// A source route (`@a,@b:`) was stripped.
    pub source_route: bool,
    /// Double quotes were removed.
    pub quoted: bool,
    /// Backslash escapes were removed.
    pub escaped: bool,
}

/// Why a MAIL/RCPT argument was refused (`555 syntax error (#5.5.4)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// No `FROM:`/`TO:`, no closing `>`, a control character or an empty source route.
    Syntax,
    /// More than [`MAX_ADDRESS`] bytes.
    TooLong,
}

/// Parse the argument of MAIL (`keyword` `b"from:"`) or RCPT (`b"to:"`).
///
/// Stricter than upstream (see doc/qmail-smtpd.8): the keyword is required, a `<` needs its
/// `>`, and control characters (bytes below 32 and 127) are refused; without `<` the address
/// is the text after the colon up to the next space (RFC 821 sloppiness kept).
pub fn parse_path(arg: &[u8], keyword: &[u8]) -> Result<Path, PathError> {
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(PathError::Syntax);
    }
    let mut rest = &arg[keyword.len()..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let bracketed = rest.first() == Some(&b'<');
    if bracketed {
        rest = &rest[1..];
    }
    let terminator = if bracketed { b'>' } else { b' ' };
    let mut path = Path::default();
    if rest.first() == Some(&b'@') {
        match rest.iter().position(|&b| b == b':') {
            Some(i) => rest = &rest[i + 1..],
            None => return Err(PathError::Syntax),
        }
        path.source_route = true;
    }
    let mut escaped = false;
    let mut quoted = false;
    let mut end = None;
    for (i, &b) in rest.iter().enumerate() {
        if b < 32 || b == 127 {
            return Err(PathError::Syntax);
        }
        if escaped {
            escaped = false;
        } else if !quoted && b == terminator {
            end = Some(i);
            break;
        } else if b == b'\\' {
            escaped = true;
            path.escaped = true;
            continue;
        } else if b == b'"' {
            quoted = !quoted;
            path.quoted = true;
            continue;
        }
        if path.addr.len() == MAX_ADDRESS {
            return Err(PathError::TooLong);
        }
        path.addr.push(b);
    }
    match end {
        Some(i) => {
            let params = &rest[i + 1..];
            let start = params.iter().position(|&b| b != b' ').unwrap_or(params.len());
            path.params = params[start..].to_vec();
        }
        None if bracketed => return Err(PathError::Syntax),
        None => {}
    }
    if escaped || quoted {
        return Err(PathError::Syntax);
    }
    Ok(path)
}

impl Path {
    /// Routing that a non-relay client may not ask for: a source route, quotes or escapes, a
    /// `%` (percent hack), a `!` (UUCP path) or more than one `@`.
    pub fn ambiguous(&self) -> bool {
        self.source_route
            || self.quoted
            || self.escaped
            || self.addr.iter().any(|&b| b == b'%' || b == b'!')
            || self.addr.iter().filter(|&&b| b == b'@').count() > 1
    }

    /// `box@[IP]` with a local IP becomes `box@LIPHOST` (doc/qmail-smtpd.8). `is_local` says
    /// whether an address is one of this host's. The result is bounded by [`MAX_ADDRESS`] again.
    pub fn replace_local_ip(
        &mut self,
        liphost: &[u8],
        mut is_local: impl FnMut(IpAddr) -> bool,
    ) -> Result<(), PathError> {
        let (local, Some(domain)) = crate::address::split(&self.addr) else { return Ok(()) };
        let (at, Some(ip)) = (local.len(), bracket_ip(domain)) else { return Ok(()) };
        if is_local(ip) {
            self.addr.truncate(at + 1);
            self.addr.extend_from_slice(liphost);
            if self.addr.len() > MAX_ADDRESS {
                return Err(PathError::TooLong);
            }
        }
        Ok(())
    }
}

/// The IP of a domain literal `[1.2.3.4]` or `[IPv6:::1]`.
pub fn bracket_ip(domain: &[u8]) -> Option<IpAddr> {
    let inner = domain.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let text = std::str::from_utf8(inner).ok()?;
    if text.len() > 5 && text[..5].eq_ignore_ascii_case("ipv6:") {
        return text[5..].parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The value of the ESMTP parameter `SIZE=n`, if present and numeric (saturating).
pub fn size_param(params: &[u8]) -> Option<u64> {
    params.split(|&b| b == b' ').find_map(|p| {
        let v = p.get(..5).filter(|k| k.eq_ignore_ascii_case(b"size=")).map(|_| &p[5..])?;
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(v.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
    })
}

/// A reason the session must end in the middle of DATA (nothing is queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// An LF not preceded by CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// A header line longer than [`MAX_HEADER_LINE`].
    HeaderTooLong,
}

/// A message read to its end and refused (nothing is queued; the session goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More than the databytes limit after decoding.
    TooBig,
    /// [`MAX_HOPS`] or more `Received`/`Delivered` header lines.
    Looping,
}

/// What [`DataDecoder::push`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every byte was consumed; the message goes on.
    NeedMore,
    /// `CRLF.CRLF` was read: the message is complete, or refused.
    End(Result<(), Refusal>),
    /// The session must end (the bytes after the offending one were not consumed).
    Fatal(DataError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// at the start of a line
    LineStart,
    /// a line that began with `.`
    Dot,
    /// `.` CR at the start of a line
    DotCr,
    /// inside a line
    InLine,
    /// after a CR inside a line (or of an empty line)
    Cr,
    /// after the end
    Done,
}

/// The DATA stream decoder: feed it the bytes after the `354`, write what it emits.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    /// databytes: the most decoded bytes accepted; 0 = no limit
    limit: u64,
    bytes: u64,
    in_header: bool,
    /// decoded length of the current header line
    header_pos: usize,
    /// the first bytes of the current header line, lowercased
    prefix: [u8; 9],
    hops: u32,
    refusal: Option<Refusal>,
}

impl DataDecoder {
    /// A decoder refusing messages of more than `databytes` decoded bytes (0 = unlimited).
    pub fn new(databytes: u64) -> Self {
        DataDecoder {
            state: State::LineStart,
            limit: databytes,
            bytes: 0,
            in_header: true,
            header_pos: 0,
            prefix: [0; 9],
            hops: 0,
            refusal: None,
        }
    }

    /// The message is already refused: its bytes are no longer emitted (the caller may stop
    /// writing to the queue now and just keep feeding the decoder).
    pub fn refused(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Decoded bytes so far (emitted or not).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Decode from `input`, appending the message bytes to `out`. Returns the bytes consumed
    /// and what happened; after [`Step::End`] the rest of `input` belongs to the command
    /// reader again.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Step) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            let next = match self.state {
                State::Done => return (i, Step::End(self.result())),
                State::LineStart => match b {
                    b'.' => State::Dot,
                    b'\r' => State::Cr,
                    b'\n' => return (i, Step::Fatal(DataError::BareLf)),
                    _ => {
                        if let Err(e) = self.emit(&[b], out) {
                            return (i, Step::Fatal(e));
                        }
                        State::InLine
                    }
                },
                State::Dot => match b {
                    b'\r' => State::DotCr,
                    b'\n' => return (i, Step::Fatal(DataError::BareLf)),
                    _ => {
                        // an unstuffed dot: the line goes on without it
                        if let Err(e) = self.emit(&[b], out) {
                            return (i, Step::Fatal(e));
                        }
                        State::InLine
                    }
                },
                State::DotCr => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return (i + 1, Step::End(self.result()));
                    }
                    _ => return (i, Step::Fatal(DataError::BareCr)),
                },
                State::InLine => {
                    // the fast path: a run of ordinary bytes
                    let run = input[i..]
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(input.len() - i);
                    if run > 0 {
                        if let Err(e) = self.emit(&input[i..i + run], out) {
                            return (i, Step::Fatal(e));
                        }
                        i += run;
                        continue;
                    }
                    match b {
                        b'\r' => State::Cr,
                        _ => return (i, Step::Fatal(DataError::BareLf)),
                    }
                }
                State::Cr => match b {
                    b'\n' => {
                        if let Err(e) = self.emit(b"\n", out) {
                            return (i, Step::Fatal(e));
                        }
                        State::LineStart
                    }
                    _ => return (i, Step::Fatal(DataError::BareCr)),
                },
            };
            self.state = next;
            i += 1;
        }
        (i, Step::NeedMore)
    }

    fn result(&self) -> Result<(), Refusal> {
        match self.refusal {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Count and pass on decoded bytes: `bytes` is either one `\n` or contains no `\n`.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DataError> {
        if self.in_header {
            if bytes == b"\n" {
                if self.header_pos == 0 {
                    self.in_header = false;
                } else {
                    let p = &self.prefix[..self.header_pos.min(9)];
                    if p.starts_with(b"received") || p.starts_with(b"delivered") {
                        self.hops = self.hops.saturating_add(1);
                        if self.hops >= MAX_HOPS && self.refusal.is_none() {
                            self.refusal = Some(Refusal::Looping);
                        }
                    }
                }
                self.header_pos = 0;
            } else {
                for (k, &b) in bytes.iter().take(9usize.saturating_sub(self.header_pos)).enumerate()
                {
                    self.prefix[self.header_pos + k] = b.to_ascii_lowercase();
                }
                self.header_pos = self.header_pos.saturating_add(bytes.len());
                if self.header_pos > MAX_HEADER_LINE {
                    return Err(DataError::HeaderTooLong);
                }
            }
        }
        self.bytes = self.bytes.saturating_add(bytes.len() as u64);
        if self.limit > 0 && self.bytes > self.limit && self.refusal.is_none() {
            self.refusal = Some(Refusal::TooBig);
        }
        if self.refusal.is_none() {
            out.extend_from_slice(bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Input> {
        let mut r = CommandReader::new();
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (n, got) = r.push(rest);
            assert!(n > 0 && n <= rest.len());
            rest = &rest[n..];
            out.extend(got);
        }
        out
    }

    fn cmd(verb: Verb, arg: &str) -> Input {
        Input::Command(Command { verb, arg: arg.as_bytes().to_vec() })
    }

    #[test]
    fn command_lines() {
        let rows: &[(&[u8], Vec<Input>)] = &[
            (b"HELO x\r\n", vec![cmd(Verb::Helo, "x")]),
            (b"ehlo   a b\n", vec![cmd(Verb::Ehlo, "a b")]),
            (b"MaIl FROM:<a@b>\r\n", vec![cmd(Verb::Mail, "FROM:<a@b>")]),
            (b"QUIT", vec![]),
            (b"quit\r\nnoop\r\n", vec![cmd(Verb::Quit, ""), cmd(Verb::Noop, "")]),
            (b"\r\n", vec![cmd(Verb::Unknown, "")]),
            (b"DATA\r\r\n", vec![cmd(Verb::Unknown, "")]),
            (b"X\0Y z\r\n", vec![cmd(Verb::Unknown, "z")]),
            (
                b"starttls\r\nAUTH PLAIN\r\n",
                vec![cmd(Verb::Starttls, ""), cmd(Verb::Auth, "PLAIN")],
            ),
        ];
        for (input, want) in rows {
            assert_eq!(&lines(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn long_lines_are_dropped() {
        let mut input = vec![b'x'; 2 << 20];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(lines(&input), vec![Input::TooLong, cmd(Verb::Noop, "")]);
        let mut exact = vec![b'x'; MAX_LINE];
        exact.extend_from_slice(b"\r\n");
        assert!(matches!(lines(&exact)[..], [Input::Command(_)]));
        let mut over = vec![b'x'; MAX_LINE + 1];
        over.extend_from_slice(b"\r\n");
        assert_eq!(lines(&over), vec![Input::TooLong]);
        // fed one byte at a time, nothing grows past the bound
        let mut r = CommandReader::new();
        for _ in 0..100_000 {
            let (n, got) = r.push(b"y");
            assert_eq!((n, got), (1, None));
            assert!(r.pending() <= MAX_LINE + 1);
        }
        assert_eq!(r.push(b"\n"), (1, Some(Input::TooLong)));
    }

    #[test]
    fn paths() {
        type Row =
            (&'static str, &'static [u8], Result<(&'static str, &'static str, bool), PathError>);
        let rows: &[Row] = &[
            ("FROM:<a@b>", b"from:", Ok(("a@b", "", false))),
            ("from: <a@b> SIZE=10", b"from:", Ok(("a@b", "SIZE=10", false))),
            ("FROM:<>", b"from:", Ok(("", "", false))),
            ("FROM:a@b SIZE=1", b"from:", Ok(("a@b", "SIZE=1", false))),
            ("TO:<@x,@y:u@z>", b"to:", Ok(("u@z", "", true))),
            ("TO:<\"a b\"@z>", b"to:", Ok(("a b@z", "", true))),
            ("TO:<\"a>b\"@z>", b"to:", Ok(("a>b@z", "", true))),
            ("TO:<a\\@b@z>", b"to:", Ok(("a@b@z", "", true))),
            ("TO:<u%v@z>", b"to:", Ok(("u%v@z", "", true))),
            ("TO:<v!u@z>", b"to:", Ok(("v!u@z", "", true))),
            ("TO:<u@v@z>", b"to:", Ok(("u@v@z", "", true))),
            ("TO:<u@z>", b"to:", Ok(("u@z", "", false))),
            ("TO:<u@z", b"to:", Err(PathError::Syntax)),
            ("TO:<@x u@z>", b"to:", Err(PathError::Syntax)),
            ("TO:<\"u@z>", b"to:", Err(PathError::Syntax)),
            ("TO:<u\\", b"to:", Err(PathError::Syntax)),
            ("TO:<u\x01@z>", b"to:", Err(PathError::Syntax)),
            ("TO:<u\x7f@z>", b"to:", Err(PathError::Syntax)),
            ("FROM:<u@z>", b"to:", Err(PathError::Syntax)),
            ("<u@z>", b"from:", Err(PathError::Syntax)),
            ("", b"to:", Err(PathError::Syntax)),
        ];
        for (arg, kw, want) in rows {
            let got = parse_path(arg.as_bytes(), kw);
            let got = got.map(|p| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (text(&p.addr), text(&p.params), p.ambiguous())
            });
            let want = want.map(|(a, p, amb)| (a.to_string(), p.to_string(), amb));
            assert_eq!(got, want, "{arg}");
        }
        let long = format!("TO:<{}@z>", "a".repeat(MAX_ADDRESS));
        assert_eq!(parse_path(long.as_bytes(), b"to:"), Err(PathError::TooLong));
        let fits = format!("TO:<{}@z>", "a".repeat(MAX_ADDRESS - 2));
        assert_eq!(parse_path(fits.as_bytes(), b"to:").map(|p| p.addr.len()), Ok(MAX_ADDRESS));
        let nul = b"TO:<a\0b@z>";
        assert_eq!(parse_path(nul, b"to:"), Err(PathError::Syntax));
    }

    #[test]
    fn local_ip_literals() {
        let local = |ip: IpAddr| ip.is_loopback();
        let rows: &[(&str, &str)] = &[
            ("TO:<box@[127.0.0.1]>", "box@lh.example"),
            ("TO:<box@[IPv6:::1]>", "box@lh.example"),
            ("TO:<box@[192.0.2.1]>", "box@[192.0.2.1]"),
            ("TO:<box@[127.0.0.1>", "box@[127.0.0.1"),
            ("TO:<box@[x]>", "box@[x]"),
            ("TO:<box>", "box"),
        ];
        for (arg, want) in rows {
            let Ok(mut p) = parse_path(arg.as_bytes(), b"to:") else {
                assert_eq!(*want, "box@[127.0.0.1", "{arg}");
                continue;
            };
            p.replace_local_ip(b"lh.example", local).unwrap();
            assert_eq!(String::from_utf8_lossy(&p.addr), *want, "{arg}");
        }
        let mut p =
            parse_path(format!("TO:<{}@[127.0.0.1]>", "a".repeat(880)).as_bytes(), b"to:").unwrap();
        assert_eq!(p.replace_local_ip(&[b'h'; 40], local), Err(PathError::TooLong));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_param(b"SIZE=100"), Some(100));
        assert_eq!(size_param(b"BODY=8BITMIME size=7"), Some(7));
        assert_eq!(size_param(b"SIZE="), None);
        assert_eq!(size_param(b"SIZE=1x"), None);
        assert_eq!(size_param(b"SIZE=99999999999999999999999"), Some(u64::MAX));
        assert_eq!(size_param(b""), None);
    }

    /// Decode `input` in chunks of `chunk` bytes; the emitted bytes, the step and the bytes
    /// consumed in all.
    fn decode(input: &[u8], databytes: u64, chunk: usize) -> (Vec<u8>, Step, usize) {
        let mut d = DataDecoder::new(databytes);
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(chunk) {
            let (n, step) = d.push(piece, &mut out);
            used += n;
            if step != Step::NeedMore {
                return (out, step, used);
            }
            assert_eq!(n, piece.len());
        }
        (out, Step::NeedMore, used)
    }

    #[test]
    fn data_decoding() {
        let ok = Step::End(Ok(()));
        let lf = Step::Fatal(DataError::BareLf);
        let cr = Step::Fatal(DataError::BareCr);
        let rows: &[(&[u8], &[u8], Step)] = &[
            (b".\r\n", b"", ok),
            (b"a\r\n.\r\n", b"a\n", ok),
            (b"a\r\n..b\r\n.\r\n", b"a\n.b\n", ok),
            (b"..\r\n.\r\n", b".\n", ok),
            (b"a\r\n.\r\nMAIL", b"a\n", ok),
            (b"a\0b\r\n.\0\r\n.\r\n", b"a\0b\n\0\n", ok),
            (b"\r\n\r\n.\r\n", b"\n\n", ok),
            (b"a\r\n.x", b"a\nx", Step::NeedMore),
            // smuggling attempts: every one is fatal, never an end
            (b"a\n.\nb\r\n.\r\n", b"a", lf),
            (b"a\r.\rb\r\n.\r\n", b"a", cr),
            (b"a\r.\nb\r\n.\r\n", b"a", cr),
            (b"a\n.\rb\r\n.\r\n", b"a", lf),
            (b"a\n.\r\nb\r\n.\r\n", b"a", lf),
            (b"a\r\n.\nb\r\n.\r\n", b"a\n", lf),
            (b"a\r.\r\nb\r\n.\r\n", b"a", cr),
            (b"a\r\n.\rb\r\n.\r\n", b"a\n", cr),
            (b"a\r\n.\r\r\n", b"a\n", cr),
            (b"a\n\0.\0\nb\r\n.\r\n", b"a", lf),
            (b"a\r\n\0.\0\r\nb\r\n.\r\n", b"a\n\0.\0\nb\n", ok),
            (b"\n", b"", lf),
            (b".\n", b"", lf),
            (b"\r", b"", Step::NeedMore),
            (b"\rx", b"", cr),
            (b"x\r\r\n", b"x", cr),
        ];
        for (input, want, step) in rows {
            for chunk in [1, 2, 3, 7, 4096] {
                let (out, got, _) = decode(input, 0, chunk);
                assert_eq!(
                    (String::from_utf8_lossy(&out), got),
                    (String::from_utf8_lossy(want), *step),
                    "{:?} in chunks of {chunk}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // the bytes after the end are left for the command reader
        let (_, _, used) = decode(b"a\r\n.\r\nQUIT\r\n", 0, 4096);
        assert_eq!(used, 6);
    }

    #[test]
    fn databytes() {
        let body = b"12345\r\n.\r\n";
        assert_eq!(decode(body, 6, 4096).1, Step::End(Ok(())));
        let (out, step, used) = decode(body, 5, 4096);
        assert_eq!((step, used), (Step::End(Err(Refusal::TooBig)), body.len()));
        assert_eq!(out, b"12345");
        // a huge message read through: nothing more is emitted, memory stays flat
        let mut d = DataDecoder::new(10);
        let line = [b'x'; 1000];
        let mut out = Vec::new();
        d.push(b"\r\n", &mut out);
        for _ in 0..10_000 {
            assert_eq!(d.push(&line, &mut out), (1000, Step::NeedMore));
            assert_eq!(d.push(b"\r\n", &mut out), (2, Step::NeedMore));
        }
        assert!(out.len() <= 10);
        assert_eq!(d.refused(), Some(Refusal::TooBig));
        assert_eq!(d.push(b".\r\n", &mut out), (3, Step::End(Err(Refusal::TooBig))));
    }

    #[test]
    fn hops_and_header_lines() {
        let mut msg = Vec::new();
        for _ in 0..99 {
            msg.extend_from_slice(b"Received: x\r\n");
        }
        msg.extend_from_slice(b"\r\n");
        let mut more = msg.clone();
        more.extend_from_slice(b".\r\n");
        assert_eq!(decode(&more, 0, 4096).1, Step::End(Ok(())));
        let mut looping = b"DELIVERED-TO: y\r\n".to_vec();
        looping.extend_from_slice(&more);
        assert_eq!(decode(&looping, 0, 4096).1, Step::End(Err(Refusal::Looping)));
        // Received lines in the body do not count
        let mut body = b"Subject: x\r\n\r\n".to_vec();
        for _ in 0..200 {
            body.extend_from_slice(b"Received: x\r\n");
        }
        body.extend_from_slice(b".\r\n");
        assert_eq!(decode(&body, 0, 4096).1, Step::End(Ok(())));
        let mut long = vec![b'h'; MAX_HEADER_LINE];
        long.extend_from_slice(b"\r\n\r\n.\r\n");
        assert_eq!(decode(&long, 0, 333).1, Step::End(Ok(())));
        let mut too_long = vec![b'h'; MAX_HEADER_LINE + 1];
        too_long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode(&too_long, 0, 333).1, Step::Fatal(DataError::HeaderTooLong));
        // long body lines are fine
        let mut body_long = b"\r\n".to_vec();
        body_long.extend_from_slice(&[b'b'; 3 * MAX_HEADER_LINE]);
        body_long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode(&body_long, 0, 4096).1, Step::End(Ok(())));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // a cheap deterministic fuzz: every short sequence over a hostile alphabet
        let alphabet = [b'\r', b'\n', b'.', b'\0', b'a', b'<', b'>', b'"', b'\\', b'@'];
        let mut buf = Vec::new();
        for n in 0..6u32 {
            for code in 0..alphabet.len().pow(n) {
                buf.clear();
                let mut c = code;
                for _ in 0..n {
                    buf.push(alphabet[c % alphabet.len()]);
                    c /= alphabet.len();
                }
                let _ = decode(&buf, 3, 1);
                let _ = lines(&buf);
                let _ = parse_path(&buf, b"");
                // an end is only ever CRLF.CRLF (or `.CRLF` at the very start)
                if let (_, Step::End(_), used) = decode(&buf, 0, 4096) {
                    let end = &buf[..used];
                    assert!(end == b".\r\n" || end.ends_with(b"\r\n.\r\n"), "{buf:?}");
                }
            }
        }
    }
}
