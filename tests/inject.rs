//! qmail-inject and sendmail: header completion, address qualification, recipient and sender
//! selection, hostile input, the queue's verdicts, and the sendmail translation. Most tests
//! queue through a stand-in (`QMAILQUEUE`, a shell script that saves fd 0 and fd 1); the
//! end-to-end ones use the real qmail-queue and read the queue.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A qmail-queue stand-in that saves the message and envelope under the sandbox and exits
/// with `code`.
struct FakeQueue {
    script: PathBuf,
    message: PathBuf,
    envelope: PathBuf,
}

impl FakeQueue {
    fn new(sb: &Sandbox, code: i32) -> Self {
        let dir = sb.tmp.path().join(format!("fakeqq-{code}"));
        fs::create_dir_all(&dir).unwrap();
        let message = dir.join("message");
        let envelope = dir.join("envelope");
        let script = dir.join("qq");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat > '{}' || exit 54\ncat 0<&1 > '{}' || exit 54\nexit {code}\n",
                message.display(),
                envelope.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        FakeQueue { script, message, envelope }
    }

    fn ran(&self) -> bool {
        self.message.exists()
    }

    fn message(&self) -> String {
        String::from_utf8_lossy(&self.message_bytes()).into_owned()
    }

    fn message_bytes(&self) -> Vec<u8> {
        fs::read(&self.message).expect("the queue stand-in ran")
    }

