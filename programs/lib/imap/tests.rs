use super::*;

const BIG: u32 = 1 << 20;

fn reader() -> Reader {
    Reader::new(Limits::new(BIG))
}

/// All events of `input` pushed in one piece.
fn events(input: &[u8]) -> Vec<Event> {
    events_in(input, input.len().max(1))
}

/// All events of `input` pushed in pieces of `chunk` bytes, checking the consumed counts.
fn events_in(input: &[u8], chunk: usize) -> Vec<Event> {
    let mut r = reader();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (n, event) = r.push(rest);
            assert!(n <= rest.len());
            assert!(n > 0 || event.is_some());
            rest = &rest[n..];
            out.extend(event);
        }
    }
    out
}

/// The one command of `input` (after any continuations).
fn command(input: &[u8]) -> Command {
    let mut got = events(input);
    got.retain(|e| !matches!(e, Event::Continue));
    match got.as_slice() {
        [Event::Command(cmd)] => cmd.clone(),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

/// The one error of `input`.
fn error(input: &[u8]) -> Error {
    match events(input).into_iter().find(|e| !matches!(e, Event::Continue)) {
        Some(Event::Error(e)) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn atom(a: &str) -> Value {
    Value::Atom(a.as_bytes().to_vec())
}

fn quoted(s: &[u8]) -> Value {
    Value::Quoted(s.to_vec())
}

fn bad(tag: &str, kind: ErrorKind) -> Error {
    Error { tag: Some(tag.as_bytes().to_vec()), kind }
}

#[test]
fn tag_name_and_no_arguments() {
    let cmd = command(b"a001 capability\r\n");
    assert_eq!(cmd.tag, b"a001");
    assert_eq!(cmd.name, b"CAPABILITY");
    assert!(!cmd.uid && cmd.args.is_empty());
    assert_eq!(Request::of(&cmd), Ok(Request::Capability));
    // LF alone ends a line too
    assert_eq!(command(b"x NoOp\n").name, b"NOOP");
}

#[test]
fn token_kinds() {
    let cmd = command(
        b"t X atom 42 \"q \\\"x\\\\ y\" {3}\r\nlit NIL (a (b) ()) \\Seen \\* 1:5,7,*,3:* %*\r\n",
    );
    assert_eq!(
        cmd.args,
        vec![
            atom("atom"),
            atom("42"),
            quoted(b"q \"x\\ y"),
            Value::Literal(b"lit".to_vec()),
            atom("NIL"),
            Value::List(vec![atom("a"), Value::List(vec![atom("b")]), Value::List(vec![])]),
            atom("\\Seen"),
            atom("\\*"),
            atom("1:5,7,*,3:*"),
            atom("%*"),
        ]
    );
    assert_eq!(cmd.args[1].number(), Ok(42));
    assert!(cmd.args[4].is_nil() && atom("nil").is_nil() && !quoted(b"NIL").is_nil());
    assert_eq!(cmd.args[2].astring(), Some(&b"q \"x\\ y"[..]));
    assert_eq!(cmd.args[3].astring(), Some(&b"lit"[..]));
    assert_eq!(cmd.args[9].astring(), None);
    assert_eq!(cmd.args[9].list_mailbox(), Some(&b"%*"[..]));
    assert_eq!(atom("a]b").astring(), Some(&b"a]b"[..]));
    assert_eq!(quoted(b"").astring(), Some(&b""[..]));
}

#[test]
fn numbers() {
    assert_eq!(atom("0").number(), Ok(0));
    assert_eq!(atom("4294967295").number(), Ok(u32::MAX));
    assert!(atom("4294967296").number().is_err());
    assert!(atom("99999999999999999999999").number().is_err());
    assert!(atom("1a").number().is_err());
    assert!(quoted(b"1").number().is_err());
    // a mailbox called 007 keeps its zeros
    assert_eq!(Request::of(&command(b"a SELECT 007\r\n")), Ok(Request::Select(b"007")));
}

#[test]
fn sections_and_partials() {
    let cmd = command(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[] UID)\r\n");
    let Value::List(items) = &cmd.args[1] else { panic!("{:?}", cmd.args) };
    assert_eq!(
        items[0],
        Value::Section {
            name: b"BODY.PEEK".to_vec(),
            section: vec![atom("HEADER.FIELDS"), Value::List(vec![atom("From"), atom("To")])],
            partial: Some((0, 100)),
        }
    );
    assert_eq!(items[1], Value::Section { name: b"BODY".to_vec(), section: vec![], partial: None });
    assert_eq!(items[2], atom("UID"));
    for bad_partial in [
        &b"a FETCH 1 BODY[]<0.0>\r\n"[..],
        b"a FETCH 1 BODY[]<1>\r\n",
        b"a FETCH 1 BODY[]<a.b>\r\n",
    ] {
        assert_eq!(error(bad_partial).kind, ErrorKind::Syntax("Invalid partial"));
    }
    assert_eq!(error(b"a FETCH 1 BODY[1\r\n").kind, ErrorKind::Syntax("Missing ]"));
    assert_eq!(error(b"a FETCH 1 (UID\r\n").kind, ErrorKind::Syntax("Missing )"));
    assert_eq!(error(b"a FETCH 1 UID)\r\n").kind, ErrorKind::Syntax("Space expected"));
}

#[test]
fn sequence_sets() {
    let set = SequenceSet::parse(b"1:5,7,*,3:*").unwrap();
    use SeqNumber::{Last, Number};
    assert_eq!(
        set.ranges(),
        &[
            SeqRange { first: Number(1), last: Number(5) },
            SeqRange { first: Number(7), last: Number(7) },
            SeqRange { first: Last, last: Last },
            SeqRange { first: Number(3), last: Last },
        ]
    );
    assert!(set.contains(4, 10) && set.contains(10, 10) && set.contains(6, 10));
    let set = SequenceSet::parse(b"9:4").unwrap();
    assert!(set.contains(4, 100) && set.contains(9, 100) && !set.contains(10, 100));
    assert!(!SequenceSet::parse(b"2").unwrap().contains(1, 1));
    for bad in ["", "0", "1,", ",1", "1:", ":1", "1:2:3", "a", "4294967296", "1:0", "1 2", "**"] {
        assert!(SequenceSet::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(SequenceSet::parse(b"4294967295").is_ok());
}

#[test]
fn typed_requests() {
    let req = |line: &[u8]| {
        let cmd = command(line);
        Request::of(&cmd).map(|r| format!("{r:?}"))
    };
    for (name, line) in [
        ("NOOP", &b"a noop\r\n"[..]),
        ("LOGOUT", b"a LOGOUT\r\n"),
        ("STARTTLS", b"a STARTTLS\r\n"),
        ("IDLE", b"a IDLE\r\n"),
        ("CHECK", b"a CHECK\r\n"),
        ("CLOSE", b"a CLOSE\r\n"),
        ("EXPUNGE", b"a EXPUNGE\r\n"),
        ("UNSELECT", b"a UNSELECT\r\n"),
        ("NAMESPACE", b"a NAMESPACE\r\n"),
        ("ID", b"a ID NIL\r\n"),
        ("ID", b"a ID (\"name\" \"mutt\")\r\n"),
        ("ENABLE", b"a ENABLE CONDSTORE\r\n"),
        ("Authenticate(..)", b"a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n"),
    ] {
        assert_eq!(req(line), Ok(name.to_string()), "{:?}", String::from_utf8_lossy(line));
    }
    for line in [
        &b"a NOOP x\r\n"[..],
        b"a ENABLE\r\n",
        b"a AUTHENTICATE\r\n",
        b"a SEARCH\r\n",
        b"a FETCH 1\r\n",
    ] {
        assert_eq!(req(line), Err(arity_or_extra(line)), "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(req(b"a FROB\r\n"), Err(ErrorKind::Syntax("Unknown command")));
    assert_eq!(req(b"a UID NOOP\r\n"), Err(ErrorKind::Syntax("Invalid UID command")));

    let login = command(b"a LOGIN {3}\r\njoe \"se\\\"cret\"\r\n");
    assert_eq!(Request::of(&login), Ok(Request::Login { user: b"joe", password: b"se\"cret" }));
    assert!(!format!("{:?}{login:?}", Request::of(&login)).contains("cret"));
    assert_eq!(
        Request::of(&command(b"a LOGIN NIL x\r\n")),
        Ok(Request::Login { user: b"NIL", password: b"x" })
    );
    assert!(Request::of(&command(b"a LOGIN joe\r\n")).is_err());
    assert!(Request::of(&command(b"a LOGIN joe (x)\r\n")).is_err());

    for (line, name) in [
        (&b"a SELECT INBOX\r\n"[..], Request::Select(b"INBOX")),
        (b"a EXAMINE \"a b\"\r\n", Request::Examine(b"a b")),
        (b"a CREATE x\r\n", Request::Create(b"x")),
        (b"a DELETE x\r\n", Request::Delete(b"x")),
        (b"a SUBSCRIBE x\r\n", Request::Subscribe(b"x")),
        (b"a UNSUBSCRIBE {1+}\r\nx\r\n", Request::Unsubscribe(b"x")),
        (b"a RENAME x y\r\n", Request::Rename { from: b"x", to: b"y" }),
        (b"a LIST \"\" \"\"\r\n", Request::List(Pattern { reference: b"", pattern: b"" })),
        (
            b"a LIST \"\" INBOX.%\r\n",
            Request::List(Pattern { reference: b"", pattern: b"INBOX.%" }),
        ),
        (b"a LSUB x *\r\n", Request::Lsub(Pattern { reference: b"x", pattern: b"*" })),
    ] {
        assert_eq!(Request::of(&command(line)), Ok(name));
    }
    assert!(Request::of(&command(b"a SELECT\r\n")).is_err());
    assert!(Request::of(&command(b"a SELECT a b\r\n")).is_err());
    assert!(Request::of(&command(b"a SELECT a*\r\n")).is_err());

    let status = command(b"a STATUS INBOX (MESSAGES UIDNEXT)\r\n");
    let items = [atom("MESSAGES"), atom("UIDNEXT")];
    assert_eq!(Request::of(&status), Ok(Request::Status { mailbox: b"INBOX", items: &items }));
    assert!(Request::of(&command(b"a STATUS INBOX ()\r\n")).is_err());

    let fetch = command(b"a UID FETCH 1:* (FLAGS)\r\n");
    let Ok(Request::Fetch { uid: true, set, items }) = Request::of(&fetch) else { panic!() };
    assert_eq!(set, SequenceSet::parse(b"1:*").unwrap());
    assert_eq!(items, &[Value::List(vec![atom("FLAGS")])]);
    assert!(Request::of(&command(b"a FETCH 0 FLAGS\r\n")).is_err());
    assert!(Request::of(&command(b"a FETCH \"1\" FLAGS\r\n")).is_err());

    let store = command(b"a STORE 2,4 +FLAGS.SILENT (\\Deleted)\r\n");
    let Ok(Request::Store { uid: false, action, flags, .. }) = Request::of(&store) else {
        panic!()
    };
    assert_eq!(
        (action, flags),
        (&atom("+FLAGS.SILENT"), &[Value::List(vec![atom("\\Deleted")])][..])
    );

    let copy = command(b"a uid copy 3 \"Sent\"\r\n");
    let Ok(Request::Copy(Transfer { uid: true, mailbox: b"Sent", .. })) = Request::of(&copy) else {
        panic!()
    };
    let mv = command(b"a MOVE 3 Trash\r\n");
    let Ok(Request::Move(Transfer { uid: false, mailbox: b"Trash", .. })) = Request::of(&mv) else {
        panic!()
    };

    let search = command(b"a UID SEARCH CHARSET UTF-8 SUBJECT {4+}\r\n\xc3\xa9t\xc3\r\n");
    let Ok(Request::Search { uid: true, keys }) = Request::of(&search) else { panic!() };
    assert_eq!(keys.len(), 4);

    let expunge = command(b"a UID EXPUNGE 3:5\r\n");
    assert_eq!(
        Request::of(&expunge),
        Ok(Request::Expunge(Some(SequenceSet::parse(b"3:5").unwrap())))
    );
}

fn arity_or_extra(line: &[u8]) -> ErrorKind {
    if line.starts_with(b"a NOOP") {
        ErrorKind::Syntax("Unexpected arguments")
    } else {
        ErrorKind::Syntax("Wrong number or kind of arguments")
    }
}

#[test]
fn append() {
    let full =
        command(b"a APPEND Sent (\\Seen $x) \" 4-Dec-2026 18:00:00 +0000\" {5}\r\nhello\r\n");
    let flags = [atom("\\Seen"), atom("$x")];
    assert_eq!(
        Request::of(&full),
        Ok(Request::Append {
            mailbox: b"Sent",
            flags: Some(&flags),
            date: Some(b" 4-Dec-2026 18:00:00 +0000"),
            message: b"hello",
        })
    );
    let bare = command(b"a APPEND INBOX {0+}\r\n\r\n");
    assert_eq!(
        Request::of(&bare),
        Ok(Request::Append { mailbox: b"INBOX", flags: None, date: None, message: b"" })
    );
    let no_flags = command(b"a APPEND INBOX \"d\" {1}\r\n\0\r\n");
    assert_eq!(
        Request::of(&no_flags),
        Ok(Request::Append { mailbox: b"INBOX", flags: None, date: Some(b"d"), message: b"\0" })
    );
    let flags_only = command(b"a APPEND INBOX () {1}\r\nx\r\n");
    assert_eq!(
        Request::of(&flags_only),
        Ok(Request::Append { mailbox: b"INBOX", flags: Some(&[]), date: None, message: b"x" })
    );
    for line in [
        &b"a APPEND INBOX \"x\"\r\n"[..],
        b"a APPEND {1}\r\nx\r\n",
        b"a APPEND INBOX (\"f\") {1}\r\nx\r\n",
    ] {
        assert!(Request::of(&command(line)).is_err(), "{:?}", String::from_utf8_lossy(line));
    }
}

/// A pipelined stream with every literal kind, and what it parses to.
const STREAM: &[u8] = b"a1 LOGIN {3}\r\njoe {6+}\r\nsecret\r\n\
    a2 APPEND INBOX (\\Seen) {12}\r\nhello\r\nworld\r\n\
    a3 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM)])\n\
    a4 LOGOUT\r\n";

#[test]
fn split_at_every_boundary() {
    let whole = events(STREAM);
    assert_eq!(whole.iter().filter(|e| matches!(e, Event::Continue)).count(), 2);
    assert_eq!(whole.iter().filter(|e| matches!(e, Event::Command(_))).count(), 4);
    let Event::Command(append) = &whole[3] else { panic!("{whole:?}") };
    assert!(matches!(Request::of(append), Ok(Request::Append { message: b"hello\r\nworld", .. })));
    for chunk in 1..=STREAM.len() {
        assert_eq!(events_in(STREAM, chunk), whole, "chunk {chunk}");
    }
    for split in 0..=STREAM.len() {
        let mut r = reader();
        let mut got = Vec::new();
        for piece in [&STREAM[..split], &STREAM[split..]] {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, event) = r.push(rest);
                rest = &rest[n..];
                got.extend(event);
            }
        }
        assert_eq!(got, whole, "split at {split}");
    }
}

#[test]
fn continuation_once_per_synchronizing_literal() {
    let mut r = reader();
    assert_eq!(r.push(b"a LOGIN {3}\r\n"), (13, Some(Event::Continue)));
    assert_eq!(r.push(b"j"), (1, None));
    assert_eq!(r.push(b"oe {1}"), (6, None));
    assert_eq!(r.push(b"\r"), (1, None));
    assert_eq!(r.push(b"\n"), (1, Some(Event::Continue)));
    let (n, event) = r.push(b"x\r\nb NOOP\r\n");
    assert_eq!(n, 3);
    let Some(Event::Command(cmd)) = event else { panic!("{event:?}") };
    assert_eq!(Request::of(&cmd), Ok(Request::Login { user: b"joe", password: b"x" }));
    // LITERAL+: no continuation at all
    let mut r = reader();
    assert_eq!(r.push(b"a LOGIN {3+}\r\n"), (14, None));
    assert!(matches!(r.push(b"joe {1+}\r\nx\r\n"), (13, Some(Event::Command(_)))));
    // the bytes after a command stay with the caller (IDLE's DONE)
    let mut r = reader();
    let (n, event) = r.push(b"a IDLE\r\nDONE\r\n");
    assert_eq!((n, event.is_some()), (8, true));
    assert_eq!(r.pending(), 0);
}

#[test]
fn oversized_literals() {
    let mut r = Reader::new(Limits::new(1000));
    let sync_big =
        Event::Error(bad("a", ErrorKind::LiteralTooBig { size: Some(1 << 31), sync: true }));
    assert_eq!(r.push(b"a APPEND INBOX {2147483648}\r\n"), (29, Some(sync_big)));
    assert_eq!(r.pending(), 0);
    // the client does not send it, and the next command is read
    assert!(matches!(r.push(b"b NOOP\r\n"), (8, Some(Event::Command(_)))));
    // beyond u64
    let e = error(b"a APPEND INBOX {99999999999999999999999}\r\n");
    assert_eq!(e, bad("a", ErrorKind::LiteralTooBig { size: None, sync: true }));
    // a non-synchronizing one is skipped, with the rest of its command and its next literal
    let mut r = Reader::new(Limits::new(4));
    let input = b"a APPEND INBOX {5+}\r\nhello {3+}\r\nxyz more\r\nb NOOP\r\n";
    let (n, event) = r.push(input);
    assert_eq!(
        event,
        Some(Event::Error(bad("a", ErrorKind::LiteralTooBig { size: Some(5), sync: false })))
    );
    let (m, event) = r.push(&input[n..]);
    assert_eq!(n + m, input.len());
    assert!(matches!(event, Some(Event::Command(c)) if c.tag == b"b"));
    // announced then silence: nothing is allocated beyond the line
    let mut r = Reader::new(Limits::new(u32::MAX));
    assert_eq!(r.push(b"a APPEND INBOX {2147483648+}\r\n"), (30, None));
    assert_eq!(r.push(b"abc"), (3, None));
    assert!(r.pending() < 64);
    // a command limit leaves room for only so much literal
    let mut limits = Limits::new(100);
    limits.command = 30;
    let mut r = Reader::new(limits);
    assert!(matches!(r.push(b"a LOGIN {18}\r\n"), (_, Some(Event::Continue))));
    let mut r = Reader::new(limits);
    assert!(matches!(r.push(b"a LOGIN {19}\r\n"), (_, Some(Event::Error(_)))));
}

#[test]
fn long_lines() {
    let mut line = b"a1 SEARCH TEXT ".to_vec();
    line.resize(1 << 20, b'x');
    line.extend_from_slice(b"\r\nb NOOP\r\n");
    for chunk in [1 << 20, 4096, 7] {
        let got = events_in(&line, chunk);
        assert_eq!(got.len(), 2, "{chunk}");
        assert_eq!(got[0], Event::Error(bad("a1", ErrorKind::LineTooLong)));
        assert!(matches!(&got[1], Event::Command(c) if c.tag == b"b"));
    }
    let mut r = reader();
    let (n, event) = r.push(&line[..200_000]);
    assert_eq!(event, Some(Event::Error(bad("a1", ErrorKind::LineTooLong))));
    assert_eq!(n, 200_000);
    assert!(r.pending() == 0);
    // exactly the limit is fine, one more is not; the CR does not count
    let mut exact = b"a X ".to_vec();
    exact.resize(MAX_LINE, b'y');
    exact.extend_from_slice(b"\r\n");
    assert!(matches!(events_in(&exact, 1000).as_slice(), [Event::Command(_)]));
    exact.insert(5, b'y');
    assert_eq!(events(&exact), vec![Event::Error(bad("a", ErrorKind::LineTooLong))]);
    // an untagged long line
    let long = [b'('; 100_000];
    assert_eq!(
        events(&long),
        vec![Event::Error(Error { tag: None, kind: ErrorKind::LineTooLong })]
    );
    // a too-long line that announces a literal+ skips it too
    let mut skip = b"a X ".to_vec();
    skip.resize(MAX_LINE + 10, b'z');
    skip.extend_from_slice(b" {4+}\r\nb NO\r\nc NOOP\r\n");
    let got = events_in(&skip, 333);
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[1], Event::Command(c) if c.tag == b"c"));
}

#[test]
fn deep_nesting() {
    let mut line = b"a X ".to_vec();
    line.extend(std::iter::repeat(b'(').take(10_000));
    line.extend(std::iter::repeat(b')').take(10_000));
    line.extend_from_slice(b"\r\n");
    assert_eq!(error(&line), bad("a", ErrorKind::TooDeep));
    let nested = |n: usize| {
        let mut line = b"a X ".to_vec();
        line.extend(std::iter::repeat(b'(').take(n));
        line.push(b'x');
        line.extend(std::iter::repeat(b')').take(n));
        line.extend_from_slice(b"\r\n");
        line
    };
    assert!(matches!(events(&nested(MAX_DEPTH)).as_slice(), [Event::Command(_)]));
    assert_eq!(error(&nested(MAX_DEPTH + 1)), bad("a", ErrorKind::TooDeep));
    let mut sections = b"a X ".to_vec();
    for _ in 0..100 {
        sections.extend_from_slice(b"B[");
    }
    sections.extend_from_slice(b"\r\n");
    assert_eq!(error(&sections), bad("a", ErrorKind::TooDeep));
}

#[test]
fn hostile_bytes() {
    assert_eq!(error(b"a LOGIN jo\0e x\r\n"), bad("a", ErrorKind::Syntax("Space expected")));
    assert_eq!(error(b"a LOGIN \0 x\r\n"), bad("a", ErrorKind::Syntax("NUL byte")));
    assert_eq!(error(b"a LOGIN \"jo\0e\" x\r\n"), bad("a", ErrorKind::Syntax("NUL byte")));
    assert_eq!(
        error(b"a LOGIN \xc3\xa9 x\r\n"),
        bad("a", ErrorKind::Syntax("8-bit byte outside a string"))
    );
    // 8-bit in quoted strings is kept as bytes
    let cmd = command(b"a LOGIN \"j\xc3\xb6rg\" x\r\n");
    assert_eq!(Request::of(&cmd), Ok(Request::Login { user: "jörg".as_bytes(), password: b"x" }));
    // CR without LF: inside a line it is an error; at the end it waits for the LF
    assert_eq!(error(b"a NOOP\rb NOOP\r\n"), bad("a", ErrorKind::Syntax("Space expected")));
    assert_eq!(error(b"a LOGIN \r x\r\n"), bad("a", ErrorKind::Syntax("CR without LF")));
    assert_eq!(error(b"a LOGIN \"\r\" x\r\n"), bad("a", ErrorKind::Syntax("CR without LF")));
    assert_eq!(events(b"a NOOP\r"), vec![]);
    assert_eq!(
        events(b"a NOOP\r\r\n"),
        vec![Event::Error(bad("a", ErrorKind::Syntax("Space expected")))]
    );
    // escapes other than \" and \\, and unterminated strings
    assert_eq!(
        error(b"a LOGIN \"\\n\" x\r\n").kind,
        ErrorKind::Syntax("Invalid escape in quoted string")
    );
    assert_eq!(error(b"a LOGIN \"x\r\n").kind, ErrorKind::Syntax("Unterminated quoted string"));
    // a quoted string cannot run into a literal
    assert_eq!(
        error(b"a LOGIN \"x {1}\r\n\"\r\n").kind,
        ErrorKind::Syntax("Unterminated quoted string")
    );
    // a literal announcement in mid-line is not a literal
    assert_eq!(error(b"a LOGIN {3} x\r\n").kind, ErrorKind::Syntax("A literal must end its line"));
    // spacing is exact
    assert_eq!(error(b"a NOOP \r\n").kind, ErrorKind::Syntax("Argument expected"));
    assert_eq!(error(b"a LOGIN  x y\r\n").kind, ErrorKind::Syntax("Atom expected"));
}

#[test]
fn tags_and_empty_lines() {
    assert_eq!(events(b"\r\n\n\r\n"), vec![]);
    let got = events(b"\r\na NOOP\r\n");
    assert!(matches!(got.as_slice(), [Event::Command(c)] if c.tag == b"a"));
    for line in [
        &b"NOOP\r\n"[..],
        b" a NOOP\r\n",
        b"a+ NOOP\r\n",
        b"* NOOP\r\n",
        b"a{ NOOP\r\n",
        b"\0 NOOP\r\n",
        b"\xff NOOP\r\n",
    ] {
        let e = error(line);
        assert_eq!(
            e,
            Error { tag: None, kind: ErrorKind::BadTag },
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(e.response(), b"* BAD Invalid tag\r\n");
    }
    assert_eq!(command(b"a] X\r\n").tag, b"a]");
    // no continuation for a literal without a tag; a literal+ is skipped
    let untagged = Event::Error(Error { tag: None, kind: ErrorKind::BadTag });
    assert_eq!(events(b"* LOGIN {3}\r\n"), vec![untagged.clone()]);
    assert_eq!(events(b"{3+}\r\nabc\r\n"), vec![untagged]);
    assert_eq!(error(b"a (\r\n").response(), b"a BAD Atom expected\r\n");
    assert_eq!(error(b"a\r\n").kind, ErrorKind::BadTag);
    assert_eq!(error(b"a \r\n").kind, ErrorKind::Syntax("Atom expected"));
    assert_eq!(error(b"a UID\r\n").kind, ErrorKind::Syntax("Space expected"));
    assert_eq!(error(b"a \\X\r\n").kind, ErrorKind::Syntax("Command name expected"));
}

#[test]
fn password_is_wiped_and_not_shown() {
    let mut r = reader();
    let (_, event) = r.push(b"a LOGIN joe hunter2\r\n");
    let Some(Event::Command(cmd)) = event else { panic!() };
    assert!(!format!("{cmd:?}").contains("hunter2"));
    assert_eq!(r.push(b""), (0, None));
    assert!(r.buf.iter().all(|&b| b == 0));
}

#[test]
fn random_streams_agree_in_any_chunking() {
    // pieces that make interesting streams when strung together at random
    const PIECES: &[&[u8]] = &[
        b"a1 ",
        b"LOGIN ",
        b"UID ",
        b"FETCH ",
        b"1:*",
        b" ",
        b"(",
        b")",
        b"[",
        b"]",
        b"<0.5>",
        b"\"q\\\"\"",
        b"{3}\r\n",
        b"{2+}\r\n",
        b"{99999}\r\n",
        b"{0}\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"\xff",
        b"x",
        b"NIL",
        b"\\Seen",
        b"*",
        b"%",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut limits = Limits::new(64);
    limits.line = 40;
    limits.command = 200;
    limits.depth = 4;
    let run = |input: &[u8], chunk: usize| {
        let mut r = Reader::new(limits);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, event) = r.push(rest);
                assert!(n <= rest.len() && (n > 0 || event.is_some()));
                assert!(r.pending() <= limits.command + 1);
                rest = &rest[n..];
                if let Some(Event::Command(cmd)) = &event {
                    let _ = Request::of(cmd);
                }
                out.extend(event);
            }
        }
        out
    };
    for _ in 0..500 {
        let len = next() % 40;
        let input: Vec<u8> =
            (0..len).flat_map(|_| PIECES[next() as usize % PIECES.len()].iter().copied()).collect();
        let whole = run(&input, input.len().max(1));
        for chunk in [1, 2, 3, 7] {
            assert_eq!(run(&input, chunk), whole, "{:?}", String::from_utf8_lossy(&input));
        }
    }
}