    /// The envelope's records up to its final empty one, which must be there.
    fn records(&self) -> Vec<String> {
        let env = fs::read(&self.envelope).expect("the queue stand-in ran");
        assert!(env.ends_with(b"\0\0"), "envelope ends in two NULs: {env:?}");
        env[..env.len() - 2]
            .split(|&b| b == 0)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    fn sender(&self) -> String {
        let r = self.records();
        r[0].strip_prefix('F').expect("F record first").to_string()
    }

    fn recipients(&self) -> Vec<String> {
        self.records()[1..]
            .iter()
            .map(|r| r.strip_prefix('T').expect("T record").to_string())
            .collect()
    }
}

/// `prog args` with `env`, queueing through `qq` when given.
fn run(
    sb: &Sandbox,
    prog: &str,
    qq: Option<&FakeQueue>,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let mut cmd: Command = sb.cmd(prog);
    cmd.env("USER", "fred").env_remove("LOGNAME").env_remove("NAME").env_remove("PROTO");
    if let Some(qq) = qq {
        cmd.env("QMAILQUEUE", &qq.script);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    run_with(&mut cmd, stdin)
}

fn inject(sb: &Sandbox, qq: &FakeQueue, args: &[&str], stdin: &str) -> Output {
    let out = run(sb, "qmail-inject", Some(qq), &[], args, stdin.as_bytes());
    assert_ok(&out, "qmail-inject");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails(out: &Output, want: i32, needle: &str) {
    assert_eq!(code(out), want, "stderr: {}", stderr(out));
    assert!(
        stderr(out).starts_with("qmail-inject: fatal: ") || stderr(out).starts_with("sendmail: "),
        "stderr: {}",
        stderr(out)
    );
    assert!(stderr(out).contains(needle), "want {needle:?} in {}", stderr(out));
}

/// The header lines of a message (up to the first empty line).
fn header_lines(message: &str) -> Vec<&str> {
    message.lines().take_while(|l| !l.is_empty()).collect()
}

fn is_message_id(line: &str) -> bool {
    let Some(id) =
        line.strip_prefix("Message-ID: <").and_then(|l| l.strip_suffix(".qmail@mx.example.org>"))
    else {
        return false;
    };
    let (stamp, pid) = id.split_once('.').unwrap_or(("", ""));
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(line: &str) -> bool {
    // `Date: 22 Nov 2026 00:31:12 -0000`
    let Some(d) = line.strip_prefix("Date: ") else {
        return false;
    };
    let parts: Vec<&str> = d.split(' ').collect();
    parts.len() == 5 && parts[4] == "-0000" && parts[3].len() == 8 && parts[2].len() == 4
}

#[test]
fn a_bare_message_is_completed_and_queued() {
    let sb = Sandbox::new();
    let out = run(&sb, "qmail-inject", None, &[], &["joe@example.com"], b"hello\n");
    assert_ok(&out, "qmail-inject");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1, "one message queued");
    let q = &todo[0];
    assert_eq!(q.sender(), "fred@mx.example.org");
    assert_eq!(q.recipients(), ["joe@example.com"]);
    let text = q.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Received: (qmail "), "{text}");
    assert!(is_date(lines[1]), "{text}");
    assert!(is_message_id(lines[2]), "{text}");
    assert_eq!(
        &lines[3..],
        ["From: fred@mx.example.org", "Cc: recipient list not shown: ;", "", "hello"],
        "{text}"
    );
    assert!(text.ends_with("\nhello\n"));
}

#[test]
fn a_header_message_end_to_end() {
    let sb = Sandbox::new();
    let input = "From: Fred <fred>\nTo: Joe <joe@example.com>, pat\nBcc: boss@example.net\n\
                 Subject: test\n\nbody\n";
    let out = run(&sb, "qmail-inject", None, &[], &[], input.as_bytes());
    assert_ok(&out, "qmail-inject");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    let q = &todo[0];
    assert_eq!(q.sender(), "fred@mx.example.org");
    assert_eq!(q.recipients(), ["joe@example.com", "pat@mx.example.org", "boss@example.net"]);
    let text = q.text();
    assert!(!text.contains("Bcc"), "{text}");
    assert!(!text.contains("boss"), "{text}");
    assert!(
        text.contains(
            "From: Fred <fred@mx.example.org>\nTo: Joe <joe@example.com>, pat@mx.example.org\n\
             Subject: test\n\nbody\n"
        ),
        "{text}"
    );
}

#[test]
fn no_headers_gets_date_message_id_and_from() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    inject(&sb, &qq, &["joe@example.com"], "hello\nworld\n");
    let text = qq.message();
    let h = header_lines(&text);
    assert_eq!(h.len(), 4, "{text}");
    assert!(is_date(h[0]), "{text}");
    assert!(is_message_id(h[1]), "{text}");
    assert_eq!(h[2], "From: fred@mx.example.org");
    assert_eq!(h[3], "Cc: recipient list not shown: ;");
    assert!(text.ends_with("\n\nhello\nworld\n"), "{text}");
    assert_eq!(qq.records(), ["Ffred@mx.example.org", "Tjoe@example.com"]);
}

#[test]
fn existing_fields_are_kept_and_not_duplicated() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "Date: 1 Jan 2000 00:00:00 -0000\nMessage-ID: <x@y.z>\nFrom: a@b.c\n\
                 To: d@e.f\nSubject: s\n\nbody\n";
    inject(&sb, &qq, &[], input);
    assert_eq!(qq.message(), input);
    assert_eq!(qq.records(), ["Ffred@mx.example.org", "Td@e.f"]);
}

#[test]
fn full_name_from_environment_and_option() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let env = [("QMAILNAME", "Fred Q. Public"), ("MAILNAME", "no"), ("NAME", "no")];
    let out = run(&sb, "qmail-inject", Some(&qq), &env, &["a@b.c"], b"x\n");
    assert_ok(&out, "inject");
    assert!(
        qq.message().contains("From: \"Fred Q. Public\" <fred@mx.example.org>\n"),
        "{}",
        qq.message()
    );
    let out =
        run(&sb, "qmail-inject", Some(&qq), &[("NAME", "Nom")], &["-F", "Opt", "a@b.c"], b"x\n");
    assert_ok(&out, "inject");
    assert!(qq.message().contains("From: \"Opt\" <fred@mx.example.org>\n"));
    // user and host from the environment; c: address-comment form
    let env = [
        ("QMAILUSER", "boss"),
        ("QMAILHOST", "corp.example"),
        ("NAME", "The Boss"),
        ("QMAILINJECT", "c"),
    ];
    let out = run(&sb, "qmail-inject", Some(&qq), &env, &["a@b.c"], b"x\n");
    assert_ok(&out, "inject");
    assert!(qq.message().contains("From: boss@corp.example (The Boss)\n"));
    assert_eq!(qq.sender(), "boss@corp.example");
}

#[test]
fn sender_selection() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    // arguments, environment, input, the sender
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&["-f", "boss@example.net"], &[], "x\n", "boss@example.net"),
        (&["-fboss"], &[], "x\n", "boss@mx.example.org"),
        (&["-f", ""], &[], "x\n", ""),
        (&["-f", "<>"], &[], "x\n", ""),
        (&["-f", "<b@c.d>"], &[], "x\n", "b@c.d"),
        (&[], &[], "Return-Path: <rp@example.net>\n\nx\n", "rp@example.net"),
        (&["-f", "f@x.y"], &[], "Return-Path: <rp@example.net>\n\nx\n", "f@x.y"),
        (
            &[],
            &[("QMAILINJECT", "s")],
            "Return-Path: <rp@example.net>\n\nx\n",
            "fred@mx.example.org",
        ),
        (
            &[],
            &[("QMAILSUSER", "bounces"), ("QMAILSHOST", "lists.example")],
            "x\n",
            "bounces@lists.example",
        ),
        (&[], &[("QMAILUSER", "u"), ("MAILHOST", "h.example")], "x\n", "u@h.example"),
        (&[], &[("MAILUSER", "mu")], "x\n", "mu@mx.example.org"),
        (&[], &[("QMAILINJECT", "r")], "x\n", "fred-@mx.example.org-@[]"),
    ];
    for (args, env, input, want) in cases {
        let mut all = args.to_vec();
        all.push("a@b.c");
        let out = run(&sb, "qmail-inject", Some(&qq), env, &all, input.as_bytes());
        assert_ok(&out, "inject");
        assert_eq!(qq.sender(), *want, "{args:?} {env:?}");
        assert!(!qq.message().contains("Return-Path"), "{}", qq.message());
    }
    // per-message VERP: user-time.pid
    let out = run(&sb, "qmail-inject", Some(&qq), &[("QMAILINJECT", "m")], &["a@b.c"], b"x\n");
    assert_ok(&out, "inject");
    let s = qq.sender();
    let local = s.strip_suffix("@mx.example.org").expect("qualified");
    let verp = local.strip_prefix("fred-").expect("user-");
    let (time, pid) = verp.split_once('.').expect("time.pid");
    assert!(time.parse::<u64>().is_ok() && pid.parse::<u32>().is_ok(), "{s}");
}

#[test]
fn recipient_selection() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "To: t@x.org\nCc: c@x.org\nBcc: b@x.org\nApparently-To: p@x.org\n\nbody\n";
    let header = ["t@x.org", "c@x.org", "b@x.org", "p@x.org"];
    let cases: &[(&[&str], Vec<&str>)] = &[
        (&["a@x.org"], vec!["a@x.org"]),
        (&["-A", "a@x.org"], vec!["a@x.org"]),
        (&[], header.to_vec()),
        (&["-a", "a@x.org"], vec!["a@x.org"]),
        (&["-h", "a@x.org"], header.to_vec()),
        (&["-H", "a@x.org"], [&["a@x.org"][..], &header].concat()),
        (&["-H"], header.to_vec()),
    ];
    for (args, want) in cases {
        inject(&sb, &qq, args, input);
        assert_eq!(qq.recipients(), *want, "{args:?}");
        let text = qq.message();
        assert!(!text.contains("Bcc") && !text.contains("b@x.org"), "{text}");
        assert!(text.contains("To: t@x.org\nCc: c@x.org\nApparently-To: p@x.org\n"));
    }
    // -a with no arguments: nobody
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["-a"], input.as_bytes());
    assert_fails(&out, 100, "no recipients");
}

#[test]
fn resent_fields_take_over() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "From: a@b.c\nTo: old@x.org\nDate: d\nMessage-ID: <m@x>\n\
                 Resent-To: new@x.org\nResent-Bcc: hidden@x.org\n\nbody\n";
    inject(&sb, &qq, &[], input);
    assert_eq!(qq.recipients(), ["new@x.org", "hidden@x.org"]);
    let text = qq.message();
    let h = header_lines(&text);
    assert!(h[0].starts_with("Resent-Date: "), "{text}");
    assert!(h[1].starts_with("Resent-Message-ID: <"), "{text}");
    assert_eq!(h[2], "Resent-From: fred@mx.example.org");
    assert!(!text.contains("hidden"), "{text}");
}

#[test]
fn removed_fields() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "To: a@b.c\nBcc: x@y.z\nReturn-Path: <r@s.t>\nContent-Length: 12\n\
                 Resent-Bcc: q@r.s\nSubject: kept\n\nbody\n";
    // Resent-Bcc makes it a resent message: recipients from Resent-*
    inject(&sb, &qq, &["-h"], input);
    let text = qq.message();
    for gone in ["Bcc", "Return-Path", "Content-Length", "x@y.z", "r@s.t"] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    assert!(text.contains("To: a@b.c\nSubject: kept\n\nbody\n"), "{text}");
    assert_eq!(qq.recipients(), ["q@r.s"]);
    assert_eq!(qq.sender(), "r@s.t");
}

#[test]
fn qmailinject_flags_delete_from_and_message_id() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "From: forged@evil.example\nMessage-ID: <old@x>\nTo: a@b.c\n\nbody\n";
    let out = run(&sb, "qmail-inject", Some(&qq), &[("QMAILINJECT", "fi")], &[], input.as_bytes());
    assert_ok(&out, "inject");
    let text = qq.message();
    assert!(!text.contains("forged") && !text.contains("old@x"), "{text}");
    assert!(text.contains("From: fred@mx.example.org\n"), "{text}");
    assert!(header_lines(&text).iter().any(|l| is_message_id(l)), "{text}");
}

#[test]
fn address_qualification() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    sb.control("defaulthost", "host.example.org\n");
    sb.control("plusdomain", "plus.example.net\n");
    sb.control("idhost", "id.example.org\n");
    let input = "To: joe, jane@desk, pat@desk+, kim@a.b, lit@[10.0.0.1]\n\nx\n";
    inject(&sb, &qq, &["-H", "arg", "arg2@box", "arg3@box+"], input);
    assert_eq!(
        qq.recipients(),
        [
            "arg@host.example.org",
            "arg2@box.example.org",
            "arg3@box.plus.example.net",
            "joe@host.example.org",
            "jane@desk.example.org",
            "pat@desk.plus.example.net",
            "kim@a.b",
            "lit@[10.0.0.1]",
        ]
    );
    let text = qq.message();
    assert!(
        text.contains(
            "To: joe@host.example.org, jane@desk.example.org, pat@desk.plus.example.net,\n  \
             kim@a.b, lit@[10.0.0.1]\n"
        ),
        "{text}"
    );
    assert!(text.contains(".qmail@id.example.org>\n"), "{text}");
    assert_eq!(qq.sender(), "fred@host.example.org");

    // the environment overrides the control files
    let env = [
        ("QMAILDEFAULTHOST", "envhost.example"),
        ("QMAILDEFAULTDOMAIN", "envdomain.example"),
        ("QMAILPLUSDOMAIN", "envplus.example"),
        ("QMAILIDHOST", "envid.example"),
    ];
    let out = run(&sb, "qmail-inject", Some(&qq), &env, &["a", "b@c", "d@e+"], b"x\n");
    assert_ok(&out, "inject");
    assert_eq!(
        qq.recipients(),
        ["a@envhost.example", "b@c.envdomain.example", "d@e.envplus.example"]
    );
    assert!(qq.message().contains(".qmail@envid.example>\n"));
}

#[test]
fn header_syntax() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "To: \"Doe, Jane\" <jane@x.org>, Joe Bloggs <joe>,\n\
                 \tfriends: a@x.org, b@x.org (Bee);,\n  c@x.org (the (nested) see)\n\
                 Cc: undisclosed-recipients: ;\n\nbody\n";
    inject(&sb, &qq, &[], input);
    assert_eq!(
        qq.recipients(),
        ["jane@x.org", "joe@mx.example.org", "a@x.org", "b@x.org", "c@x.org"]
    );
    let text = qq.message();
    // the field needed a rewrite (joe): written back, folded at commas
    assert!(
        text.contains(
            "To: \"Doe, Jane\" <jane@x.org>, Joe Bloggs <joe@mx.example.org>, friends: a@x.org,\n  \
             b@x.org (Bee);, c@x.org (the \\(nested\\) see)\nCc: undisclosed-recipients: ;\n"
        ),
        "{text}"
    );
    // a field that needs no rewriting keeps its folding byte for byte
    let folded = "To: a@x.org,\n   b@x.org\n\nx\n";
    inject(&sb, &qq, &[], folded);
    assert!(qq.message().ends_with(folded), "{}", qq.message());
    assert_eq!(qq.recipients(), ["a@x.org", "b@x.org"]);
}

#[test]
fn unparsable_address_fields_are_permanent() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    for input in ["To: \"unterminated\n\nx\n", "To: a@b>\n\nx\n", "Cc: <a@b\n\nx\n"] {
        let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], input.as_bytes());
        assert_fails(&out, 100, "unable to parse");
        assert!(!qq.ran());
    }
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["a@(b"], b"x\n");
    assert_fails(&out, 100, "unable to parse address");
}

#[test]
fn print_instead_of_queueing() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let out = run(
        &sb,
        "qmail-inject",
        Some(&qq),
        &[],
        &["-n", "-f", "s@x.org", "a@b.c"],
        b"Subject: hi\n\nbody",
    );
    assert_ok(&out, "inject -n");
    assert!(!qq.ran(), "nothing queued");
    let text = String::from_utf8_lossy(&out.stdout);
    let h = header_lines(&text);
    assert_eq!(h[0], "Return-Path: <s@x.org>");
    assert!(is_date(h[1]) && is_message_id(h[2]), "{text}");
    assert_eq!(
        h[3..],
        ["From: fred@mx.example.org", "Cc: recipient list not shown: ;", "Subject: hi"]
    );
    assert!(text.ends_with("\n\nbody\n"), "{text:?}");
    // -N after -n queues again
    inject(&sb, &qq, &["-n", "-N", "a@b.c"], "x\n");
    assert!(qq.ran());
    // with the real queue too: nothing in todo
    let out = run(&sb, "qmail-inject", None, &[], &["-n", "a@b.c"], b"x\n");
    assert_ok(&out, "inject -n");
    assert!(sb.todo().is_empty());
}

#[test]
fn body_is_copied_byte_for_byte() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    // binary, CRLF, a NUL, a very long line, and 5 MB in all
    let mut body = b"line\r\ncr\0nul\xff\xfe\n".to_vec();
    body.extend(std::iter::repeat(b'z').take(3 << 20));
    body.push(b'\n');
    body.extend(b"0123456789abcdef\n".repeat(120_000));
    let input = [b"To: a@b.c\n\n".as_slice(), &body].concat();
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], &input);
    assert_ok(&out, "inject");
    let msg = qq.message_bytes();
    assert!(msg.ends_with(&input), "body not intact");
    // a first line that is no header field starts the body after a blank line
    inject(&sb, &qq, &["a@b.c"], "not a header\nsecond\n");
    assert!(qq.message().ends_with(";\n\nnot a header\nsecond\n"), "{}", qq.message());
}

#[test]
fn hostile_header_line_of_10_mb() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let mut input = b"Subject: ".to_vec();
    input.extend(std::iter::repeat(b'x').take(10 << 20));
    input.extend(b"\n\nbody\n");
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["a@b.c"], &input);
    assert_fails(&out, 100, "header field too long");
    assert!(!qq.ran());
    // a continuation line that grows a field past the limit
    let mut input = b"To: a@b.c\n".to_vec();
    for _ in 0..10_000 {
        input.extend(b"  , more@b.c\n");
    }
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], &input);
    assert_fails(&out, 100, "header field too long");
    // a 10 MB first line that is no header field is body, and is streamed
    let mut input = vec![b'y'; 10 << 20];
    input.push(b'\n');
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["a@b.c"], &input);
    assert_ok(&out, "inject");
    assert!(qq.message_bytes().ends_with(&[b"\n\n".as_slice(), &input].concat()));
}

#[test]
fn hostile_binary_header() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    // NULs and 8-bit bytes in an ordinary field are carried as they are
    let input = b"X-Binary: \0\x01\x02\xff\xfe\x80\nTo: a@b.c\n\nbody\n";
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], input);
    assert_ok(&out, "inject");
    assert!(qq.message_bytes().ends_with(input));
    // a NUL in a recipient address: refused, not truncated
    let qq2 = FakeQueue::new(&sb, 1);
    let out = run(&sb, "qmail-inject", Some(&qq2), &[], &[], b"To: a\0b@c.d\n\nx\n");
    assert_fails(&out, 100, "invalid address");
    assert!(!qq2.ran());
    // a NUL-laden name starts the body
    let input = b"\0\0\0: x\nTo: a@b.c\n\n";
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["x@y.z"], input);
    assert_ok(&out, "inject");
    assert!(qq.message_bytes().ends_with(&[b";\n\n".as_slice(), input].concat()));
    // random binary garbage never crashes it
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut input = Vec::new();
        for _ in 0..4096 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let b = (seed >> 24) as u8;
            input.push(match b % 8 {
                0 => b'\n',
                1 => b':',
                2 => b' ',
                3 => b"<>\"(),;@"[(b as usize / 8) % 8],
                _ => b,
            });
        }
        let input = [b"To: ".as_slice(), &input].concat();
        let out = run(&sb, "qmail-inject", Some(&qq), &[], &["-H", "a@b.c"], &input);
        let c = code(&out);
        assert!(c == 0 || c == 100, "round {round}: exit {c}: {}", stderr(&out));
    }
}

#[test]
fn hostile_100000_recipients() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let list: Vec<String> = (0..100_000).map(|i| format!("user{i}@example.com")).collect();
    let input = format!("To: {}\n\nbody\n", list.join(", "));
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], input.as_bytes());
    assert_fails(&out, 100, "header field too long");
    assert!(!qq.ran());
    // as one field per recipient the header is over its bound too
    let input = format!("To: {}\n\nbody\n", list.join("\nTo: "));
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], input.as_bytes());
    assert_fails(&out, 100, "header too long");
    // 20,000 recipients fit, and all of them are queued
    let input = format!("To: {}\n\nbody\n", list[..20_000].join("\nCc: "));
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &[], input.as_bytes());
    assert_ok(&out, "inject");
    assert_eq!(qq.recipients().len(), 20_000);
}

#[test]
fn queue_verdicts() {
    let sb = Sandbox::new();
    for (qcode, want, needle) in [
        (53, 111, "Write error or disk full"),
        (54, 111, "(#4.3.0)"),
        (81, 111, "Internal bug"),
        (31, 100, "permanently rejected"),
        (11, 100, "(#5.1.3)"),
    ] {
        let qq = FakeQueue::new(&sb, qcode);
        let out = run(&sb, "qmail-inject", Some(&qq), &[], &["a@b.c"], b"x\n");
        assert_fails(&out, want, needle);
        assert!(qq.ran());
    }
    // no queue program at all: temporary
    let out = run(&sb, "qmail-inject", None, &[("QMAILQUEUE", "bin/nonesuch")], &["a@b.c"], b"x\n");
    assert_fails(&out, 111, "qq");
}

#[test]
fn usage_and_control_errors() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    for args in [&["-x"][..], &["-f"], &["-q", "a@b.c"]] {
        let out = run(&sb, "qmail-inject", Some(&qq), &[], args, b"x\n");
        assert_fails(&out, 100, "usage");
    }
    assert!(!qq.ran());
    // an unreadable control file is temporary
    fs::create_dir(sb.home.join("control/defaulthost")).unwrap();
    let out = run(&sb, "qmail-inject", Some(&qq), &[], &["a@b.c"], b"x\n");
    assert_fails(&out, 111, "defaulthost");
}

#[test]
fn sendmail_translation() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    let input = "To: t@x.org\nSubject: s\n\nbody\n";
    let sendmail = |args: &[&str], input: &str| {
        let out = run(&sb, "sendmail", Some(&qq), &[], args, input.as_bytes());
        assert_ok(&out, "sendmail");
    };
    // plain: arguments only
    sendmail(&["-oi", "a@x.org"], input);
    assert_eq!(qq.recipients(), ["a@x.org"]);
    // -t: header and arguments
    sendmail(&["-t", "-i"], input);
    assert_eq!(qq.recipients(), ["t@x.org"]);
    sendmail(&["-t", "a@x.org"], input);
    assert_eq!(qq.recipients(), ["a@x.org", "t@x.org"]);
    // -f sets the sender and the generated From:, -F the full name
    sendmail(&["-f", "boss@corp.example", "-F", "The Boss", "a@x.org"], input);
    assert_eq!(qq.sender(), "boss@corp.example");
    assert!(qq.message().contains("From: \"The Boss\" <boss@corp.example>\n"), "{}", qq.message());
    sendmail(
        &["-fboss@corp.example", "-oem", "-odb", "-oQ/x", "-bm", "-v", "--", "a@x.org"],
        input,
    );
    assert_eq!(qq.sender(), "boss@corp.example");
    assert_eq!(qq.recipients(), ["a@x.org"]);
    // an argument that looks like an option after -- is a recipient, and nothing is a shell
    sendmail(&["--", "-weird@x.org", "semi;colon@x.org"], input);
    assert_eq!(qq.recipients(), ["-weird@x.org", "semi;colon@x.org"]);
}

#[test]
fn sendmail_refusals() {
    let sb = Sandbox::new();
    let qq = FakeQueue::new(&sb, 0);
    for args in [&["-q"][..], &["-bz", "a@x.org"], &["-f"], &["-bi"]] {
        let out = run(&sb, "sendmail", Some(&qq), &[], args, b"x\n");
        assert_fails(&out, 100, "usage");
    }
    assert!(!qq.ran());
    // no recipients without -t: qmail-inject says so
    let out = run(&sb, "sendmail", Some(&qq), &[], &[], b"To: a@b.c\n\nx\n");
    assert_fails(&out, 100, "no recipients");
    // invoked by other names
    let links = sb.tmp.path().join("links");
    fs::create_dir(&links).unwrap();
    for name in ["newaliases", "mailq"] {
        std::os::unix::fs::symlink(bin("sendmail"), links.join(name)).unwrap();
    }
    let mut cmd = Command::new(links.join("newaliases"));
    cmd.env("QMAILHOME", &sb.home);
    let out = run_with(&mut cmd, b"");
    assert_fails(&out, 100, "aliases");
    // a program missing from bin/ is a temporary failure
    for prog in ["qmail-qread", "qmail-smtpd"] {
        fs::remove_file(sb.home.join("bin").join(prog)).unwrap();
    }
    let mut cmd = Command::new(links.join("mailq"));
    cmd.env("QMAILHOME", &sb.home);
    let out = run_with(&mut cmd, b"");
    assert_fails(&out, 111, "unable to run");
    for flag in ["-bp", "-bs"] {
        let out = run(&sb, "sendmail", None, &[], &[flag], b"");
        assert_fails(&out, 111, "unable to run");
    }
    // an unreachable root
    let out =
        run(&sb, "sendmail", None, &[("QMAILHOME", "/nonexistent/qmail")], &["a@b.c"], b"x\n");
    assert_fails(&out, 111, "unable to switch");
}

#[test]
fn sendmail_bs_environment() {
    // -bs runs bin/qmail-smtpd: stand one in that prints its environment
    let sb = Sandbox::new();
    let smtpd = sb.home.join("bin/qmail-smtpd");
    fs::remove_file(&smtpd).unwrap();
    fs::write(&smtpd, "#!/bin/sh\nenv | grep -E '^(RELAYCLIENT|DATABYTES|PROTO|TCP)' | sort\n")
        .unwrap();
    fs::set_permissions(&smtpd, fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&sb, "sendmail", None, &[], &["-bs"], b"");
    assert_ok(&out, "sendmail -bs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "DATABYTES=0\nPROTO=TCP\nRELAYCLIENT=\nTCPLOCALHOST=localhost\nTCPLOCALIP=127.0.0.1\n\
         TCPREMOTEHOST=localhost\nTCPREMOTEINFO=sendmail-bs\nTCPREMOTEIP=127.0.0.1\n"
    );
    // with PROTO set, the environment is left alone
    let out = run(&sb, "sendmail", None, &[("PROTO", "SMTP")], &["-bs"], b"");
    assert_ok(&out, "sendmail -bs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PROTO=SMTP\n");
}
